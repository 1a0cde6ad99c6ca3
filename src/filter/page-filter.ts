// Decides, window by window, which pages of the guest to keep.
//
// Memory stays bounded (makedumpfile's cyclic mode): one window of class
// bytes, one chunk of struct pages and one batch of page data live in Wasm
// memory at a time, whatever the guest's size. The result is the kept-page
// bitmaps (sparse: a hole in the address space costs nothing) plus
// makedumpfile's exclusion counters.
import { GuestcoreError, hex } from "../core/errors.js";
import { PfnBitmap } from "../core/pfn-bitmap.js";
import type { WasmCore } from "../core/wasm.js";
import type { Kernel } from "../introspect/kernel.js";
import { memMapRanges, sparseLayout, type MemMapRange, type SparseLayout } from "../introspect/memmap.js";
import { presentPfnRanges, type MemorySource } from "../sources/source.js";
import { CLASS, DUMP_LEVEL_BITS, EXCLUDABLE, type ExclusionCounts } from "./classes.js";

const PAGE = 4096;
const WINDOW_PFNS = 1 << 17; // 512 MiB of guest memory per window
const MEMMAP_CHUNK_PFNS = 1 << 15;
const DATA_BATCH_PAGES = 256;

export interface Window {
  pfnStart: number;
  count: number;
  /** Class byte per pfn; a view into Wasm memory, valid during the callback. */
  cls: Uint8Array;
}

export interface FilterResult {
  level: number;
  maxPfn: number;
  /** Pages the source holds (makedumpfile's "Original pages"). */
  present: number;
  counts: ExclusionCounts;
  /** Bit per pfn: kept and non-zero (what an ELF dump holds). */
  kept: PfnBitmap;
  /**
   * Kept pages including zero pages: makedumpfile's bitmap 2 in a
   * kdump-compressed file, where zero pages share one stored page.
   */
  dumpable: PfnBitmap;
  keptCount: number;
  sections: number;
}

export class PageFilter {
  readonly layout: SparseLayout;
  readonly ranges: MemMapRange[];
  readonly maxPfn: number;

  constructor(private readonly src: MemorySource, private readonly kernel: Kernel, private readonly core: WasmCore) {
    this.layout = sparseLayout(kernel);
    const physEnd = src.segments.reduce((m, s) => Math.max(m, s.end), 0);
    // Memory the kernel cannot address is not its memory: an image that
    // claims some is corrupt or belongs to another machine.
    if (physEnd > 2 ** this.layout.maxPhysmemBits) {
      throw new GuestcoreError(`the image holds memory up to ${hex(physEnd)}, above the ${hex(2 ** this.layout.maxPhysmemBits)} this kernel can address (MAX_PHYSMEM_BITS=${this.layout.maxPhysmemBits})`);
    }
    const physPfns = Math.floor(physEnd / PAGE);
    this.ranges = memMapRanges(kernel, this.layout, physPfns);
    // As makedumpfile: a kernel booted with mem= describes less than the
    // dump holds; pages past the last mem_map are not the kernel's.
    const lastMapped = this.ranges.reduce((m, r) => Math.max(m, r.pfnEnd), 0);
    this.maxPfn = this.ranges.length ? Math.min(physPfns, lastMapped) : physPfns;
    if (this.ranges.length === 0) throw new GuestcoreError("mem_section has no present sections: cannot classify pages");
    this.configure();
  }

