// A batch that writes itself goes right after its predecessor; one whose
// predecessor has not said where it ends writes nothing and comes back
// deferred, and once the owner publishes that end, the next batch
// follows it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Codecs } from "../../src/codecs/codec.js";
import { initRing, publishEnd, runBatch, PAGE_DESC_BYTES, type BatchRequest, type RingLayout } from "../../src/pipeline/compress-batch.js";
import { tempDir } from "../helpers/synthetic.js";

const PAGE = 4096;
const text = (seq: number) => `batch ${seq} `.repeat(600).slice(0, PAGE);

test("a batch whose predecessor has not published comes back deferred; published ends place the batches after it", (t) => {
  const memory = new WebAssembly.Memory({ initial: 16, maximum: 16, shared: true });
  const buf = memory.buffer;
  const ctx = { memory, codec: Codecs.loadSync().codec("zstd") };
  const out = join(tempDir(t), "out");
  const fd = openSync(out, "w+");
  t.after(() => closeSync(fd));
  const ring: RingLayout = { tagsPtr: 0, endsPtr: 64, abortPtr: 128, slots: 4 };
  const dataStart = 1 << 20;
  initRing(buf, ring, dataStart);
  // Batch i: one page of text at its own place in memory; descriptors at i * 24 in the file.
  const batch = (seq: number): BatchRequest => {
    const base = 4096 + seq * 5 * PAGE;
    new Uint8Array(buf, base, PAGE).set(Buffer.from(text(seq), "latin1"));
    return {
      seq, ptr: base, count: 1, kindPtr: base + PAGE, sizePtr: base + PAGE + 8, outPtr: base + 2 * PAGE, descPtr: base + 4 * PAGE,
      zeroTest: true, flag: ctx.codec.flag, zeroOff: 0, write: { fd, path: out, descAt: seq * PAGE_DESC_BYTES, ring },
    };
  };
  const sizeOf = () => readFileSync(out).length;

  const early = runBatch(ctx, batch(1));
  assert.equal(early.deferred, true);
  assert.equal(sizeOf(), 0, "a deferred batch writes nothing");

  const first = runBatch(ctx, batch(0));
  assert.equal(first.start, dataStart);
  const second = runBatch(ctx, batch(1));
  assert.equal(second.start, dataStart + first.bytes);

  // Batch 3 waits on 2, which the owner writes itself and publishes.
  assert.equal(runBatch(ctx, batch(3)).deferred, true);
  const ownerEnd = dataStart + first.bytes + second.bytes + 1000;
  publishEnd(buf, ring, 2, ownerEnd);
  const fourth = runBatch(ctx, batch(3));
  assert.equal(fourth.start, ownerEnd);

  // Each descriptor names its batch's data, which decompresses to its page.
  const file = readFileSync(out);
  for (const [seq, r] of [[0, first], [1, second], [3, fourth]] as const) {
    const d = file.subarray(seq * PAGE_DESC_BYTES, (seq + 1) * PAGE_DESC_BYTES);
    assert.equal(Number(d.readBigInt64LE(0)), r.start);
    assert.equal(d.readUInt32LE(8), r.bytes);
    const page = new Uint8Array(PAGE);
    ctx.codec.decompressInto(file.subarray(r.start!, r.start! + r.bytes), page);
    assert.equal(Buffer.from(page).toString("latin1"), text(seq));
  }
});
