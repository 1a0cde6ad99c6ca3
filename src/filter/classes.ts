// Page classes (the Wasm core's class bytes) and makedumpfile dump levels.
import { GuestcoreError } from "../core/errors.js";

export const CLASS = {
  KEEP: 0,
  ZERO: 1,
  CACHE: 2,
  CACHE_PRIVATE: 3,
  USER: 4,
  FREE: 5,
  HWPOISON: 6,
  OFFLINE: 7,
  HOLE: 8,
} as const;

export const EXCLUDABLE = ["zero", "cache", "cachePrivate", "user", "free", "hwpoison", "offline"] as const;
export type ExclusionKind = (typeof EXCLUDABLE)[number];
export type ExclusionCounts = Record<ExclusionKind, number>;

/** makedumpfile's -d bits. */
export const DUMP_LEVEL_BITS = { zero: 1, cache: 2, cachePrivate: 4, user: 8, free: 16 } as const;

export function parseDumpLevel(s: string | number): number {
  const n = typeof s === "number" ? s : Number(s);
  if (!Number.isInteger(n) || n < 0 || n > 31) throw new GuestcoreError(`dump level must be 0 to 31, not "${s}"`);
  return n;
}

export function describeLevel(level: number): string {
  const names = Object.entries(DUMP_LEVEL_BITS).filter(([, b]) => level & b).map(([k]) => k);
  return names.length ? `excludes ${names.join(", ")}` : "keeps every page";
}