  private configure(): void {
    const info = this.kernel.info;
    const off = (f: string) => info.offset(`page.${f}`) ?? -1;
    const flags = off("flags");
    const mapping = off("mapping");
    if (flags < 0 || mapping < 0) throw new GuestcoreError("VMCOREINFO lacks OFFSET(page.flags) or OFFSET(page.mapping)");
    const v = info.kernelVersion ?? [0, 0, 0];
    const atLeast = (a: number, b: number) => v[0] > a || (v[0] === a && v[1] >= b);
    // compound_order/compound_dtor became unsigned char in Linux 4.16.
    const width = atLeast(4, 16) ? 1 : 2;
    const dtorWidth = atLeast(4, 16) ? 1 : atLeast(4, 4) ? 2 : 8;
    const fieldOk = (o: number) => o >= 0 && o + 8 <= this.layout.sizeofPage;
    for (const [name, o] of [["flags", flags], ["mapping", mapping]] as const) {
      if (!fieldOk(o)) throw new GuestcoreError(`OFFSET(page.${name})=${o} lies outside SIZE(page)=${this.layout.sizeofPage}`);
    }
    const opt = (o: number) => (fieldOk(o) ? o : -1);
    this.core.x.classifySetLayout(this.layout.sizeofPage, flags, mapping, opt(off("_mapcount")), opt(off("private")),
      opt(off("compound_head")), opt(off("compound_order")), opt(off("compound_dtor")), width, dtorWidth);
    const bit = (n: string) => {
      const x = info.number(n);
      return x === undefined || x < 0n || x > 63n ? -1 : Number(x);
    };
    const num = (n: string): [bigint, number] => {
      const x = info.number(n);
      // makedumpfile compares _mapcount with (int)NUMBER(...).
      return x === undefined ? [0n, 0] : [BigInt.asIntN(32, x), 1];
    };
    const headMaskNum = info.number("PG_head_mask");
    const head = headMaskNum !== undefined ? BigInt.asUintN(64, headMaskNum)
      : bit("PG_head") >= 0 ? 1n << BigInt(bit("PG_head")) : 0n;
    const [buddy, buddyOk] = num("PAGE_BUDDY_MAPCOUNT_VALUE");
    const [offline, offlineOk] = num("PAGE_OFFLINE_MAPCOUNT_VALUE");
    const hugetlb = info.number("HUGETLB_PAGE_DTOR");
    this.core.x.classifySetFlags(bit("PG_lru"), bit("PG_private"), bit("PG_swapcache"), bit("PG_swapbacked"), bit("PG_slab"),
      bit("PG_hwpoison"), head, buddy, buddyOk, offline, offlineOk,
      hugetlb ?? 0n, hugetlb === undefined ? 0 : 1, BigInt(info.length("zone.free_area") ?? -1));
  }

  /** Classify every pfn at `level`; `onWindow` sees each window's classes. */
  run(level: number, onWindow?: (w: Window) => void, onProgress?: (done: number, total: number) => void): FilterResult {
    const core = this.core;
    const x = core.x;
    const mark = core.mark();
    const clsPtr = core.alloc(WINDOW_PFNS);
    const pagesPtr = core.alloc((MEMMAP_CHUNK_PFNS + 1) * this.layout.sizeofPage);
    const dataPtr = core.alloc(DATA_BATCH_PAGES * PAGE);
    const bmPtr = core.alloc(WINDOW_PFNS / 8);
    const kept = new PfnBitmap(this.maxPfn);
    const dumpable = new PfnBitmap(this.maxPfn);
    const present = presentPfnRanges(this.src, this.maxPfn);
    let presentCount = 0;
    let keptCount = 0;
    // Both lists are sorted: each window starts where the last one left
    // off. Walking all of them per window was windows x (segments +
    // sections), quadratic for a source of many small segments.
    let pi = 0;
    let ri = 0;
    x.classifyReset();
    try {
      for (let w = 0; w < this.maxPfn; w += WINDOW_PFNS) {
        const count = Math.min(WINDOW_PFNS, this.maxPfn - w);
        const cls = core.bytes(clsPtr, count);
        while (pi < present.length && present[pi][1] <= w) pi++;
        while (ri < this.ranges.length && this.ranges[ri].pfnEnd <= w) ri++;
        // A window without memory, mem_map or an exclusion running into it
        // keeps nothing and counts nothing: the gaps of a sparse guest are
        // skipped, not walked (a hostile image can claim petabytes of them).
        const empty = (pi >= present.length || present[pi][0] >= w + count)
          && (ri >= this.ranges.length || this.ranges[ri].pfnStart >= w + count)
          && x.classifyPendingEnd() <= BigInt(w);
        if (empty) {
          if (onWindow) {
            cls.fill(CLASS.HOLE);
            onWindow({ pfnStart: w, count, cls });
          }
          onProgress?.(w + count, this.maxPfn);
          continue;
        }
        cls.fill(CLASS.HOLE);
        for (let i = pi; i < present.length && present[i][0] < w + count; i++) {
          const lo = Math.max(present[i][0], w);
          const hi = Math.min(present[i][1], w + count);
          cls.fill(CLASS.KEEP, lo - w, hi - w);
          presentCount += hi - lo;
        }
        this.classifyWindow(w, count, clsPtr, pagesPtr, level, ri);
        if (level & DUMP_LEVEL_BITS.zero) this.markZero(w, count, clsPtr, dataPtr);
        onWindow?.({ pfnStart: w, count, cls: core.bytes(clsPtr, count) });
        keptCount += x.packBitmap(clsPtr, count, 1 << CLASS.KEEP, bmPtr, 0);
        kept.setBytes(w / 8, core.bytes(bmPtr, Math.ceil(count / 8)));
        x.packBitmap(clsPtr, count, (1 << CLASS.KEEP) | (1 << CLASS.ZERO), bmPtr, 0);
        dumpable.setBytes(w / 8, core.bytes(bmPtr, Math.ceil(count / 8)));
        onProgress?.(w + count, this.maxPfn);
      }
    } finally {
      core.release(mark);
    }
    const counts = Object.fromEntries(EXCLUDABLE.map((k, i) => [k, Number(x.classCount(i + 1))])) as ExclusionCounts;
    return { level, maxPfn: this.maxPfn, present: presentCount, counts, kept, dumpable, keptCount, sections: this.ranges.length };
  }

