// One batch of a kdump-compressed dump, as a compression thread (or, for
// small dumps, the main thread) runs it: read the pages from the input
// file, find the zero pages, compress the rest, lay out their page
// descriptors and, when the output is a seekable file, write both.
//
// Everything a batch touches lives in shared Wasm memory, so nothing is
// copied or allocated per batch, and the thread that owns the dump only
// hands out pfn runs: on two cores it would otherwise spend as much time
// in read() and write() as the compressors spend compressing.
import { writeSync } from "node:fs";
import { preadExact } from "../core/file.js";
import { ioError } from "../core/errors.js";
import type { PageCodec } from "../codecs/codec.js";

export const PAGE_ZERO = 2;
export const PAGE_COMPRESSED = 1;
export const PAGE_RAW = 0;
export const PAGE_DESC_BYTES = 24;

/**
 * `count` pages at `ptr`; one byte per page at `kindPtr` (the page's kind
 * on output); one u32 per page at `sizePtr` (bytes stored); the stored
 * bytes of all non-zero pages, in order, at `outPtr`; the batch's page
 * descriptors at `descPtr`.
 */
export interface BatchRequest {
  seq: number;
  ptr: number;
  count: number;
  kindPtr: number;
  sizePtr: number;
  outPtr: number;
  descPtr: number;
  /**
   * Where the page data comes from, as (fd, file offset, length) triples
   * filling the batch from `ptr` on; a file offset of -1 is zeros. Absent
   * when the owner read the pages into place itself.
   */
  reads?: number[];
  /** The input's name, for read errors. */
  readPath?: string;
  /** Mark zero pages (PAGE_ZERO, stored once for all); otherwise every page is stored. */
  zeroTest: boolean;
  /** page_desc.flags of a compressed page. */
  flag: number;
  /** File offset of the shared zero page. */
  zeroOff: number;
  /** With `write`: the batch writes itself (see BatchWrite). */
  write?: BatchWrite;
}

/**
 * A batch writes its data right after its predecessor's: once batch seq-1
 * has published where its data ends (in a ring of slots in shared
 * memory), the batch publishes its own end, then writes. Only that one
 * offset is serialised; the writes themselves run in parallel. A batch
 * whose predecessor has not published yet does not wait for it: it comes
 * back `deferred`, and the owner, which takes results in order, writes it
 * (a thread that waited lost a quarter of its time so, on two cores).
 */
export interface BatchWrite {
  fd: number;
  /** For error messages. */
  path: string;
  /** File offset of the batch's first page descriptor. */
  descAt: number;
  ring: RingLayout;
}

export interface RingLayout {
  /** Int32 per slot: seq+1 of the batch whose end is published there (negative: it failed). */
  tagsPtr: number;
  /** Float64 per slot: the file offset where that batch's data ends. */
  endsPtr: number;
  /** Int32: non-zero once the dump is abandoned. */
  abortPtr: number;
  slots: number;
}

export interface BatchResult {
  seq: number;
  /** Bytes stored at outPtr (written, with `write`). */
  bytes: number;
  zeroPages: number;
  /** With `write`: where the batch's data started. */
  start?: number;
  /** With `write`: the predecessor's end was not known yet, so nothing was written (see BatchWrite). */
  deferred?: boolean;
}

/** The dump was abandoned (another batch failed): this one stops quietly. */
export class BatchAbandoned extends Error {}

export interface BatchContext {
  memory: WebAssembly.Memory;
  codec: PageCodec;
}

