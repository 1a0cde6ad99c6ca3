// PfnBitmap against a dense bitmap doing the same operations, on spans
// small enough to hold densely and on a 2^40-pfn span (past 2^31, where
// shifts on a pfn would wrap).
import { test } from "node:test";
import assert from "node:assert/strict";
import { PfnBitmap, CHUNK_BITS } from "../../src/core/pfn-bitmap.js";
import { bitmapRuns, clearBitRange, countBits, nextBit, setBitRange, testBit } from "../../src/core/bitmap.js";
import { rng } from "../helpers/seeded.js";

test("PfnBitmap equals a dense bitmap under random ranges, bytes and clears", () => {
  const rand = rng(7);
  for (const bits of [1, 13, CHUNK_BITS - 3, CHUNK_BITS * 5 + 77]) {
    const dense = new Uint8Array(Math.ceil(bits / 8));
    const bm = new PfnBitmap(bits);
    for (let op = 0; op < 200; op++) {
      const a = Math.floor(rand() * bits);
      const b = Math.min(bits, a + Math.floor(rand() * (rand() < 0.5 ? 64 : CHUNK_BITS * 2)));
      const k = rand();
      if (k < 0.45) {
        setBitRange(dense, a, b);
        bm.setRange(a, b);
      } else if (k < 0.8) {
        clearBitRange(dense, a, b);
        bm.clearRange(a, b);
      } else {
        const off = Math.floor(a / 8);
        const bytes = Uint8Array.from({ length: Math.min(dense.length - off, 1 + Math.floor(rand() * 600)) }, () => (rand() < 0.3 ? 0 : Math.floor(rand() * 256)));
        dense.set(bytes, off);
        if (bits & 7) dense[dense.length - 1] &= (1 << (bits & 7)) - 1;
        bm.setBytes(off, bytes);
      }
      if (op % 20 !== 19) continue;
      assert.deepEqual(bm.toBytes(), dense, `${bits} bits, op ${op}`);
      assert.equal(bm.count(), countBits(dense, 0, bits));
      assert.deepEqual([...bm.runs()], bitmapRuns(dense, bits));
      for (let q = 0; q < 20; q++) {
        const p = Math.floor(rand() * bits);
        const e = Math.min(bits, p + Math.floor(rand() * CHUNK_BITS * 3));
        assert.equal(bm.get(p), testBit(dense, p));
        assert.equal(bm.count(p, e), countBits(dense, p, e));
        assert.equal(bm.rank(p), countBits(dense, 0, p));
        assert.equal(bm.next(p, e, true), nextBit(dense, p, e, true));
        assert.equal(bm.next(p, e, false), nextBit(dense, p, e, false));
        const pieces = [...bm.pieces(p, e)];
        assert.equal(pieces.reduce((n, x) => n + x.count, 0), e - p);
        for (const x of pieces) assert.equal(countBits(dense, x.pfn, x.pfn + x.count), x.set ? x.count : 0);
        const off = Math.floor(p / 8);
        const len = Math.min(dense.length - off, 1 + Math.floor(rand() * 9000));
        assert.deepEqual(bm.readBytes(off, new Uint8Array(len)), dense.subarray(off, off + len));
      }
    }
    const other = new PfnBitmap(bits);
    other.setRange(0, Math.floor(bits / 2));
    const diff = bm.andNot(other);
    const want = dense.map((x, i) => x & ~other.toBytes()[i]);
    assert.deepEqual(diff.toBytes(), want);
  }
});

test("PfnBitmap over 2^40 pfns holds only its chunks and answers past 2^31", () => {
  const bits = 2 ** 40;
  const bm = new PfnBitmap(bits);
  const low = [5, 100_000] as const;
  const high = [bits - 1_000_000, bits - 3] as const;
  bm.setRange(...low);
  bm.setRange(...high);
  const n = high[1] - high[0] + low[1] - low[0];
  assert.ok(bm.heldBytes <= 40 * (CHUNK_BITS / 8), `${bm.heldBytes} bytes held`);
  assert.equal(bm.count(), n);
  assert.deepEqual([...bm.runs()], [{ pfn: low[0], count: low[1] - low[0] }, { pfn: high[0], count: high[1] - high[0] }]);
  assert.equal(bm.next(low[1], bits, true), high[0]);
  assert.equal(bm.next(high[0], bits, false), high[1]);
  assert.equal(bm.get(high[0]), true);
  assert.equal(bm.get(high[0] - 1), false);
  assert.equal(bm.get(2 ** 31 + 5), false);
  assert.equal(bm.rank(high[0] + 10), low[1] - low[0] + 10);
  assert.equal(bm.rank(bits), n);
  bm.clearRange(0, bits);
  assert.equal(bm.heldBytes, 0);
  assert.equal(bm.count(), 0);
});
