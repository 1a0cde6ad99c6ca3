// Hostile kernel tables in guest memory (kallsyms, mem_section) and memory
// where the kernel cannot have any: the CLI answers with one line and a
// non-zero exit, and its peak RSS stays under 100 MB whatever the tables
// claim. The plain table next to them shows the crafted kernel is read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { buildSynthetic, syntheticElf } from "../../fixtures/synthetic.js";
import { imageVaddr } from "../../fixtures/guest-layout.js";
import { kallsymsTables, type KallsymsSpec } from "../helpers/kallsyms-build.js";
import { assertOneLineFailure, PEAK_MIB, runCliMeasured } from "../helpers/peak-rss.js";
import { scratchDir, writeTemp } from "../helpers/synthetic.js";


function withDir(f: (dir: string) => void): void {
  const dir = scratchDir();
  try {
    f(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function imageWithKallsyms(spec: KallsymsSpec): Buffer {
  const t = kallsymsTables(spec);
  const s = buildSynthetic({ memMiB: 32, vmcoreinfoExtra: t.vmcoreinfo });
  t.bytes.copy(s.image, t.paddr);
  return s.image;
}


const symbols = [
  { name: "_stext", type: "T", address: imageVaddr(0) },
  { name: "synth_func", type: "T", address: imageVaddr(0x2000) },
  { name: "max_pfn", type: "D", address: imageVaddr(0x30000) },
  { name: "_end", type: "B", address: imageVaddr(0x400000) },
];

test("a plain kallsyms table in the crafted kernel resolves both ways", () => withDir((dir) => {
  const input = writeTemp(dir, "plain.raw", imageWithKallsyms({ symbols }));
  const r = runCliMeasured(["sym", input, "synth_func", `0x${(imageVaddr(0x2000) + 0x10n).toString(16)}`]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trimEnd().split("\n"), [
    `${imageVaddr(0x2000).toString(16)} T synth_func`,
    `${(imageVaddr(0x2000) + 0x10n).toString(16)} T synth_func+0x10/0x2e000`,
  ]);
}));

test("kallsyms tokens of 64 KiB and names of 32767 tokens: one line, not a RangeError", () => withDir((dir) => {
  // Token t starts t bytes into 65534 bytes of 'a': all but the last are
  // 64 KiB long; every name is 32767 copies of token 0 (2 GiB of text).
  const tokenTable = Buffer.concat([Buffer.alloc(65534, "a"), Buffer.alloc(1)]);
  const tokenIndex = Array.from({ length: 256 }, (_, t) => (t < 255 ? t : 65279));
  const name = Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.alloc(32767, 0)]);
  const input = writeTemp(dir, "tokens.raw", imageWithKallsyms({ symbols, tokenTable, tokenIndex, names: Buffer.concat([name, name, name, name]) }));
  assertOneLineFailure(runCliMeasured(["sym", input, "max_pfn"]), /kallsyms token 0 .*longer than KSYM_NAME_LEN/);
}));

test("kallsyms names of thousands of tokens: one line, bounded by KSYM_NAME_LEN", () => withDir((dir) => {
  const len = 3000;
  const name = Buffer.concat([Buffer.from([0x80 | (len & 0x7f), len >> 7]), Buffer.alloc(len, "a".charCodeAt(0))]);
  const names = Buffer.concat(Array.from({ length: 600 }, () => name));
  const input = writeTemp(dir, "names.raw", imageWithKallsyms({ symbols, names, numSyms: 600 }));
  assertOneLineFailure(runCliMeasured(["sym", input, "max_pfn"]), /kallsyms entry 0 expands past KSYM_NAME_LEN \(512 bytes\)/);
}));

test("kallsyms_num_syms beyond what kallsyms_names can hold: one line before any decoding", () => withDir((dir) => {
  const input = writeTemp(dir, "count.raw", imageWithKallsyms({ symbols, numSyms: 1 << 20 }));
  assertOneLineFailure(runCliMeasured(["sym", input, "max_pfn"]), /kallsyms_num_syms is 1048576: not a symbol table \(its \d+-byte kallsyms_names holds at most \d+\)/);
}));

test("an ELF with a PT_LOAD at 2^45: the mem_section walk stays inside the root array", () => withDir((dir) => {
  // 128 MiB: one whole memory section, so its mem_map is all mapped.
  const s = buildSynthetic({ memMiB: 128 });
  const input = writeTemp(dir, "high.elf", syntheticElf(s, true, [{ paddr: 2 ** 45, data: Buffer.alloc(4096, 0x11) }]));
  const out = join(dir, "out.elf");
  const r = runCliMeasured(["dump", input, "-o", out, "-d", "31", "--json"]);
  assert.equal(r.status, 0, r.stderr);
  // The page at 2^45 is past the kernel's last memory section: not its memory, as for mem=.
  assert.equal(JSON.parse(r.stdout).table.total, 32768);
  assert.ok(r.peakMiB < PEAK_MIB, `peak RSS ${r.peakMiB.toFixed(1)} MiB`);
}));

test("an ELF with memory above MAX_PHYSMEM_BITS: one line, no dump", () => withDir((dir) => {
  const s = buildSynthetic({ memMiB: 32 });
  const input = writeTemp(dir, "beyond.elf", syntheticElf(s, true, [{ paddr: 2 ** 47, data: Buffer.alloc(4096, 0x11) }]));
  const out = join(dir, "out.elf");
  assertOneLineFailure(runCliMeasured(["dump", input, "-o", out, "-d", "31"]), /above the 0x400000000000 this kernel can address \(MAX_PHYSMEM_BITS=46\)/);
  assert.ok(!existsSync(out), "no output file");
}));
