// `guestcore watch`: a supervisor over the QMP sockets of several QEMU
// guests. When one panics, it lets go of that guest's socket and runs
// `guestcore recover --qmp SOCK --panicked-at MS ARGS...` for it.
//
// QMP facts this is built on:
// - QEMU serves one QMP client per socket; a second client is accepted by
//   the kernel but gets no greeting until the first leaves. So a guest's
//   connection is closed before its recover starts, and not reopened while
//   recover runs (recover is then the one client).
// - pvpanic with -action panic=pause (or libvirt's -no-shutdown) sends
//   GUEST_PANICKED with data.action "pause" from the vCPU thread, and the
//   STOP follows from the main loop a moment later: watch waits for the
//   STOP, so recover finds the guest stopped. Other actions ("poweroff",
//   "run") leave nothing to recover: QEMU quits or the guest goes on.
// - A guest can be panicked before watch connects (watch restarted, QEMU
//   started with the socket elsewhere first): query-status says
//   "guest-panicked". Its panic time is unknown; recover gets the connect
//   time, and the event says so.
// - After recover the guest is normally gone (recover quits it). If the
//   socket still answers, watching resumes; if the guest is still
//   panicked, it is not recovered again until it has run.
import { fileURLToPath } from "node:url";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { GuestcoreError } from "../core/errors.js";
import { QmpClient, type QmpEvent } from "../sources/qmp.js";
import { expandArgs, readArgsFile, scanSocketDir, type WatchConfig, type WatchGuest } from "./watch-config.js";
import { Slots, startLogged, type ChildResult, type StartedChild } from "./watch-child.js";

export type WatchEvent = { time: string } & (
  | { type: "added"; guest: string; qmp: string }
  | { type: "removed"; guest: string; qmp: string }
  | { type: "watching"; guest: string; qmp: string; status: string }
  | { type: "unreachable"; guest: string; qmp: string; error: string; retryMs: number }
  | { type: "disconnected"; guest: string; qmp: string; reason: string }
  | {
    type: "panicked"; guest: string; qmp: string; panickedAt: number;
    /** "event": GUEST_PANICKED's timestamp; "status": already panicked at connect, panickedAt is the connect time. */
    from: "event" | "status";
    action?: string;
    /** For from "event": whether QEMU's STOP followed within the wait. */
    stopped?: boolean;
  }
  | { type: "ignored"; guest: string; qmp: string; reason: string }
  | { type: "queued"; guest: string; running: number; limit: number }
  | { type: "recover-started"; guest: string; pid?: number; argv: string[]; log?: string }
  | { type: "recover-exited"; guest: string; code: number | null; signal: string | null; error?: string; seconds: number; log?: string }
  | { type: "error"; guest?: string; message: string }
);

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
type EventBody = DistributiveOmit<WatchEvent, "time">;

export interface WatcherOptions {
  /** Watch every *.qmp / *.sock socket in this directory (polled for new ones). */
  dir?: string;
  /** Guests, default args and the command, from loadWatchConfig. */
  config?: WatchConfig;
  /** Recovers running at once (default 1). */
  maxParallel?: number;
  /** Each guest's recover output is appended to LOGDIR/<name>.log; without it, to our stderr. */
  logDir?: string;
  /** Stop after the first recover has exited. */
  once?: boolean;
  onEvent?: (ev: WatchEvent) => void;
  /** Directory poll interval, ms (default 1000). */
  pollMs?: number;
  /** Reconnect backoff, ms: first retry and cap (default 500 and 10000). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** QMP connect + greeting, ms (default 5000). */
  connectTimeoutMs?: number;
  /** How long to wait for STOP after GUEST_PANICKED, ms (default 5000). */
  stopWaitMs?: number;
  /** A connection without events is asked query-status this often, ms (default 60000). */
  livenessMs?: number;
}

/** `node .../dist/src/cli.js`: the guestcore this module was built with. */
export function defaultCommand(): string[] {
  return [process.execPath, fileURLToPath(new URL("../cli.js", import.meta.url))];
}

/** GUEST_PANICKED's timestamp as epoch milliseconds (QEMU stamps events with the host's wall clock). */
export function eventMs(ev: QmpEvent): number | undefined {
  const t = ev.timestamp;
  if (!t || !Number.isFinite(t.seconds) || !Number.isFinite(t.microseconds) || t.seconds < 0) return undefined;
  return t.seconds * 1000 + Math.floor(t.microseconds / 1000);
}

function pausingPanic(ev: QmpEvent): boolean {
  if (ev.event !== "GUEST_PANICKED") return false;
  const action = ev.data?.action;
  return action === undefined || action === "pause";
}

