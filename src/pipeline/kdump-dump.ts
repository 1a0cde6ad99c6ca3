// kdump-compressed dumps: classify (pass 1), then read, find zero pages,
// compress in workers and write in order (pass 2), with bounded memory.
//
// Built for what comes next (Vicover): the pages can be dumped in an
// explicit order, every batch reports its pfn ranges once written (to
// hand that memory back to the host), and writes pass a rate limiter.
import { cpus } from "node:os";
import { GuestcoreError } from "../core/errors.js";
import { Codecs, type CodecName } from "../codecs/codec.js";
import type { GuestImage } from "../image.js";
import type { FilterResult } from "../filter/page-filter.js";
import { presentPfnRanges, type ReadRequest } from "../sources/source.js";
import type { PfnRun } from "../core/bitmap.js";
import { PfnBitmap } from "../core/pfn-bitmap.js";
import { encodeKdumpHeaders, kdumpLayout } from "../writers/kdump-layout.js";
import type { DumpSink } from "../writers/sinks.js";
import { PAGE_DESC_SIZE } from "../format/kdump.js";
import { encodeNote } from "../format/elf64.js";
import { DUMP_LEVEL_BITS, type ExclusionCounts } from "../filter/classes.js";
import { abandonRing, BatchAbandoned, fillDescs, initRing, publishEnd, type BatchRequest, type BatchResult, type RingLayout } from "./compress-batch.js";
import { InlineCompressor, WorkerPool, type Compressor } from "./worker-pool.js";
import { unlimited, type WriteLimiter } from "./rate-limit.js";

const PAGE = 4096;
const BATCH_PAGES = 512;
// Below these sizes compression threads cost more than they save.
const INLINE_BELOW_PAGES = 32768;
const INLINE_BELOW_DUMPABLE = 4096;
// Writeback starts every this many bytes of page data (see AtomicFile.startWriteback).
const WRITEBACK_EVERY = 32 << 20;

export interface KdumpWriteOptions {
  level: number;
  codec: CodecName;
  /** The loaded codecs (default: loaded here). Compression threads load their own. */
  codecs?: Codecs;
  /** Compression threads; 0 compresses inline. Default: the number of cores. */
  workers?: number;
  /** Pfn ranges [start, end) to dump first, in this order; the rest follows in pfn order. */
  order?: [number, number][];
  /** Called once the pages of these pfn runs are written (after fdatasync with `durable`). */
  onWritten?: (runs: PfnRun[]) => void;
  durable?: boolean;
  /**
   * With `durable`, sync and report once this many pages are written
   * (default: every batch). One fdatasync per 2 MiB batch costs more than
   * the write on a big guest; recover batches its releases this way.
   */
  reportEveryPages?: number;
  /**
   * The classification to dump, when the caller has it already (recover
   * classifies before it releases memory): its bitmap 2 (`dumpable`) is
   * written as it is, zero pages included.
   */
  classified?: FilterResult;
  /**
   * Pages known to hold only zeros (at a level that excludes zero pages):
   * written as zero pages without being read.
   */
  knownZero?: PfnBitmap;
  limiter?: WriteLimiter;
  onProgress?: (what: string, done: number, total: number) => void;
}

export interface KdumpWriteResult {
  counts: ExclusionCounts;
  present: number;
  maxPfn: number;
  dumpable: number;
  zeroPages: number;
  bytes: number;
  codecImpl: string;
  workers: number;
}

