// A bit per page frame over a guest's whole physical address space, held
// as 4 KiB chunks (128 MiB of guest each) that exist only where a bit is
// set. A guest with RAM at both ends of a 1 TiB span costs what its RAM
// costs, not 32 MiB per bitmap; a full 1 TiB guest still costs 32 MiB.
// Bit order as in bitmap.ts (LSB first), so a chunk is a slice of
// makedumpfile's bitmap and goes to a file as it is.
import { clearBitRange, nextBit, piecesOf, setBitRange, type PfnRun } from "./bitmap.js";

export const CHUNK_BITS = 1 << 15;
const CHUNK_BYTES = CHUNK_BITS / 8;

export class PfnBitmap {
  private readonly chunks = new Map<number, Uint8Array>();
  /** Chunk indices in order, once asked for and until a chunk is added. */
  private order?: number[];
  /** Set bits before each chunk of `order`, until the next change. */
  private before?: Float64Array;

  constructor(readonly bits: number) {
    if (!Number.isSafeInteger(bits) || bits < 0) throw new RangeError(`bitmap of ${bits} bits`);
  }

  /** A copy of a dense bitmap (LSB first) of `bits` bits. */
  static fromBytes(bytes: Uint8Array, bits = bytes.length * 8): PfnBitmap {
    const bm = new PfnBitmap(bits);
    bm.setBytes(0, bytes.subarray(0, Math.ceil(bits / 8)));
    return bm;
  }

  get byteLength(): number {
    return Math.ceil(this.bits / 8);
  }

  private writable(c: number): Uint8Array {
    let ch = this.chunks.get(c);
    if (!ch) {
      ch = new Uint8Array(CHUNK_BYTES);
      this.chunks.set(c, ch);
      if (this.order && (this.order.length === 0 || this.order[this.order.length - 1] < c)) this.order.push(c);
      else this.order = undefined;
    }
    this.before = undefined;
    return ch;
  }

  private keys(): number[] {
    this.order ??= [...this.chunks.keys()].sort((a, b) => a - b);
    return this.order;
  }

