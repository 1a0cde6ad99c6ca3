// SPARSEMEM on a real capture, overwritten by the input: the mem_section
// root array, the first root's sections, and the struct pages (mem_map)
// of the guest's first 64 MiB. Then what a dump does: the memory ranges
// of every present section and the page classifier at -d 30 (flags,
// mapping, _mapcount, buddy orders, compound heads and orders).
//
// The source reports 64 MiB of memory, so a run classifies 16k pages; the
// rest of the capture stays readable where the mutated tables point.
import { PageFilter } from "../../src/filter/page-filter.js";
import { memMapRanges, sparseLayout } from "../../src/introspect/memmap.js";
import type { Field, Seed, SeedContext } from "../target.js";
import { kernelOver, layOver, materialTarget, OverlaySource, readPieces, requireCapture, tolerate, type Capture, type Piece } from "../guest-memory.js";

const PFNS = 16384;
const ROOTS = 8;
const SECTIONS = 8;
/** Struct pages per page class that get fields. */
const PER_CLASS = 24;

interface Material {
  cap: Capture;
  pieces: Piece[];
  seeds: Seed[];
}

function build(ctx: SeedContext): Material {
  const cap = requireCapture(ctx.cacheDir, ["q35-256m", "q35-512m"]);
  const k = cap.kernel;
  const info = k.info;
  const layout = sparseLayout(k);
  const sym = info.symbol("mem_section")!;
  const root0 = k.as.readU64(sym, "mem_section root 0");
  const [range] = memMapRanges(k, layout, PFNS);
  const size = layout.sizeofPage;
  const pieces: Piece[] = [
    { vaddr: sym, length: 8 * ROOTS },
    { vaddr: root0, length: layout.sizeofMemSection * SECTIONS },
    { vaddr: range.memMap, length: PFNS * size },
  ];
  const bytes = readPieces(k, pieces);
  const pagesAt = 8 * ROOTS + layout.sizeofMemSection * SECTIONS;
  const fields: Field[] = [];
  for (let r = 0; r < ROOTS; r++) fields.push({ offset: 8 * r, width: 8, kind: "pointer", name: `mem_section root ${r}` });
  for (let s = 0; s < SECTIONS; s++) {
    const o = 8 * ROOTS + s * layout.sizeofMemSection + layout.offSectionMemMap;
    fields.push({ offset: o, width: 8, kind: "pointer", name: `mem_section[${s}].section_mem_map` }, { offset: o, width: 1, kind: "flags", name: `mem_section[${s}] flags` });
  }
  // Struct pages of every class the real classifier finds, and their first tail.
  const picked = new Map<number, number[]>();
  const f = new PageFilter(new OverlaySource(cap.image.source, [], { segments: [{ start: 0, end: PFNS * 4096, vaddr: 0n }] }), k, cap.core);
  f.run(31, (w) => w.cls.forEach((c, i) => {
    const l = picked.get(c) ?? [];
    if (l.length < PER_CLASS && w.pfnStart + i + 1 < PFNS) picked.set(c, [...l, w.pfnStart + i]);
  }));
  const off = (n: string) => info.offset(`page.${n}`);
  const pageFields: [string, 1 | 4 | 8, Field["kind"]][] = [["flags", 8, "flags"], ["mapping", 8, "pointer"], ["_mapcount", 4, "count"],
    ["private", 8, "count"], ["compound_head", 8, "pointer"], ["compound_order", 1, "count"], ["compound_dtor", 1, "flags"]];
  for (const pfn of [...picked.values()].flat()) {
    for (const p of [pfn, pfn + 1]) {
      for (const [n, width, kind] of pageFields) {
        const o = off(n);
        if (o !== undefined && o + width <= size) fields.push({ offset: pagesAt + p * size + o, width, kind, name: `page[${p}].${n}` });
      }
    }
  }
  return { cap, pieces, seeds: [{ label: `${cap.profile} mem_section roots, sections and mem_map of ${PFNS} pages`, bytes, fields }] };
}

export default materialTarget({
  name: "memmap",
  describes: "mem_section roots and sections, mem_map struct pages and their classification at -d 30, on a real capture",
  build,
  run(m, input) {
    const src = new OverlaySource(m.cap.image.source, layOver(m.cap.kernel, m.pieces, input, m.seeds[0].bytes),
      { segments: [{ start: 0, end: PFNS * 4096, vaddr: 0n }] });
    const k = kernelOver(m.cap, src);
    const layout = tolerate(() => sparseLayout(k));
    if (layout) tolerate(() => memMapRanges(k, layout, PFNS));
    const f = tolerate(() => new PageFilter(src, k, m.cap.core));
    // -d 30: every exclusion that struct pages decide (zero pages are decided by page data, not mutated here).
    if (f) tolerate(() => f.run(30));
  },
});
