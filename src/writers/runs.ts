// Runs of set bits in a pfn bitmap, and the PT_LOAD plan built on them.

export interface PfnRun {
  pfn: number;
  count: number;
}

export function bitmapRuns(bm: Uint8Array, maxPfn: number, from = 0, to = maxPfn): PfnRun[] {
  return [...eachRun(bm, maxPfn, from, to)];
}

/** The runs one at a time: a big fragmented guest has millions of them. */
export function* eachRun(bm: Uint8Array, maxPfn: number, from = 0, to = maxPfn): Generator<PfnRun> {
  let start = -1;
  const end = Math.min(to, maxPfn, bm.length * 8);
  for (let pfn = from; pfn < end; ) {
    const b = bm[pfn >> 3];
    // Whole bytes that cannot end or begin a run are skipped at once.
    if ((pfn & 7) === 0 && pfn + 8 <= end && ((b === 0xff && start >= 0) || (b === 0 && start < 0))) {
      pfn += 8;
      continue;
    }
    const set = (b >> (pfn & 7)) & 1;
    if (set && start < 0) start = pfn;
    else if (!set && start >= 0) {
      yield { pfn: start, count: pfn - start };
      start = -1;
    }
    pfn++;
  }
  if (start >= 0) yield { pfn: start, count: end - start };
}

export const POPCOUNT = Uint8Array.from({ length: 256 }, (_, i) => {
  let n = 0;
  for (let x = i; x; x >>= 1) n += x & 1;
  return n;
});

/** Set bits of a bitmap. */
export function countBits(bm: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bm.length; i++) n += POPCOUNT[bm[i]];
  return n;
}

/** [from, to) cut into alternating runs of set and clear bits. */
export function* eachPiece(bm: Uint8Array, from: number, to: number): Generator<PfnRun & { set: boolean }> {
  let at = from;
  for (const run of eachRun(bm, to, from, to)) {
    if (run.pfn > at) yield { pfn: at, count: run.pfn - at, set: false };
    yield { ...run, set: true };
    at = run.pfn + run.count;
  }
  if (at < to) yield { pfn: at, count: to - at, set: false };
}

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

/** Set bits [a, b) of a bitmap, whole bytes at a time where possible. */
export function setBitRange(bm: Uint8Array, a: number, b: number): void {
  let p = a;
  while (p < b && (p & 7)) bm[p >> 3] |= 1 << (p++ & 7);
  const fullEnd = b & ~7;
  if (p < fullEnd) {
    bm.fill(0xff, p >> 3, fullEnd >> 3);
    p = fullEnd;
  }
  while (p < b) bm[p >> 3] |= 1 << (p++ & 7);
}