interface GuestState {
  guest: WatchGuest;
  /** The directory a socket was found in: its <name>.args.json lives there. */
  argsDir?: string;
  abort: AbortController;
  client?: QmpClient;
  recovering: boolean;
  /** Set by a recover, cleared once the guest is seen running: the same panic is not recovered twice. */
  recovered?: ChildResult;
  stillReported: boolean;
}

type Outcome =
  | { kind: "panicked"; at: number; from: "event" | "status"; action?: string; stopped?: boolean }
  | { kind: "still-panicked" }
  | { kind: "closed"; reason: string };

export class Watcher {
  /** Every recover's result, in the order they exited. */
  readonly exits: ChildResult[] = [];
  /** Resolves when the watcher has stopped (stop(), or --once); rejects on a bug. */
  readonly finished: Promise<void>;

  private readonly guests = new Map<string, GuestState>();
  private readonly loops = new Set<Promise<void>>();
  private readonly children = new Set<StartedChild>();
  private readonly abort = new AbortController();
  private readonly slots: Slots;
  private readonly command: string[];
  private readonly defaultArgs: string[];
  private readonly skipped = new Set<string>();
  private resolveFinished!: () => void;
  private rejectFinished!: (e: unknown) => void;
  private stopping?: Promise<void>;
  private started = false;
  private fatal?: unknown;

  constructor(private readonly opts: WatcherOptions) {
    this.slots = new Slots(opts.maxParallel ?? 1);
    this.command = opts.config?.command ?? defaultCommand();
    this.defaultArgs = opts.config?.defaultArgs ?? [];
    this.finished = new Promise((resolve, reject) => { this.resolveFinished = resolve; this.rejectFinished = reject; });
    // A caller that only awaits stop() must not see an unhandled rejection.
    this.finished.catch(() => {});
  }

  /** Find the guests and start watching them. Throws a GuestcoreError when there is nothing to watch. */
  async start(): Promise<void> {
    if (this.started) throw new GuestcoreError("this watcher was already started");
    this.started = true;
    const configured = this.opts.config?.guests ?? [];
    const found = this.opts.dir !== undefined ? scanSocketDir(this.opts.dir) : [];
    if (this.opts.dir === undefined && configured.length === 0) {
      throw new GuestcoreError("nothing to watch: give a directory of QMP sockets, or a config with guests");
    }
    for (const g of configured) this.add({ ...g });
    for (const s of found) this.addFromDir(s.name, s.qmp);
    if (this.opts.dir !== undefined) this.spawnLoop(this.pollDir(this.opts.dir));
  }

  /**
   * Stop watching: connections close, retries and the directory poll end.
   * Running recovers are waited for (a dump cut short is worth nothing),
   * unless `signal` is given: then they are sent that signal.
   */
  stop(opts: { signal?: NodeJS.Signals } = {}): Promise<void> {
    if (opts.signal) for (const c of this.children) c.kill(opts.signal);
    this.stopping ??= (async () => {
      this.abort.abort();
      for (const st of this.guests.values()) st.abort.abort();
      // Loops end within a connect timeout; nothing starts new ones once aborted.
      while (this.loops.size > 0) await Promise.allSettled([...this.loops]);
      if (this.fatal !== undefined) this.rejectFinished(this.fatal);
      else this.resolveFinished();
    })();
    return this.stopping;
  }

  private emit(ev: EventBody): void {
    this.opts.onEvent?.({ time: new Date().toISOString(), ...ev } as WatchEvent);
  }

  private spawnLoop(p: Promise<void>): void {
    const tracked = p.catch((e) => {
      // Not a user's mistake (those are events): a bug. Stop, and let finished carry it.
      this.fatal ??= e;
      void this.stop();
    }).finally(() => this.loops.delete(tracked));
    this.loops.add(tracked);
  }

  private add(guest: WatchGuest, argsDir?: string): void {
    const st: GuestState = { guest, argsDir, abort: new AbortController(), recovering: false, stillReported: false };
    st.abort.signal.addEventListener("abort", () => st.client?.close(), { once: true });
    this.guests.set(guest.qmp, st);
    this.spawnLoop(this.guestLoop(st));
  }

  private addFromDir(name: string, qmp: string): void {
    if (this.guests.has(qmp) || this.abort.signal.aborted) return;
    const clash = [...this.guests.values()].find((s) => s.guest.name === name);
    if (clash) {
      if (!this.skipped.has(qmp)) this.emit({ type: "error", guest: name, message: `${qmp} skipped: guest "${name}" is ${clash.guest.qmp}` });
      this.skipped.add(qmp);
      return;
    }
    const dir = path.dirname(qmp);
    // Read now only to report a broken args file early; it is read again at the panic.
    try {
      readArgsFile(dir, name);
    } catch (e) {
      if (!(e instanceof GuestcoreError)) throw e;
      this.emit({ type: "error", guest: name, message: e.message });
    }
    this.emit({ type: "added", guest: name, qmp });
    this.add({ name, qmp }, dir);
  }

