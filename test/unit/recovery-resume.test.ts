// Resuming after a recover died half-way. The partial dump is made by the
// real kdump writer on a synthetic guest, killed between a batch's data
// and its descriptors, while the pages it reported written are punched
// out of the guest's tmpfs memory file (as recover does). Reading the
// memory through LayeredSource must give back the guest's original bytes
// everywhere: released pages from the partial, the rest from the file,
// consecutive file pages as one request. Partials too short for their
// headers are ignored with a warning.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { buildSynthetic } from "../../fixtures/synthetic.js";
import { GuestImage } from "../../src/image.js";
import { writeKdump } from "../../src/pipeline/kdump-dump.js";
import type { DumpSink } from "../../src/writers/sinks.js";
import { parseDiskDumpHeader, PAGE_DESC_SIZE } from "../../src/format/kdump.js";
import { openKdump, type KdumpSource } from "../../src/sources/kdump.js";
import { openRaw } from "../../src/sources/raw.js";
import { findSegment, type MemorySource, type ReadRequest } from "../../src/sources/source.js";
import { LayeredSource, openPartials, removeFiles } from "../../src/recovery/resume.js";
import { FileReleaser, allocatedBytes } from "../../src/recovery/hole-punch.js";
import { ReleaseLedger } from "../../src/recovery/release.js";
import { DUMP_LEVEL_BITS } from "../../src/filter/classes.js";
import { buildKdump } from "../helpers/kdump-build.js";
import type { PfnRun } from "../../src/core/bitmap.js";

const PAGE = 4096;
const dir = mkdtempSync("/dev/shm/guestcore-resume-");
after(() => rmSync(dir, { recursive: true, force: true }));

/** A file sink that dies on its Nth write, as a SIGKILLed recover leaves its partial. */
class KilledSink implements DumpSink {
  readonly name: string;
  writes = 0;
  private readonly fd: number;
  constructor(readonly path: string, private readonly dieAt: number) {
    this.name = path;
    this.fd = openSync(path, "w");
  }
  writeAt(data: Uint8Array, pos: number): void {
    if (++this.writes === this.dieAt) throw new Error("killed");
    for (let d = 0; d < data.length;) d += writeSync(this.fd, data, d, data.length - d, pos + d);
  }
  sync(): void {
    fdatasyncSync(this.fd);
  }
  commit(): void {}
  abort(): void {}
  close(): void {
    closeSync(this.fd);
  }
}

/** A memory source that records what it is asked. */
class Recorded implements MemorySource {
  readonly calls: { paddr: number; length: number }[][] = [];
  constructor(private readonly inner: MemorySource) {}
  get format() { return this.inner.format; }
  get path() { return this.inner.path; }
  get segments() { return this.inner.segments; }
  get notes() { return this.inner.notes; }
  readBatch(reqs: readonly ReadRequest[]): void {
    this.calls.push(reqs.map((r) => ({ paddr: r.paddr, length: r.dst.length })));
    this.inner.readBatch(reqs);
  }
  close(): void {
    this.inner.close();
  }
}

const s = buildSynthetic({ memMiB: 32 });
const memPath = join(dir, "guest.mem");
writeFileSync(memPath, s.image);
const partialPath = join(dir, "dump.partial");
const reported: PfnRun[] = [];
const BATCHES_DONE = 3;
let dumpable = 0;

// The run recover makes: classify, then dump; each durable report is punched out of the memory file.
// Pfns 2048..3072 go first (an explicit dump order), then the rest in pfn
// order, so the partial holds two separate stretches: 2048..3072 and 0..512.
const made = (async () => {
  const img = GuestImage.open(memPath);
  const releaser = new FileReleaser(memPath, [{ start: 0, end: s.image.length, vaddr: 0n, fileOffset: 0 }]);
  // headers, bitmap 1, bitmap 2, the shared zero page, then data + descriptors per batch:
  // die on the data write of batch 4, so three batches are whole.
  const sink = new KilledSink(partialPath, 4 + 2 * BATCHES_DONE + 1);
  try {
    const r = img.pageStats(31 & ~DUMP_LEVEL_BITS.zero);
    dumpable = r.keptCount;
    const ledger = new ReleaseLedger(releaser, r.maxPfn);
    await assert.rejects(writeKdump(img, sink, {
      level: 31, codec: "zstd", workers: 0, durable: true, reportEveryPages: 1, order: [[2048, 3072]],
      onWritten: (runs) => { reported.push(...runs); ledger.release(runs); },
    }), /killed/);
  } finally {
    sink.close();
    releaser.close();
    img.close();
  }
})();

const reportedPages = () => reported.reduce((n, r) => n + r.count, 0);
const page = (pfn: number) => s.image.subarray(pfn * PAGE, (pfn + 1) * PAGE);
const isZero = (b: Uint8Array) => b.every((x) => x === 0);

