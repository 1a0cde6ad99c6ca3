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
  if (sectionSizeBits < 12 || sectionSizeBits > 40 || maxPhysmemBits > 57 || maxPhysmemBits <= sectionSizeBits) {
    throw new GuestcoreError(`implausible SPARSEMEM geometry: SECTION_SIZE_BITS=${sectionSizeBits} MAX_PHYSMEM_BITS=${maxPhysmemBits}`);
  }
  if (sizeofPage < 32 || sizeofPage > 512 || sizeofMemSection < 8 || sizeofMemSection > 4096 || offSectionMemMap + 8 > sizeofMemSection) {
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
 * The mem_map range of every present section below maxPfn. Reads one
 * root page at a time, so the cost follows the guest's memory, not the
 * (possibly hostile) table sizes.
 */
export function memMapRanges(k: Kernel, layout: SparseLayout, maxPfn: number): MemMapRange[] {
  const sym = k.info.symbol("mem_section");
  if (sym === undefined) throw new GuestcoreError("VMCOREINFO lacks SYMBOL(mem_section)");
  const numSections = Math.ceil(maxPfn / layout.pagesPerSection);
  const ranges: MemMapRange[] = [];
  const entrySize = layout.sizeofMemSection;
  let rootCache: { index: number; data: DataView | undefined } | undefined;

  const sectionEntry = (nr: number): DataView | undefined => {
    if (!layout.extreme) {
      const va = sym + BigInt(nr * entrySize);
      const b = k.as.read(va, entrySize, `mem_section[${nr}]`);
      return new DataView(b.buffer);
    }
    const rootIdx = Math.floor(nr / layout.sectionsPerRoot);
    if (!rootCache || rootCache.index !== rootIdx) {
      const ptr = k.as.readU64(sym + BigInt(rootIdx * 8), `mem_section root ${rootIdx}`);
      let data: DataView | undefined;
      if (ptr !== 0n) {
        if (!isKernelAddress(k.as.form, ptr)) throw new GuestcoreError(`mem_section root ${rootIdx} points to ${hex(ptr)}, not a kernel address`);
        const b = k.as.read(ptr, layout.sectionsPerRoot * entrySize, `mem_section root ${rootIdx}`);
        data = new DataView(b.buffer);
      }
      rootCache = { index: rootIdx, data };
    }
    if (!rootCache.data) return undefined;
    const off = (nr % layout.sectionsPerRoot) * entrySize;
    return new DataView(rootCache.data.buffer, off, entrySize);
  };

  for (let nr = 0; nr < numSections; nr++) {
    const e = sectionEntry(nr);
    if (!e) continue;
    const coded = e.getBigUint64(layout.offSectionMemMap, true);
    if ((coded & SECTION_MARKED_PRESENT) === 0n) continue;
    const pfnStart = nr * layout.pagesPerSection;
    const memMap = BigInt.asUintN(64, (coded & SECTION_MAP_MASK) + BigInt(pfnStart * layout.sizeofPage));
    if (!isKernelAddress(k.as.form, memMap)) {
      throw new GuestcoreError(`mem_section[${nr}] gives mem_map ${hex(memMap)}, not a kernel address`);
    }
    ranges.push({ pfnStart, pfnEnd: Math.min(pfnStart + layout.pagesPerSection, maxPfn), memMap });
  }
  return ranges;
}
