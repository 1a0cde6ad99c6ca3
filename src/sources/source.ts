// A memory source: the guest's physical memory, as segments.
//
// The interface is narrow on purpose (after drgn's memory readers): a
// sorted list of present physical ranges plus batch reads. Every source
// (raw file, ELF vmcore, later kdump, Xen, QEMU) answers the same way, and
// batching lets the expensive ones (a Xen map, a QMP round trip) amortise
// their cost over many pages.
import type { ElfNote } from "../format/elf64.js";
import { rangeHolding } from "../core/search.js";

export interface PhysSegment {
  /** Physical start, inclusive, in bytes. */
  start: number;
  /** Physical end, exclusive, in bytes. */
  end: number;
  /** The virtual address the source recorded for `start`, or 0n. */
  vaddr: bigint;
}

export interface ReadRequest {
  paddr: number;
  dst: Uint8Array;
}

export interface MemorySource {
  /** Short format name: "raw", "elf". */
  readonly format: string;
  readonly path: string;
  /** Sorted, non-overlapping ranges of memory the source holds. */
  readonly segments: readonly PhysSegment[];
  /**
   * Ranges that read as zeros but hold no dumped data (an ELF PT_LOAD's
   * p_memsz beyond p_filesz). They are not present pages.
   */
  readonly zeroFill?: readonly PhysSegment[];
  /** ELF notes the source carries (PRSTATUS, VMCOREINFO…); may be empty. */
  readonly notes: readonly ElfNote[];
  /** Fill each request's dst from physical memory. Throws if any byte is absent. */
  readBatch(reqs: readonly ReadRequest[]): void;
  /**
   * Where [paddr, paddr + len) lies in local files, appended to `out` as
   * (fd, file offset, length) triples, a file offset of -1 reading as
   * zeros; for threads that read pages themselves. Absent where the
   * source decodes, maps or fetches its memory. Throws like readBatch.
   */
  fileExtents?(paddr: number, len: number, out: number[]): void;
  close(): void;
}

/** The segment holding `paddr`, by binary search, or -1. */
export function findSegment(segs: readonly PhysSegment[], paddr: number): number {
  return rangeHolding(segs.length, (i) => segs[i].start, (i) => segs[i].end, paddr);
}



/**
 * Present pfns: whole 4 KiB pages inside the source's segments, below
 * maxPfn, as [start, end) pairs.
 */
export function presentPfnRanges(src: MemorySource, maxPfn: number): [number, number][] {
  const out: [number, number][] = [];
  for (const s of src.segments) {
    const a = Math.ceil(s.start / 4096);
    const b = Math.min(Math.floor(s.end / 4096), maxPfn);
    if (b > a) out.push([a, b]);
  }
  return out;
}
