// The fuzz harness: runs each target's inputs in child processes under
// the per-input budgets, restarts a child that hangs or overruns its
// memory, minimises every finding and writes it into the regression
// corpus, fuzz/corpus/NAME/CLASS-SHA1.bin.
//
// Targets are the files of fuzz/targets/: each default-exports a
// FuzzTarget, and the directory is the registry (dist/fuzz/targets/*.js).
import { fork, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, closeSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { BUDGETS, FINDING_CLASSES, overBudget, statusBytes, type FindingClass, type Verdict } from "./contract.js";
import type { FuzzTarget } from "./target.js";
import type { ExecRequest, WorkerInit, WorkerMessage } from "./worker.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
/** dist/fuzz/targets: what the build made of fuzz/targets/*.ts. */
export const TARGETS_DIR = join(HERE, "targets");
/** fuzz/corpus in the source tree (dist/fuzz/ is two levels below the repository). */
export const CORPUS_DIR = join(HERE, "..", "..", "fuzz", "corpus");
const WORKER = join(HERE, "worker.js");
const SOURCE_TARGETS_DIR = join(HERE, "..", "..", "fuzz", "targets");
/** A child that says nothing for this long after the budget is hung. */
const HANG_SLACK_MS = 300;
/** seeds() may read big captures: the child gets this long to be ready. */
const STARTUP_MS = 120_000;
const WATCH_MS = 50;

/**
 * Scratch space for inputs: tmpfs when there is one. Rewriting a small
 * file on ext4 costs 3.3 ms here (the flush ext4 does when a truncated
 * file is rewritten), on /dev/shm 70 us.
 */
export function scratchBase(): string {
  if (process.env.GUESTCORE_FUZZ_TMP) return process.env.GUESTCORE_FUZZ_TMP;
  try {
    accessSync("/dev/shm", constants.W_OK);
    return "/dev/shm";
  } catch {
    return tmpdir();
  }
}

export interface TargetInfo {
  name: string;
  describes: string;
  file: string;
}

/** Every target in dist/fuzz/targets/, by name. */
export async function listTargets(dir = TARGETS_DIR): Promise<TargetInfo[]> {
  if (!existsSync(dir)) return [];
  const out: TargetInfo[] = [];
  // A build does not delete what it no longer makes: a target whose .ts is
  // gone from the source tree is not one any more.
  const sources = SOURCE_TARGETS_DIR && existsSync(SOURCE_TARGETS_DIR) && dir === TARGETS_DIR ? new Set(readdirSync(SOURCE_TARGETS_DIR)) : undefined;
  for (const f of readdirSync(dir).filter((n) => n.endsWith(".js") && (!sources || sources.has(n.replace(/\.js$/, ".ts")))).sort()) {
    const file = join(dir, f);
    const mod = (await import(pathToFileURL(file).href)) as { default?: FuzzTarget };
    const t = mod.default;
    if (!t || typeof t.run !== "function" || typeof t.seeds !== "function") continue; // a helper module
    out.push({ name: t.name, describes: t.describes, file });
  }
  return out;
}

export interface Finding {
  cls: FindingClass;
  signature: string;
  message: string;
  /** Input index in the campaign (negative: seed or corpus replay). */
  index: number;
  /** Occurrences of this signature. */
  count: number;
  /** Minimised input's bytes and where it was written. */
  bytes: number;
  file?: string;
}

export interface TargetResult {
  name: string;
  describes: string;
  /** Inputs run: seeds and corpus replayed, mutations, reruns not counted. */
  inputs: number;
  mutated: number;
  replayed: number;
  seconds: number;
  inputsPerSecond: number;
  /** CPU seconds of the campaign children after their seeds (user + system), and inputs per CPU second. */
  cpuSeconds: number;
  inputsPerCpuSecond: number;
  corpus: number;
  coveredBlocks: number;
  restarts: number;
  findings: Record<FindingClass, number>;
  /** Inputs over the time budget under coverage that ran within it when rerun without (not findings). */
  unconfirmedHangs: number;
  details: Finding[];
}

export interface CampaignOptions {
  /** Mutated inputs per target. */
  inputs: number;
  /** Stop each target after this many seconds (0: no limit). */
  seconds?: number;
  seed?: number;
  cacheDir?: string;
  /** Replay the seeds and the regression corpus only. */
  replayOnly?: boolean;
  /** Minimise findings and write them into the corpus (default true). */
  record?: boolean;
  /** The regression corpus replayed first (default fuzz/corpus). */
  corpusDir?: string;
  /** Where minimised findings go (default: the corpus, so the next run replays them). */
  findingsDir?: string;
  onProgress?: (p: Progress) => void;
}

export interface Progress {
  target: string;
  next: number;
  of: number;
  ran: number;
  corpus: number;
  covered: number;
  findings: number;
  seconds: number;
}

/** One child process with its watchdog: silence past the budget or memory past it gets it killed. */
class Child {
  readonly proc: ChildProcess;
  private lastHeard = Date.now();
  /** The child's CPU time (ms) when it was last heard from. */
  private cpuAtHeard = 0;
  private ready = false;
  private baselineRss = 0;
  private readonly timer: NodeJS.Timeout;
  private statusFd = -1;
  private readonly statusBuf = Buffer.alloc(4096);
  /** Why the watchdog killed it, if it did. */
  killedFor?: Verdict;
  readonly exited: Promise<void>;

  constructor(readonly init: WorkerInit, private readonly onMessage: (m: WorkerMessage) => void) {
    this.proc = fork(WORKER, [], { execArgv: ["--expose-gc", ...(process.env.GUESTCORE_FUZZ_NODE_ARGS?.split(" ").filter(Boolean) ?? [])], stdio: ["ignore", "ignore", "pipe", "ipc"], serialization: "advanced" });
    let stderr = "";
    this.proc.stderr!.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    this.exited = new Promise((resolve) => this.proc.once("exit", () => {
      clearInterval(this.timer);
      if (this.statusFd >= 0) closeSync(this.statusFd);
      this.stderr = stderr;
      resolve();
    }));
    this.proc.on("message", (m: WorkerMessage) => {
      this.heard();
      if (m.t === "ready") {
        this.ready = true;
        this.baselineRss = m.baselineRss;
        try {
          this.statusFd = openSync(`/proc/${this.proc.pid}/status`, "r");
        } catch {
          // it is already gone: the exit handler reports it
        }
      }
      this.onMessage(m);
    });
    this.timer = setInterval(() => this.watch(), WATCH_MS);
    this.proc.send(init);
  }

  stderr = "";

  /** An exec child is idle between requests: only a request in flight can hang. */
  busy = true;

  noteRequest(): void {
    this.heard();
  }

  private heard(): void {
    this.lastHeard = Date.now();
    this.cpuAtHeard = this.cpuMs();
  }

  /** utime + stime of the child from /proc/PID/stat, in ms (clock ticks of 10 ms). */
  private cpuMs(): number {
    try {
      const stat = readFileSync(`/proc/${this.proc.pid}/stat`, "latin1");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return (Number(f[11]) + Number(f[12])) * 10;
    } catch {
      return 0;
    }
  }

  private watch(): void {
    if (this.killedFor || this.proc.exitCode !== null) return;
    const now = Date.now();
    if (this.busy && !this.ready && now - this.lastHeard > STARTUP_MS) {
      this.kill(overBudget("hang", "the target's seeds() did not finish"));
      return;
    }
    if (this.busy && this.ready && now - this.lastHeard > BUDGETS.wallMs + HANG_SLACK_MS) {
      const cpu = this.cpuMs() - this.cpuAtHeard;
      if (cpu > BUDGETS.wallMs + HANG_SLACK_MS || now - this.lastHeard > BUDGETS.stallMs) {
        this.kill(overBudget("hang", `no answer after ${cpu} ms of CPU, ${now - this.lastHeard} ms of wall time (budget ${BUDGETS.wallMs} ms)`));
        return;
      }
    }
    if (this.ready && this.statusFd >= 0) {
      const rss = statusBytes(this.statusFd, "VmRSS", this.statusBuf);
      if (rss - this.baselineRss > BUDGETS.memoryBytes) {
        this.kill(overBudget("memory", `RSS +${Math.round((rss - this.baselineRss) / 1048576)} MiB over the baseline (budget ${BUDGETS.memoryBytes / 1048576} MiB)`));
      }
    }
  }

  kill(why: Verdict): void {
    this.killedFor = why;
    this.proc.kill("SIGKILL");
  }
}

/** Runs single inputs in a child for minimisation; restarts it after a kill. */
class Executor {
  private child?: Child;
  private pending?: { id: number; resolve: (v: Verdict | null) => void };
  private nextId = 0;
  private readyWait?: Promise<void>;

  constructor(private readonly target: TargetInfo, private readonly scratch: string, private readonly cacheDir: string) {}

  private start(): Promise<void> {
    const dir = join(this.scratch, `exec-${this.nextId}`);
    mkdirSync(dir, { recursive: true });
    return new Promise((resolve, reject) => {
      const c = new Child({ t: "init", mode: "exec", targetFile: this.target.file, cacheDir: this.cacheDir, scratchDir: dir }, (m) => {
        if (m.t === "ready") {
          c.busy = false;
          resolve();
        } else if (m.t === "result" && this.pending?.id === m.id) {
          c.busy = false;
          const p = this.pending;
          this.pending = undefined;
          p.resolve(m.verdict);
        } else if (m.t === "fatal") reject(new Error(m.message));
      });
      this.child = c;
      void c.exited.then(() => {
        if (this.child === c) this.child = undefined;
        this.readyWait = undefined;
        const p = this.pending;
        this.pending = undefined;
        p?.resolve(c.killedFor ?? { cls: "crash", signature: "crash:exit", message: `the child exited (${c.stderr.split("\n").filter(Boolean).pop() ?? "no message"})` });
        reject(new Error(`exec child exited: ${c.stderr}`));
      });
    });
  }

  async run(bytes: Uint8Array): Promise<Verdict | null> {
    if (!this.child) this.readyWait = undefined;
    this.readyWait ??= this.start();
    await this.readyWait;
    const c = this.child!;
    const id = this.nextId++;
    const file = join(this.scratch, "exec-input.bin");
    writeFileSync(file, bytes);
    return new Promise((resolve) => {
      this.pending = { id, resolve };
      c.busy = true;
      c.noteRequest();
      c.proc.send({ t: "exec", id, file } satisfies ExecRequest);
    });
  }

  async close(): Promise<void> {
    const c = this.child;
    if (!c) return;
    c.proc.kill("SIGKILL");
    await c.exited;
  }
}

/**
 * Shrink `input` while it still gives `verdict`'s signature: drop chunks
 * (halves down to single bytes), then zero 8-byte words and bytes.
 * Bounded by attempts; a hang costs a budget per attempt, so it gets few.
 */
export async function minimise(input: Uint8Array, verdict: Verdict, exec: (b: Uint8Array) => Promise<Verdict | null>): Promise<Uint8Array> {
  let budget = verdict.cls === "hang" ? 12 : verdict.cls === "memory" ? 200 : 1500;
  const same = async (b: Uint8Array) => {
    if (budget <= 0) return false;
    budget--;
    const v = await exec(b);
    return v !== null && v.signature === verdict.signature;
  };
  let best = input;
  for (let chunk = Math.max(1, best.length >> 1); chunk >= 1 && budget > 0; chunk >>= 1) {
    for (let at = best.length - chunk; at >= 0 && budget > 0; at -= chunk) {
      const cand = new Uint8Array(best.length - chunk);
      cand.set(best.subarray(0, at));
      cand.set(best.subarray(at + chunk), at);
      if (await same(cand)) best = cand;
    }
    if (chunk === 1) break;
  }
  for (const width of [8, 1]) {
    for (let at = 0; at + width <= best.length && budget > 0; at += width) {
      if (best.subarray(at, at + width).every((x) => x === 0)) continue;
      const cand = best.slice();
      cand.fill(0, at, at + width);
      if (await same(cand)) best = cand;
    }
  }
  return best;
}

export function corpusFileName(cls: FindingClass, bytes: Uint8Array): string {
  return `${cls}-${createHash("sha1").update(bytes).digest("hex").slice(0, 8)}.bin`;
}

/** Run campaigns of several targets, `jobs` at a time (one child process each). */
export async function runTargets(targets: TargetInfo[], opts: CampaignOptions & { jobs?: number }): Promise<TargetResult[]> {
  const results: TargetResult[] = new Array(targets.length);
  let next = 0;
  const lane = async () => {
    while (next < targets.length) {
      const k = next++;
      results[k] = await runTarget(targets[k], opts);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.jobs ?? 1, targets.length)) }, lane));
  return results;
}

