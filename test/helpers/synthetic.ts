// Expected results for synthetic images, from their declared page kinds.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expectedExclusion, type Synthetic } from "../../fixtures/synthetic.js";
import { EXCLUDABLE, type ExclusionCounts } from "../../src/filter/classes.js";
import type { PfnBitmap } from "../../src/core/pfn-bitmap.js";

export function expected(s: Synthetic, level: number, present: (pfn: number) => boolean) {
  const counts = Object.fromEntries(EXCLUDABLE.map((k) => [k, 0])) as ExclusionCounts;
  const kept = new Uint8Array(Math.ceil(s.kinds.length / 8));
  let presentCount = 0;
  s.kinds.forEach((kind, pfn) => {
    if (!present(pfn)) return;
    presentCount++;
    const e = expectedExclusion(kind, level) as keyof ExclusionCounts | undefined;
    if (e) counts[e]++;
    else kept[pfn >> 3] |= 1 << (pfn & 7);
  });
  return { counts, kept, present: presentCount };
}

/** What removes a temporary directory when its test ends, passed or failed: the test's context, or `{ after }` from node:test for a file's shared one. */
export interface Cleanup {
  after(fn: () => void): void;
}

export function tempDir(t: Cleanup): string {
  const dir = scratchDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A temporary directory for code that removes it itself, in the `finally` of a `try` that starts right after. */
export function scratchDir(): string {
  return mkdtempSync(join(tmpdir(), "guestcore-test-"));
}

export function writeTemp(dir: string, name: string, data: Uint8Array | string): string {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
}

/** The image's classification at `levels` equals the synthetic guest's declared kinds (every page present). */
export function assertMatchesKinds(img: { pageStats(level: number): { present: number; counts: unknown; kept: PfnBitmap } }, s: Synthetic, levels = [1, 31]): void {
  for (const level of levels) {
    const want = expected(s, level, () => true);
    const got = img.pageStats(level);
    assert.equal(got.present, want.present, `level ${level}: present`);
    assert.deepEqual(got.counts, want.counts, `level ${level}: counts`);
    const p = firstKeptDifference(got.kept.toBytes(), want.kept, s.kinds.length);
    assert.equal(p, -1, `level ${level}: kept set differs at pfn ${p}`);
  }
}

function firstKeptDifference(a: Uint8Array, b: Uint8Array, n: number): number {
  for (let p = 0; p < n; p++) if (((a[p >> 3] >> (p & 7)) & 1) !== ((b[p >> 3] >> (p & 7)) & 1)) return p;
  return -1;
}
