// The content model the tracker tests share with their workers: block b
// holding version v has the hash (b << 32 | v, mix of that), so a lookup
// that mixed two publications (a torn read) fails modelCheck.
import type { BlockHash } from "../../src/warmcache/tracker.js";

const M64 = (1n << 64n) - 1n;

function mix(x: bigint): bigint {
  // splitmix64's finaliser: every input bit moves every output bit.
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & M64;
  return x ^ (x >> 31n);
}

export function modelHash(block: number, version: number): BlockHash {
  const h0 = (BigInt(block) << 32n) | BigInt(version >>> 0);
  return { h0, h1: mix(h0) };
}

/** The version a hash names for `block`, or undefined if no publication could have made it. */
export function modelVersion(block: number, h: BlockHash): number | undefined {
  if (h.h1 !== mix(h.h0) || h.h0 >> 32n !== BigInt(block)) return undefined;
  return Number(h.h0 & 0xffff_ffffn);
}

/** xorshift32: a reproducible stream for the test's choices and pauses. */
export function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/** Busy-wait about n short steps: widens the windows in which operations overlap. */
export function pause(n: number): number {
  let acc = 0;
  for (let i = 0; i < n; i++) acc = (acc + i * 7) | 0;
  return acc;
}
