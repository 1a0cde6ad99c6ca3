// Crash to recovery in parallel (Vicover, VEE 2010): classify the crashed
// guest's memory from its metadata, hand back at once what the dump will
// not keep, start the replacement VM as soon as the host has room, and
// stream the kept pages into the dump, releasing each range once it is
// durable there.
//
// Safety comes first, in three rules:
//  - a page is released only when no later read needs it: excluded pages
//    (never read again), zero pages (a punched page reads as zeros, which
//    is what they hold), and kept pages once fdatasync made them durable
//    in the partial dump;
//  - the partial dump and a journal beside it survive any death of this
//    process; a rerun reads released pages back from the partial, so the
//    final name only ever holds a complete dump;
//  - the replacement runs detached from us: our death never takes it down.
import { existsSync, statSync } from "node:fs";
import { setPriority } from "node:os";
import { basename, dirname } from "node:path";
import { GuestcoreError } from "../core/errors.js";
import { GuestImage } from "../image.js";
import type { FilterResult } from "../filter/page-filter.js";
import { Codecs, type CodecName } from "../codecs/codec.js";
import { kernelImage } from "../introspect/kernel-image.js";
import { writeKdump } from "../pipeline/kdump-dump.js";
import { zeroPages } from "../pipeline/dump.js";
import type { WriteLimiter } from "../pipeline/rate-limit.js";
import { presentPfnRanges, type MemorySource } from "../sources/source.js";
import type { XenLibPaths } from "../sources/xen-ffi.js";
import { writeElfDump } from "../writers/elf-writer.js";
import type { PfnRun } from "../core/bitmap.js";
import { FileSink } from "../writers/sinks.js";
import { listTemporaries, processAlive } from "../writers/temporaries.js";
import { attachCrashedGuest, type CrashedGuest } from "./crashed-guest.js";
import { journalPath, readJournal, removeJournal, writeJournal, type RecoverJournal } from "./journal.js";
import { ReleaseLedger } from "./release.js";
import { waitReady, type ProbeSpec } from "./readiness.js";
import { Replacement, type ReplacementSpec } from "./replacement.js";
import { NoLimit, type RatePolicy } from "./rate-policy.js";
import { LayeredSource, openPartials, removeFiles } from "./resume.js";
import { Timeline, type Phase } from "./timeline.js";
import { hostRoom } from "./room.js";

const PAGE = 4096;

export interface RecoverOptions {
  /** The crashed QEMU's QMP socket (pvpanic-paused, RAM in a shared memory-backend-file). */
  qmp?: string;
  /** Or its memory file alone (QEMU already gone), with the layout if it is not 1:1. */
  memPath?: string;
  layout?: string;
  /** Or a paused (crashed, on_crash=preserve) Xen HVM domain, read and released from dom0. */
  xen?: number;
  xenLibs?: XenLibPaths;
  output: string;
  level: number;
  elf?: boolean;
  codec?: CodecName;
  /** The loaded codecs (default: loaded here). */
  codecs?: Codecs;
  workers?: number;
  vmcoreinfo?: string;
  replacement?: Omit<ReplacementSpec, "logPath"> & { logPath?: string };
  ready?: ProbeSpec;
  /** Longest wait for readiness after the dump is complete (default 600 s). */
  readyTimeoutMs?: number;
  /** Start the replacement once the host has this many bytes available (default: once the excluded memory is released). */
  startWhenRoom?: number;
  rate?: RatePolicy;
  /**
   * When the crashed QEMU quits: "early", once its memory and layout are
   * known (its disk images are free for the replacement, and its own
   * memory goes back to the host), "end" after the dump, or "never".
   */
  quitCrashed?: "early" | "end" | "never";
  /** Remove the memory file at the end (default: keep it, fully released). */
  removeBacking?: boolean;
  /** When the guest panicked (epoch ms), e.g. from a supervisor's GUEST_PANICKED event. */
  panickedAt?: number;
  /** Sync and release every this many dumped pages (default 8192: 32 MiB of guest memory). */
  releaseEveryPages?: number;
  /**
   * Nice value of the dump once the replacement runs (default 19; 0 leaves
   * it). It is set on the calling thread, which a library caller shares.
   */
  dumpNice?: number;
  /**
   * Runs once the pages are classified, before anything is released: the
   * pages it returns (bit per pfn) are never released by recover; their new
   * owner (the warm cache) gives them back. It must not read released pages.
   */
  beforeRelease?: (ctx: BeforeReleaseContext) => Promise<{ withhold?: Uint8Array; data?: Record<string, unknown> } | undefined>;
  /** How often memory and write rate are sampled (default 200 ms). */
  sampleMs?: number;
  timeline?: Timeline;
  onPhase?: (phase: Phase, t: number, data?: Record<string, unknown>) => void;
  onNote?: (note: string) => void;
  onProgress?: (what: string, done: number, total: number) => void;
}