test("the killed run: three batches reported, punched out of the memory file, and held by the partial", async () => {
  await made;
  assert.ok(dumpable > (BATCHES_DONE + 2) * 512, `the guest has more than ${BATCHES_DONE + 2} batches to dump (${dumpable})`);
  assert.equal(reportedPages(), BATCHES_DONE * 512);
  assert.equal(allocatedBytes(memPath), s.image.length - reportedPages() * PAGE, "the kernel freed exactly the reported pages");
  const raw = openRaw(memPath);
  try {
    let nonZero = 0;
    const got = new Uint8Array(PAGE);
    for (const r of reported) {
      for (let p = r.pfn; p < r.pfn + r.count; p++) {
        raw.readBatch([{ paddr: p * PAGE, dst: got }]);
        assert.ok(isZero(got), `pfn ${p} reads as zeros in the memory file`);
        if (!isZero(page(p))) nonZero++;
      }
    }
    assert.ok(nonZero > 100, `released pages held data (${nonZero}), so reading them from the file would be wrong`);
  } finally {
    raw.close();
  }
  const k = openKdump(partialPath, { partial: true });
  try {
    assert.equal(k.dumpedPages, dumpable);
    const held = k.segments.reduce((n, g) => n + (g.end - g.start) / PAGE, 0);
    assert.equal(held, reportedPages(), "the partial holds exactly the pages reported written");
    assert.equal(k.lostPages, dumpable - reportedPages());
    for (const r of reported) assert.ok(findSegment(k.segments, r.pfn * PAGE) >= 0 && findSegment(k.segments, (r.pfn + r.count) * PAGE - 1) >= 0);
    assert.deepEqual(k.segments.map((g) => [g.start / PAGE, g.end / PAGE]), [[0, 512], [2048, 3072]]);
  } finally {
    k.close();
  }
});

test("LayeredSource over the punched file and the partial reads the guest's original bytes everywhere", async () => {
  await made;
  const warnings: string[] = [];
  const layers = openPartials([partialPath, join(dir, "never-written.partial")], (m) => warnings.push(m));
  assert.equal(layers.length, 1);
  assert.deepEqual(warnings, [], "a partial that does not exist is no news");
  const base = new Recorded(openRaw(memPath));
  const src = new LayeredSource(base, layers);
  try {
    assert.equal(src.heldPages, reportedPages());
    assert.equal(src.path, memPath);
    assert.deepEqual(src.segments, base.segments);
    // 96 KiB requests (not a multiple of any batch) and one that starts mid-page.
    const chunk = 24 * PAGE;
    const buf = new Uint8Array(chunk);
    for (let a = 0; a < s.image.length; a += chunk) {
      const n = Math.min(chunk, s.image.length - a);
      src.readBatch([{ paddr: a, dst: buf.subarray(0, n) }]);
      assert.equal(Buffer.compare(buf.subarray(0, n), s.image.subarray(a, a + n)), 0, `bytes at ${a}`);
    }
    // Across the edge where memory-file pages end and held ones begin.
    const first = layers[0].segments[1].start;
    const odd = new Uint8Array(3 * PAGE);
    src.readBatch([{ paddr: first - 100, dst: odd }]);
    assert.equal(Buffer.compare(odd, s.image.subarray(first - 100, first - 100 + odd.length)), 0);
  } finally {
    src.close();
  }
});

test("LayeredSource sends consecutive memory-file pages as one request, split only around the pages a partial holds", async () => {
  await made;
  const layers = openPartials([partialPath], () => {});
  const base = new Recorded(openRaw(memPath));
  const src = new LayeredSource(base, layers);
  try {
    // The top 64 pages of memory: beyond anything the killed run wrote.
    const top = s.image.length - 64 * PAGE;
    assert.ok(layers[0].segments.length > 0 && layers[0].segments.every((g) => g.end <= top), "the partial holds pages, all below the top 64");
    const dst = new Uint8Array(64 * PAGE);
    src.readBatch([{ paddr: top, dst }]);
    assert.deepEqual(base.calls, [[{ paddr: top, length: 64 * PAGE }]]);
    assert.equal(Buffer.compare(dst, s.image.subarray(top)), 0);
    // Across both held stretches: the base gets the pages between and after them, one request each.
    const [h1, h2] = layers[0].segments;
    const from = h1.end - 8 * PAGE;
    const to = h2.end + 8 * PAGE;
    base.calls.length = 0;
    const d2 = new Uint8Array(to - from);
    src.readBatch([{ paddr: from, dst: d2 }]);
    assert.deepEqual(base.calls, [[{ paddr: h1.end, length: h2.start - h1.end }, { paddr: h2.end, length: to - h2.end }]]);
    assert.equal(Buffer.compare(d2, s.image.subarray(from, to)), 0);
    // Entirely inside a held stretch: the base is not asked at all.
    base.calls.length = 0;
    src.readBatch([{ paddr: h2.start + PAGE, dst: new Uint8Array(16 * PAGE) }]);
    assert.deepEqual(base.calls, []);
    // Two requests into separate buffers are not merged, even when their addresses touch.
    base.calls.length = 0;
    src.readBatch([{ paddr: top, dst: new Uint8Array(PAGE) }, { paddr: top + PAGE, dst: new Uint8Array(PAGE) }]);
    assert.deepEqual(base.calls, [[{ paddr: top, length: PAGE }, { paddr: top + PAGE, length: PAGE }]]);
  } finally {
    src.close();
  }
});

