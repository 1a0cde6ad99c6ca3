// SPARSEMEM: where each section's struct pages (mem_map) live.
//
// mem_section is a two-level table with SPARSEMEM_EXTREME (roots of one
// page each) and a flat array without it. Each entry's section_mem_map
// holds the mem_map address, encoded minus the section's first pfn, with
// flag bits in its low bits.
import { GuestcoreError, hex } from "../core/errors.js";
import type { Kernel } from "./kernel.js";
import { isKernelAddress } from "./x86-64.js";

export interface MemMapRange {
  pfnStart: number;
  pfnEnd: number;
  /** Virtual address of the struct page for pfnStart. */
  memMap: bigint;
}

const SECTION_MARKED_PRESENT = 1n;
// Flags below bit 5 since Linux 5.x; makedumpfile masks the same bits
// (SECTION_MAP_LAST_BIT was 1 << 2 before Linux 4.13, and those kernels
// never set the higher ones, so the wider mask is safe).
const SECTION_MAP_MASK = ~0x1fn & 0xffffffffffffffffn;

export interface SparseLayout {
  sectionSizeBits: number;
  maxPhysmemBits: number;
  sizeofPage: number;
  sizeofMemSection: number;
  offSectionMemMap: number;
  extreme: boolean;
  pagesPerSection: number;
  sectionsPerRoot: number;
}

// x86-64 (arch/x86/include/asm/sparsemem.h): 128 MiB sections, and
// physical addresses of 46 bits, 52 with 5-level paging.
const X86_64_SECTION_SIZE_BITS = 27;
const x86_64MaxPhysmemBits = (levels: number) => (levels === 5 ? 52 : 46);
// struct mem_section is section_mem_map, usage, and with
// CONFIG_PAGE_EXTENSION page_ext: 16 to 32 bytes; 64 leaves a margin.
const MAX_SIZEOF_MEM_SECTION = 64;
// A budget, not a kernel limit: 2^18 present sections are 32 TiB of RAM.
const MAX_PRESENT_SECTIONS = 1 << 18;
// Distinct root pages read (each maps 16 GiB with 32-byte sections), and
// pages of a flat (not SPARSEMEM_EXTREME) array.
const MAX_ROOT_PAGES = 1 << 14;
const ROOT_PTRS_PER_READ = 512;

export function sparseLayout(k: Kernel): SparseLayout {
  const info = k.info;
  const need = (v: number | bigint | undefined, key: string): number => {
    if (v === undefined) throw new GuestcoreError(`VMCOREINFO lacks ${key}: only SPARSEMEM kernels are supported`);
    return Number(v);
  };
  const sectionSizeBits = need(info.number("SECTION_SIZE_BITS"), "NUMBER(SECTION_SIZE_BITS)");
  const maxPhysmemBits = need(info.number("MAX_PHYSMEM_BITS"), "NUMBER(MAX_PHYSMEM_BITS)");
  const sizeofPage = need(info.size("page"), "SIZE(page)");
  const sizeofMemSection = need(info.size("mem_section"), "SIZE(mem_section)");
  const offSectionMemMap = need(info.offset("mem_section.section_mem_map"), "OFFSET(mem_section.section_mem_map)");
  const physBits = x86_64MaxPhysmemBits(k.as.form.levels);
  if (sectionSizeBits !== X86_64_SECTION_SIZE_BITS || maxPhysmemBits > physBits || maxPhysmemBits <= sectionSizeBits) {
    throw new GuestcoreError(`implausible SPARSEMEM geometry: SECTION_SIZE_BITS=${sectionSizeBits} MAX_PHYSMEM_BITS=${maxPhysmemBits}` +
      ` (x86-64 with ${k.as.form.levels}-level paging: ${X86_64_SECTION_SIZE_BITS} and at most ${physBits})`);
  }
  if (sizeofPage < 32 || sizeofPage > 512 || sizeofMemSection < 8 || sizeofMemSection > MAX_SIZEOF_MEM_SECTION || offSectionMemMap + 8 > sizeofMemSection) {
    throw new GuestcoreError(`implausible struct sizes: SIZE(page)=${sizeofPage} SIZE(mem_section)=${sizeofMemSection}`);
  }
  const pageSize = info.pageSize;
  const nrMemSections = 2 ** (maxPhysmemBits - sectionSizeBits);
  const perRootExtreme = Math.floor(pageSize / sizeofMemSection);
  const length = info.length("mem_section");
  // makedumpfile's test: the root array has NR_SECTION_ROOTS entries with
  // SPARSEMEM_EXTREME, NR_MEM_SECTIONS without; absent length means extreme.
  const extreme = length === undefined || length === Math.ceil(nrMemSections / perRootExtreme);
  return {
    sectionSizeBits, maxPhysmemBits, sizeofPage, sizeofMemSection, offSectionMemMap, extreme,
    pagesPerSection: 2 ** (sectionSizeBits - 12),
    sectionsPerRoot: extreme ? perRootExtreme : 1,
  };
}

