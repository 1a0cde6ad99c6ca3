// The filtered ELF holds exactly the kept pages, byte for byte, and reads
// back as a dump of the same kernel.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, ftruncateSync, openSync, readdirSync, readFileSync, statSync, writeSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { buildSynthetic, syntheticElf } from "../../fixtures/synthetic.js";
import { GuestImage } from "../../src/image.js";
import { dump, zeroPages } from "../../src/pipeline/dump.js";
import { openSource } from "../../src/sources/open.js";
import { openRaw } from "../../src/sources/raw.js";
import { openElf } from "../../src/sources/elf.js";
import { writeElfDump } from "../../src/writers/elf-writer.js";
import { PfnBitmap } from "../../src/core/pfn-bitmap.js";
import { assertElfHoldsExactly } from "../helpers/elf-check.js";
import { tempDir, writeTemp } from "../helpers/synthetic.js";

for (const format of ["raw", "elf"] as const) {
  test(`ELF output from a ${format} input holds the kept pages byte for byte`, async (t) => {
    const s = buildSynthetic({ memMiB: 64 });
    const dir = tempDir(t);
    const input = format === "raw" ? writeTemp(dir, "g.raw", s.image) : writeTemp(dir, "g.elf", syntheticElf(s));
    const out = join(dir, "out.elf");
    for (const level of [0, 1, 31]) {
      const report = await dump(input, out, { level, elf: true });
      const img = GuestImage.open(input);
      const r = img.pageStats(level);
      img.close();
      assert.equal(report.table.remaining, r.keptCount);
      const src = openSource(input);
      assertElfHoldsExactly(out, src, r.kept, zeroPages(r), r.maxPfn);
      src.close();
      // One PT_LOAD per run of kept pages and one per run of zero pages;
      // the kernel image's two ends may cut one run each.
      const runs = [...r.kept.runs(0, r.maxPfn)].length + [...zeroPages(r).runs(0, r.maxPfn)].length;
      const loads = report.loads ?? -1;
      assert.ok(loads >= runs && loads <= runs + 2, `${loads} PT_LOADs for ${runs} runs`);
      // The output is itself a dump of the same kernel; filtering it again
      // at the same level keeps every page it has.
      const again = GuestImage.open(out);
      assert.equal(again.kernel.origin, "note");
      assert.equal(again.vmcoreinfo.osrelease, s.release);
      const r2 = again.pageStats(level);
      again.close();
      assert.equal(r2.keptCount, r.keptCount, `level ${level}: re-filtering keeps everything`);
    }
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes("partial")), []);
  });
}

test("PT_LOADs of the kernel image carry its __START_KERNEL_map addresses", async (t) => {
  const s = buildSynthetic({ memMiB: 64 });
  const dir = tempDir(t);
  const out = join(dir, "out.elf");
  await dump(writeTemp(dir, "g.raw", s.image), out, { level: 31, elf: true });
  const src = openSource(out);
  try {
    const img = src.segments.filter((g) => g.vaddr !== 0n);
    assert.ok(img.length > 0, "some PT_LOADs map the image");
    for (const g of img) assert.equal(g.vaddr, 0xffffffff80000000n + BigInt(g.start) - s.physBase);
    // The image is 4 MiB at 8 MiB; everything outside it keeps p_vaddr 0.
    assert.ok(img.every((g) => g.start >= 0x800000 && g.end <= 0xc00000));
    assert.ok(src.segments.some((g) => g.vaddr === 0n && g.start >= 0xc00000));
  } finally {
    src.close();
  }
});

for (const elf of [true, false]) {
  test(`${elf ? "ELF" : "kdump"} output is written under a temporary name and renamed once complete`, async (t) => {
    const s = buildSynthetic({ memMiB: 16 });
    const dir = tempDir(t);
    const input = writeTemp(dir, "g.raw", s.image);
    const out = join(dir, "final.dump");
    const others = () => readdirSync(dir).filter((f) => f !== "g.raw");
    // What the directory holds while the dump is written (progress reports) and just before it is made final.
    const during: string[][] = [];
    let atCommit: { names: string[]; ino: number; size: number } | undefined;
    await dump(input, out, {
      level: 31, elf,
      onProgress: () => during.push(others()),
      beforeCommit: async () => {
        const names = others();
        atCommit = { names, ino: names.length === 1 ? statSync(join(dir, names[0])).ino : -1, size: names.length === 1 ? statSync(join(dir, names[0])).size : -1 };
      },
    });
    assert.ok(during.length > 0, "progress was reported while writing");
    assert.deepEqual(during.filter((names) => names.includes("final.dump")), [], "the final name appeared before the dump was complete");
    assert.ok(atCommit, "beforeCommit ran");
    assert.equal(atCommit.names.length, 1, `one temporary file before the commit: ${atCommit.names.join(" ")}`);
    assert.notEqual(atCommit.names[0], "final.dump", "written in place");
    // Renamed, not copied: the same inode, already complete.
    const final = statSync(out);
    assert.equal(final.ino, atCommit.ino);
    assert.equal(final.size, atCommit.size);
    assert.deepEqual(readdirSync(dir).sort(), ["final.dump", "g.raw"]);
  });
}

// Past 65534 program headers e_phnum is PN_XNUM and the count moves to
// section header 0's sh_info; the writer streams the headers, so the
// count it planned and the headers it wrote must agree.
test("ELF output with more than 65535 PT_LOADs uses PN_XNUM, and readelf and our reader agree on them", async (t) => {
  const dir = tempDir(t);
  const pages = 140_000;
  const raw = join(dir, "sparse.raw");
  const fd = openSync(raw, "w");
  const marker = Buffer.alloc(4096, 0xa5);
  writeSync(fd, marker, 0, 4096, 2 * 4096);
  ftruncateSync(fd, pages * 4096);
  closeSync(fd);
  const src = openRaw(raw);
  // Kept: pfn 2 (data). Zero: every other pfn from 4 (data-less loads).
  const kept = new PfnBitmap(pages);
  kept.setRange(2, 3);
  const zero = new PfnBitmap(pages);
  for (let p = 4; p < pages; p += 2) zero.setRange(p, p + 1);
  const out = join(dir, "many.elf");
  const w = await writeElfDump(out, src, [{ name: "VMCOREINFO", type: 0, desc: Buffer.from("OSRELEASE=test\n") }], kept, zero, pages);
  src.close();
  const loads = 1 + (pages - 4) / 2;
  assert.equal(w.loads, loads);
  const hdr = readFileSync(out).subarray(0, 64);
  assert.equal(hdr.readUInt16LE(56), 0xffff, "e_phnum is PN_XNUM");
  const readelf = execFileSync("readelf", ["-lW", out], { encoding: "utf8", maxBuffer: 1 << 28 });
  assert.equal(readelf.split("\n").filter((l) => /^\s+LOAD\s/.test(l)).length, loads);
  const back = openElf(out);
  try {
    // Our reader keeps the data-less loads apart from its data segments.
    assert.equal(back.segments.length, 1);
    const page = new Uint8Array(4096);
    back.readBatch([{ paddr: 2 * 4096, dst: page }]);
    assert.deepEqual(Buffer.from(page), marker);
    back.readBatch([{ paddr: (pages - 2) * 4096, dst: page }]);
    assert.ok(page.every((b) => b === 0));
    assert.throws(() => back.readBatch([{ paddr: 3 * 4096, dst: page }]));
  } finally {
    back.close();
  }
});