export function runBatch(ctx: BatchContext, req: BatchRequest, pageSize = 4096): BatchResult {
  const buf = ctx.memory.buffer;
  const w = req.write;
  const ring = w ? ringViews(buf, w.ring) : undefined;
  let published = false;
  try {
    if (req.reads) readPages(buf, req.ptr, req.reads, req.readPath ?? "the input");
    const zeroPages = markZeroPages(buf, req, pageSize);
    const bytes = compressPages(buf, req, ctx.codec, pageSize);
    if (!w || !ring) return { seq: req.seq, bytes, zeroPages };
    const start = predecessorEnd(ring, w.ring.slots, req.seq);
    if (start === undefined) return { seq: req.seq, bytes, zeroPages, deferred: true };
    publish(ring, w.ring.slots, req.seq, start + bytes);
    published = true;
    fillDescs(buf, req, start, pageSize);
    writeAll(w.fd, new Uint8Array(buf, req.outPtr, bytes), start, w.path);
    writeAll(w.fd, new Uint8Array(buf, req.descPtr, req.count * PAGE_DESC_BYTES), w.descAt, w.path);
    return { seq: req.seq, bytes, zeroPages, start };
  } catch (e) {
    // Successors wait on this batch's end: tell them it will not come.
    if (ring && w) {
      if (!published) publish(ring, w.ring.slots, req.seq, -1);
      Atomics.store(ring.abort, 0, 1);
    }
    throw e;
  }
}

let zeroPage = new Uint8Array(0);

/**
 * Mark the batch's zero pages (when the level excludes them) and count
 * them. A compare against a zero page is a native memcmp, which runs at
 * memory speed like the Wasm scan, and needs no Wasm instance here:
 * instantiating one in a worker would reset the classifier's counters
 * that the owner is using meanwhile.
 */
function markZeroPages(buf: ArrayBufferLike, req: BatchRequest, pageSize: number): number {
  const kinds = new Uint8Array(buf, req.kindPtr, req.count);
  kinds.fill(0);
  if (zeroPage.length !== pageSize) zeroPage = new Uint8Array(pageSize);
  // Zero pages are found at every level: where they are kept (-d 0), they
  // are stored as the codec's one encoding of a zero page, made once.
  const mark = req.zeroTest ? 1 : ZERO_KEPT;
  let n = 0;
  for (let i = 0; i < req.count; i++) {
    if (Buffer.compare(new Uint8Array(buf, req.ptr + i * pageSize, pageSize), zeroPage) === 0) {
      kinds[i] = mark;
      n++;
    }
  }
  return req.zeroTest ? n : 0;
}

const ZERO_KEPT = 3;
const zeroFrames = new WeakMap<PageCodec, Uint8Array>();

function zeroFrame(codec: PageCodec, pageSize: number): Uint8Array {
  let f = zeroFrames.get(codec);
  if (!f) {
    const dst = new Uint8Array(pageSize);
    const n = codec.compressInto(new Uint8Array(pageSize), dst);
    f = dst.slice(0, n);
    zeroFrames.set(codec, f);
  }
  return f;
}

/** Compress every page not marked zero into outPtr; the bytes stored. */
function compressPages(buf: ArrayBufferLike, req: BatchRequest, codec: PageCodec, pageSize: number): number {
  const kinds = new Uint8Array(buf, req.kindPtr, req.count);
  const sizes = new Uint32Array(buf, req.sizePtr, req.count);
  const out = new Uint8Array(buf, req.outPtr, req.count * pageSize);
  let at = 0;
  for (let i = 0; i < req.count; i++) {
    if (kinds[i] === 1) {
      kinds[i] = PAGE_ZERO;
      sizes[i] = 0;
      continue;
    }
    const page = new Uint8Array(buf, req.ptr + i * pageSize, pageSize);
    let n: number;
    if (kinds[i] === ZERO_KEPT) {
      const f = zeroFrame(codec, pageSize);
      out.set(f, at);
      n = f.length;
    } else {
      n = codec.compressInto(page, out.subarray(at, at + pageSize));
    }
    kinds[i] = n ? PAGE_COMPRESSED : PAGE_RAW;
    if (!n) {
      out.set(page, at);
      n = pageSize;
    }
    sizes[i] = n;
    at += n;
  }
  return at;
}

