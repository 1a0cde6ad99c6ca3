// The PT_LOAD plan of a filtered ELF, built on runs of set bits in its pfn
// bitmaps, one load at a time: a fragmented guest has hundreds of
// thousands of them, and the writer walks the plan twice rather than
// hold it.
import type { PfnBitmap } from "../core/pfn-bitmap.js";
import type { PfnRun } from "../core/bitmap.js";

export interface LoadPlan {
  pfn: number;
  pages: number;
  /** False for a run of zero pages: a PT_LOAD with p_filesz 0 (zero-fill). */
  data: boolean;
}

/**
 * The PT_LOADs of a filtered ELF, in pfn order: one per run of kept pages,
 * with data, and one per run of zero pages, without data (p_filesz 0 <
 * p_memsz), so zero pages read as zeros the way makedumpfile's kdump
 * format serves them from one shared page. Other excluded pages are
 * absent. Runs never span a gap between the input's present ranges, nor
 * a pfn of `splitAt`.
 */
export function* eachLoad(kept: PfnBitmap, zero: PfnBitmap, maxPfn: number, present: [number, number][],
  splitAt: number[] = []): Generator<LoadPlan> {
  for (const [a, b] of splitRanges(present, splitAt)) {
    const end = Math.min(b, maxPfn);
    if (a >= end) continue;
    // The two bitmaps are disjoint: merge their runs by pfn.
    const d = kept.runs(a, end);
    const z = zero.runs(a, end);
    let x: IteratorResult<PfnRun> = d.next();
    let y: IteratorResult<PfnRun> = z.next();
    while (!x.done || !y.done) {
      if (!x.done && (y.done || x.value.pfn < y.value.pfn)) {
        yield { pfn: x.value.pfn, pages: x.value.count, data: true };
        x = d.next();
      } else if (!y.done) {
        yield { pfn: y.value.pfn, pages: y.value.count, data: false };
        y = z.next();
      }
    }
  }
}

/** Cut [start, end) ranges at the given pfns (segment boundaries to keep). */
function splitRanges(ranges: [number, number][], cuts: number[]): [number, number][] {
  const sorted = [...cuts].sort((x, y) => x - y);
  const out: [number, number][] = [];
  for (const [a, b] of ranges) {
    let from = a;
    for (const c of sorted) {
      if (c > from && c < b) {
        out.push([from, c]);
        from = c;
      }
    }
    out.push([from, b]);
  }
  return out;
}