test("a partial cut inside its descriptor table holds no page: everything comes from the memory file", async () => {
  await made;
  const bytes = readFileSync(partialPath);
  const h = parseDiskDumpHeader(bytes.subarray(0, 464));
  const descOff = (1 + h.subHdrSize + h.bitmapBlocks) * h.blockSize;
  const cut = join(dir, "cut-in-descs.partial");
  writeFileSync(cut, bytes.subarray(0, descOff + 100 * PAGE_DESC_SIZE));
  const layers = openPartials([cut], () => {});
  assert.equal(layers.length, 1);
  assert.equal(layers[0].segments.length, 0, "descriptors without their data hold nothing");
  assert.equal(layers[0].lostPages, dumpable);
  const base = new Recorded(openRaw(memPath));
  const src = new LayeredSource(base, layers);
  try {
    assert.equal(src.heldPages, 0);
    const p = 2048;
    const got = new Uint8Array(PAGE);
    src.readBatch([{ paddr: p * PAGE, dst: got }]);
    assert.ok(isZero(got), "a released page not in any readable partial reads as the file has it: zeros");
    assert.deepEqual(base.calls, [[{ paddr: p * PAGE, length: PAGE }]]);
  } finally {
    src.close();
  }
});

test("openPartials ignores, with a warning each, partials too short for their headers or not kdump at all", async () => {
  await made;
  const bytes = readFileSync(partialPath);
  const tiny = join(dir, "tiny.partial");
  writeFileSync(tiny, bytes.subarray(0, 300));
  const inBitmaps = join(dir, "in-bitmaps.partial");
  writeFileSync(inBitmaps, bytes.subarray(0, 3 * PAGE));
  const garbage = join(dir, "garbage.partial");
  writeFileSync(garbage, Buffer.alloc(64 << 10, 0x5a));
  const empty = join(dir, "empty.partial");
  writeFileSync(empty, "");
  const warnings: string[] = [];
  const layers = openPartials([tiny, inBitmaps, garbage, empty, partialPath], (m) => warnings.push(m));
  try {
    assert.equal(layers.length, 1);
    assert.equal(layers[0].path, partialPath);
    assert.equal(warnings.length, 4);
    assert.match(warnings[0], /^ignoring .*tiny\.partial: .*truncated kdump file: 300 bytes/);
    assert.match(warnings[1], /^ignoring .*in-bitmaps\.partial: .*truncated kdump file/);
    assert.match(warnings[2], /^ignoring .*garbage\.partial: .*not a kdump-compressed file/);
    assert.match(warnings[3], /^ignoring .*empty\.partial: /);
    for (const w of warnings) assert.ok(!w.includes("\n"), w);
  } finally {
    for (const l of layers) l.close();
  }
  removeFiles([tiny, inBitmaps, garbage, empty, join(dir, "gone-already")]);
  assert.equal(openPartials([tiny, inBitmaps, garbage, empty], () => assert.fail("nothing left to warn about")).length, 0);
});

test("several partials: the newest that holds a page is read", () => {
  // Content that tells where a page came from: 'A' older partial, 'B' newer, 'C' memory file.
  const pages = 32;
  const fill = (c: number) => new Uint8Array(PAGE).fill(c);
  const mk = (name: string, pfns: number[], c: number) => {
    const p = join(dir, name);
    writeFileSync(p, buildKdump({ maxMapnr: pages, pages: new Map(pfns.map((x) => [x, fill(c)])), codec: "zlib" }).bytes);
    return p;
  };
  const a = mk("a.partial", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 0x41);
  const b = mk("b.partial", [5, 6, 7, 8, 9, 10, 11, 12, 13, 14], 0x42);
  const mem = join(dir, "c.mem");
  writeFileSync(mem, Buffer.alloc(pages * PAGE, 0x43));
  const layers: KdumpSource[] = openPartials([a, b], () => {});
  const src = new LayeredSource(openRaw(mem), layers);
  try {
    assert.equal(src.heldPages, 20, "pages held, counted per partial");
    const all = new Uint8Array(pages * PAGE);
    src.readBatch([{ paddr: 0, dst: all }]);
    const from = Array.from({ length: pages }, (_, p) => String.fromCharCode(all[p * PAGE]));
    assert.equal(from.join(""), "AAAAABBBBBBBBBBCCCCCCCCCCCCCCCCC");
    for (let p = 0; p < pages; p++) assert.ok(all.subarray(p * PAGE, (p + 1) * PAGE).every((x) => x === all[p * PAGE]), `pfn ${p} whole`);
  } finally {
    src.close();
  }
});
