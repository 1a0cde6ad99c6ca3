// How fast the dump may write while the replacement VM runs next to it
// (Vicover's third technique: trade dump time against the new VM's disk).
//
// A policy is a WriteLimiter the pipeline asks before every write, plus a
// life cycle: it starts when the replacement does (it may watch it) and
// reports the rate it allows, for the timeline. New policies register a
// factory under a name; `--rate NAME[:ARG]` picks one.
import { GuestcoreError } from "../core/errors.js";
import { TokenBucket, type WriteLimiter } from "../pipeline/rate-limit.js";
import { parseSize } from "../sources/raw.js";
import type { QmpClient } from "../sources/qmp.js";

export interface PolicyContext {
  /** The replacement's QMP monitor, once it is up (undefined when none was given). */
  replacementMonitor?: () => Promise<QmpClient | undefined>;
  /** Where a policy tells why it changed its rate (the timeline). */
  note?: (what: string, data?: Record<string, unknown>) => void;
}

export interface RatePolicy extends WriteLimiter {
  readonly name: string;
  /** Called when the replacement starts; a policy may begin watching it. */
  start?(ctx: PolicyContext): void;
  stop?(): void;
  /** Bytes per second allowed right now (Infinity: unlimited). */
  currentRate(): number;
}

export type PolicyFactory = (arg: string | undefined) => RatePolicy;

export class RatePolicies {
  private readonly factories = new Map<string, { make: PolicyFactory; help: string }>();

  register(name: string, help: string, make: PolicyFactory): this {
    this.factories.set(name, { make, help });
    return this;
  }

  names(): string[] {
    return [...this.factories.keys()];
  }

  help(): string {
    return [...this.factories].map(([n, f]) => `${n}: ${f.help}`).join("; ");
  }

  /** "none", "fixed:50M", "adaptive", "adaptive:floor=2M,busy=1M"… */
  parse(spec: string): RatePolicy {
    const i = spec.indexOf(":");
    const name = i < 0 ? spec : spec.slice(0, i);
    const f = this.factories.get(name);
    if (!f) throw new GuestcoreError(`unknown rate policy "${name}" (known: ${this.names().join(", ")})`);
    return f.make(i < 0 ? undefined : spec.slice(i + 1));
  }
}

export class NoLimit implements RatePolicy {
  readonly name = "none";
  async acquire(): Promise<void> {}
  currentRate(): number {
    return Infinity;
  }
}

export class FixedRate implements RatePolicy {
  readonly name = "fixed";
  private readonly bucket: TokenBucket;
  constructor(readonly bytesPerSecond: number) {
    // A small burst keeps the rate even over short windows.
    this.bucket = new TokenBucket(bytesPerSecond, Math.max(256 << 10, Math.min(bytesPerSecond / 8, 8 << 20)));
  }
  acquire(bytes: number): Promise<void> {
    return this.bucket.acquire(bytes);
  }
  currentRate(): number {
    return this.bytesPerSecond;
  }
}

export interface AdaptiveOptions {
  /** The replacement counts as busy above this many bytes per second (default 1 MiB/s)… */
  busyBytes: number;
  /** …or above this many operations per second (default 32). */
  busyOps: number;
  /** What the dump keeps while the replacement is busy (default 1 MiB/s, so it still ends). */
  floor: number;
  /** How often query-blockstats is asked (default 200 ms). */
  intervalMs: number;
  /** Consecutive idle samples before the dump takes the whole disk again (default 3). */
  idleSamples: number;
  /** The most the dump may take even when the replacement is idle (default: no cap). */
  max: number;
}

export interface BlockSample {
  t: number;
  bytes: number;
  ops: number;
  /** Total time the replacement's requests spent, ns. */
  timeNs: number;
}

/** Sum of the replacement's block devices' counters from query-blockstats. */
export function sumBlockstats(reply: unknown, t: number): BlockSample {
  const out: BlockSample = { t, bytes: 0, ops: 0, timeNs: 0 };
  if (!Array.isArray(reply)) return out;
  for (const dev of reply.slice(0, 256)) {
    const s = (dev as { stats?: Record<string, unknown> })?.stats;
    if (!s || typeof s !== "object") continue;
    const n = (k: string) => (typeof s[k] === "number" && Number.isFinite(s[k]) ? (s[k] as number) : 0);
    out.bytes += n("rd_bytes") + n("wr_bytes");
    out.ops += n("rd_operations") + n("wr_operations") + n("flush_operations");
    out.timeNs += n("rd_total_time_ns") + n("wr_total_time_ns") + n("flush_total_time_ns");
  }
  return out;
}

/**
 * Yields to the replacement: while its disk is busy (query-blockstats
 * between two samples above busyBytes or busyOps) the dump writes at
 * `floor`; once it has been idle for `idleSamples` samples the dump
 * writes as fast as it can. In between, the allowed rate is what the disk
 * has shown it can do (the highest combined rate seen) less what the
 * replacement uses now. The replacement's own latency per request is
 * reported with every change, so a timeline shows what the policy saw.
 */
export class AdaptiveRate implements RatePolicy {
  readonly name = "adaptive";
  private rate = NaN;
  private bucket?: TokenBucket;
  private timer?: NodeJS.Timeout;
  private last?: BlockSample;
  private idleRun = 0;
  private written = 0;
  private writtenAt = performance.now();
  private capacity = 0;
  private busy = false;
  private ctx: PolicyContext = {};
  readonly opts: AdaptiveOptions;
  /** Samples taken (for tests and the timeline). */
  readonly samples: { t: number; replacementBps: number; replacementOps: number; allowed: number }[] = [];

