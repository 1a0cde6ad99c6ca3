// Binary searches over sorted keys, read through a function so that one
// search serves arrays of objects, typed arrays and permutations alike.

/** The last index i in [0, n) with key(i) <= x (keys ascending), or -1. */
export function lastAtOrBefore<K extends number | bigint>(n: number, key: (i: number) => K, x: K): number {
  let lo = 0;
  let hi = n;
  // Invariant: key(i) <= x for i < lo, key(i) > x for i >= hi.
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (key(mid) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/**
 * The index of the range [start(i), end(i)) holding x, among n sorted,
 * non-overlapping ranges, or -1.
 */
export function rangeHolding(n: number, start: (i: number) => number, end: (i: number) => number, x: number): number {
  const i = lastAtOrBefore(n, start, x);
  return i >= 0 && x < end(i) ? i : -1;
}