export interface BeforeReleaseContext {
  img: GuestImage;
  classified: FilterResult;
  /** The crashed guest's memory file and how it maps to physical memory. */
  memPath: string;
  layout: string;
  /** Is the file gone with QEMU (memfd)? Then whoever keeps pages must open it while QEMU lives. */
  volatileBacking: boolean;
  note: (n: string, data?: Record<string, unknown>) => void;
}

export interface RecoverReport {
  output: string;
  format: "kdump" | "elf";
  level: number;
  resumed: boolean;
  memPath: string;
  layout: string;
  kernelRelease?: string;
  /** Pages present, in bitmap 2, kept with data, and released before the dump began. */
  pages: { present: number; dumpable: number; kept: number; releasedAtOnce: number };
  heldBytes: { atAttach: number; afterPrerelease: number; atReplacementStart?: number; atEnd: number };
  dumpBytes: number;
  /** `adopted`: started by an earlier, killed run of this recovery. */
  replacement?: { pid: number; readyBy?: string; exitCode?: number | null; adopted?: boolean };
  timeline: Record<string, unknown>;
}

export async function recover(opts: RecoverOptions): Promise<RecoverReport> {
  const tl = opts.timeline ?? new Timeline();
  const mark = (p: Phase, data?: Record<string, unknown>, t = Date.now()) => {
    tl.mark(p, t, data);
    opts.onPhase?.(p, t, data);
  };
  const note = (n: string, data?: Record<string, unknown>) => {
    tl.note(n, data);
    opts.onNote?.(n);
  };
  if (opts.panickedAt !== undefined) mark("panic", undefined, opts.panickedAt);
  const codecs = opts.codecs ?? (await Codecs.load());
  const format = opts.elf ? "elf" : "kdump";
  const policy: RatePolicy = opts.rate ?? new NoLimit();
  const quitWhen = opts.quitCrashed ?? "end";

  // ---- attach: the crashed VM, or its memory file; an earlier run's journal.
  const journal = readJournal(opts.output);
  if (!journal && existsSync(opts.output)) {
    throw new GuestcoreError(`${opts.output} exists and no recover of it is unfinished (no ${journalPath(opts.output)}): choose another name`);
  }
  let guest: CrashedGuest | undefined;
  if (opts.qmp || opts.xen !== undefined) {
    try {
      // A Xen rerun passes the pages present when the recovery began: Xen keeps no trace of a page given back.
      guest = await attachCrashedGuest({ qmp: opts.qmp, xen: opts.xen, xenLibs: opts.xenLibs, layout: journal?.layout });
    } catch (e) {
      // A rerun may find the crashed QEMU gone (it quits early by choice); its memory file is what counts.
      if (!journal || !(e instanceof GuestcoreError) || opts.xen !== undefined || !journal.memPath.startsWith("/")) throw e;
      note(`${e.message}; resuming from ${journal.memPath}`);
    }
  }
  guest ??= await attachCrashedGuest({ memPath: opts.memPath ?? journal?.memPath, layout: opts.layout ?? journal?.layout });
  const g = guest;
  const id = g.identity;
  mark("attach", { memPath: id.memPath, layout: id.layout, via: g.via });

  let src: MemorySource = g.source;
  let ledger: ReleaseLedger | undefined;
  let replacement: Replacement | undefined;
  let sampler: NodeJS.Timeout | undefined;
  const probeAbort = new AbortController();
  let img: GuestImage | undefined;
  let heldAtStart: number | undefined;
  let readyBy: string | undefined;
  let readyWait: Promise<void> | undefined;
  const held = () => g.releaser.held();
  let current: RecoverJournal | undefined;
  let adopted: number | undefined;
  const startReplacement = () => {
    if (!opts.replacement || replacement || adopted) return;
    // An earlier run (killed) started it already: a second one would fight it for its disk and name.
    const earlier = journal?.replacementPid;
    if (earlier !== undefined && processAlive(earlier)) {
      adopted = earlier;
      note(`the replacement an earlier run started (pid ${earlier}) is running: not starting another`);
      return;
    }
    heldAtStart = held();
    replacement = Replacement.start({ ...opts.replacement, logPath: opts.replacement.logPath ?? `${opts.output}.replacement.log` });
    mark("replacement-started", { pid: replacement.pid, heldBytes: heldAtStart });
    if (current) {
      current = { ...current, replacementPid: replacement.pid };
      writeJournal(current);
    }
    // The replacement is the service; the dump is background work. Under
    // TCG, or on a small host, the dump's compression threads would
    // otherwise take the CPU its boot needs (measured: on 2 cores a
    // replacement became ready only when a 4 GiB -d 1 dump ended). Linux
    // nice values are per thread, and threads started later inherit them:
    // the compression workers start after this point.
    if (opts.dumpNice !== 0) {
      try {
        setPriority(0, opts.dumpNice ?? 19);
      } catch (e) {
        note(`could not lower the dump's CPU priority: ${(e as Error).message}`);
      }
    }
    policy.start?.({ replacementMonitor: () => replacement!.monitor(), note });
    if (opts.ready) {
      readyWait = waitReady(opts.ready, { logPath: replacement.spec.logPath, monitor: (s) => replacement!.monitor(s) }, probeAbort.signal)
        .then((by) => {
          readyBy = by;
          mark("replacement-ready", { by });
        }, () => {});
    }
  };
  // Ending the crashed VM is housekeeping: a failure is reported, and the
  // dump (its memory is still readable) goes on.
  const endCrashed = async () => {
    if (!g.end || g.gone) return;
    try {
      const how = await g.end();
      mark("crashed-vm-gone", { how });
    } catch (e) {
      if (!(e instanceof GuestcoreError)) throw e;
      note(`could not end the crashed VM: ${e.message}`);
    }
  };

  try {
    let oldPartials: string[] = [];
    if (journal) {
      if (journal.memPath !== id.memPath || journal.memIno !== id.memIno || journal.memSize !== id.memSize) {
        throw new GuestcoreError(`${journalPath(opts.output)} belongs to the recovery of ${journal.memPath}, not of ${id.memPath}`);
      }
      if (journal.level !== opts.level || journal.format !== format) {
        throw new GuestcoreError(`an unfinished recover of ${opts.output} ran at dump level ${journal.level} (${journal.format}): rerun it with the same -d and format`);
      }
      oldPartials = journal.partials;
      if (existsSync(opts.output)) {
        // The earlier run made the dump final and died before cleaning up.
        note("the dump was already complete; finishing the earlier run's cleanup");
        return await finish(true, oldPartials);
      }
      const layers = openPartials(oldPartials, (m) => note(m), codecs);
      if (layers.length) {
        src = new LayeredSource(g.source, layers);
        note(`resuming: ${layers.length} partial dump(s) hold ${(src as LayeredSource).heldPages} released pages`);
      }
    }
    // Partials of runs that died before their journal named them hold no released page.
    removeStalePartials(opts.output, oldPartials);
    const heldAtAttach = held() ?? 0;
    tl.sample({ t: Date.now(), heldBytes: heldAtAttach, writtenBytes: 0, writeBps: 0, allowedBps: null });

    // The partial dump and the journal exist before any release.
    const sink = format === "kdump" ? new FileSink(opts.output, { keepOnAbort: true }) : undefined;
    current = {
      version: 1, output: opts.output, memPath: id.memPath, layout: id.layout, memSize: id.memSize, memIno: id.memIno, level: opts.level, format,
      partials: [...oldPartials, ...(sink ? [sink.tmpPath] : [])], startedAt: Date.now(), panickedAt: opts.panickedAt ?? journal?.panickedAt,
      replacementPid: journal?.replacementPid,
    };
    writeJournal(current);

    if (quitWhen === "early") {
      if (g.volatileBacking) note("the crashed guest's RAM is a memfd, which goes with QEMU: it quits once the dump is complete");
      else await endCrashed();
    }
    // Told how much the replacement needs, it starts as soon as that much
    // is free, before classifying if the host has it already: a big guest's
    // classification takes seconds (8 GiB: about 8 s here).
    // Not with beforeRelease: the warm cache hands the replacement its preload list and copies first.
    if (opts.startWhenRoom !== undefined && !opts.beforeRelease && hostRoom() >= opts.startWhenRoom) startReplacement();

    // ---- classify from metadata, then release what the dump will not keep.
    img = GuestImage.fromSource(src, { vmcoreinfo: opts.vmcoreinfo, onProgress: opts.onProgress });
    img.onProgress = opts.onProgress;
    const r = img.pageStats(opts.level);
    const dumpable = r.dumpable.count();
    mark("classified", { present: r.present, dumpable, kept: r.keptCount, counts: r.counts });
    const l = new ReleaseLedger(g.releaser, r.maxPfn);
    ledger = l;
    const notKept = notKeptRuns(r, src);
    // Samples around the release: the event loop was busy classifying, and
    // a timeline drawn from attach straight to here would show memory
    // going back before it did.
    tl.sample({ t: Date.now(), heldBytes: held(), writtenBytes: 0, writeBps: 0, allowedBps: null });
    if (opts.beforeRelease) {
      const got = await opts.beforeRelease({ img, classified: r, memPath: id.memPath, layout: id.layout, volatileBacking: g.volatileBacking === true, note });
      const kept = got?.withhold ? l.withhold(got.withhold) : 0;
      mark("withheld", { pages: kept, ...got?.data });
    }
    const releasedBytes = l.release(notKept);
    const afterPre = held() ?? 0;
    tl.sample({ t: Date.now(), heldBytes: afterPre, writtenBytes: 0, writeBps: 0, allowedBps: null });
    mark("released", { bytes: releasedBytes, heldBytes: afterPre });

    // ---- the replacement, as soon as there is room; sampling meanwhile.
    const roomOk = () => opts.startWhenRoom === undefined || hostRoom() >= opts.startWhenRoom;
    if (roomOk()) startReplacement();
    let written = 0;
    let lastWritten = 0;
    let lastT = Date.now();
    const sample = () => {
      const t = Date.now();
      const rate = t > lastT ? ((written - lastWritten) * 1000) / (t - lastT) : 0;
      lastWritten = written;
      lastT = t;
      const allowed = policy.currentRate();
      tl.sample({ t, heldBytes: held(), writtenBytes: written, writeBps: Math.round(rate), allowedBps: Number.isFinite(allowed) ? allowed : null });
      if (!replacement && roomOk()) startReplacement();
    };
    sample();
    sampler = setInterval(sample, opts.sampleMs ?? 200);
    sampler.unref();
    // The pipeline asks before each write; a turn of the event loop there
    // lets the sampler, the probes and the policy's QMP replies run even
    // when compression is inline.
    const limiter: WriteLimiter = {
      acquire: async (bytes) => {
        await policy.acquire(bytes);
        written += bytes;
        await new Promise((res) => setImmediate(res));
      },
    };

    // ---- stream the kept pages; release each range once durable.
    let dumpBytes: number;
    const zero = zeroPages(r);
    if (format === "kdump") {
      try {
        const w = await writeKdump(img, sink!, {
          level: opts.level, codec: opts.codec ?? "zstd", codecs, workers: opts.workers, classified: r, knownZero: zero, limiter,
          durable: true, reportEveryPages: opts.releaseEveryPages ?? 8192,
          onWritten: (runs) => { l.release(runs); },
          onProgress: opts.onProgress,
        });
        dumpBytes = w.bytes;
        await g.verifyStopped();
        sink!.commit();
      } catch (e) {
        sink!.abort();
        throw e;
      }
    } else {
      // ELF: kept pages go back only once the file is complete (no resume from a partial ELF).
      const image = kernelImage(img.kernel);
      const w = await writeElfDump(opts.output, src, img.outputNotes(), r.kept, zero, r.maxPfn, {
        mappings: image ? [image] : [],
        onProgress: (d, t) => opts.onProgress?.("writing", d, t),
        beforeCommit: () => g.verifyStopped(),
      });
      dumpBytes = w.bytes;
    }
    mark("dump-complete", { bytes: dumpBytes });
    return await finish(journal !== undefined, oldPartials, {
      r, dumpable, releasedAtOnce: notKept.reduce((n, x) => n + x.count, 0), heldAtAttach, afterPre, dumpBytes,
    });
  } finally {
    if (sampler) clearInterval(sampler);
    policy.stop?.();
    probeAbort.abort();
    await replacement?.detach();
    g.releaser.close();
    if (img) img.close();
    else src.close();
  }

  // ---- after the dump: everything goes back; the crashed VM goes.
  async function finish(resumed: boolean, oldPartials: readonly string[], d?: {
    r: FilterResult; dumpable: number; releasedAtOnce: number; heldAtAttach: number; afterPre: number; dumpBytes: number;
  }): Promise<RecoverReport> {
    const maxPfn = d?.r.maxPfn ?? Math.ceil(id.memSize / PAGE);
    ledger ??= new ReleaseLedger(g.releaser, maxPfn);
    ledger.releaseRest(presentPfnRanges(g.source, maxPfn));
    tl.sample({ t: Date.now(), heldBytes: held(), writtenBytes: d?.dumpBytes ?? 0, writeBps: 0, allowedBps: null });
    if (quitWhen !== "never") await endCrashed();
    if (opts.removeBacking && g.removeBacking()) note(`removed ${id.memPath}`);
    // Only now is nothing left to do for a rerun: the journal goes last.
    removeFiles(oldPartials);
    removeStalePartials(opts.output);
    removeJournal(opts.output);
    if (!replacement) startReplacement();
    const heldAtEnd = held() ?? 0;
    if (readyWait && !readyBy) {
      const limit = opts.readyTimeoutMs ?? 600_000;
      const timer = setTimeout(() => probeAbort.abort(), limit);
      const exited = new Promise<void>((res) => {
        const poll = setInterval(() => { if (replacement?.exited) { clearInterval(poll); res(); } }, 100);
        probeAbort.signal.addEventListener("abort", () => { clearInterval(poll); res(); }, { once: true });
        void readyWait!.then(() => { clearInterval(poll); res(); });
      });
      await Promise.race([readyWait, exited]);
      clearTimeout(timer);
      if (!readyBy) {
        probeAbort.abort();
        const why = replacement?.exited ? `exited (code ${replacement.exitCode}${replacement.exitSignal ? `, ${replacement.exitSignal}` : ""})` : `was not ready within ${limit / 1000} s`;
        throw new GuestcoreError(`the dump is complete (${opts.output}), but the replacement ${why}: ${replacement?.tail() ?? ""}`);
      }
    }
    mark("done");
    return {
      output: opts.output, format, level: opts.level, resumed, memPath: id.memPath, layout: id.layout, kernelRelease: img?.vmcoreinfo.osrelease,
      pages: d ? { present: d.r.present, dumpable: d.dumpable, kept: d.r.keptCount, releasedAtOnce: d.releasedAtOnce } : { present: 0, dumpable: 0, kept: 0, releasedAtOnce: 0 },
      heldBytes: { atAttach: d?.heldAtAttach ?? 0, afterPrerelease: d?.afterPre ?? 0, atReplacementStart: heldAtStart, atEnd: heldAtEnd },
      dumpBytes: d?.dumpBytes ?? statSync(opts.output).size,
      replacement: replacement ? { pid: replacement.pid, readyBy, exitCode: replacement.exitCode } : adopted ? { pid: adopted, adopted: true } : undefined,
      timeline: tl.toJSON(),
    };
  }
}

/**
 * Present pages the dump holds no data for: excluded pages and, when the
 * level excludes them, zero pages (r.kept lacks them only then). None of
 * them is read again, except zero pages, which read back as the zeros
 * they hold.
 */
function notKeptRuns(r: FilterResult, src: MemorySource): PfnRun[] {
  const out: PfnRun[] = [];
  for (const [a, b] of presentPfnRanges(src, r.maxPfn)) {
    for (const p of r.kept.pieces(a, b)) if (!p.set) out.push({ pfn: p.pfn, count: p.count });
  }
  return out;
}

/**
 * Remove hidden partial files of OUTPUT left by recovers that died (SIGKILL)
 * and are not in `keep`: only runs named in a journal ever released
 * pages into their partial, so the others hold nothing needed.
 */
function removeStalePartials(output: string, keep: readonly string[] = []): void {
  for (const t of listTemporaries(dirname(output))) {
    if (basename(t.final) !== basename(output) || t.writerAlive || keep.includes(t.path)) continue;
    removeFiles([t.path]);
  }
}
