// Structure-aware mutation plus havoc. Every choice comes from an Rng
// seeded by (campaign seed, input index), so input N of a campaign is the
// same whatever happened before it (a worker restarted after a hang
// carries on with the very inputs it would have run).
import type { Field, FieldKind } from "./target.js";

/** xorshift128+ over two 32-bit halves each; small, fast and good enough to pick mutations. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(...keys: (number | string)[]) {
    // FNV-1a over the keys, then splitmix32 to spread it into four words.
    let h = 0x811c9dc5;
    for (const k of keys) {
      const s = String(k);
      for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
      h = Math.imul(h ^ 0x2c, 0x01000193) >>> 0;
    }
    const mix = () => {
      h = (h + 0x9e3779b9) >>> 0;
      let z = h;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix() | 1;
    this.b = mix();
    this.c = mix();
    this.d = mix();
  }

  /** A uniform 32-bit unsigned integer (xoshiro128**). */
  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.b << 9) >>> 0;
    this.c = (this.c ^ this.a) >>> 0;
    this.d = (this.d ^ this.b) >>> 0;
    this.b = (this.b ^ this.c) >>> 0;
    this.a = (this.a ^ this.d) >>> 0;
    this.c = (this.c ^ t) >>> 0;
    this.d = rotl(this.d, 11);
    return r;
  }

  /** 0 <= n < bound (bound >= 1). */
  below(bound: number): number {
    return bound <= 1 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * bound);
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.below(xs.length)];
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** One corpus entry: bytes and the fields of the seed it descends from. */
export interface Entry {
  bytes: Uint8Array;
  fields: readonly Field[];
  /** The seed's label, for the report. */
  origin: string;
}

export interface MutateLimits {
  /** Inputs never grow beyond this many bytes. */
  maxLength: number;
}

const MASK64 = (1n << 64n) - 1n;

function readField(b: Uint8Array, f: Field): bigint {
  let x = 0n;
  for (let i = 0; i < f.width; i++) {
    const byte = b[f.offset + (f.bigEndian ? i : f.width - 1 - i)] ?? 0;
    x = (x << 8n) | BigInt(byte);
  }
  return x;
}

function writeField(b: Uint8Array, f: Field, v: bigint): void {
  const w = BigInt(f.width * 8);
  let x = ((v % (1n << w)) + (1n << w)) % (1n << w);
  for (let i = 0; i < f.width; i++) {
    const at = f.offset + (f.bigEndian ? f.width - 1 - i : i);
    if (at < b.length) b[at] = Number(x & 0xffn);
    x >>= 8n;
  }
}

/** Values that break parsers, for a numeric field: the classic edges and the ones this input makes. */
function interestingNumber(rng: Rng, kind: FieldKind, cur: bigint, width: number, inputLength: number, fieldOffset: number): bigint {
  const bits = BigInt(width * 8);
  const all = (1n << bits) - 1n;
  const common = [0n, 1n, all, all >> 1n, 1n << (bits - 1n), 2n ** 31n, 2n ** 32n, 2n ** 31n - 1n, 2n ** 32n - 1n,
    2n ** 45n, 2n ** 63n, 2n ** 48n, 2n ** 52n, 2n ** 53n];
  const len = BigInt(inputLength);
  const here = [len, len - 1n, len + 1n, len - BigInt(fieldOffset), cur + 1n, cur - 1n, cur * 2n, cur >> 1n, cur + 4096n, cur - 4096n, cur << 12n, cur >> 12n];
  switch (rng.below(kind === "pointer" ? 5 : 4)) {
    case 0: return rng.pick(common);
    case 1: return rng.pick(here);
    case 2: return 1n << BigInt(rng.below(Number(bits)));
    case 3: return kind === "count" || kind === "size"
      ? BigInt(rng.below(1 << rng.below(20)))
      : (cur ^ (1n << BigInt(rng.below(Number(bits))))) & MASK64;
    default: // a pointer into the kernel's halves of the address space
      return rng.pick([0xffffffff80000000n, 0xffff888000000000n, 0xffffea0000000000n, 0xffffc90000000000n, 0x0000800000000000n]) + BigInt(rng.below(1 << 24)) * 4096n;
  }
}

function mutateField(rng: Rng, b: Uint8Array, f: Field): void {
  if (f.offset + f.width > b.length) return;
  const cur = readField(b, f);
  switch (f.kind) {
    case "flags": {
      const bits = f.width * 8;
      const r = rng.below(4);
      if (r === 0) writeField(b, f, 0n);
      else if (r === 1) writeField(b, f, (1n << BigInt(bits)) - 1n);
      else {
        let x = cur;
        for (let n = 1 + rng.below(2); n > 0; n--) x ^= 1n << BigInt(rng.below(bits));
        writeField(b, f, x);
      }
      return;
    }
    case "magic":
      // Mostly kept: only an occasional input tests the rejection.
      if (rng.chance(0.2)) b[f.offset + rng.below(f.width)] ^= 1 << rng.below(8);
      return;
    case "bytes":
      for (let n = 1 + rng.below(4); n > 0; n--) b[f.offset + rng.below(f.width)] = rng.u32() & 0xff;
      return;
    default:
      writeField(b, f, interestingNumber(rng, f.kind, cur, f.width, b.length, f.offset));
  }
}

