// Runs of set bits in a pfn bitmap, split where the source's segments
// split (each run must map to one segment to keep its virtual address).
import type { PhysSegment } from "../sources/source.js";
import { findSegment } from "../sources/source.js";

export interface PfnRun {
  pfn: number;
  count: number;
}

export function bitmapRuns(bm: Uint8Array, maxPfn: number): PfnRun[] {
  const runs: PfnRun[] = [];
  let start = -1;
  for (let byte = 0; byte < bm.length; byte++) {
    const b = bm[byte];
    const base = byte * 8;
    if (b === 0xff && start >= 0) continue;
    if (b === 0 && start < 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      const pfn = base + bit;
      if (pfn >= maxPfn) break;
      const set = (b >> bit) & 1;
      if (set && start < 0) start = pfn;
      else if (!set && start >= 0) {
        runs.push({ pfn: start, count: pfn - start });
        start = -1;
      }
    }
  }
  if (start >= 0) runs.push({ pfn: start, count: Math.min(maxPfn, bm.length * 8) - start });
  return runs;
}

export function splitAtSegments(runs: PfnRun[], segs: readonly PhysSegment[], pageSize: number): PfnRun[] {
  const out: PfnRun[] = [];
  for (const r of runs) {
    let pfn = r.pfn;
    const end = r.pfn + r.count;
    while (pfn < end) {
      const i = findSegment(segs, pfn * pageSize);
      const segEnd = i >= 0 ? Math.floor(segs[i].end / pageSize) : end;
      const stop = Math.min(end, Math.max(segEnd, pfn + 1));
      out.push({ pfn, count: stop - pfn });
      pfn = stop;
    }
  }
  return out;
}