  constructor(opts: Partial<AdaptiveOptions> = {}) {
    const defined = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
    this.opts = { busyBytes: 1 << 20, busyOps: 32, floor: 1 << 20, intervalMs: 200, idleSamples: 3, max: Infinity, ...defined };
    this.setRate(this.opts.max);
  }

  start(ctx: PolicyContext): void {
    this.ctx = ctx;
    if (!ctx.replacementMonitor) {
      ctx.note?.("adaptive: no replacement QMP socket, the dump is not limited");
      return;
    }
    const tick = async () => {
      try {
        const q = await ctx.replacementMonitor!();
        if (q && !q.closed) this.observe(sumBlockstats(await q.execute("query-blockstats", undefined, 2000), performance.now()));
      } catch {
        // A replacement that stops answering is not a reason to stop the dump.
      }
      if (this.timer) this.timer = setTimeout(tick, this.opts.intervalMs).unref();
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  /** One blockstats sample of the replacement (public for tests). */
  observe(s: BlockSample): void {
    const prev = this.last;
    this.last = s;
    if (!prev || s.t <= prev.t) return;
    const dt = (s.t - prev.t) / 1000;
    const bps = Math.max(0, s.bytes - prev.bytes) / dt;
    const ops = Math.max(0, s.ops - prev.ops) / dt;
    const latencyUs = s.ops > prev.ops ? (s.timeNs - prev.timeNs) / (s.ops - prev.ops) / 1000 : 0;
    const now = performance.now();
    const dumpBps = this.written / Math.max(1e-3, (now - this.writtenAt) / 1000);
    this.written = 0;
    this.writtenAt = now;
    this.capacity = Math.max(this.capacity * 0.98, dumpBps + bps);
    const busy = bps > this.opts.busyBytes || ops > this.opts.busyOps;
    this.idleRun = busy ? 0 : this.idleRun + 1;
    let allowed: number;
    if (busy) allowed = this.opts.floor;
    else if (this.idleRun >= this.opts.idleSamples) allowed = this.opts.max;
    else allowed = Math.min(this.opts.max, Math.max(this.opts.floor, this.capacity - bps));
    if (busy !== this.busy) {
      this.ctx.note?.(busy ? "adaptive: replacement busy, dump yields" : "adaptive: replacement idle", {
        replacementBps: Math.round(bps), replacementOps: Math.round(ops), latencyUs: Math.round(latencyUs),
      });
      this.busy = busy;
    }
    this.setRate(allowed);
    this.samples.push({ t: s.t, replacementBps: bps, replacementOps: ops, allowed });
    if (this.samples.length > 100_000) this.samples.splice(0, 50_000);
  }

  private setRate(r: number): void {
    if (r === this.rate) return;
    this.rate = r;
    this.bucket = Number.isFinite(r) ? new TokenBucket(r, Math.max(128 << 10, r / 10)) : undefined;
  }

  async acquire(bytes: number): Promise<void> {
    // The bucket in force when the request came; a change of rate applies from the next write.
    await this.bucket?.acquire(bytes);
    this.written += bytes;
  }

  currentRate(): number {
    return this.rate;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

function parseKv(arg: string | undefined, keys: Record<string, (v: string) => number>): Record<string, number> {
  const out: Record<string, number> = {};
  if (!arg) return out;
  for (const part of arg.split(",")) {
    const [k, v, extra] = part.split("=");
    // Own keys only: "__proto__" or "valueOf" would find Object.prototype's.
    const f = Object.hasOwn(keys, k) ? keys[k] : undefined;
    if (!f || v === undefined || extra !== undefined) throw new GuestcoreError(`rate policy option "${part}": known options are ${Object.keys(keys).join(", ")} (KEY=VALUE)`);
    out[k] = f(v);
  }
  return out;
}

export function defaultPolicies(): RatePolicies {
  const size = (v: string) => parseSize(v);
  return new RatePolicies()
    .register("none", "write as fast as the disk allows", () => new NoLimit())
    .register("fixed", "fixed:BYTES per second (K/M/G), e.g. fixed:70M", (arg) => {
      if (!arg) throw new GuestcoreError("rate policy fixed needs a rate: fixed:BYTES (e.g. fixed:70M)");
      const r = parseSize(arg);
      if (!(r > 0)) throw new GuestcoreError(`rate policy fixed: "${arg}" is not a positive rate`);
      return new FixedRate(r);
    })
    .register("adaptive", "yield while the replacement uses its disk (QMP query-blockstats), take the idle bandwidth otherwise; " +
      "options floor=BYTES (while busy), max=BYTES (when idle), busy=BYTES, ops=N, interval=MS, e.g. adaptive:floor=2M,max=70M", (arg) => {
      const o = parseKv(arg, { floor: size, max: size, busy: size, ops: Number, interval: Number });
      for (const [k, v] of Object.entries(o)) if (!(v > 0) || !Number.isFinite(v)) throw new GuestcoreError(`rate policy adaptive: ${k} must be positive`);
      if (o.floor !== undefined && o.max !== undefined && o.floor > o.max) throw new GuestcoreError("rate policy adaptive: floor is above max");
      return new AdaptiveRate({ floor: o.floor, max: o.max, busyBytes: o.busy, busyOps: o.ops, intervalMs: o.interval && Math.max(20, o.interval) });
    });
}