/** The batch's page descriptors at descPtr, its data starting at file offset `start`. */
export function fillDescs(buf: ArrayBufferLike, req: BatchRequest, start: number, pageSize = 4096): void {
  const kinds = new Uint8Array(buf, req.kindPtr, req.count);
  const sizes = new Uint32Array(buf, req.sizePtr, req.count);
  const d = new DataView(buf, req.descPtr, req.count * PAGE_DESC_BYTES);
  let off = start;
  for (let i = 0; i < req.count; i++) {
    const at = i * PAGE_DESC_BYTES;
    const zero = kinds[i] === PAGE_ZERO;
    const where = zero ? req.zeroOff : off;
    // offset (s64), size (u32), flags (u32), page_flags (u64): offsets
    // stay below 2^53, so two u32 halves hold them without a BigInt.
    d.setUint32(at, where % 0x100000000, true);
    d.setUint32(at + 4, Math.floor(where / 0x100000000), true);
    d.setUint32(at + 8, zero ? pageSize : sizes[i], true);
    d.setUint32(at + 12, kinds[i] === PAGE_COMPRESSED ? req.flag : 0, true);
    d.setUint32(at + 16, 0, true);
    d.setUint32(at + 20, 0, true);
    if (!zero) off += sizes[i];
  }
}

function readPages(buf: ArrayBufferLike, ptr: number, reads: number[], path: string): void {
  let at = ptr;
  for (let i = 0; i < reads.length; i += 3) {
    const len = reads[i + 2];
    if (reads[i + 1] < 0) new Uint8Array(buf, at, len).fill(0);
    else preadExact(reads[i], new Uint8Array(buf, at, len), 0, len, reads[i + 1], path);
    at += len;
  }
}

function writeAll(fd: number, data: Uint8Array, pos: number, path: string): void {
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(fd, data, off, data.length - off, pos + off);
    } catch (e) {
      throw ioError(`cannot write ${path}`, e);
    }
  }
}

interface RingViews {
  tags: Int32Array;
  ends: Float64Array;
  abort: Int32Array;
}

function ringViews(buf: ArrayBufferLike, r: RingLayout): RingViews {
  return {
    tags: new Int32Array(buf, r.tagsPtr, r.slots),
    ends: new Float64Array(buf, r.endsPtr, r.slots),
    abort: new Int32Array(buf, r.abortPtr, 1),
  };
}

/** Zeroed ring memory, with batch -1 ending at `dataStart` (where batch 0 begins). */
export function initRing(buf: ArrayBufferLike, r: RingLayout, dataStart: number): void {
  const v = ringViews(buf, r);
  v.tags.fill(0);
  v.abort.fill(0);
  v.ends[r.slots - 1] = dataStart;
}

/** Tell batches blocked on the ring that the dump is over. */
export function abandonRing(buf: ArrayBufferLike, r: RingLayout): void {
  const v = ringViews(buf, r);
  Atomics.store(v.abort, 0, 1);
  for (let i = 0; i < r.slots; i++) Atomics.notify(v.tags, i);
}

/** Where batch seq-1's data ends, or undefined while it has not said. */
function predecessorEnd(v: RingViews, slots: number, seq: number): number | undefined {
  const i = (seq - 1 + slots) % slots;
  // Batch -1's tag is the ring's initial 0.
  const tag = Atomics.load(v.tags, i);
  if (tag === seq) return v.ends[i];
  if (tag === -seq || Atomics.load(v.abort, 0)) throw new BatchAbandoned(`batch ${seq} abandoned`);
  return undefined;
}

/** The owner publishes the end of a deferred batch it writes, for the batches after it. */
export function publishEnd(buf: ArrayBufferLike, r: RingLayout, seq: number, end: number): void {
  publish(ringViews(buf, r), r.slots, seq, end);
}

/** Publish batch `seq`'s end (or, with end < 0, its failure). */
function publish(v: RingViews, slots: number, seq: number, end: number): void {
  const i = seq % slots;
  if (end >= 0) v.ends[i] = end;
  Atomics.store(v.tags, i, end >= 0 ? seq + 1 : -(seq + 1));
  Atomics.notify(v.tags, i);
}
