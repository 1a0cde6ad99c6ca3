// Crash-time matching: hash the crashed guest's clean page-cache pages in
// Wasm workers (the tracker's key, the table and an index by hash all in
// the one shared memory) and attach each page to every consistent block
// whose hash equals the page's. The result is the cache-mapping table
// (in the tracker: block -> pfn) and the reuse bitmap (pfn).
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { closeSync, openSync } from "node:fs";
import { GuestcoreError } from "../core/errors.js";
import type { WasmCore } from "../core/wasm.js";
import type { FileSegment } from "../sources/file-backed.js";
import { BlockTracker, SCRATCH_BYTES } from "./tracker.js";
import type { MatchJob, MatchReply } from "./matcher-worker.js";

const BATCH_PAGES = 256;

export interface MatchResult {
  /** Bit per pfn: pages kept as copies. */
  kept: Uint8Array;
  keptPages: number;
  matchedBlocks: number;
  hashedPages: number;
  /** Blocks holding each kept page. */
  refs: Map<number, number>;
  indexed: number;
  ms: number;
}

export interface MatchOptions {
  memPath: string;
  segments: readonly FileSegment[];
  candidates: Uint8Array;
  maxPfn: number;
  budgetPages?: number;
  workers?: number;
}

/** Candidate pages as runs within one file segment each: [pfn, count, fileOffset]. */
function candidateRuns(o: MatchOptions): [number, number, number][] {
  const runs: [number, number, number][] = [];
  const maxPfn = Math.min(o.maxPfn, o.candidates.length * 8);
  for (const s of o.segments) {
    const lo = Math.ceil(s.start / 4096);
    const hi = Math.min(Math.floor(s.end / 4096), maxPfn);
    let p = lo;
    while (p < hi) {
      if (!(o.candidates[p >> 3] & (1 << (p & 7)))) {
        p++;
        continue;
      }
      const a = p;
      while (p < hi && p - a < BATCH_PAGES && o.candidates[p >> 3] & (1 << (p & 7))) p++;
      runs.push([a, p - a, s.fileOffset + (a * 4096 - s.start)]);
    }
  }
  return runs;
}

export async function matchPages(core: WasmCore, tracker: BlockTracker, o: MatchOptions): Promise<MatchResult> {
  const t0 = Date.now();
  const mark = core.mark();
  const idx = core.alloc(tracker.matchIndexBytes() + 8);
  const idxPtr = (idx + 7) & ~7;
  const indexed = tracker.buildMatchIndex(idxPtr);
  const runs = indexed ? candidateRuns(o) : [];
  const nWorkers = Math.max(1, Math.min(o.workers ?? availableParallelism(), 8, Math.ceil(runs.length / 4) || 1));
  // Shared counter of reserved budget pages, so workers stop at the budget exactly.
  const budget = new Int32Array(new SharedArrayBuffer(8));
  budget[1] = Math.min(o.budgetPages ?? 0x7fffffff, 0x7fffffff);
  const fd = openSync(o.memPath, "r");
  const kept = new Uint8Array(Math.ceil(o.maxPfn / 8));
  const refs = new Map<number, number>();
  let hashedPages = 0;
  let matchedBlocks = 0;
  const workers: Worker[] = [];
  try {
    if (runs.length) {
      const url = new URL("./matcher-worker.js", import.meta.url);
      for (let w = 0; w < nWorkers; w++) {
        const region = core.alloc(BATCH_PAGES * 4096 + 4096);
        const job: MatchJob = {
          memory: core.memory, table: tracker.table, idx: idxPtr, scratch: (core.alloc(SCRATCH_BYTES + 8) + 7) & ~7,
          region: (region + 4095) & ~4095, fd, budget,
        };
        workers.push(new Worker(url, { workerData: job }));
      }
      let next = 0;
      await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
        const send = () => {
          // Hand out a few runs at a time; stop handing out once the budget is spent.
          if (next >= runs.length || Atomics.load(budget, 0) >= budget[1]) {
            resolve();
            return;
          }
          const batch = runs.slice(next, next + 8);
          next += batch.length;
          w.postMessage(batch);
        };
        w.on("message", (m: MatchReply) => {
          hashedPages += m.hashed;
          for (let i = 0; i < m.kept.length; i += 2) {
            const pfn = m.kept[i];
            kept[pfn >> 3] |= 1 << (pfn & 7);
            refs.set(pfn, m.kept[i + 1]);
            matchedBlocks += m.kept[i + 1];
          }
          send();
        });
        w.on("error", (e) => reject(new GuestcoreError(`warm-cache matcher: ${e.message}`)));
        send();
      })));
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
    closeSync(fd);
    core.release(mark);
  }
  return { kept, keptPages: refs.size, matchedBlocks, hashedPages, refs, indexed, ms: Date.now() - t0 };
}
