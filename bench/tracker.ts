// Micro-bench of the warm-cache tracker on one shared Wasm memory.
//
//   node dist/bench/tracker.js [--runs 5] [--ms 300] [--json] [--out bench/results/tracker]
//
// Updates: one begin + end pair (a read of a tracked block that ends
// clean, so every update publishes) counts as one. Per thread, with 1 and
// 2 worker threads, each on its own blocks as NBD requests on different
// blocks are; two ways in: one Wasm call per block and per step (the
// single-block exports), or trackerBeginRange/EndRange over 256 blocks
// (a 1 MiB request, the way the disk backend calls it); and two working
// sets: 4 Ki blocks a thread (their buckets stay in the core's caches)
// and 64 Ki (16 MiB of buckets a thread: a cache miss an update). Hashing
// is kept out of these numbers; siphash128 on 4 KiB pages is measured
// apart. A control row runs work that shares nothing in 1 and 2 threads:
// what the machine's second CPU gives. Every figure is the median of
// --runs runs of --ms milliseconds, each after 100 ms of the same work
// (V8 tiers the Wasm up meanwhile).
import { isMainThread, parentPort, workerData, Worker } from "node:worker_threads";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { availableParallelism, loadavg } from "node:os";
import { WasmCore, instantiateCore } from "../src/core/wasm.js";
import { BlockTracker, SCRATCH_BYTES } from "../src/warmcache/tracker.js";

type Mode = "block" | "range256" | "control";

interface Job {
  memory: WebAssembly.Memory;
  table: number;
  scratch: number;
  mode: Mode;
  first: number;
  blocks: number;
  ms: number;
}

const RANGE = 256;
const WARMUP_NS = 100_000_000n;

// One worker: begin/end as fast as it can for `ms`, over its own blocks.
function work(j: Job): { updates: number; seconds: number } {
  const x = instantiateCore(j.memory);
  const keys = Array.from({ length: j.blocks }, (_, i) => BigInt(j.first + i));
  const tickets = j.scratch;
  const dropped = j.scratch + RANGE * 4;
  const hashes = dropped + RANGE * 8;
  let updates = 0;
  let t0 = process.hrtime.bigint();
  const warm = t0 + WARMUP_NS;
  const end = warm + BigInt(j.ms) * 1_000_000n;
  let now = t0;
  let timing = false;
  // The clock is read every 4096 updates, so it costs nothing measurable.
  while (now < end) {
    if (!timing && now >= warm) {
      timing = true;
      updates = 0;
      t0 = now;
    }
    if (j.mode === "block") {
      for (let i = 0; i < 4096; i++) {
        const k = keys[(updates + i) % j.blocks];
        const ticket = x.trackerBegin(j.table, k, 0, dropped);
        x.trackerEnd(j.table, k, ticket, 1n, 2n, 1);
      }
      updates += 4096;
    } else if (j.mode === "control") {
      // Compute in this thread's own cache lines only: how this machine's
      // second CPU scales work that shares nothing.
      for (let i = 0; i < 4096; i++) x.siphash128(tickets, 64, 1n, 2n, hashes);
      updates += 4096;
    } else {
      for (let i = 0; i < 4096 / RANGE; i++) {
        const at = (updates + i * RANGE) % j.blocks;
        const first = keys[at - (at % RANGE)];
        x.trackerBeginRange(j.table, first, RANGE, 0, tickets, dropped);
        x.trackerEndRange(j.table, first, RANGE, tickets, hashes, 1, dropped);
      }
      updates += 4096;
    }
    now = process.hrtime.bigint();
  }
  return { updates, seconds: Number(now - t0) / 1e9 };
}

