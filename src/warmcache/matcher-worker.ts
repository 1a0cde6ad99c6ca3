// A matcher worker: reads candidate pages of the crashed guest's memory
// file into its region of the shared memory, hashes them under the
// tracker's key and attaches each to the consistent blocks it equals.
import { parentPort, workerData } from "node:worker_threads";
import { readSync } from "node:fs";
import { BlockTracker } from "./tracker.js";

export interface MatchJob {
  memory: WebAssembly.Memory;
  table: number;
  idx: number;
  scratch: number;
  region: number;
  fd: number;
  /** [0] pages reserved, [1] the budget. */
  budget: Int32Array;
}

export interface MatchReply {
  hashed: number;
  /** Pairs: pfn, blocks attached. */
  kept: number[];
}

const job = workerData as MatchJob;
const tracker = BlockTracker.attach(job.memory, job.table, job.scratch);

parentPort!.on("message", (runs: [number, number, number][]) => {
  const reply: MatchReply = { hashed: 0, kept: [] };
  for (const [pfn, count, off] of runs) {
    const view = new Uint8Array(job.memory.buffer, job.region, count * 4096);
    const got = readSync(job.fd, view, 0, view.length, off);
    const pages = Math.floor(got / 4096);
    for (let i = 0; i < pages; i++) {
      const h = tracker.hash(job.region + i * 4096, 4096);
      reply.hashed++;
      // Reserve a page of the budget first; give it back if nothing matched.
      if (Atomics.add(job.budget, 0, 1) >= job.budget[1]) {
        Atomics.sub(job.budget, 0, 1);
        continue;
      }
      const blocks = tracker.matchAttach(job.idx, h, pfn + i);
      if (blocks > 0) reply.kept.push(pfn + i, blocks);
      else Atomics.sub(job.budget, 0, 1);
    }
  }
  parentPort!.postMessage(reply);
});
