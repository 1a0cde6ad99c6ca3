// core/bitmap and core/search against plain bit-by-bit and linear models,
// on bitmaps that mix whole 0x00/0xff bytes with noise, at every alignment.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BitRank, bitmapRuns, clearBitRange, countBits, eachPiece, nextBit, setBitRange, testBit } from "../../src/core/bitmap.js";
import { lastAtOrBefore, rangeHolding } from "../../src/core/search.js";

function bitmap(bytes: number, seed: number): Uint8Array {
  const bm = new Uint8Array(bytes);
  let x = seed;
  for (let i = 0; i < bytes; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const r = x >>> 24;
    bm[i] = r < 90 ? 0xff : r < 180 ? 0 : x & 0xff;
  }
  return bm;
}

const bit = (bm: Uint8Array, i: number) => (bm[i >> 3] >> (i & 7)) & 1;

test("countBits, BitRank, nextBit and the runs equal a bit-by-bit count", () => {
  for (const seed of [1, 2, 3]) {
    const bm = bitmap(1500, seed);
    const n = bm.length * 8 - 5; // a length that is not whole bytes
    const prefix = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) prefix[i + 1] = prefix[i] + bit(bm, i);
    const rank = new BitRank(bm, n, 64);
    assert.equal(rank.total, prefix[n]);
    for (let i = 0; i <= n; i += 7) {
      assert.equal(rank.rank(i), prefix[i], `rank(${i})`);
      for (const j of [i, i + 1, i + 13, n]) if (j <= n) assert.equal(countBits(bm, i, j), prefix[j] - prefix[i], `countBits(${i}, ${j})`);
    }
    for (let i = 0; i < n; i += 3) {
      let s = i;
      while (s < n && !bit(bm, s)) s++;
      let c = i;
      while (c < n && bit(bm, c)) c++;
      assert.equal(nextBit(bm, i, n, true), s, `next set from ${i}`);
      assert.equal(nextBit(bm, i, n, false), c, `next clear from ${i}`);
    }
    const model: { pfn: number; count: number }[] = [];
    for (let i = 0; i < n;) {
      if (!bit(bm, i)) { i++; continue; }
      let j = i;
      while (j < n && bit(bm, j)) j++;
      model.push({ pfn: i, count: j - i });
      i = j;
    }
    assert.deepEqual(bitmapRuns(bm, n), model);
    const from = 11;
    const to = n - 9;
    const pieces = [...eachPiece(bm, from, to)];
    assert.equal(pieces[0].pfn, from);
    assert.equal(pieces.reduce((a, p) => a + p.count, 0), to - from);
    for (const p of pieces) for (let i = p.pfn; i < p.pfn + p.count; i++) assert.equal(testBit(bm, i), p.set);
  }
});

test("setBitRange and clearBitRange touch exactly [a, b)", () => {
  for (const [a, b] of [[0, 0], [3, 5], [0, 64], [7, 9], [5, 70], [8, 16], [1, 127]]) {
    const set = new Uint8Array(16);
    const clear = new Uint8Array(16).fill(0xff);
    setBitRange(set, a, b);
    clearBitRange(clear, a, b);
    for (let i = 0; i < 128; i++) {
      assert.equal(bit(set, i), i >= a && i < b ? 1 : 0, `set [${a}, ${b}) bit ${i}`);
      assert.equal(bit(clear, i), i >= a && i < b ? 0 : 1, `clear [${a}, ${b}) bit ${i}`);
    }
  }
});

test("lastAtOrBefore and rangeHolding equal a linear scan, duplicates and bigints included", () => {
  const keys = [2, 2, 5, 9, 9, 9, 14, 30];
  for (let x = -1; x <= 31; x++) {
    let want = -1;
    keys.forEach((k, i) => { if (k <= x) want = i; });
    assert.equal(lastAtOrBefore(keys.length, (i) => keys[i], x), want, `x = ${x}`);
    assert.equal(lastAtOrBefore(keys.length, (i) => BigInt(keys[i]), BigInt(x)), want);
  }
  assert.equal(lastAtOrBefore(0, () => 0, 5), -1);
  const ranges = [[0, 4], [4, 6], [10, 12], [20, 21]];
  for (let x = -2; x < 24; x++) {
    const want = ranges.findIndex(([a, b]) => x >= a && x < b);
    assert.equal(rangeHolding(ranges.length, (i) => ranges[i][0], (i) => ranges[i][1], x), want, `x = ${x}`);
  }
});
