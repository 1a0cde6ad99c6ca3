// The processes `guestcore watch` starts: a limit on how many run at once,
// and one recover run with its output appended to the guest's log file.
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import path from "node:path";
import { GuestcoreError } from "../core/errors.js";

/**
 * At most `limit` holders at once, served in the order they asked. One
 * recover per disk is the sane default: a dump writes as fast as the disk
 * takes it, and two dumps on one disk make both late.
 */
export class Slots {
  private used = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new GuestcoreError(`the number of parallel recovers must be a positive integer, not ${limit}`);
  }

  get running(): number {
    return this.used;
  }

  /** Resolves with a release function; an aborted wait resolves with undefined. */
  acquire(signal: AbortSignal): Promise<(() => void) | undefined> {
    const grant = () => {
      this.used++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        this.used--;
        this.waiting.shift()?.();
      };
    };
    if (signal.aborted) return Promise.resolve(undefined);
    if (this.used < this.limit) return Promise.resolve(grant());
    return new Promise((resolve) => {
      const wake = () => {
        signal.removeEventListener("abort", onAbort);
        resolve(grant());
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(wake);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve(undefined);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(wake);
    });
  }
}

export interface ChildResult {
  /** Exit code; null when killed by a signal or never started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the program could not be started (ENOENT, EACCES). */
  error?: string;
  seconds: number;
}

export interface StartedChild {
  pid?: number;
  /** Resolves when the process has exited (or failed to start). */
  done: Promise<ChildResult>;
  kill(signal: NodeJS.Signals): void;
}

/**
 * Start argv[0] with argv[1..]. Its stdout and stderr are appended to
 * `logFile` (created with its directory), after a header line naming the
 * run; without a log file they go to our stderr, which keeps our stdout
 * for events (--json). Nothing is piped through us: a dump's progress
 * output must not stall on a slow reader.
 */
export function startLogged(argv: readonly string[], logFile: string | undefined, header: string): StartedChild {
  const t0 = Date.now();
  let fd: number | undefined;
  if (logFile) {
    try {
      mkdirSync(path.dirname(logFile), { recursive: true, mode: 0o750 });
      fd = openSync(logFile, "a", 0o640);
      writeSync(fd, header + "\n");
    } catch (e) {
      if (fd !== undefined) closeSync(fd);
      throw new GuestcoreError(`cannot write ${logFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const out = fd ?? 2;
  try {
    // Not detached: a Ctrl-C or systemd's stop reaches recover as it reaches us.
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", out, out] });
    const done = new Promise<ChildResult>((resolve) => {
      let settled = false;
      const finish = (r: Omit<ChildResult, "seconds">) => {
        if (settled) return;
        settled = true;
        const res = { ...r, seconds: (Date.now() - t0) / 1000 };
        if (logFile) appendTrailer(logFile, res);
        resolve(res);
      };
      child.once("error", (e: NodeJS.ErrnoException) => finish({ code: null, signal: null, error: `cannot run ${argv[0]}: ${e.code ?? e.message}` }));
      child.once("exit", (code, signal) => finish({ code, signal }));
    });
    return { pid: child.pid, done, kill: (s) => { child.kill(s); } };
  } finally {
    // spawn() has forked by the time it returns; the child holds its own copy.
    if (fd !== undefined) closeSync(fd);
  }
}

function appendTrailer(logFile: string, r: ChildResult): void {
  const how = r.error ?? (r.signal ? `killed by ${r.signal}` : `exited with code ${r.code}`);
  try {
    const fd = openSync(logFile, "a");
    try { writeSync(fd, `--- ${new Date().toISOString()} ${how} after ${r.seconds.toFixed(1)} s\n`); } finally { closeSync(fd); }
  } catch {
    // The exit is reported as an event as well; a full disk must not hide it.
  }
}
