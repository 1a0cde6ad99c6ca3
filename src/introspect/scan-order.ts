// The order in which guest memory is read when looking for VMCOREINFO:
// where Linux puts it first, then everything else.
//
// The kernel allocates VMCOREINFO's two pages (vmcoreinfo_data and the
// note buffer) from the page allocator in an initcall, early in boot.
// Boot memory goes to the free lists lowest address first (Linux 5.10+
// frees it to their tails), and GFP_KERNEL takes from the highest zone:
// ZONE_NORMAL, which starts at 4 GiB, when the guest has RAM there, else
// ZONE_DMA32 from 16 MiB. Pages freed back before the initcall go to the
// heads, so the top of RAM comes next. Linux 6.1 guests put it at 4 GiB
// plus 3.4 MiB (q35, 4 GiB) and plus 8 MiB (pc, 4 GiB), at 25 MiB (256
// MiB guests), 81 MiB (no KASLR: after the kernel image at 16 MiB) and
// 14 MiB below the top (512 MiB).
//
// So the first 32 MiB (ZONE_DMA and the start of ZONE_DMA32) are read in
// order, then the first 16 MiB up from 4 GiB and from each of the caller's
// starts (a raw file's 2 GiB and 3 GiB, where QEMU put the RAM it moved
// above 4 GiB); then one chunk at a time from each place in turn: on up
// from those, down from the top, and on up from 32 MiB, each sweep
// skipping what another has read, until every byte has been read once. How far the text lies from these places
// does not depend on the guest's size, so neither does the time to find
// it; a guest that puts it elsewhere costs at worst one read of all.
import type { PhysSegment } from "../sources/source.js";
import { findSegment } from "../sources/source.js";
import { lastAtOrBefore } from "../core/search.js";

const LOW_FIRST = 32 << 20;
const HIGH_FIRST = 16 << 20;
const ZONE_NORMAL = 2 ** 32;
const PAGE = 4096;

export interface ScanChunk {
  start: number;
  end: number;
  /** End of the segment holding the chunk: how far past `end` a text may be read. */
  segmentEnd: number;
}

/** Address ranges already handed out (holes count as read): sorted, disjoint, merged. */
class Covered {
  private readonly runs: [number, number][] = [];

  add(start: number, end: number): void {
    if (end <= start) return;
    let i = 0;
    while (i < this.runs.length && this.runs[i][1] < start) i++;
    let j = i;
    while (j < this.runs.length && this.runs[j][0] <= end) {
      start = Math.min(start, this.runs[j][0]);
      end = Math.max(end, this.runs[j][1]);
      j++;
    }
    this.runs.splice(i, j - i, [start, end]);
  }

  /** The run holding `at`, if any. */
  holding(at: number): [number, number] | undefined {
    return this.runs.find(([s, e]) => s <= at && at < e);
  }

  /** Start of the first run above `at`, or Infinity. */
  nextStart(at: number): number {
    return this.runs.find(([s]) => s > at)?.[0] ?? Infinity;
  }

  /** End of the last run ending at or below `at`, or -Infinity. */
  prevEnd(at: number): number {
    let e = -Infinity;
    for (const r of this.runs) if (r[1] <= at) e = r[1];
    return e;
  }
}

/** A place reading goes on from: up from `at`, or down from below it. */
interface Sweep {
  at: number;
  down: boolean;
}

const pageDown = (a: number) => Math.floor(a / PAGE) * PAGE;

/**
 * Every byte of `segments` (sorted, disjoint) once, as chunks of at most
 * `chunk` bytes, in the order above. `starts` are more places to sweep up
 * from. Chunks start on page boundaries unless a segment does not.
 */
export function* likelyFirst(segments: readonly PhysSegment[], starts: readonly number[] = [], chunk = 8 << 20): Generator<ScanChunk> {
  if (segments.length === 0) return;
  const covered = new Covered();
  const n = segments.length;

  /**
   * The next chunk of `s`, advancing it past what is read, or undefined
   * when nothing is left its way. Each turn of the loop passes a hole
   * (marking it read), so it ends within one turn per segment.
   */
  const step = (s: Sweep): ScanChunk | undefined => {
    for (;;) {
      // Runs are merged, so the address past one is not in another.
      const edge = s.down ? s.at - 1 : s.at;
      const run = covered.holding(edge);
      if (run) s.at = s.down ? run[0] : run[1];
      const at = s.down ? s.at - 1 : s.at;
      const i = findSegment(segments, at);
      if (i >= 0) {
        const seg = segments[i];
        const c = s.down
          ? { start: Math.max(pageDown(s.at - chunk), seg.start, covered.prevEnd(s.at)), end: s.at, segmentEnd: seg.end }
          : { start: s.at, end: Math.min(s.at + chunk, seg.end, covered.nextStart(s.at)), segmentEnd: seg.end };
        covered.add(c.start, c.end);
        s.at = s.down ? c.start : c.end;
        return c;
      }
      // In a hole: on to the next segment its way.
      const before = lastAtOrBefore(n, (k) => segments[k].start, at);
      if (s.down) {
        if (before < 0) return undefined;
        covered.add(segments[before].end, s.at);
        s.at = segments[before].end;
      } else {
        if (before + 1 >= n) return undefined;
        covered.add(s.at, segments[before + 1].start);
        s.at = segments[before + 1].start;
      }
    }
  };

  const low: Sweep = { at: segments[0].start, down: false };
  const high: Sweep[] = [ZONE_NORMAL, ...starts].map((a) => ({ at: pageDown(a), down: false }));
  // A head start for each, counted from its first chunk (a start in a hole reads from the next segment).
  for (const [s, bytes] of [[low, LOW_FIRST] as const, ...high.map((h) => [h, HIGH_FIRST] as const)]) {
    for (let stop = Infinity; s.at < stop;) {
      const c = step(s);
      if (!c) break;
      stop = Math.min(stop, c.start + bytes);
      yield c;
    }
  }
  // The low sweep last: it goes on to the top, so it ends only once all is read.
  const sweeps: Sweep[] = [...high, { at: segments[n - 1].end, down: true }, low];
  while (sweeps.length > 0) {
    for (let k = 0; k < sweeps.length; k++) {
      const c = step(sweeps[k]);
      if (c) yield c;
      else sweeps.splice(k--, 1);
    }
  }
}
