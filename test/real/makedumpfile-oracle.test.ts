// The central claim: at every dump level, the pages we keep are exactly
// the pages makedumpfile 1.7.2 keeps, and our exclusion table equals its
// table, on real 6.1 guests, from the ELF and from the raw memory file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestImage } from "../../src/image.js";
import { LEVELS, REAL_PROFILES, firstDifference, makedumpfileOracle, popcount, realFixture } from "../helpers/real.js";

for (const profile of REAL_PROFILES) {
  for (const input of ["elf", "raw"] as const) {
    test(`${profile} ${input}: page set and counts equal makedumpfile at levels ${LEVELS.join(",")}`, () => {
      const fx = realFixture(profile);
      const img = GuestImage.open(input === "elf" ? fx.elf : fx.raw);
      try {
        assert.equal(img.kernel.origin, input === "elf" ? "note" : "scan");
        for (const level of LEVELS) {
          const want = makedumpfileOracle(fx, level);
          const got = img.pageStats(level);
          assert.equal(got.maxPfn, want.maxMapnr, `level ${level}: max_mapnr`);
          assert.equal(got.present, want.original, `level ${level}: original pages`);
          assert.deepEqual(got.counts, want.counts, `level ${level}: exclusion counts`);
          assert.equal(got.keptCount, want.remaining, `level ${level}: remaining pages`);
          const d1 = firstDifference(got.dumpable, want.bitmap2, got.maxPfn);
          assert.equal(d1, -1, `level ${level}: bitmap 2 differs first at pfn ${d1}`);
          const d2 = firstDifference(got.kept, want.nonZero, got.maxPfn);
          assert.equal(d2, -1, `level ${level}: non-zero kept pages differ first at pfn ${d2}`);
          assert.equal(popcount(got.kept, got.maxPfn), want.remaining);
        }
      } finally {
        img.close();
      }
    });
  }
}