  /** Index in keys() of the first chunk at or after c. */
  private firstFrom(c: number): number {
    const k = this.keys();
    let lo = 0;
    let hi = k.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (k[mid] < c) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  get(pfn: number): boolean {
    if (pfn < 0 || pfn >= this.bits) return false;
    // Pfns pass 2^31 on big guests: no shifts on the pfn itself.
    const c = Math.floor(pfn / CHUNK_BITS);
    const ch = this.chunks.get(c);
    const i = pfn - c * CHUNK_BITS;
    return ch !== undefined && (ch[i >> 3] & (1 << (i & 7))) !== 0;
  }

  /** Set bits [a, b). */
  setRange(a: number, b: number): void {
    b = Math.min(b, this.bits);
    for (let p = Math.max(0, a); p < b;) {
      const c = Math.floor(p / CHUNK_BITS);
      const base = c * CHUNK_BITS;
      const end = Math.min(b, base + CHUNK_BITS);
      setBitRange(this.writable(c), p - base, end - base);
      p = end;
    }
  }

  /** Clear bits [a, b); whole chunks cleared are dropped. Costs the chunks held, not the span. */
  clearRange(a: number, b: number): void {
    b = Math.min(b, this.bits);
    a = Math.max(0, a);
    if (a >= b) return;
    const keys = this.keys();
    const hit: number[] = [];
    for (let k = this.firstFrom(Math.floor(a / CHUNK_BITS)); k < keys.length && keys[k] * CHUNK_BITS < b; k++) hit.push(keys[k]);
    for (const c of hit) {
      const base = c * CHUNK_BITS;
      const lo = Math.max(a, base) - base;
      const hi = Math.min(b, base + CHUNK_BITS) - base;
      if (lo === 0 && hi === CHUNK_BITS) {
        this.drop(c);
        continue;
      }
      this.before = undefined;
      clearBitRange(this.chunks.get(c)!, lo, hi);
    }
  }

  private drop(c: number): void {
    this.chunks.delete(c);
    this.order = undefined;
    this.before = undefined;
  }

  /**
   * Copy dense bitmap bytes in at byte `byteOff` (bits past `bits` are
   * dropped). All-zero stretches allocate nothing.
   */
  setBytes(byteOff: number, bytes: Uint8Array): void {
    const end = Math.min(byteOff + bytes.length, this.byteLength);
    for (let o = byteOff; o < end;) {
      const c = Math.floor(o / CHUNK_BYTES);
      const base = c * CHUNK_BYTES;
      const stop = Math.min(end, base + CHUNK_BYTES);
      const src = bytes.subarray(o - byteOff, stop - byteOff);
      const ch = this.chunks.get(c);
      if (ch) {
        ch.set(src, o - base);
        this.before = undefined;
      } else if (!allZero(src)) this.writable(c).set(src, o - base);
      o = stop;
    }
    // Bits past the end of the bitmap in its last byte stay clear.
    if (end === this.byteLength && this.bits & 7) {
      const last = this.chunks.get(Math.floor((end - 1) / CHUNK_BYTES));
      if (last) last[(end - 1) % CHUNK_BYTES] &= (1 << (this.bits & 7)) - 1;
    }
  }

  /** Bytes [byteOff, byteOff + dst.length) of the dense bitmap, into dst. */
  readBytes(byteOff: number, dst: Uint8Array): Uint8Array {
    dst.fill(0);
    const end = Math.min(byteOff + dst.length, this.byteLength);
    const keys = this.keys();
    for (let k = this.firstFrom(Math.floor(byteOff / CHUNK_BYTES)); k < keys.length; k++) {
      const base = keys[k] * CHUNK_BYTES;
      if (base >= end) break;
      const ch = this.chunks.get(keys[k])!;
      const lo = Math.max(byteOff, base);
      const hi = Math.min(end, base + CHUNK_BYTES);
      dst.set(ch.subarray(lo - base, hi - base), lo - byteOff);
    }
    return dst;
  }

  /** The whole bitmap as dense bytes: for small guests and tests. */
  toBytes(): Uint8Array {
    return this.readBytes(0, new Uint8Array(this.byteLength));
  }

  /** Set bits in [from, to). */
  count(from = 0, to = this.bits): number {
    to = Math.min(to, this.bits);
    let n = 0;
    const keys = this.keys();
    for (let k = this.firstFrom(Math.floor(Math.max(0, from) / CHUNK_BITS)); k < keys.length; k++) {
      const base = keys[k] * CHUNK_BITS;
      if (base >= to) break;
      const ch = this.chunks.get(keys[k])!;
      n += prefixCount(ch, Math.min(to, base + CHUNK_BITS) - base) - prefixCount(ch, Math.max(from, base) - base);
    }
    return n;
  }

  /** Set bits in [0, bit): a binary search over the chunks and one chunk's count. */
  rank(bit: number): number {
    const keys = this.keys();
    if (!this.before) {
      this.before = new Float64Array(keys.length + 1);
      let n = 0;
      keys.forEach((c, i) => {
        this.before![i] = n;
        n += prefixCount(this.chunks.get(c)!, CHUNK_BITS);
      });
      this.before[keys.length] = n;
    }
    const b = Math.min(Math.max(bit, 0), this.bits);
    const c = Math.floor(b / CHUNK_BITS);
    const k = this.firstFrom(c);
    if (k < keys.length && keys[k] === c) return this.before[k] + prefixCount(this.chunks.get(c)!, b - c * CHUNK_BITS);
    return this.before[k];
  }

  /** The first bit in [from, end) whose value is `set`, or `end`. */
  next(from: number, end: number, set: boolean): number {
    end = Math.min(end, this.bits);
    let p = Math.max(0, from);
    while (p < end) {
      const c = Math.floor(p / CHUNK_BITS);
      const base = c * CHUNK_BITS;
      const ch = this.chunks.get(c);
      if (!ch) {
        if (!set) return p;
        // Jump to the next chunk that holds a bit.
        const keys = this.keys();
        const k = this.firstFrom(c + 1);
        if (k >= keys.length) return end;
        p = keys[k] * CHUNK_BITS;
        continue;
      }
      const stop = Math.min(end, base + CHUNK_BITS);
      const hit = nextBit(ch, p - base, stop - base, set) + base;
      if (hit < stop) return hit;
      p = stop;
    }
    return end;
  }

  /** Runs of set bits in [from, to), one at a time. */
  *runs(from = 0, to = this.bits): Generator<PfnRun> {
    const end = Math.min(to, this.bits);
    for (let p = from; p < end;) {
      const start = this.next(p, end, true);
      if (start >= end) return;
      p = this.next(start, end, false);
      yield { pfn: start, count: p - start };
    }
  }

  /** [from, to) cut into alternating runs of set and clear bits. */
  pieces(from: number, to: number): Generator<PfnRun & { set: boolean }> {
    return piecesOf(this.runs(from, to), from, to);
  }

  /** Bits set here and clear in `other`. */
  andNot(other: PfnBitmap): PfnBitmap {
    const out = new PfnBitmap(this.bits);
    for (const c of this.keys()) {
      const a = this.chunks.get(c)!;
      const b = other.chunks.get(c);
      const d = b ? a.map((x, i) => x & ~b[i]) : a.slice();
      if (!allZero(d)) {
        out.chunks.set(c, d);
        out.order = undefined;
      }
    }
    return out;
  }

  /** Bytes held by the chunks (what the bitmap costs). */
  get heldBytes(): number {
    return this.chunks.size * CHUNK_BYTES;
  }
}

/** Set bits below `bits` in a chunk, a 32-bit word at a time (a chunk is its own aligned buffer). */
function prefixCount(ch: Uint8Array, bits: number): number {
  const w = new Uint32Array(ch.buffer, ch.byteOffset, ch.length >> 2);
  const full = bits >>> 5;
  let n = 0;
  for (let i = 0; i < full; i++) n += popcount32(w[i]);
  const rest = bits & 31;
  if (rest) n += popcount32(w[full] & ((1 << rest) - 1));
  return n;
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

function allZero(b: Uint8Array): boolean {
  // Four bytes at a time where the view allows.
  let i = 0;
  if ((b.byteOffset & 3) === 0) {
    const w = new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
    for (; i < w.length; i++) if (w[i] !== 0) return false;
    i <<= 2;
  }
  for (; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}