  private async pollDir(dir: string): Promise<void> {
    const signal = this.abort.signal;
    let failing = false;
    // A daemon's loop: each turn sleeps pollMs, and ends with stop().
    while (!signal.aborted) {
      await sleep(this.opts.pollMs ?? 1000, signal);
      if (signal.aborted) return;
      let found;
      try {
        found = scanSocketDir(dir);
        failing = false;
      } catch (e) {
        if (!(e instanceof GuestcoreError)) throw e;
        if (!failing) this.emit({ type: "error", message: `${e.message}; still polling` });
        failing = true;
        continue;
      }
      const present = new Set(found.map((s) => s.qmp));
      for (const s of found) this.addFromDir(s.name, s.qmp);
      for (const [qmp, st] of this.guests) {
        // A socket that goes while its recover runs is dropped when recover is done.
        if (st.argsDir === undefined || present.has(qmp) || st.recovering) continue;
        st.abort.abort();
        this.guests.delete(qmp);
        this.emit({ type: "removed", guest: st.guest.name, qmp });
      }
      for (const qmp of this.skipped) if (!present.has(qmp)) this.skipped.delete(qmp);
    }
  }

  private async guestLoop(st: GuestState): Promise<void> {
    const { name, qmp } = st.guest;
    const signal = st.abort.signal;
    const minMs = this.opts.retryMinMs ?? 500;
    const maxMs = this.opts.retryMaxMs ?? 10_000;
    let retryMs = minMs;
    let unreachable = false;
    // A daemon's loop: every turn either connects, or sleeps retryMs (>= minMs).
    while (!signal.aborted) {
      let c: QmpClient;
      try {
        // No waitForSocket: the retrying is ours, so stop() can cut a backoff short.
        c = await QmpClient.connect(qmp, { connectTimeoutMs: this.opts.connectTimeoutMs ?? 5000, commandTimeoutMs: 10_000 });
      } catch (e) {
        if (!(e instanceof GuestcoreError)) throw e;
        if (signal.aborted) return;
        // Once per outage: a guest that is down for a day is one line, not 9000.
        if (!unreachable) this.emit({ type: "unreachable", guest: name, qmp, error: e.message, retryMs: maxMs });
        unreachable = true;
        await sleep(retryMs, signal);
        retryMs = Math.min(retryMs * 2, maxMs);
        continue;
      }
      if (signal.aborted) {
        c.close();
        return;
      }
      unreachable = false;
      retryMs = minMs;
      st.client = c;
      let out: Outcome;
      try {
        out = await this.watchConnection(st, c);
      } finally {
        // Let go before recover connects: QEMU would not greet it otherwise.
        c.close();
        st.client = undefined;
      }
      if (signal.aborted) return;
      if (out.kind === "closed") {
        this.emit({ type: "disconnected", guest: name, qmp, reason: out.reason });
        await sleep(minMs, signal);
        continue;
      }
      if (out.kind === "still-panicked") {
        // Look again now and then (briefly: an operator's client waits while we are connected).
        await sleep(maxMs, signal);
        continue;
      }
      this.emit({ type: "panicked", guest: name, qmp, panickedAt: out.at, from: out.from, action: out.action, stopped: out.stopped });
      st.recovering = true;
      try {
        await this.recover(st, out.at, out.from);
      } finally {
        st.recovering = false;
      }
      if (this.opts.once && this.exits.length > 0) {
        void this.stop();
        return;
      }
    }
  }