if (!isMainThread) {
  parentPort!.postMessage(work(workerData as Job));
} else {
  await main();
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// `scratch`: a region a worker, made once (the arena does not free).
async function updatesPerThread(core: WasmCore, t: BlockTracker, scratch: number[], mode: Mode, threads: number, ms: number, blocks: number): Promise<number> {
  const url = new URL(import.meta.url);
  const jobs = Array.from({ length: threads }, (_, w): Job => ({
    memory: core.memory, table: t.table, scratch: scratch[w], mode, first: w * (1 << 16), blocks, ms,
  }));
  const results = await Promise.all(jobs.map((job) => new Promise<{ updates: number; seconds: number }>((resolve, reject) => {
    const w = new Worker(url, { workerData: job });
    w.once("message", resolve);
    w.once("error", reject);
  })));
  return results.reduce((a, r) => a + r.updates / r.seconds, 0) / threads;
}

function siphashMBps(core: WasmCore, ms: number): number {
  const pages = 256;
  const data = core.alloc(pages * 4096);
  const bytes = core.bytes(data, pages * 4096);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  const out = core.alloc(16);
  // 64 MiB first, for the tier-up.
  for (let i = 0; i < pages * 64; i++) core.x.siphash128(data + (i % pages) * 4096, 4096, 1n, 2n, out);
  let done = 0;
  const t0 = process.hrtime.bigint();
  const end = t0 + BigInt(ms) * 1_000_000n;
  let now = t0;
  while (now < end) {
    for (let i = 0; i < pages; i++) core.x.siphash128(data + i * 4096, 4096, 0x0706050403020100n, 0x0f0e0d0c0b0a0908n, out);
    done += pages * 4096;
    now = process.hrtime.bigint();
  }
  return done / (Number(now - t0) / 1e9) / 1e6;
}

async function main(): Promise<void> {
  const runs = Number(arg("--runs", "5"));
  const ms = Number(arg("--ms", "300"));
  const outDir = arg("--out", "bench/results/tracker");
  const json = process.argv.includes("--json");
  const core = new WasmCore();
  // 2^20 slots (32 MiB): 64 Ki blocks a worker stay in the table, no evictions.
  const t = BlockTracker.create(core, 32 * 2 ** 20 + 128);
  const most = 1 << 16;
  // Every block is tracked before timing starts: the updates hit.
  for (let w = 0; w < 2; w++) t.end(w * most, most, t.begin(w * most, most, false), undefined);
  if (SCRATCH_BYTES < RANGE * 28) throw new Error("scratch too small for the range mode");
  const scratch = [BlockTracker.allocScratch(core), BlockTracker.allocScratch(core)];

  const rows: Array<{ what: string; threads: number; value: number; unit: string; runs: number[] }> = [];
  for (const blocks of [1 << 12, most]) {
    for (const mode of ["block", "range256"] as Mode[]) {
      for (const threads of [1, 2]) {
        const rs: number[] = [];
        for (let r = 0; r < runs; r++) rs.push(await updatesPerThread(core, t, scratch, mode, threads, ms, blocks));
        const how = mode === "block" ? "a call per block" : "ranges of 256";
        rows.push({ what: `updates/s a thread, ${how}, ${blocks / 1024} Ki blocks a thread`, threads, value: median(rs), unit: "updates/s", runs: rs });
      }
    }
  }
  for (const threads of [1, 2]) {
    const rs: number[] = [];
    for (let r = 0; r < runs; r++) rs.push(await updatesPerThread(core, t, scratch, "control", threads, ms, 1));
    rows.push({ what: "control: siphash128 of 64 bytes, calls/s a thread", threads, value: median(rs), unit: "calls/s", runs: rs });
  }
  const sip: number[] = [];
  for (let r = 0; r < runs; r++) sip.push(siphashMBps(core, ms));
  rows.push({ what: "siphash128 on 4 KiB pages", threads: 1, value: median(sip), unit: "MB/s", runs: sip });

  const s = t.stats();
  // Other work on the machine shows in the two-thread rows first.
  const load = loadavg()[0];
  const result = {
    node: process.version, cpus: availableParallelism(), loadavg1: load, runs, ms, slots: s.slots, tableBytes: s.tableBytes,
    bytesPerBlock: s.bytesPerBlock, evictions: s.evictions, rows,
  };
  const fmt = (r: (typeof rows)[number]) => r.unit === "MB/s" ? `${r.value.toFixed(0)} MB/s` : `${(r.value / 1e6).toFixed(2)} M/s`;
  const md = [
    `Tracker micro-bench: Node ${process.version}, ${availableParallelism()} CPUs (load average ${load.toFixed(2)}), median of ${runs} runs of ${ms} ms;`,
    `table of ${s.slots} slots, ${s.bytesPerBlock.toFixed(4)} bytes per tracked block.`,
    "",
    "| measure | worker threads | median |",
    "|---|---:|---:|",
    ...rows.map((r) => `| ${r.what} | ${r.threads} | ${fmt(r)} |`),
    "",
  ].join("\n");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "table.md"), md);
  writeFileSync(join(outDir, "results.json"), JSON.stringify(result, null, 2) + "\n");
  console.log(json ? JSON.stringify(result, null, 2) : md);
}
