// x86-64 page tables of real captures, 4-level (q35-256m) and 5-level
// (q35-256m-la57), overwritten by the input: every table page the
// kernel's own translations walk through (the image, the direct map,
// vmemmap, the self-map of init_top_pgt). Then translations, long runs,
// the kernel image's extent, and the self-map check that decides
// phys_base. Mutations make entries point anywhere: at themselves, at a
// table above (a loop), at huge pages with stray bits, past memory.
//
// Input: byte 0 picks the capture (bit 0: 5-level), then the table pages
// in the seed's order, 4 KiB each.
import { AddressSpace } from "../../src/introspect/address-space.js";
import { kernelImage } from "../../src/introspect/kernel-image.js";
import { validate } from "../../src/introspect/kernel.js";
import type { Field, Seed, SeedContext } from "../target.js";
import { materialTarget, openCapture, OverlaySource, tolerate, type Capture } from "../guest-memory.js";

const PAGE = 4096;
const PRESENT = 1n;
const PSE = 0x80n;

interface Walked {
  cap: Capture;
  /** Table pages, in seed order. */
  tables: number[];
  probes: bigint[];
  seed: Seed;
}

interface Material {
  byLevels: Walked[];
  seeds: Seed[];
}

/** The entries a walk of `va` reads from the real tables, as physical addresses. */
function walkEntries(c: Capture, va: bigint): number[] {
  const form = c.kernel.as.form;
  const out: number[] = [];
  const entry = new Uint8Array(8);
  let table = BigInt(c.kernel.as.root);
  for (let level: number = form.levels; level >= 1; level--) {
    const at = Number(table + ((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn) * 8n);
    out.push(at);
    c.image.source.readBatch([{ paddr: at, dst: entry }]);
    const e = new DataView(entry.buffer).getBigUint64(0, true);
    if (!(e & PRESENT) || level === 1 || ((e & PSE) && (level === 2 || level === 3))) break;
    table = e & form.addrMask;
  }
  return out;
}

function walked(c: Capture, selector: number): Walked {
  const info = c.kernel.info;
  const sym = (n: string) => info.symbol(n);
  const mem = sym("mem_section");
  const vmemmap = (() => {
    // The struct page of pfn 0, from section 0 (vmemmap's start).
    const e = tolerate(() => c.kernel.as.readU64(c.kernel.as.readU64(mem!, "root 0"), "mem_section[0]"));
    return e === undefined ? undefined : e & ~0x1fn;
  })();
  const probes = [sym("init_top_pgt"), sym("_stext"), sym("init_uts_ns"), sym("prb"), sym("kallsyms_names"), mem,
    mem !== undefined ? mem + (2n << 20n) : undefined, vmemmap, vmemmap !== undefined ? vmemmap + 0x201000n : undefined,
    0xffffffffff600000n, 0n, 0x7fffffffe000n]
    .filter((v): v is bigint => v !== undefined);
  const entries = probes.flatMap((va) => walkEntries(c, va));
  const tables = [...new Set(entries.map((e) => e - (e % PAGE)))];
  const bytes = new Uint8Array(1 + tables.length * PAGE);
  bytes[0] = selector;
  tables.forEach((t, i) => c.image.source.readBatch([{ paddr: t, dst: bytes.subarray(1 + i * PAGE, 1 + (i + 1) * PAGE) }]));
  const fields: Field[] = [{ offset: 0, width: 1, kind: "flags", name: "capture (bit 0: 5-level)" }];
  for (const e of new Set(entries)) {
    const off = 1 + tables.indexOf(e - (e % PAGE)) * PAGE + (e % PAGE);
    fields.push({ offset: off, width: 8, kind: "pointer", name: `entry at 0x${e.toString(16)}` }, { offset: off, width: 1, kind: "flags", name: `flags at 0x${e.toString(16)}` });
  }
  const seed = { label: `${c.profile} ${c.kernel.as.form.levels}-level tables (${tables.length} pages)`, bytes, fields };
  return { cap: c, tables, probes, seed };
}

function build(ctx: SeedContext): Material {
  const four = openCapture(ctx.cacheDir, "q35-256m") ?? openCapture(ctx.cacheDir, "q35-512m");
  if (!four) throw new Error(`no real 4-level capture under ${ctx.cacheDir}/fixtures: run 'bash fixtures/build-real.sh q35-256m'`);
  const five = openCapture(ctx.cacheDir, "q35-256m-la57");
  const byLevels = [walked(four, 0), ...(five ? [walked(five, 1)] : [])];
  return { byLevels, seeds: byLevels.map((w) => w.seed) };
}

export default materialTarget({
  name: "page-tables",
  describes: "x86-64 4- and 5-level page tables of real captures: translations, runs, the image's extent, the self-map check",
  build,
  run(m, input) {
    const w = m.byLevels[(input[0] ?? 0) & 1] ?? m.byLevels[0];
    const c = w.cap;
    const body = input.subarray(1);
    const patches = w.tables.map((t, i) => {
      const page = w.seed.bytes.slice(1 + i * PAGE, 1 + (i + 1) * PAGE);
      page.set(body.subarray(i * PAGE, (i + 1) * PAGE));
      return { paddr: t, bytes: page };
    });
    const src = new OverlaySource(c.image.source, patches);
    const as = new AddressSpace(src, c.core, c.kernel.as.form, c.kernel.as.root);
    for (const va of w.probes) {
      tolerate(() => as.translate(va));
      tolerate(() => as.runs(va, 1 << 20, "probe"));
    }
    tolerate(() => kernelImage({ ...c.kernel, as }));
    tolerate(() => validate(src, c.core, c.kernel.info, "note"));
  },
});
