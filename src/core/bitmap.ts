// Bitmaps of one bit per page frame, LSB first within each byte: the order
// of makedumpfile's bitmaps, and the one every bitmap in guestcore uses.

export interface PfnRun {
  pfn: number;
  count: number;
}

/** Set bits of each byte value. */
export const POPCOUNT = Uint8Array.from({ length: 256 }, (_, i) => {
  let n = 0;
  for (let x = i; x; x >>= 1) n += x & 1;
  return n;
});

export function testBit(bm: Uint8Array, bit: number): boolean {
  return (bm[bit >> 3] & (1 << (bit & 7))) !== 0;
}

/** Set bits in [from, to) (default: the whole bitmap), whole bytes at a time where possible. */
export function countBits(bm: Uint8Array, from = 0, to = bm.length * 8): number {
  let n = 0;
  let p = from;
  while (p < to && (p & 7)) n += (bm[p >> 3] >> (p++ & 7)) & 1;
  const fullEnd = to & ~7;
  for (; p < fullEnd; p += 8) n += POPCOUNT[bm[p >> 3]];
  while (p < to) n += (bm[p >> 3] >> (p++ & 7)) & 1;
  return n;
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

/** Clear bits [a, b) of a bitmap, whole bytes at a time where possible. */
export function clearBitRange(bm: Uint8Array, a: number, b: number): void {
  let p = a;
  while (p < b && (p & 7)) bm[p >> 3] &= ~(1 << (p++ & 7));
  const fullEnd = b & ~7;
  if (p < fullEnd) {
    bm.fill(0, p >> 3, fullEnd >> 3);
    p = fullEnd;
  }
  while (p < b) bm[p >> 3] &= ~(1 << (p++ & 7));
}

/**
 * Rank queries (set bits below a position) through the counts before each
 * block of `blockBits` bits, as makedumpfile's valid_pages[] (4096-bit
 * blocks): a query costs at most one block's popcount, and the table
 * 8 bytes per block.
 */
export class BitRank {
  private readonly before: Float64Array;
  /** Set bits below `bits`. */
  readonly total: number;

  constructor(private readonly bm: Uint8Array, private readonly bits: number, private readonly blockBits = 4096) {
    const blocks = Math.ceil(bits / blockBits);
    this.before = new Float64Array(blocks + 1);
    let count = 0;
    for (let b = 0; b < blocks; b++) {
      this.before[b] = count;
      count += countBits(bm, b * blockBits, Math.min(bits, (b + 1) * blockBits));
    }
    this.before[blocks] = count;
    this.total = count;
  }

  /** Set bits in [0, bit), for 0 <= bit <= the bitmap's length in bits. */
  rank(bit: number): number {
    const block = Math.floor(bit / this.blockBits);
    return this.before[block] + countBits(this.bm, block * this.blockBits, Math.min(bit, this.bits));
  }
}

/**
 * The first bit at or after `from` and below `end` whose value is `set`,
 * or `end`. Whole bytes without one are skipped a byte at a time, and
 * the bit is found in its byte by clz, not bit by bit.
 */
export function nextBit(bm: Uint8Array, from: number, end: number, set: boolean): number {
  if (from >= end) return end;
  const flip = set ? 0 : 0xff;
  let i = from >> 3;
  // Bits of the first byte below `from` do not count.
  let v = ((bm[i] ^ flip) >> (from & 7)) << (from & 7);
  while (v === 0) {
    i++;
    if (i * 8 >= end) return end;
    v = bm[i] ^ flip;
  }
  const bit = i * 8 + 31 - Math.clz32(v & -v);
  return bit < end ? bit : end;
}

/** The runs of set bits in [from, to), below maxPfn, one at a time: a big fragmented guest has millions of them. */
export function* eachRun(bm: Uint8Array, maxPfn: number, from = 0, to = maxPfn): Generator<PfnRun> {
  const end = Math.min(to, maxPfn, bm.length * 8);
  for (let pfn = from; pfn < end;) {
    const start = nextBit(bm, pfn, end, true);
    if (start >= end) return;
    pfn = nextBit(bm, start, end, false);
    yield { pfn: start, count: pfn - start };
  }
}

export function bitmapRuns(bm: Uint8Array, maxPfn: number, from = 0, to = maxPfn): PfnRun[] {
  return [...eachRun(bm, maxPfn, from, to)];
}

/** [from, to) cut into alternating runs of set and clear bits. */
export function eachPiece(bm: Uint8Array, from: number, to: number): Generator<PfnRun & { set: boolean }> {
  return piecesOf(eachRun(bm, to, from, to), from, to);
}

/** [from, to) cut at the given runs of set bits (sorted, inside it) into alternating set and clear pieces. */
export function* piecesOf(runs: Iterable<PfnRun>, from: number, to: number): Generator<PfnRun & { set: boolean }> {
  let at = from;
  for (const run of runs) {
    if (run.pfn > at) yield { pfn: at, count: run.pfn - at, set: false };
    yield { ...run, set: true };
    at = run.pfn + run.count;
  }
  if (at < to) yield { pfn: at, count: to - at, set: false };
}
