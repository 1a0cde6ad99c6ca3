// A "live" Xen domain holding the real 256 MiB guest: the fake
// libxenforeignmemory/libxenctrl (test/native/fakexen.c, same ABI as Xen
// 4.17's) serves mem.raw as domain 1's memory through koffi. guestcore
// must find the kernel and keep exactly the pages it keeps from mem.raw
// (= makedumpfile's), mapping pages in batches (map calls ≈ pages/batch,
// not one per page), and write a kdump whose bitmap 2 is makedumpfile's.
// Pages the hypervisor refuses to map are holes: with some of the guest's
// excluded pages refused, every kept page is still kept.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { GuestImage } from "../../src/image.js";
import { CLASS } from "../../src/filter/classes.js";
import { dump } from "../../src/pipeline/dump.js";
import { openXenDomain } from "../../src/sources/xen-live.js";
import { firstDifference, makedumpfileOracle, readKdumpBitmaps, REAL_PROFILES, realFixture } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";
import { fakeStats, useFakeXen } from "../helpers/xen.js";

const PROFILE = REAL_PROFILES[0];
const PAGE = 4096;

test(`${PROFILE} served by a fake Xen: kernel found, level 31 equals mem.raw and makedumpfile, batched maps`, async (t) => {
  const fx = realFixture(PROFILE);
  const restore = useFakeXen({ mem: fx.raw, domid: 7 });
  const dir = tempDir(t);
  try {
    const raw = GuestImage.open(fx.raw);
    const want = raw.pageStats(31);
    raw.close();
    const src = openXenDomain(7);
    const pages = fx.memMiB * 256;
    assert.equal(src.stats.probeMapCalls, pages / 1024, "probe: one map call per 1024 pages");
    assert.deepEqual(src.segments.map((s) => [s.start, s.end]), [[0, pages * PAGE]]);
    const img = GuestImage.open(src.path, { source: src });
    try {
      assert.equal(img.source.format, "xen-domain");
      assert.equal(img.vmcoreinfo.osrelease, fx.release);
      const got = img.pageStats(31);
      assert.equal(got.present, want.present);
      assert.deepEqual(got.counts, want.counts);
      assert.equal(firstDifference(got.kept, want.kept, got.maxPfn), -1);
      assert.equal(firstDifference(got.dumpable, want.dumpable, got.maxPfn), -1);
      const mdf = makedumpfileOracle(fx, 31);
      assert.deepEqual(got.counts, mdf.counts);

      const out = join(dir, "live.kdump");
      await dump(img, out, { level: 31, workers: 0 });
      const bm = readKdumpBitmaps(out);
      assert.equal(firstDifference(bm.bitmap2, mdf.bitmap2, bm.maxMapnr), -1, "kdump bitmap 2 = makedumpfile's");
      assert.equal(firstDifference(bm.nonZero, mdf.nonZero, bm.maxMapnr), -1, "zero pages as makedumpfile's");
    } finally {
      img.close();
    }
    const f = fakeStats();
    const s = src.stats;
    assert.equal(f.mapCalls, s.probeMapCalls + s.readMapCalls);
    assert.equal(f.outstanding, 0, "every mapping released");
    assert.equal(f.closes, f.opens);
    // Kernel search, classification and the dump read every present page
    // about twice plus the struct pages and page tables: thousands of
    // pages per call on average, never one call per page.
    const perCall = f.pagesMapped / f.mapCalls;
    process.stderr.write(`fake Xen: ${f.mapCalls} map calls (${s.probeMapCalls} probe, ${s.readMapCalls} read) for ${f.pagesMapped} pages, ${perCall.toFixed(1)} pages per call\n`);
    assert.ok(perCall >= 32, `${perCall} pages per map call`);
  } finally {
    restore();
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`${PROFILE} served by a fake Xen that refuses some excluded pages: they are holes, kept pages unchanged`, () => {
  const fx = realFixture(PROFILE);
  const raw = GuestImage.open(fx.raw);
  const cls = new Uint8Array(raw.filter.maxPfn);
  const want = raw.pageStats(31, (w) => cls.set(w.cls, w.pfnStart));
  raw.close();
  // 64 page-cache pages (makedumpfile leaves them out at level 31), spread
  // over RAM, each a page of its own: a refused page inside a free buddy
  // block or a compound page would still be counted, since the filter,
  // like makedumpfile's exclude_range, counts every pfn of such a block,
  // present or not.
  const refused: number[] = [];
  const step = Math.floor(want.maxPfn / 64);
  for (let p = step >> 1; refused.length < 64 && p < want.maxPfn; p += step) {
    let q = Math.max(p, (refused[refused.length - 1] ?? -1) + 1);
    while (q < want.maxPfn && cls[q] !== CLASS.CACHE && cls[q] !== CLASS.CACHE_PRIVATE) q++;
    if (q < want.maxPfn) refused.push(q);
  }
  assert.equal(refused.length, 64);
  const restore = useFakeXen({ mem: fx.raw, errPfns: refused.join(",") });
  try {
    const src = openXenDomain(1);
    assert.equal(src.presentPages, want.present - refused.length);
    for (const p of refused) assert.ok(!src.segments.some((s) => s.start <= p * PAGE && p * PAGE < s.end), `pfn ${p} is a hole`);
    const img = GuestImage.open(src.path, { source: src });
    try {
      const got = img.pageStats(31);
      assert.equal(got.present, want.present - refused.length);
      const sum = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
      assert.equal(sum(got.counts), sum(want.counts) - refused.length, "the refused pages are no longer counted");
      assert.equal(got.keptCount, want.keptCount);
      assert.equal(firstDifference(got.kept, want.kept, got.maxPfn), -1);
      assert.equal(firstDifference(got.dumpable, want.dumpable, got.maxPfn), -1);
    } finally {
      img.close();
    }
  } finally {
    restore();
  }
});