const INTERESTING8 = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40, 0xfe];

/** One havoc step; returns the (possibly new) buffer. */
function havocStep(rng: Rng, b: Uint8Array, other: Uint8Array, limits: MutateLimits): Uint8Array {
  const n = b.length;
  switch (rng.below(12)) {
    case 0: // bit flip
      if (n) b[rng.below(n)] ^= 1 << rng.below(8);
      return b;
    case 1: // random byte
      if (n) b[rng.below(n)] = rng.u32() & 0xff;
      return b;
    case 2: // interesting byte
      if (n) b[rng.below(n)] = rng.pick(INTERESTING8);
      return b;
    case 3: { // interesting word at an aligned spot
      if (n < 8) return b;
      const width = rng.pick([2, 4, 8] as const);
      const off = rng.below(Math.floor(n / width)) * width;
      const f: Field = { offset: off, width, kind: rng.pick(["count", "size", "offset", "pointer"] as const), bigEndian: rng.chance(0.15) };
      mutateField(rng, b, f);
      return b;
    }
    case 4: { // insert random bytes
      const len = 1 + rng.below(rng.chance(0.8) ? 16 : 512);
      if (n + len > limits.maxLength) return b;
      const at = rng.below(n + 1);
      const out = new Uint8Array(n + len);
      out.set(b.subarray(0, at));
      for (let i = 0; i < len; i++) out[at + i] = rng.chance(0.5) ? 0 : rng.u32() & 0xff;
      out.set(b.subarray(at), at + len);
      return out;
    }
    case 5: { // delete a range
      if (n < 2) return b;
      const at = rng.below(n);
      const len = 1 + rng.below(Math.min(n - at, rng.chance(0.8) ? 16 : 4096));
      const out = new Uint8Array(n - len);
      out.set(b.subarray(0, at));
      out.set(b.subarray(at + len), at);
      return out;
    }
    case 6: // truncate
      return n ? b.slice(0, rng.below(n)) : b;
    case 7: { // extend with zeros or noise
      const len = 1 + rng.below(rng.chance(0.5) ? 64 : 8192);
      if (n + len > limits.maxLength) return b;
      const out = new Uint8Array(n + len);
      out.set(b);
      if (rng.chance(0.5)) for (let i = n; i < n + len; i++) out[i] = rng.u32() & 0xff;
      return out;
    }
    case 8: { // copy a range within the input
      if (n < 2) return b;
      const len = 1 + rng.below(Math.min(n, 256));
      const from = rng.below(n - len + 1);
      const to = rng.below(n - len + 1);
      b.copyWithin(to, from, from + len);
      return b;
    }
    case 9: { // splice: this input's head, the other's tail
      if (!other.length) return b;
      const cut = rng.below(Math.min(n, other.length) + 1);
      const out = new Uint8Array(Math.min(limits.maxLength, cut + (other.length - cut)));
      out.set(b.subarray(0, cut));
      out.set(other.subarray(cut, cut + out.length - cut), cut);
      return out;
    }
    case 10: { // overwrite a range from the other input at the same offset
      if (!n || !other.length) return b;
      const at = rng.below(Math.min(n, other.length));
      const len = 1 + rng.below(Math.min(n, other.length) - at);
      b.set(other.subarray(at, at + Math.min(len, 4096)), at);
      return b;
    }
    default: { // a run of one byte value
      if (!n) return b;
      const at = rng.below(n);
      const len = 1 + rng.below(Math.min(n - at, 64));
      b.fill(rng.pick(INTERESTING8), at, at + len);
      return b;
    }
  }
}

/**
 * A new input from `parent`: aimed at its fields most of the time, havoc
 * on top (or alone), sometimes spliced with `other`.
 */
export function mutate(rng: Rng, parent: Entry, other: Entry, limits: MutateLimits): Uint8Array {
  let b: Uint8Array = parent.bytes.slice();
  const fields = parent.fields.filter((f) => f.offset + f.width <= b.length);
  const aimed = fields.length > 0 && rng.chance(0.6);
  if (aimed) {
    // Targets list their headers' fields first: those decide sizes and
    // counts, and bugs tend to need two of them at once (a count and the
    // size that should bound it), so half the picks come from the head.
    const head = fields.slice(0, 32);
    for (let n = 1 + (rng.chance(0.5) ? rng.below(4) : 0); n > 0; n--) mutateField(rng, b, rng.pick(rng.chance(0.5) ? head : fields));
  }
  if (!aimed || rng.chance(0.3)) {
    for (let n = 1 << rng.below(rng.chance(0.7) ? 3 : 6); n > 0; n--) b = havocStep(rng, b, other.bytes, limits);
  }
  return b;
}
