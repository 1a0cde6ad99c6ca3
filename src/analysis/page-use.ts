// What the guest used each page for, also from a filtered dump.
//
// A -d 31 dump lacks the page cache, user and free pages, but it keeps
// mem_map, and a page's class comes from its struct page. So the classes
// of every page the guest had can be derived again from such a dump: the
// pages that exist are bitmap 1 of a kdump-compressed file (bitmap 2 is
// only what was dumped), and only pages classed as kernel pages need data
// (the zero-page check), which a -d 31 dump holds. The counts then equal
// makedumpfile's exclusion table on the original memory.
import type { Kernel } from "../introspect/kernel.js";
import type { WasmCore } from "../core/wasm.js";
import { PageFilter, type FilterResult, type Window } from "../filter/page-filter.js";
import { isKdumpSource, type KdumpSource } from "../sources/kdump.js";
import { eachRun } from "../core/bitmap.js";
import type { MemorySource, PhysSegment, ReadRequest } from "../sources/source.js";
import type { ElfNote } from "../format/elf64.js";

export interface PageUse extends FilterResult {
  /**
   * Kernel (kept) pages whose data the dump does not hold, so the zero
   * check could not see them; counted as kernel pages. 0 for a dump made
   * at the level asked for or a lower one.
   */
  unreadable: number;
}

/** Every page's class, over all the pages the guest had. */
export class GuestPageUse {
  private readonly filter: PageFilter;
  private readonly existing?: ExistingPages;

  constructor(src: MemorySource, kernel: Kernel, core: WasmCore) {
    if (isKdumpSource(src)) this.existing = new ExistingPages(src);
    this.filter = new PageFilter(this.existing ?? src, kernel, core);
  }

  /** Pfns classified: up to the kernel's last mem_map. */
  get maxPfn(): number {
    return this.filter.maxPfn;
  }

  run(level = 31, onWindow?: (w: Window) => void, onProgress?: (done: number, total: number) => void): PageUse {
    const before = this.existing?.unreadable ?? 0;
    const r = this.filter.run(level, onWindow, onProgress);
    return { ...r, unreadable: (this.existing?.unreadable ?? 0) - before };
  }
}

/** A kdump source seen as the pages that existed (bitmap 1); pages not dumped read as non-zero. */
class ExistingPages implements MemorySource {
  readonly format: string;
  readonly path: string;
  readonly segments: readonly PhysSegment[];
  readonly notes: readonly ElfNote[];
  unreadable = 0;
  private readonly ps: number;

  constructor(private readonly src: KdumpSource) {
    this.format = src.format;
    this.path = src.path;
    this.notes = src.notes;
    this.ps = src.pageSize;
    this.segments = bitRuns(src.bitmap1, src.maxMapnr, src.pageSize);
  }

  readBatch(reqs: readonly ReadRequest[]): void {
    const ps = this.ps;
    for (const { paddr, dst } of reqs) {
      // The filter reads whole, aligned pages for the zero check.
      for (let off = 0; off < dst.length; off += ps) {
        const page = dst.subarray(off, Math.min(dst.length, off + ps));
        const pfn = Math.floor((paddr + off) / ps);
        if (this.src.isDumped(pfn)) this.src.readBatch([{ paddr: paddr + off, dst: page }]);
        else {
          page.fill(0xff);
          this.unreadable++;
        }
      }
    }
  }

  close(): void {
    // The kdump source belongs to its image.
  }
}

function bitRuns(bm: Uint8Array, nbits: number, ps: number): PhysSegment[] {
  return [...eachRun(bm, nbits)].map((r) => ({ start: r.pfn * ps, end: (r.pfn + r.count) * ps, vaddr: 0n }));
}