export async function writeKdump(img: GuestImage, sink: DumpSink, opts: KdumpWriteOptions): Promise<KdumpWriteResult> {
  const level = opts.level;
  // Pass 1: classify without the zero test. Zero pages stay in bitmap 2
  // and are found while writing, as makedumpfile does for this format.
  const t0 = performance.now();
  // Workers boot (~0.1 s each: a V8 isolate and the codec) while pass 1
  // runs; if pass 1 leaves little to compress they are stopped unused.
  const cores = Math.max(1, cpus().length);
  const memPages = img.source.segments.reduce((n, s) => n + (s.end - s.start), 0) / PAGE;
  const wanted = opts.workers ?? (memPages >= INLINE_BELOW_PAGES ? cores : 0);
  const booting = wanted > 0 ? WorkerPool.start(wanted, img.core.memory, opts.codec) : undefined;
  booting?.catch(() => {});
  const r = opts.classified ?? img.pageStats(level & ~DUMP_LEVEL_BITS.zero);
  if (r.level !== level && r.level !== (level & ~DUMP_LEVEL_BITS.zero)) {
    throw new GuestcoreError(`internal: pages classified at level ${r.level}, dumped at ${level}`);
  }
  timing("classify", t0);
  const maxPfn = r.maxPfn;
  const bitmap2 = r.dumpable;
  const bitmap1 = new PfnBitmap(maxPfn);
  for (const [a, b] of presentPfnRanges(img.source, maxPfn)) bitmap1.setRange(a, b);
  const numDumpable = opts.classified ? bitmap2.count() : r.keptCount;

  const codec = (opts.codecs ?? (await Codecs.load())).codec(opts.codec);
  const notes = img.outputNotes();
  const notesLen = notes.reduce((n, x) => n + encodeNote(x).length, 0);
  const layout = kdumpLayout(notesLen, maxPfn, numDumpable);
  const uts = img.vmcoreinfo.symbol("init_uts_ns");
  const utsname = uts !== undefined ? img.readVirt(uts + BigInt(img.vmcoreinfo.offset("uts_namespace.name") ?? 0), 390) : new Uint8Array(390);
  const headers = encodeKdumpHeaders({ layout, utsname, status: codec.flag, maxPfn, dumpLevel: level, physBase: img.kernel.physBase, notes });
  sink.writeAt(headers, 0);
  writeBitmap(sink, bitmap1, layout.bitmapOff, layout.bitmapBytes);
  writeBitmap(sink, bitmap2, layout.bitmapOff + layout.bitmapBytes, layout.bitmapBytes);

  const excludeZero = (level & DUMP_LEVEL_BITS.zero) !== 0;
  const known = excludeZero ? opts.knownZero : undefined;
  let cursor = layout.dataOff;
  const zeroOff = cursor;
  if (excludeZero) {
    sink.writeAt(new Uint8Array(PAGE), zeroOff);
    cursor += PAGE;
  }

  const nWorkers = opts.workers ?? (numDumpable < INLINE_BELOW_DUMPABLE ? 0 : wanted);
  const core = img.core;
  let compressor: Compressor;
  if (nWorkers > 0) {
    compressor = await booting!;
    timing("workers ready", t0);
  } else {
    void booting?.then((p) => p.close());
    compressor = new InlineCompressor(core.memory, codec);
  }
  const inflightMax = Math.max(2, nWorkers * 3);
  const mark = core.mark();
  const slots = Array.from({ length: inflightMax }, () => ({
    ptr: core.alloc(BATCH_PAGES * PAGE), kinds: core.alloc(BATCH_PAGES), sizes: core.alloc(BATCH_PAGES * 4),
    out: core.alloc(BATCH_PAGES * PAGE), descs: core.alloc(BATCH_PAGES * PAGE_DESC_SIZE),
  }));
  const ringSlots = inflightMax + 1;
  const ring: RingLayout = { tagsPtr: core.alloc(ringSlots * 4), endsPtr: core.alloc(ringSlots * 8), abortPtr: core.alloc(4), slots: ringSlots };
  initRing(core.memory.buffer, ring, cursor);
  // Batches write themselves into a seekable output; a stream (flattened)
  // must be written in order by one thread, and a rate limit is asked
  // before every write, so both keep the writes here.
  const selfWrite = sink.positionalFd !== undefined && !opts.limiter;
  const free = [...slots.keys()];
  const limiter = opts.limiter ?? unlimited;
  const src = img.source;
  // A descriptor's index is its pfn's rank in bitmap 2.
  const inflight = new Map<number, { slot: number; runs: PfnRun[]; req: BatchRequest; first: number; promise: Promise<BatchResult> }>();
  let seq = 0;
  let nextWrite = 0;
  let written = 0;
  let zeroPages = 0;
  let pending: PfnRun[] = [];
  let pendingPages = 0;
  const every = opts.reportEveryPages ?? 1;
  const report = () => {
    if (!opts.onWritten || pending.length === 0) return;
    if (opts.durable) sink.sync();
    const runs = pending;
    pending = [];
    pendingPages = 0;
    opts.onWritten(runs);
  };

  const drainOne = async () => {
    const b = inflight.get(nextWrite)!;
    inflight.delete(nextWrite);
    nextWrite++;
    const res = await b.promise;
    zeroPages += res.zeroPages;
    if (res.start !== undefined) {
      cursor = Math.max(cursor, res.start + res.bytes);
    } else {
      // A deferred batch's predecessor is written now: it goes right after
      // it, and says so at once, so that its successors write themselves.
      if (res.deferred) publishEnd(core.memory.buffer, ring, b.req.seq, cursor + res.bytes);
      const s = slots[b.slot];
      fillDescs(core.memory.buffer, b.req, cursor);
      const descBytes = core.bytes(s.descs, b.req.count * PAGE_DESC_SIZE);
      await limiter.acquire(res.bytes + descBytes.length);
      sink.writeAt(core.bytes(s.out, res.bytes), cursor);
      sink.writeAt(descBytes, layout.descOff + b.first * PAGE_DESC_SIZE);
      cursor += res.bytes;
    }
    if (cursor - kicked >= WRITEBACK_EVERY) {
      sink.startWriteback?.(kicked, cursor - kicked);
      kicked = cursor;
    }
    free.push(b.slot);
    written += b.req.count;
    if (opts.onWritten) {
      pending.push(...b.runs);
      pendingPages += b.req.count;
      if (!opts.durable || pendingPages >= every) report();
    }
    opts.onProgress?.("writing", written, numDumpable);
  };

  const ext: number[] = [];
  let kicked = layout.dataOff;
  try {
    for (const batch of batches(bitmap2, maxPfn, opts.order ?? [])) {
      while (free.length === 0) await drainOne();
      const slot = free.pop()!;
      const s = slots[slot];
      const count = batch.reduce((n, x) => n + x.count, 0);
      // Where the pages come from: file extents a thread reads itself, or
      // reads made here for sources that decode or map their memory.
      const reads: number[] | undefined = src.fileExtents ? [] : undefined;
      const local: ReadRequest[] = [];
      // Pieces come in slot order: `at` is the slot page where this one goes.
      const piece = (pfn: number, n: number, zero: boolean, at: number) => {
        const dst = s.ptr + at * PAGE;
        if (reads) {
          if (zero) reads.push(-1, -1, n * PAGE);
          else {
            ext.length = 0;
            src.fileExtents!(pfn * PAGE, n * PAGE, ext);
            for (const x of ext) reads.push(x);
          }
        } else if (zero) core.bytes(dst, n * PAGE).fill(0);
        else local.push({ paddr: pfn * PAGE, dst: core.bytes(dst, n * PAGE) });
      };
      let at = 0;
      for (const run of batch) {
        // Pages known to be zero are not read: recover may have released them already.
        if (known) for (const p of known.pieces(run.pfn, run.pfn + run.count)) piece(p.pfn, p.count, p.set, at + p.pfn - run.pfn);
        else piece(run.pfn, run.count, false, at);
        at += run.count;
      }
      if (local.length) src.readBatch(local);
      const first = bitmap2.rank(batch[0].pfn);
      const req: BatchRequest = {
        seq, ptr: s.ptr, count, kindPtr: s.kinds, sizePtr: s.sizes, outPtr: s.out, descPtr: s.descs,
        reads, readPath: src.path, zeroTest: excludeZero, flag: codec.flag, zeroOff,
        write: selfWrite ? { fd: sink.positionalFd!, path: sink.name, descAt: layout.descOff + first * PAGE_DESC_SIZE, ring } : undefined,
      };
      const promise = compressor.compress(req);
      // Failures are taken in seq order below; until then they are held, not unhandled.
      promise.catch(() => {});
      inflight.set(seq, { slot, runs: batch, req, first, promise });
      seq++;
    }
    while (inflight.size) await drainOne();
    report();
  } catch (e) {
    // Batches still in flight are abandoned with the dump; those blocked
    // on the ring are woken to see it.
    abandonRing(core.memory.buffer, ring);
    // A batch that gave up because a later one failed names no cause: the
    // error worth reporting is that later batch's.
    if (e instanceof BatchAbandoned) {
      for (const b of inflight.values()) {
        const cause = await b.promise.then(() => undefined, (x: unknown) => x);
        if (cause && !(cause instanceof BatchAbandoned)) throw cause;
      }
    }
    throw e;
  } finally {
    await compressor.close();
    core.release(mark);
  }
  timing("write", t0);
  if (written !== numDumpable) throw new GuestcoreError(`internal: wrote ${written} of ${numDumpable} pages`);
  return {
    counts: { ...r.counts, zero: zeroPages * (excludeZero ? 1 : 0) },
    present: r.present, maxPfn, dumpable: numDumpable, zeroPages, bytes: cursor, codecImpl: compressor.impl, workers: nWorkers,
  };
}

