// A multi-section, multi-root guest (1 GiB of the 32 GiB bench layout:
// 2 MiB vmemmap leaves, 1 GiB direct-map leaves, huge pages, split buddy
// blocks): counts at every level equal the generator's declared ones, and
// the kdump file written with worker threads holds exactly those pages.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { expectedCounts, writeLarge } from "../../fixtures/synthetic-large.js";
import { GuestImage } from "../../src/image.js";
import { dump } from "../../src/pipeline/dump.js";
import { readKdumpBitmaps, popcount } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";

test("1 GiB synthetic guest: counts per level equal the generator's; kdump page count matches", async (t) => {
  const dir = tempDir(t);
  const raw = join(dir, "large.raw");
  const { layout } = writeLarge(raw, { gib: 1 });
  const img = GuestImage.open(raw);
  try {
    for (const level of [1, 2, 4, 8, 16, 31]) {
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
  const out = join(dir, "large.kdump");
  const r = await dump(raw, out, { level: 31, codec: "zstd", workers: 2 });
  const want = expectedCounts(layout, 31, false);
  assert.equal(r.table.remaining, want.remaining);
  const bm = readKdumpBitmaps(out);
  assert.equal(popcount(bm.bitmap2, bm.maxMapnr), want.remaining + want.zero);
  assert.equal(popcount(bm.nonZero, bm.maxMapnr), want.remaining);
});
