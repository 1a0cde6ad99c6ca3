// kdump-compressed output of real guests: the page set equals makedumpfile's
// bitmap 2, an independent reader (libkdumpfile) reads every page back as
// the guest had it, and crash / makedumpfile --dump-dmesg open the files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { openSync, closeSync, rmSync } from "node:fs";
import { join } from "node:path";
import { dump } from "../../src/pipeline/dump.js";
import type { CodecName } from "../../src/codecs/codec.js";
import { LEVELS, REAL_PROFILES, firstDifference, makedumpfileOracle, readKdumpBitmaps, realFixture } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";

import { execFileSync } from "node:child_process";
import { libkdumpfile, tools } from "../helpers/oracles.js";

for (const profile of REAL_PROFILES) {
  test(`${profile}: kdump-compressed bitmap 2 and zero pages equal makedumpfile's at levels ${LEVELS.join(",")}`, async (t) => {
    const fx = realFixture(profile);
    const dir = tempDir(t);
    try {
      for (const level of LEVELS) {
        const out = join(dir, `d${level}.kdump`);
        const r = await dump(fx.raw, out, { level, codec: "zstd" });
        const want = makedumpfileOracle(fx, level);
        const got = readKdumpBitmaps(out);
        assert.equal(got.maxMapnr, want.maxMapnr);
        assert.equal(firstDifference(got.bitmap2, want.bitmap2, got.maxMapnr), -1, `level ${level}: bitmap 2`);
        assert.equal(firstDifference(got.nonZero, want.nonZero, got.maxMapnr), -1, `level ${level}: zero pages`);
        assert.deepEqual(r.table.counts, want.counts, `level ${level}: exclusion counts`);
        rmSync(out);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const codec of ["zstd", "zlib", "none"] as CodecName[]) {
    test(`${profile}: ${codec} kdump -d 31 reads back page for page in libkdumpfile`, async (t) => {
      const fx = realFixture(profile);
      const dir = tempDir(t);
      try {
        const out = join(dir, "dump.kdump");
        const r = await dump(fx.elf, out, { level: 31, codec });
        const log = libkdumpfile(out, fx.raw, r.table.remaining + r.table.counts.zero);
        assert.match(log, /^ok libkdumpfile/m);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}

test("re-filtering a real level-1 kdump file to 31 gives the page set of filtering the guest at 31", async (t) => {
  const fx = realFixture(REAL_PROFILES[0]);
  const dir = tempDir(t);
  try {
    const l1 = join(dir, "l1.kdump");
    const l31 = join(dir, "l31.kdump");
    await dump(fx.raw, l1, { level: 1, codec: "zstd" });
    await dump(l1, l31, { level: 31, codec: "zstd" });
    const want = makedumpfileOracle(fx, 31);
    const got = readKdumpBitmaps(l31);
    assert.equal(firstDifference(got.bitmap2, want.bitmap2, want.maxMapnr), -1);
    assert.equal(firstDifference(got.nonZero, want.nonZero, want.maxMapnr), -1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("crash opens zstd, zlib and flattened dumps; makedumpfile --dump-dmesg reads zlib", async (t) => {
  const fx = realFixture(REAL_PROFILES[0]);
  const dir = tempDir(t);
  try {
    const zstd = join(dir, "z.kdump");
    const zlib = join(dir, "c.kdump");
    const flat = join(dir, "f.flat");
    await dump(fx.raw, zstd, { level: 31, codec: "zstd" });
    await dump(fx.elf, zlib, { level: 31, codec: "zlib" });
    const fd = openSync(flat, "w");
    try {
      await dump(fx.raw, fd, { level: 31, codec: "zstd" });
    } finally {
      closeSync(fd);
    }
    assert.match(tools(zstd, fx.marker, "crash"), /^ok crash/m);
    const z = tools(zlib, fx.marker, "crash makedumpfile-dmesg");
    assert.match(z, /^ok crash/m);
    assert.match(z, /^ok makedumpfile-dmesg/m);
    assert.match(tools(flat, fx.marker, "crash"), /^ok crash/m);
    // makedumpfile -R turns our flattened stream into a file libkdumpfile reads.
    const re = join(dir, "r.kdump");
    execFileSync("sh", ["-c", 'makedumpfile -R "$1" < "$2"', "sh", re, flat], { stdio: "pipe" });
    assert.match(libkdumpfile(re, fx.raw, readKdumpCount(re)), /^ok libkdumpfile/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function readKdumpCount(path: string): number {
  const b = readKdumpBitmaps(path);
  let n = 0;
  for (let p = 0; p < b.maxMapnr; p++) if (b.bitmap2[p >> 3] & (1 << (p & 7))) n++;
  return n;
}
