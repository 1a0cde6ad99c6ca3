// A memory source: the guest's physical memory, as segments.
//
// The interface is narrow on purpose (after drgn's memory readers): a
// sorted list of present physical ranges plus batch reads. Every source
// (raw file, ELF vmcore, later kdump, Xen, QEMU) answers the same way, and
// batching lets the expensive ones (a Xen map, a QMP round trip) amortise
// their cost over many pages.
import type { ElfNote } from "../format/elf64.js";

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
  /** ELF notes the source carries (PRSTATUS, VMCOREINFO…); may be empty. */
  readonly notes: readonly ElfNote[];
  /** Fill each request's dst from physical memory. Throws if any byte is absent. */
  readBatch(reqs: readonly ReadRequest[]): void;
  close(): void;
}

/** The segment holding `paddr`, by binary search, or -1. */
export function findSegment(segs: readonly PhysSegment[], paddr: number): number {
  let lo = 0;
  let hi = segs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = segs[mid];
    if (paddr < s.start) hi = mid - 1;
    else if (paddr >= s.end) lo = mid + 1;
    else return mid;
  }
  return -1;
}

export function readPhys(src: MemorySource, paddr: number, dst: Uint8Array): Uint8Array {
  src.readBatch([{ paddr, dst }]);
  return dst;
}

export function maxPhysEnd(src: MemorySource): number {
  return src.segments.reduce((m, s) => Math.max(m, s.end), 0);
}
