// A worker for the tracker's concurrency test: a simulated disk (one
// version number a block, in shared memory) read and written through the
// tracker on the core's shared memory, with random pauses so that
// operations on one block overlap in every order.
import { parentPort, workerData } from "node:worker_threads";
import { BlockTracker } from "../../src/warmcache/tracker.js";
import { modelHash, xorshift, pause } from "./tracker-model.js";

export interface TrackerWorkerData {
  memory: WebAssembly.Memory;
  table: number;
  scratch: number;
  /** disk[b]: the version block b holds; versions[b]: the last version handed out. */
  disk: SharedArrayBuffer;
  versions: SharedArrayBuffer;
  /** control[0]: workers finished; control[1]: arrivals at the race barrier. */
  control: SharedArrayBuffer;
  shared: number[];
  own: number[];
  ops: number;
  seed: number;
  /** Longest random pause between begin, disk and end (0: none, the tightest loop). */
  pauseMax: number;
  /**
   * Race mode: in round r every worker waits for the others, then reads
   * block race + r, which no one has touched: concurrent first inserts.
   */
  race?: { base: number; workers: number };
}

export interface TrackerWorkerResult {
  dropped: number[];
  /** For each own block: the version its last operation left, and whether that operation succeeded. */
  last: Array<{ block: number; version: number; ok: boolean }>;
  cleanEnds: number;
}

const d = workerData as TrackerWorkerData;
const disk = new Int32Array(d.disk);
const versions = new Int32Array(d.versions);
const dropped: number[] = [];
const tracker = BlockTracker.attach(d.memory, d.table, d.scratch, { onDropped: (c) => dropped.push(c) });
const rnd = xorshift(d.seed);
const last = new Map<number, { version: number; ok: boolean }>();
let cleanEnds = 0;

const control = new Int32Array(d.control);
if (d.race) {
  for (let r = 0; r < d.ops; r++) {
    const want = d.race.workers * (r + 1);
    Atomics.add(control, 1, 1);
    // Bounded: a partner that died leaves us after about a second.
    for (let spin = 0; Atomics.load(control, 1) < want && spin < 1e8; spin++);
    const block = d.race.base + r;
    tracker.endBlock(block, tracker.beginBlock(block, false), modelHash(block, 0));
  }
}

for (let i = 0; !d.race && i < d.ops; i++) {
  const own = rnd() % 4 === 0;
  const set = own ? d.own : d.shared;
  const block = set[rnd() % set.length];
  const write = rnd() % 3 === 0;
  // One operation in 16 fails; a failed write may still have reached the disk.
  const ok = rnd() % 16 !== 0;
  const ticket = tracker.beginBlock(block, write);
  if (ticket >>> 31) cleanEnds++;
  if (d.pauseMax) pause(rnd() % d.pauseMax);
  let v: number;
  if (write) {
    v = Atomics.add(versions, block, 1) + 1;
    Atomics.store(disk, block, v);
  } else {
    v = Atomics.load(disk, block);
  }
  if (d.pauseMax) pause(rnd() % d.pauseMax);
  tracker.endBlock(block, ticket, ok ? modelHash(block, v) : undefined);
  if (own) last.set(block, { version: v, ok });
}
Atomics.add(control, 0, 1);
const result: TrackerWorkerResult = { dropped, last: [...last].map(([block, r]) => ({ block, ...r })), cleanEnds };
parentPort!.postMessage(result);