  /** Watch one connection until the guest panics, or the connection ends. */
  private async watchConnection(st: GuestState, c: QmpClient): Promise<Outcome> {
    const { name, qmp } = st.guest;
    const connectedAt = Date.now();
    const off = c.onEvent((ev) => {
      // Running again: a later panic is a new one, to be recovered.
      if (ev.event === "RESUME") st.recovered = undefined;
      if (ev.event === "GUEST_PANICKED" && !pausingPanic(ev)) {
        const action = String(ev.data?.action);
        this.emit({ type: "ignored", guest: name, qmp, reason: `GUEST_PANICKED with action ${action}: QEMU does not keep the guest paused (start it with -action panic=pause, or libvirt's on_crash preserve); nothing to recover` });
      }
    });
    try {
      const status = await c.execute<{ status: string; running: boolean }>("query-status");
      this.emit({ type: "watching", guest: name, qmp, status: status.status });
      // GUEST_PANICKED may have come between the greeting and the reply.
      let ev = c.events.find(pausingPanic);
      if (!ev && status.status === "guest-panicked") {
        if (st.recovered) {
          if (!st.stillReported) {
            const r = st.recovered;
            this.emit({ type: "ignored", guest: name, qmp, reason: `still panicked after recover ${r.error ?? (r.signal ? `was killed by ${r.signal}` : `exited with code ${r.code}`)}; not recovering it again until it has run (quit it, or resume it)` });
          }
          st.stillReported = true;
          return { kind: "still-panicked" };
        }
        return { kind: "panicked", at: connectedAt, from: "status" };
      }
      st.stillReported = false;
      if (status.running) st.recovered = undefined;
      const liveness = this.opts.livenessMs ?? 60_000;
      // A daemon's loop: each turn waits up to `liveness` for the panic.
      while (!ev) {
        try {
          ev = await c.waitEvent(pausingPanic, liveness, "GUEST_PANICKED");
        } catch (e) {
          if (c.closed || st.abort.signal.aborted) return { kind: "closed", reason: (e as Error).message };
          // Quiet for a while: a hung QEMU fails this and is reconnected.
          await c.execute("query-status");
        }
      }
      const stopped = await waitStopAfter(c, ev, this.opts.stopWaitMs ?? 5000);
      return { kind: "panicked", at: eventMs(ev) ?? Date.now(), from: "event", action: String(ev.data?.action ?? "pause"), stopped };
    } catch (e) {
      if (!(e instanceof GuestcoreError)) throw e;
      return { kind: "closed", reason: e.message };
    } finally {
      off();
    }
  }

  private async recover(st: GuestState, panickedAt: number, from: "event" | "status"): Promise<void> {
    const { name, qmp } = st.guest;
    // The watcher's signal, not the guest's: a socket removed while queued still gets its recover.
    if (this.slots.running >= this.slots.limit) this.emit({ type: "queued", guest: name, running: this.slots.running, limit: this.slots.limit });
    const release = await this.slots.acquire(this.abort.signal);
    if (!release) return;
    try {
      let args: string[];
      try {
        args = st.guest.args ?? (st.argsDir !== undefined ? readArgsFile(st.argsDir, name) : undefined) ?? this.defaultArgs;
      } catch (e) {
        if (!(e instanceof GuestcoreError)) throw e;
        this.notStarted(st, e.message);
        return;
      }
      const argv = [...this.command, "recover", "--qmp", qmp, "--panicked-at", String(panickedAt), ...expandArgs(args, name)];
      const log = this.opts.logDir !== undefined ? path.join(this.opts.logDir, `${name}.log`) : undefined;
      const when = from === "status"
        ? "was already panicked when watch connected; --panicked-at is the connect time, the panic's own time is unknown"
        : `panicked at ${new Date(panickedAt).toISOString()} (GUEST_PANICKED)`;
      let child: StartedChild;
      try {
        child = startLogged(argv, log, `--- ${new Date().toISOString()} guestcore watch: ${name} ${when}; running ${shellQuote(argv)}`);
      } catch (e) {
        if (!(e instanceof GuestcoreError)) throw e;
        this.notStarted(st, e.message);
        return;
      }
      this.children.add(child);
      this.emit({ type: "recover-started", guest: name, pid: child.pid, argv, log });
      const r = await child.done;
      this.children.delete(child);
      st.recovered = r;
      this.exits.push(r);
      this.emit({ type: "recover-exited", guest: name, code: r.code, signal: r.signal, error: r.error, seconds: r.seconds, log });
    } finally {
      release();
    }
  }

  /** A recover that could not start counts as one that failed: --once ends, the panic is not retried. */
  private notStarted(st: GuestState, why: string): void {
    this.emit({ type: "error", guest: st.guest.name, message: `not recovered: ${why}` });
    const r: ChildResult = { code: null, signal: null, error: `not started: ${why}`, seconds: 0 };
    st.recovered = r;
    this.exits.push(r);
  }
}

/** Resolves true when a STOP follows `panic` within ms, false otherwise (closed, or timed out). */
function waitStopAfter(c: QmpClient, panic: QmpEvent, ms: number): Promise<boolean> {
  // Only a STOP after the panic counts: an earlier pause and cont left one in c.events.
  const after = (e: QmpEvent) => e.event === "STOP" && c.events.indexOf(e) > c.events.indexOf(panic);
  return c.waitEvent(after, ms, "STOP").then(() => true, () => false);
}

/** Sleep ms, or less when signal aborts. */
async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await delay(ms, undefined, { signal }).catch(() => {});
}

/** argv as a shell would need it, for log lines an operator may paste. */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(" ");
}
