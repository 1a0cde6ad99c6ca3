// Xen dump-core (xl dump-core) through the CLI's opener: the ELF header and
// section headers, .note.Xen (header, version, format), the .xen_pfn or
// .xen_p2m table, and reads of the pages it maps. Seeds are real guest
// pages (a capture's mem.raw) packed as xc_core.c lays them out, HVM and PV.
import { buildXenDumpCore, type XenCoreLayout } from "../../fixtures/xen-dumpcore.js";
import type { Field, FuzzTarget, Seed } from "../target.js";
import { fixtureFile, inputFile, openAndReadAll, readAt } from "../seed-util.js";

/** Guest pages in a seed: the first ones of the capture (real page tables, BIOS data, zero pages). */
const PAGES = 8;

function fields(layout: XenCoreLayout): Field[] {
  const f: Field[] = [
    { offset: 0, width: 4, kind: "magic", name: "EI_MAG" },
    { offset: 16, width: 2, kind: "magic", name: "e_type" },
    { offset: 40, width: 8, kind: "offset", name: "e_shoff" },
    { offset: 58, width: 2, kind: "size", name: "e_shentsize" },
    { offset: 60, width: 2, kind: "count", name: "e_shnum" },
    { offset: 62, width: 2, kind: "count", name: "e_shstrndx" },
  ];
  for (let i = 0; i < layout.shnum; i++) {
    const o = layout.shoff + i * 64;
    f.push(
      { offset: o, width: 4, kind: "offset", name: `sh_name[${i}]` },
      { offset: o + 4, width: 4, kind: "flags", name: `sh_type[${i}]` },
      { offset: o + 24, width: 8, kind: "offset", name: `sh_offset[${i}]` },
      { offset: o + 32, width: 8, kind: "size", name: `sh_size[${i}]` },
      { offset: o + 56, width: 8, kind: "size", name: `sh_entsize[${i}]` },
    );
  }
  const h = layout.headerDescOffset;
  f.push(
    { offset: h, width: 8, kind: "magic", name: "xch_magic" },
    { offset: h + 8, width: 8, kind: "count", name: "xch_nr_vcpus" },
    { offset: h + 16, width: 8, kind: "count", name: "xch_nr_pages" },
    { offset: h + 24, width: 8, kind: "size", name: "xch_page_size" },
    { offset: layout.formatDescOffset, width: 8, kind: "flags", name: "format_version" },
    { offset: layout.noteOffset, width: 4, kind: "size", name: "n_namesz[0]" },
    { offset: layout.noteOffset + 4, width: 4, kind: "size", name: "n_descsz[0]" },
  );
  for (let i = 0; i < layout.nrPages; i++) {
    const o = layout.tableOffset + i * layout.tableEntry;
    f.push({ offset: o, width: 8, kind: "count", name: `pfn[${i}]` });
    if (layout.tableEntry === 16) f.push({ offset: o + 8, width: 8, kind: "pointer", name: `gmfn[${i}]` });
  }
  return f;
}

const target: FuzzTarget = {
  name: "xen-dumpcore",
  describes: "Xen dump-core: ELF sections, .note.Xen, .xen_pfn/.xen_p2m, page reads, through openSource",
  async seeds(ctx) {
    const image = readAt(fixtureFile(ctx.cacheDir, "mem.raw"), 0, PAGES * 4096);
    const seeds: Seed[] = [];
    for (const kind of ["hvm", "pv"] as const) {
      const { buf, layout } = buildXenDumpCore(image, { kind, invalidTail: 2 });
      seeds.push({ label: `mem.raw's first ${PAGES} pages as ${kind} dump-core`, bytes: buf, fields: fields(layout) });
    }
    return seeds;
  },
  run(input, ctx) {
    openAndReadAll(inputFile(input, ctx));
  },
};
export default target;
