// The PT_LOAD plan of a filtered ELF, built on runs of set bits in its pfn bitmaps.
import { bitmapRuns } from "../core/bitmap.js";

export interface LoadPlan {
  pfn: number;
  pages: number;
  /** False for a run of zero pages: a PT_LOAD with p_filesz 0 (zero-fill). */
  data: boolean;
}

/**
 * The PT_LOADs of a filtered ELF: one per run of kept pages, with data,
 * and one per run of zero pages, without data (p_filesz 0 < p_memsz), so
 * zero pages read as zeros the way makedumpfile's kdump format serves
 * them from one shared page. Other excluded pages are absent. Runs never
 * span a gap between the input's present ranges.
 */
export function planLoads(kept: Uint8Array, zero: Uint8Array, maxPfn: number, present: [number, number][],
  splitAt: number[] = []): LoadPlan[] {
  const plan: LoadPlan[] = [];
  for (const [a, b] of splitRanges(present, splitAt)) {
    const d = bitmapRuns(kept, maxPfn, a, b).map((r) => ({ pfn: r.pfn, pages: r.count, data: true }));
    const z = bitmapRuns(zero, maxPfn, a, b).map((r) => ({ pfn: r.pfn, pages: r.count, data: false }));
    plan.push(...[...d, ...z].sort((x, y) => x.pfn - y.pfn));
  }
  return plan;
}

/** Cut [start, end) ranges at the given pfns (segment boundaries to keep). */
function splitRanges(ranges: [number, number][], cuts: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const [a, b] of ranges) {
    let from = a;
    for (const c of [...cuts].sort((x, y) => x - y)) {
      if (c > from && c < b) {
        out.push([from, c]);
        from = c;
      }
    }
    out.push([from, b]);
  }
  return out;
}
