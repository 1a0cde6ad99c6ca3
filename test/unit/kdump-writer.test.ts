// kdump-compressed output on synthetic guests: exact round trip through
// our reader for every codec, in-order and explicit dump order, the
// written-range callback, the rate limiter's accounting, and re-filtering.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { parseDiskDumpHeader } from "../../src/format/kdump.js";
import { buildSynthetic } from "../../fixtures/synthetic.js";
import { GuestImage } from "../../src/image.js";
import { PfnBitmap } from "../../src/core/pfn-bitmap.js";
import { dump } from "../../src/pipeline/dump.js";
import { openSource } from "../../src/sources/open.js";
import type { WriteLimiter } from "../../src/pipeline/rate-limit.js";
import type { PfnRun } from "../../src/core/bitmap.js";
import { readKdumpBitmaps, firstDifference } from "../helpers/real.js";
import { tempDir, writeTemp } from "../helpers/synthetic.js";

const s = buildSynthetic({ memMiB: 64 });
const dir = tempDir({ after });
const input = writeTemp(dir, "g.raw", s.image);
const bit = (bm: Uint8Array | PfnBitmap, p: number) => (bm instanceof PfnBitmap ? Number(bm.get(p)) : (bm[p >> 3] >> (p & 7)) & 1);

for (const codec of ["zstd", "zlib", "none"] as const) {
  for (const workers of [0, 2]) {
    test(`${codec}, ${workers} workers: every dumpable page reads back exactly; bitmap 2 equals the filter's`, async () => {
      const out = join(dir, `${codec}-${workers}.kdump`);
      const r = await dump(input, out, { level: 31, codec, workers });
      const img = GuestImage.open(input);
      const want = img.pageStats(31);
      img.close();
      const bm = readKdumpBitmaps(out);
      assert.equal(firstDifference(bm.bitmap2, want.dumpable, want.maxPfn), -1);
      assert.equal(firstDifference(bm.nonZero, want.kept, want.maxPfn), -1);
      assert.deepEqual(r.table.counts, want.counts);
      const src = openSource(out);
      try {
        const got = new Uint8Array(4096);
        for (let p = 0; p < want.maxPfn; p++) {
          if (!bit(want.dumpable, p)) {
            assert.throws(() => src.readBatch([{ paddr: p * 4096, dst: got }]), /./, `pfn ${p} is excluded`);
            continue;
          }
          src.readBatch([{ paddr: p * 4096, dst: got }]);
          assert.ok(Buffer.compare(got, s.image.subarray(p * 4096, (p + 1) * 4096)) === 0, `pfn ${p}`);
        }
      } finally {
        src.close();
      }
    });
  }
}

test("explicit dump order: those pages are written first; every page is reported written once", async () => {
  const out = join(dir, "ordered.kdump");
  const first: [number, number] = [0x800, 0xc00]; // the kernel image: all kept
  const seen = new Uint8Array(16384);
  const order: PfnRun[] = [];
  await dump(input, out, {
    level: 31, codec: "zstd", workers: 2, order: [first],
    onWritten: (runs) => {
      for (const r of runs) {
        order.push(r);
        for (let p = r.pfn; p < r.pfn + r.count; p++) seen[p]++;
      }
    },
  });
  const img = GuestImage.open(input);
  const want = img.pageStats(31);
  img.close();
  for (let p = 0; p < want.maxPfn; p++) assert.equal(seen[p], bit(want.dumpable, p), `pfn ${p} reported ${seen[p]} times`);
  // The reported runs start inside the requested range, then go on in pfn order.
  const firstOutside = order.findIndex((r) => r.pfn < first[0] || r.pfn >= first[1]);
  assert.ok(firstOutside > 0);
  assert.ok(order.slice(0, firstOutside).every((r) => r.pfn >= first[0] && r.pfn + r.count <= first[1]));
  assert.ok(order.slice(firstOutside).every((r, i, a) => i === 0 || r.pfn > a[i - 1].pfn));
  // The file is still a valid dump of the same pages.
  const src = openSource(out);
  const page = new Uint8Array(4096);
  src.readBatch([{ paddr: 0x900 * 4096, dst: page }]);
  assert.ok(Buffer.compare(page, s.image.subarray(0x900 * 4096, 0x901 * 4096)) === 0);
  src.close();
});

test("the write limiter is asked for every byte of page data and descriptors", async () => {
  let asked = 0;
  const limiter: WriteLimiter = { acquire: async (n) => { asked += n; } };
  const out = join(dir, "limited.kdump");
  const r = await dump(input, out, { level: 31, codec: "zlib", workers: 0, limiter });
  // Data and descriptors follow the bitmaps: descriptors, the shared zero
  // page, then the pages; the limiter must have seen all but the zero page.
  const h = parseDiskDumpHeader(readFileSync(out).subarray(0, 512));
  const descOff = (1 + h.subHdrSize + h.bitmapBlocks) * h.blockSize;
  assert.equal(asked, r.bytes - descOff - 4096);
});

test("re-filtering a level-1 kdump file to 31 keeps the same pages as filtering the original at 31", async () => {
  const l1 = join(dir, "l1.kdump");
  await dump(input, l1, { level: 1, codec: "zstd", workers: 0 });
  const l31 = join(dir, "l1-to-31.kdump");
  await dump(l1, l31, { level: 31, codec: "zstd", workers: 0 });
  const direct = join(dir, "direct31.kdump");
  await dump(input, direct, { level: 31, codec: "zstd", workers: 0 });
  const a = readKdumpBitmaps(l31);
  const b = readKdumpBitmaps(direct);
  assert.equal(firstDifference(a.bitmap2, b.bitmap2, b.maxMapnr), -1);
  assert.equal(firstDifference(a.nonZero, b.nonZero, b.maxMapnr), -1);
});