  /** Classify the window's pfns; `first` is the first range that ends inside or after it. */
  private classifyWindow(w: number, count: number, clsPtr: number, pagesPtr: number, level: number, first: number): void {
    const x = this.core.x;
    const size = this.layout.sizeofPage;
    let cursor = w;
    for (let i = first; i < this.ranges.length && this.ranges[i].pfnStart < w + count; i++) {
      const r = this.ranges[i];
      const lo = Math.max(r.pfnStart, w);
      const hi = Math.min(r.pfnEnd, w + count);
      if (hi <= lo) continue;
      if (lo > cursor) x.applyPending(BigInt(cursor), lo - cursor, clsPtr + (cursor - w));
      for (let a = lo; a < hi; a += MEMMAP_CHUNK_PFNS) {
        const n = Math.min(MEMMAP_CHUNK_PFNS, hi - a);
        // One struct page beyond the chunk: a compound head's order and
        // destructor live in its first tail page.
        const hasNext = a + n < r.pfnEnd;
        const bytes = (n + (hasNext ? 1 : 0)) * size;
        const view = this.core.bytes(pagesPtr, bytes);
        this.kernel.as.readInto(r.memMap + BigInt((a - r.pfnStart) * size), view, `struct page array for pfn ${a}`);
        x.classifyWindow(BigInt(a), n, pagesPtr, hasNext ? 1 : 0, clsPtr + (a - w), level, BigInt(this.maxPfn));
      }
      cursor = hi;
    }
    if (cursor < w + count) x.applyPending(BigInt(cursor), w + count - cursor, clsPtr + (cursor - w));
  }

  private markZero(w: number, count: number, clsPtr: number, dataPtr: number): void {
    const x = this.core.x;
    const keepMask = 1 << CLASS.KEEP;
    let i = x.findClass(clsPtr, 0, count, keepMask);
    while (i < count) {
      const run = Math.min(x.runLength(clsPtr, i, count, keepMask), DATA_BATCH_PAGES);
      this.src.readBatch([{ paddr: (w + i) * PAGE, dst: this.core.bytes(dataPtr, run * PAGE) }]);
      x.markZeroPages(dataPtr, PAGE, clsPtr, i, run);
      i = x.findClass(clsPtr, i + run, count, keepMask);
    }
  }
}
