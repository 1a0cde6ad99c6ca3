// The child process that runs one target's inputs (forked by harness.ts).
//
// campaign mode: seeds, then the regression corpus, then mutated inputs
// [start, end) until the deadline, with coverage feedback. exec mode: runs
// the inputs the parent sends (minimisation, replay) one at a time.
//
// The input being run is always in SCRATCH/current.bin (its index in
// current.idx), so that when the parent kills this process (a hang, or
// memory past the budget) it knows what did it. Heartbeats go out at most
// every HEARTBEAT_MS between inputs; silence for the wall budget is a hang.
import { openSync, readdirSync, readFileSync, writeFileSync, writeSync, ftruncateSync, mkdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { getHeapStatistics } from "node:v8";
import { Coverage } from "./coverage.js";
import { BUDGETS, judgeError, overBudget, statusBytes, type Verdict } from "./contract.js";
import { mutate, Rng, type Entry } from "./mutate.js";
import type { FuzzTarget, RunContext } from "./target.js";

export const HEARTBEAT_MS = 100;
/**
 * Inputs run between two coverage takes (a take costs 1-2 ms), at most. A
 * batch that reached new blocks is bisected to the inputs that did, by
 * rerunning halves; while new blocks come often (early in a campaign)
 * that costs more than it saves, so the batch starts at one input, doubles
 * after each batch with nothing new and shrinks after one with something.
 */
const COVERAGE_BATCH = 64;
const MAX_CORPUS = 4096;

export interface WorkerInit {
  t: "init";
  mode: "campaign" | "exec";
  targetFile: string;
  cacheDir: string;
  scratchDir: string;
  /** Campaign: the run's seed and the input indices to run. */
  seed?: number;
  start?: number;
  end?: number;
  /** Wall-clock deadline (Date.now() ms); 0 for none. */
  deadline?: number;
  /** Regression corpus of this target (fuzz/corpus/NAME), replayed first. */
  corpusDir?: string;
  /** Replay only: do not mutate (the corpus test and --replay). */
  replayOnly?: boolean;
}

export type WorkerMessage =
  | { t: "ready"; seeds: number; baselineRss: number }
  | { t: "progress"; next: number; ran: number; corpus: number; covered: number; cpuSeconds: number }
  | { t: "finding"; index: number; file: string; verdict: Verdict }
  | { t: "done"; next: number; ran: number; corpus: number; covered: number; replayed: number; cpuSeconds: number }
  | { t: "result"; id: number; verdict: Verdict | null; ms: number }
  | { t: "fatal"; message: string };

export interface ExecRequest { t: "exec"; id: number; file: string }

function send(m: WorkerMessage): void {
  process.send!(m);
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

class Runner {
  private readonly curFd: number;
  private readonly idxFd: number;
  private readonly clearRefs: number;
  private readonly statusFd: number;
  private readonly statusBuf = Buffer.alloc(4096);
  readonly baselineRss: number;
  private readonly baselineExternal: number;
  readonly ctx: RunContext;

  constructor(private readonly target: FuzzTarget, scratchDir: string, cacheDir: string) {
    const inputPath = join(scratchDir, "current.bin");
    this.curFd = openSync(inputPath, "w+");
    this.idxFd = openSync(join(scratchDir, "current.idx"), "w+");
    this.clearRefs = openSync("/proc/self/clear_refs", "w");
    this.statusFd = openSync("/proc/self/status", "r");
    this.ctx = { cacheDir, scratchDir: join(scratchDir, "target"), inputPath };
    mkdirSync(this.ctx.scratchDir, { recursive: true });
    gc();
    this.baselineRss = this.vm("VmRSS");
    this.baselineExternal = external();
  }

  private vm(field: "VmRSS" | "VmHWM"): number {
    return statusBytes(this.statusFd, field, this.statusBuf);
  }

  /** Run one input under the contract; null when it kept it. */
  async run(input: Uint8Array, index: number): Promise<{ verdict: Verdict | null; ms: number }> {
    writeSync(this.curFd, input, 0, input.length, 0);
    ftruncateSync(this.curFd, input.length);
    const idx = Buffer.alloc(8);
    idx.writeDoubleLE(index);
    writeSync(this.idxFd, idx, 0, 8, 0);
    // Garbage of earlier inputs must not be charged to this one.
    if (external() - this.baselineExternal > BUDGETS.memoryBytes / 2) gc();
    writeSync(this.clearRefs, "5");
    const ext0 = external();
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    let verdict: Verdict | null = null;
    try {
      await this.target.run(input, this.ctx);
    } catch (e) {
      verdict = judgeError(e) ?? null;
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    if (!verdict && (cpuMs > BUDGETS.wallMs || ms > BUDGETS.stallMs)) {
      verdict = overBudget("hang", `ran ${Math.round(cpuMs)} ms of CPU, ${Math.round(ms)} ms of wall time (budget ${BUDGETS.wallMs} ms)`);
    }
    if (!verdict) {
      const rss = this.vm("VmHWM") - this.baselineRss;
      const ext = external() - ext0;
      if (rss > BUDGETS.memoryBytes || ext > BUDGETS.memoryBytes) {
        verdict = overBudget("memory", `peak RSS +${mib(rss)} MiB, ArrayBuffers +${mib(ext)} MiB over the baseline (budget ${mib(BUDGETS.memoryBytes)} MiB)`);
      }
    }
    return { verdict, ms };
  }
}

/**
 * Memory outside the JS heap, ArrayBuffers included (calloc'd buffers may
 * not be resident, so VmHWM alone misses them). Not process.memoryUsage():
 * it also reads /proc/self/stat, 0.3 ms a call in a campaign.
 */
function external(): number {
  return getHeapStatistics().external_memory;
}

function mib(n: number): number {
  return Math.round(n / 1048576);
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function loadTarget(file: string): Promise<FuzzTarget> {
  const mod = (await import(pathToFileURL(file).href)) as { default?: FuzzTarget };
  if (!mod.default || typeof mod.default.run !== "function") throw new Error(`${file} does not default-export a FuzzTarget`);
  return mod.default;
}

function readDir(dir: string | undefined): { name: string; bytes: Uint8Array }[] {
  if (!dir || !existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => n.endsWith(".bin")).sort().map((name) => ({ name, bytes: readFileSync(join(dir, name)) }));
}

async function campaign(init: WorkerInit): Promise<void> {
  // Coverage starts before the target's modules load, so every function is instrumented.
  const cov = new Coverage("/dist/src/");
  const target = await loadTarget(init.targetFile);
  const seeds = await target.seeds({ cacheDir: init.cacheDir, scratchDir: join(init.scratchDir, "target") });
  if (!seeds.length) throw new Error(`target ${target.name} has no seeds`);
  const runner = new Runner(target, init.scratchDir, init.cacheDir);
  send({ t: "ready", seeds: seeds.length, baselineRss: runner.baselineRss });
  // CPU time from here on: inputs per CPU second do not depend on how busy the host is.
  const cpu0 = process.cpuUsage();
  const cpuSeconds = () => {
    const c = process.cpuUsage(cpu0);
    return (c.user + c.system) / 1e6;
  };

  const corpus: Entry[] = [];
  const maxLength = Math.min(8 << 20, Math.max(64 << 10, 2 * Math.max(...seeds.map((s) => s.bytes.length))));
  let ran = 0;
  let lastBeat = performance.now();
  const beat = async (next: number) => {
    if (performance.now() - lastBeat < HEARTBEAT_MS) return;
    lastBeat = performance.now();
    send({ t: "progress", next, ran, corpus: corpus.length, covered: cov.size, cpuSeconds: cpuSeconds() });
    await yieldToLoop();
  };
  const found = (index: number, input: Uint8Array, verdict: Verdict) => {
    const file = join(init.scratchDir, `finding-${index}.bin`);
    writeFileSync(file, input);
    send({ t: "finding", index, file, verdict });
  };

  // Seeds and the regression corpus first: each one alone, so each is
  // judged and its coverage counted; the corpus files join the corpus with
  // the fields of the first seed (they started as mutations of one).
  cov.reset();
  let replayed = 0;
  const replay: Entry[] = [
    ...seeds.map((s) => ({ bytes: s.bytes, fields: s.fields, origin: s.label })),
    ...readDir(init.corpusDir).map((f) => ({ bytes: f.bytes, fields: seeds[0].fields, origin: `corpus ${f.name}` })),
  ];
  // Inputs an earlier life of this campaign added (before a hang killed it):
  // named SEQ-SEEDINDEX.bin, rerun for their coverage.
  const addedDir = join(init.scratchDir, "added");
  mkdirSync(addedDir, { recursive: true });
  const added = readDir(addedDir).map((f) => {
    const s = seeds[Number(f.name.split(/[-.]/)[1]) || 0] ?? seeds[0];
    return { bytes: f.bytes, fields: s.fields, origin: s.label };
  });
  const seedIndex = new Map(seeds.map((s, k) => [s.label, k]));
  const keep = (e: Entry, index: number) => {
    if (corpus.length >= MAX_CORPUS) return;
    corpus.push(e);
    writeFileSync(join(addedDir, `${String(index).padStart(10, "0")}-${seedIndex.get(e.origin) ?? 0}.bin`), e.bytes);
  };
  for (const e of replay) {
    const { verdict } = await runner.run(e.bytes, -1 - replayed);
    ran++;
    if (verdict) found(-1 - replayed, e.bytes, verdict);
    replayed++;
    if (cov.take(true) > 0 || corpus.length < seeds.length) corpus.push(e);
    await beat(init.start ?? 0);
  }
  for (const e of added) {
    await runner.run(e.bytes, -1);
    if (cov.take(true) > 0) corpus.push(e);
  }
  const end = init.replayOnly ? init.start ?? 0 : init.end ?? 0;
  let i = init.start ?? 0;
  const batch: { input: Uint8Array; parent: Entry; index: number }[] = [];
  let batchSize = 1;
  while (i < end) {
    if (init.deadline && Date.now() >= init.deadline) break;
    batch.length = 0;
    const stop = Math.min(end, i + batchSize);
    for (; i < stop; i++) {
      const rng = new Rng(init.seed ?? 0, target.name, i);
      const parent = rng.pick(corpus);
      const input = mutate(rng, parent, rng.pick(corpus), { maxLength });
      const { verdict } = await runner.run(input, i);
      ran++;
      if (verdict) found(i, input, verdict);
      else batch.push({ input, parent, index: i });
      await beat(i + 1);
    }
    const alone = batch.length === 1 ? batch[0] : undefined;
    const fresh = cov.take(alone !== undefined);
    if (fresh === 0) {
      batchSize = Math.min(COVERAGE_BATCH, batchSize * 2);
      continue;
    }
    batchSize = 1;
    if (alone) {
      keep({ bytes: alone.input, fields: alone.parent.fields, origin: alone.parent.origin }, alone.index);
      continue;
    }
    // Something in the batch reached new blocks: bisect to the inputs that
    // did (rerunning a half and taking its coverage), in input order.
    const bisect = async (part: typeof batch): Promise<void> => {
      for (const b of part) await runner.run(b.input, b.index);
      if (part.length === 1) {
        if (cov.take(true) > 0) keep({ bytes: part[0].input, fields: part[0].parent.fields, origin: part[0].parent.origin }, part[0].index);
        return;
      }
      if (cov.take(false) === 0) return;
      const mid = part.length >> 1;
      await bisect(part.slice(0, mid));
      await bisect(part.slice(mid));
    };
    cov.reset();
    const mid = batch.length >> 1;
    await bisect(batch.slice(0, mid));
    await bisect(batch.slice(mid));
  }
  send({ t: "done", next: i, ran, corpus: corpus.length, covered: cov.size, replayed, cpuSeconds: cpuSeconds() });
  cov.close();
}

async function exec(init: WorkerInit): Promise<void> {
  const target = await loadTarget(init.targetFile);
  await target.seeds({ cacheDir: init.cacheDir, scratchDir: join(init.scratchDir, "target") });
  const runner = new Runner(target, init.scratchDir, init.cacheDir);
  send({ t: "ready", seeds: 0, baselineRss: runner.baselineRss });
  process.on("message", (m: ExecRequest) => {
    if (m.t !== "exec") return;
    void runner.run(readFileSync(m.file), m.id).then(({ verdict, ms }) => send({ t: "result", id: m.id, verdict, ms }));
  });
}

process.once("message", (init: WorkerInit) => {
  // Anything that escapes a target (a stray rejection, an error thrown
  // from a callback) is a crash of the input in current.bin.
  const stray = (e: unknown) => {
    const v = judgeError(e) ?? judgeError(new Error(`stray GuestcoreError outside run(): ${(e as Error).message}`))!;
    const idxFile = join(init.scratchDir, "current.idx");
    const index = existsSync(idxFile) ? readFileSync(idxFile).readDoubleLE(0) : -1;
    const file = join(init.scratchDir, `finding-stray.bin`);
    writeFileSync(file, readFileSync(join(init.scratchDir, "current.bin")));
    send({ t: "finding", index, file, verdict: v });
  };
  process.on("unhandledRejection", stray);
  process.on("uncaughtException", stray);
  (init.mode === "exec" ? exec(init) : campaign(init)).then(
    () => {
      if (init.mode === "campaign") process.disconnect();
    },
    (e) => {
      send({ t: "fatal", message: (e as Error)?.stack ?? String(e) });
      process.disconnect();
    },
  );
});