/**
 * The mem_map range of every present section below maxPfn. The walk stops
 * at NR_MEM_SECTIONS whatever maxPfn says (a source may claim memory far
 * above what the kernel can address), reads the root array a page at a
 * time and skips empty roots whole, so the cost follows the guest's
 * memory, not the (possibly hostile) table sizes.
 */
export function memMapRanges(k: Kernel, layout: SparseLayout, maxPfn: number): MemMapRange[] {
  const sym = k.info.symbol("mem_section");
  if (sym === undefined) throw new GuestcoreError("VMCOREINFO lacks SYMBOL(mem_section)");
  const nrMemSections = 2 ** (layout.maxPhysmemBits - layout.sectionSizeBits);
  const numSections = Math.min(Math.ceil(maxPfn / layout.pagesPerSection), nrMemSections);
  const ranges: MemMapRange[] = [];
  const entrySize = layout.sizeofMemSection;

  const add = (nr: number, e: DataView, off: number) => {
    const coded = e.getBigUint64(off + layout.offSectionMemMap, true);
    if ((coded & SECTION_MARKED_PRESENT) === 0n) return;
    if (ranges.length >= MAX_PRESENT_SECTIONS) throw new GuestcoreError(`mem_section marks more than ${MAX_PRESENT_SECTIONS} sections present: corrupt, or a guest larger than this reader allows`);
    const pfnStart = nr * layout.pagesPerSection;
    const memMap = BigInt.asUintN(64, (coded & SECTION_MAP_MASK) + BigInt(pfnStart * layout.sizeofPage));
    if (!isKernelAddress(k.as.form, memMap)) {
      throw new GuestcoreError(`mem_section[${nr}] gives mem_map ${hex(memMap)}, not a kernel address`);
    }
    ranges.push({ pfnStart, pfnEnd: Math.min(pfnStart + layout.pagesPerSection, maxPfn), memMap });
  };

  if (!layout.extreme) {
    // A flat array of NR_MEM_SECTIONS entries, read a page's worth at a time.
    const perRead = Math.floor(4096 / entrySize);
    if (numSections / perRead > MAX_ROOT_PAGES) throw new GuestcoreError(`a flat mem_section of ${numSections} sections is more than ${MAX_ROOT_PAGES} pages: corrupt`);
    for (let nr = 0; nr < numSections; nr += perRead) {
      const n = Math.min(perRead, numSections - nr);
      const b = k.as.read(sym + BigInt(nr * entrySize), n * entrySize, `mem_section[${nr}]`);
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let i = 0; i < n; i++) add(nr + i, v, i * entrySize);
    }
    return ranges;
  }

  const perRoot = layout.sectionsPerRoot;
  const length = k.info.length("mem_section");
  const numRoots = Math.min(Math.ceil(numSections / perRoot), length ?? Infinity);
  let rootPages = 0;
  let last: { ptr: bigint; data: DataView } | undefined;
  for (let r0 = 0; r0 < numRoots; r0 += ROOT_PTRS_PER_READ) {
    const n = Math.min(ROOT_PTRS_PER_READ, numRoots - r0);
    const b = k.as.read(sym + BigInt(r0 * 8), n * 8, `mem_section root ${r0}`);
    const roots = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let i = 0; i < n; i++) {
      const rootIdx = r0 + i;
      const ptr = roots.getBigUint64(i * 8, true);
      if (ptr === 0n) continue;
      if (!isKernelAddress(k.as.form, ptr)) throw new GuestcoreError(`mem_section root ${rootIdx} points to ${hex(ptr)}, not a kernel address`);
      if (last?.ptr !== ptr) {
        if (++rootPages > MAX_ROOT_PAGES) throw new GuestcoreError(`mem_section has more than ${MAX_ROOT_PAGES} distinct roots: corrupt`);
        const page = k.as.read(ptr, perRoot * entrySize, `mem_section root ${rootIdx}`);
        last = { ptr, data: new DataView(page.buffer, page.byteOffset, page.byteLength) };
      }
      const first = rootIdx * perRoot;
      const count = Math.min(perRoot, numSections - first);
      for (let j = 0; j < count; j++) add(first + j, last.data, j * entrySize);
    }
  }
  return ranges;
}
