// A multi-section, multi-root guest (1 GiB of the 32 GiB bench layout:
// 2 MiB vmemmap leaves, 1 GiB direct-map leaves, huge pages, split buddy
// blocks): counts at every level equal the generator's declared ones, and
// the kdump file written with worker threads holds exactly those pages.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { expectedCounts, writeLarge, type LargeLayout } from "../../fixtures/synthetic-large.js";
import { GuestImage } from "../../src/image.js";
import { dump } from "../../src/pipeline/dump.js";
import { readKdumpBitmaps, popcount } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";

function assertCountsEqual(input: string, layout: LargeLayout, levels: number[]): void {
  const img = GuestImage.open(input);
  try {
    for (const level of levels) {
      const want = expectedCounts(layout, level, false);
      const got = img.pageStats(level);
      const { excluded, remaining, total, ...counts } = want;
      assert.deepEqual(got.counts, counts, `level ${level}`);
      assert.equal(got.keptCount, remaining);
      assert.equal(got.maxPfn, total);
      void excluded;
    }
  } finally {
    img.close();
  }
}

/** A -d 31 kdump of `input` (two compression threads) holds the declared pages. */
async function assertKdumpHolds(input: string, out: string, layout: LargeLayout): Promise<ReturnType<typeof readKdumpBitmaps>> {
  const r = await dump(input, out, { level: 31, codec: "zstd", workers: 2 });
  const want = expectedCounts(layout, 31, false);
  assert.equal(r.table.remaining, want.remaining);
  const bm = readKdumpBitmaps(out);
  assert.equal(popcount(bm.bitmap2, bm.maxMapnr), want.remaining + want.zero);
  assert.equal(popcount(bm.nonZero, bm.maxMapnr), want.remaining);
  return bm;
}

test("1 GiB synthetic guest: counts per level equal the generator's; kdump page count matches", async (t) => {
  const dir = tempDir(t);
  const raw = join(dir, "large.raw");
  const { layout } = writeLarge(raw, { gib: 1 });
  assertCountsEqual(raw, layout, [1, 2, 4, 8, 16, 31]);
  await assertKdumpHolds(raw, join(dir, "large.kdump"), layout);
});

// In the raw image the hole is file, zero pages without struct pages; in
// the ELF core it is no one's memory, as in a vmcore of such a host.
test("sparse synthetic guest (1 GiB at 0, 1 GiB at the top of 64 GiB): counts equal the generator's, the hole is not dumped", async (t) => {
  const dir = tempDir(t);
  const raw = join(dir, "sparse.raw");
  const elf = join(dir, "sparse.elf");
  const { layout } = writeLarge(raw, { gib: 2, spanGib: 64, lowGib: 1 }, elf);
  assert.equal(layout.spanPages, 64 * 262144);
  assertCountsEqual(elf, layout, [1, 31]);
  const bm = await assertKdumpHolds(elf, join(dir, "sparse.kdump"), layout);
  assert.equal(bm.maxMapnr, layout.spanPages);
  // Nothing of the hole is kept, and both stretches of RAM are.
  assert.equal(popcount(bm.bitmap2.subarray(layout.holeStart / 8, (layout.holeStart + layout.holePages) / 8), layout.holePages), 0);
  assert.ok(popcount(bm.bitmap2.subarray((layout.holeStart + layout.holePages) / 8), layout.npages - layout.holeStart) > 0);
});