/** Run one target's campaign. */
export async function runTarget(t: TargetInfo, opts: CampaignOptions): Promise<TargetResult> {
  const scratch = mkdtempSync(join(scratchBase(), `guestcore-fuzz-${t.name}-`));
  const cacheDir = opts.cacheDir ?? process.env.GUESTCORE_CACHE ?? "/var/cache/guestcore";
  const corpusDir = join(opts.corpusDir ?? CORPUS_DIR, t.name);
  const t0 = performance.now();
  const bySig = new Map<string, { verdict: Verdict; index: number; count: number; input: Uint8Array }>();
  const note = (v: Verdict, index: number, input: Uint8Array) => {
    const f = bySig.get(v.signature);
    if (f) {
      f.count++;
      if (input.length < f.input.length) Object.assign(f, { input, index });
    } else bySig.set(v.signature, { verdict: v, index, count: 1, input });
  };
  let next = 0;
  let state = { ran: 0, corpus: 0, covered: 0, replayed: 0, cpu: 0 };
  let ranBefore = 0;
  let cpuBefore = 0;
  let restarts = 0;
  const deadline = opts.seconds ? Date.now() + opts.seconds * 1000 : 0;
  const workDir = join(scratch, "campaign");
  mkdirSync(workDir, { recursive: true });
  try {
    for (;;) {
      let done = false;
      let fatal: string | undefined;
      const init: WorkerInit = {
        t: "init", mode: "campaign", targetFile: t.file, cacheDir, scratchDir: workDir, seed: opts.seed ?? 0,
        start: next, end: opts.inputs, deadline, corpusDir, replayOnly: opts.replayOnly,
      };
      const c = new Child(init, (m) => {
        if (m.t === "progress" || m.t === "done") {
          next = m.next;
          state = { ...state, ran: m.ran, corpus: m.corpus, covered: m.covered, cpu: m.cpuSeconds };
          opts.onProgress?.({ target: t.name, next, of: opts.inputs, ran: ranBefore + m.ran, corpus: m.corpus, covered: m.covered, findings: [...bySig.values()].reduce((n, f) => n + f.count, 0), seconds: (performance.now() - t0) / 1000 });
        }
        if (m.t === "done") {
          done = true;
          state.replayed = m.replayed;
        }
        if (m.t === "finding") note(m.verdict, m.index, readFileSync(m.file));
        if (m.t === "fatal") fatal = m.message;
      });
      await c.exited;
      cpuBefore += state.cpu;
      state.cpu = 0;
      if (done) {
        ranBefore += state.ran;
        break;
      }
      if (fatal) throw new Error(`fuzz target ${t.name}: ${fatal}`);
      // Killed, or died by itself: the input in current.bin did it.
      const cur = join(workDir, "current.bin");
      const idxFile = join(workDir, "current.idx");
      const index = existsSync(idxFile) ? readFileSync(idxFile).readDoubleLE(0) : next;
      const input = existsSync(cur) ? new Uint8Array(readFileSync(cur)) : new Uint8Array(0);
      const why = c.killedFor ?? { cls: "crash" as const, signature: "crash:exit", message: `the child died (${c.stderr.trim().split("\n").pop() ?? "signal"})` };
      note(why, index, input);
      ranBefore += state.ran + 1;
      state.ran = 0;
      restarts++;
      if (index < 0 || restarts > 1000) {
        // A seed or corpus file kills it: mutating past it would not help.
        if (index < 0) break;
        throw new Error(`fuzz target ${t.name}: more than 1000 restarts`);
      }
      next = index + 1;
      if (next >= opts.inputs || (deadline && Date.now() >= deadline)) break;
    }
    const details: Finding[] = [];
    let unconfirmedHangs = 0;
    const exec = new Executor(t, scratch, cacheDir);
    try {
      for (const f of bySig.values()) {
        // A hang is judged again in a fresh child without coverage: block
        // counters and a cold JIT cost a printk input 2.3 s of CPU that
        // runs in 35 ms uninstrumented (seen at load 10 on 2 cores). One
        // that does not hang there is counted apart, not as a finding.
        if (f.verdict.cls === "hang" && (await exec.run(f.input))?.signature !== f.verdict.signature) {
          unconfirmedHangs += f.count;
          continue;
        }
        let bytes = f.input;
        let file: string | undefined;
        if (opts.record !== false) {
          bytes = await minimise(f.input, f.verdict, (b) => exec.run(b));
          const dir = opts.findingsDir ? join(opts.findingsDir, t.name) : corpusDir;
          mkdirSync(dir, { recursive: true });
          file = join(dir, corpusFileName(f.verdict.cls, bytes));
          writeFileSync(file, bytes);
        }
        details.push({ cls: f.verdict.cls, signature: f.verdict.signature, message: f.verdict.message, index: f.index, count: f.count, bytes: bytes.length, file });
      }
    } finally {
      await exec.close();
    }
    const seconds = (performance.now() - t0) / 1000;
    const findings = Object.fromEntries(FINDING_CLASSES.map((k) => [k, details.filter((d) => d.cls === k).reduce((n, d) => n + d.count, 0)])) as Record<FindingClass, number>;
    return {
      name: t.name, describes: t.describes, inputs: ranBefore, mutated: Math.min(next, opts.inputs), replayed: state.replayed,
      seconds, inputsPerSecond: ranBefore / seconds, cpuSeconds: cpuBefore, inputsPerCpuSecond: cpuBefore > 0 ? ranBefore / cpuBefore : 0, corpus: state.corpus, coveredBlocks: state.covered, restarts, findings, unconfirmedHangs, details,
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The per-target table of a campaign: inputs, speed, corpus, coverage, findings by class. */
export function formatTable(results: TargetResult[]): string {
  const head = ["target", "inputs", "inputs/s", "inputs/cpu-s", "corpus", "blocks", "crash", "hang", "memory"];
  const rows = results.map((r) => [r.name, String(r.inputs), r.inputsPerSecond.toFixed(0), r.inputsPerCpuSecond.toFixed(0), String(r.corpus), String(r.coveredBlocks),
    String(r.findings.crash), String(r.findings.hang), String(r.findings.memory)]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ");
  return [line(head), ...rows.map(line)].join("\n");
}

/** The contract for one input, in a fresh child under the budgets (the corpus test uses it). */
export async function judgeInputs(t: TargetInfo, inputs: Uint8Array[], cacheDir?: string): Promise<(Verdict | null)[]> {
  const scratch = mkdtempSync(join(scratchBase(), `guestcore-fuzz-${t.name}-`));
  const exec = new Executor(t, scratch, cacheDir ?? process.env.GUESTCORE_CACHE ?? "/var/cache/guestcore");
  try {
    const out: (Verdict | null)[] = [];
    for (const b of inputs) out.push(await exec.run(b));
    return out;
  } finally {
    await exec.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}
