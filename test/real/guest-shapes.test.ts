// Guest shapes: 5-level paging, nokaslr, pc with the cloud kernel, and a
// 4 GiB q35 guest whose memory-backend file is not identity-mapped. Each
// gives makedumpfile's page set and counts at levels 1 and 31, from the
// ELF and from the raw file (which needs no options).
import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestImage } from "../../src/image.js";
import { firstDifference, makedumpfileOracle, realFixture } from "../helpers/real.js";

export const SHAPE_PROFILES = (process.env.GUESTCORE_SHAPES ?? "q35-256m-la57,q35-256m-nokaslr,pc-256m-cloud,q35-4g,pc-4g").split(",");
const LEVELS = [1, 31];
// QEMU's ELF also holds the 256 KiB BIOS ROM below 4 GiB, which the
// memory-backend file does not; on a guest with RAM above 4 GiB those
// pages fall below max_mapnr, and makedumpfile keeps them.
const BIOS_ROM: [number, number] = [0xfffc0, 0x100000];

for (const profile of SHAPE_PROFILES) {
  for (const input of ["elf", "raw"] as const) {
    test(`${profile} ${input}: page set and counts equal makedumpfile at levels ${LEVELS.join(",")}`, () => {
      const fx = realFixture(profile);
      const img = GuestImage.open(input === "elf" ? fx.elf : fx.raw);
      try {
        if (profile.includes("la57")) assert.equal(img.kernel.as.form.levels, 5, "the guest really runs 5-level paging");
        if (profile.includes("nokaslr")) assert.equal(img.kernel.kaslrOffset, 0n);
        if (profile.includes("4g") && input === "raw") {
          assert.ok(img.source.segments.some((s) => s.start >= 2 ** 32), "RAM above 4 GiB found");
          // q35 moves the RAM above 2 GiB to 4 GiB, pc the RAM above 3 GiB.
          assert.equal(img.source.segments[0].end, (profile.startsWith("pc") ? 3 : 2) * 2 ** 30);
        }
        for (const level of LEVELS) {
          const want = makedumpfileOracle(fx, level);
          const got = img.pageStats(level);
          assert.equal(got.maxPfn, want.maxMapnr, `level ${level}: max_mapnr`);
          const romInMapnr = input === "raw" && want.maxMapnr > BIOS_ROM[0];
          const rom = romInMapnr ? BIOS_ROM[1] - BIOS_ROM[0] : 0;
          let romZero = 0;
          if (romInMapnr) {
            for (let p = BIOS_ROM[0]; p < BIOS_ROM[1]; p++) {
              const bit = 1 << (p & 7);
              if (want.bitmap2[p >> 3] & bit && !(want.nonZero[p >> 3] & bit)) romZero++;
              assert.ok(want.nonZero[p >> 3] & (1 << (p & 7)) || want.bitmap2[p >> 3] & (1 << (p & 7)), `makedumpfile keeps ROM pfn ${p}`);
              want.bitmap2[p >> 3] &= ~(1 << (p & 7));
              want.nonZero[p >> 3] &= ~(1 << (p & 7));
            }
          }
          assert.equal(got.present, want.original - rom, `level ${level}: original pages`);
          assert.deepEqual(got.counts, { ...want.counts, zero: want.counts.zero - romZero }, `level ${level}: exclusion counts`);
          assert.equal(firstDifference(got.dumpable, want.bitmap2, got.maxPfn), -1, `level ${level}: bitmap 2`);
          assert.equal(firstDifference(got.kept, want.nonZero, got.maxPfn), -1, `level ${level}: non-zero pages`);
        }
      } finally {
        img.close();
      }
    });
  }
}

test("a wrong --layout is an error, not a wrong dump", () => {
  const fx = realFixture("q35-4g");
  assert.throws(() => GuestImage.open(fx.raw, { layout: "0:3G@0,4G:1G@3G" }), /layout/);
  assert.throws(() => GuestImage.open(fx.raw, { layout: "0:4G@0" }), /layout/);
});