/** Batches of up to BATCH_PAGES dumpable pages whose descriptors are contiguous. */
function* batches(bitmap2: PfnBitmap, maxPfn: number, order: [number, number][]): Generator<PfnRun[]> {
  const ranges = orderedRanges(order, maxPfn);
  for (const [a, b] of ranges) {
    let batch: PfnRun[] = [];
    let n = 0;
    for (const run of bitmap2.runs(a, Math.min(b, maxPfn))) {
      let pfn = run.pfn;
      let left = run.count;
      while (left > 0) {
        const take = Math.min(left, BATCH_PAGES - n);
        batch.push({ pfn, count: take });
        n += take;
        pfn += take;
        left -= take;
        if (n === BATCH_PAGES) {
          yield batch;
          batch = [];
          n = 0;
        }
      }
    }
    if (n) yield batch;
  }
}

/** The requested ranges first, then what they leave, in pfn order. */
export function orderedRanges(order: [number, number][], maxPfn: number): [number, number][] {
  const first = order.map(([a, b]) => [Math.max(0, a), Math.min(b, maxPfn)] as [number, number]).filter(([a, b]) => b > a);
  const sorted = [...first].sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i][0] < sorted[i - 1][1]) throw new GuestcoreError(`dump order ranges overlap at pfn ${sorted[i][0]}`);
  }
  const rest: [number, number][] = [];
  let at = 0;
  for (const [a, b] of sorted) {
    if (a > at) rest.push([at, a]);
    at = b;
  }
  if (at < maxPfn) rest.push([at, maxPfn]);
  return [...first, ...rest];
}

function timing(what: string, t0: number): void {
  if (process.env.GUESTCORE_TIMING) {
    process.stderr.write(`timing: ${what} at ${((performance.now() - t0) / 1000).toFixed(3)} s (${(performance.now() / 1000).toFixed(3)} s since the process started)\n`);
  }
}

const BITMAP_PIECE = 1 << 20;

/** A bitmap into its `bytes` (whole blocks) at `off`, a MiB at a time: holes are written as zeros. */
function writeBitmap(sink: DumpSink, bm: PfnBitmap, off: number, bytes: number): void {
  const buf = Buffer.alloc(Math.min(BITMAP_PIECE, bytes));
  for (let o = 0; o < bytes; o += buf.length) {
    const piece = buf.subarray(0, Math.min(buf.length, bytes - o));
    sink.writeAt(bm.readBytes(o, piece), off + o);
  }
}
