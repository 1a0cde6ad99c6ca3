// The replacement VM: a user-given command (typically the crashed guest's
// own QEMU command line with a fresh memory file), started as soon as
// the host has room. It must outlive recover: it runs in its own session
// with its output in a log file, never on a pipe to us, so a recover that
// dies (even by SIGKILL) takes nothing of the service down with it.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { GuestcoreError } from "../core/errors.js";
import { readFileTail } from "../core/file.js";
import { QmpClient } from "../sources/qmp.js";

// Lines of a log quoted in an error: its last 16 KiB hold them.
const LOG_TAIL_BYTES = 16 << 10;

export interface ReplacementSpec {
  /** Run by /bin/sh -c. */
  command: string;
  /** Its stdout and stderr (appended). */
  logPath: string;
  /** Its QMP socket, for the adaptive rate policy and qmp: probes. */
  qmpSocket?: string;
  /** Extra environment, e.g. GUESTCORE_CRASHED_MEM for the command. */
  env?: Record<string, string>;
}

export class Replacement {
  readonly proc: ChildProcess;
  exitCode?: number | null;
  exitSignal?: string | null;
  private monitors = new Map<string, Promise<QmpClient | undefined>>();

  private constructor(readonly spec: ReplacementSpec, proc: ChildProcess) {
    this.proc = proc;
    proc.once("exit", (code, sig) => {
      this.exitCode = code;
      this.exitSignal = sig;
    });
  }

  static start(spec: ReplacementSpec): Replacement {
    const log = openSync(spec.logPath, "a");
    try {
      const proc = spawn("/bin/sh", ["-c", spec.command], {
        detached: true,
        stdio: ["ignore", log, log],
        env: { ...process.env, ...spec.env },
      });
      proc.once("error", () => {});
      proc.unref();
      if (proc.pid === undefined) throw new GuestcoreError(`cannot start the replacement: /bin/sh -c ${JSON.stringify(spec.command)}`);
      return new Replacement(spec, proc);
    } finally {
      closeSync(log);
    }
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get exited(): boolean {
    return this.exitCode !== undefined;
  }

  /** The last lines of its output, for error messages. */
  tail(lines = 5): string {
    try {
      // The guest writes its console into this log without limit: only its end is read.
      return readFileTail(this.spec.logPath, LOG_TAIL_BYTES).toString("latin1").trimEnd().split("\n").slice(-lines).join(" | ");
    } catch {
      return "";
    }
  }

  /**
   * Its QMP monitor (connected once, shared: QEMU serves one client per
   * socket). Undefined when it has none or is not up yet; a closed
   * connection is retried on the next call.
   */
  monitor(socket = this.spec.qmpSocket): Promise<QmpClient | undefined> {
    if (!socket) return Promise.resolve(undefined);
    const have = this.monitors.get(socket);
    if (have) {
      return have.then((q) => {
        if (q && !q.closed) return q;
        this.monitors.delete(socket);
        return this.connect(socket);
      });
    }
    return this.connect(socket);
  }

  private connect(socket: string): Promise<QmpClient | undefined> {
    const p = QmpClient.connect(socket, { connectTimeoutMs: 1500, commandTimeoutMs: 3000 })
      .then((q) => {
        q.unref();
        return q;
      })
      .catch(() => {
        this.monitors.delete(socket);
        return undefined;
      });
    this.monitors.set(socket, p);
    return p;
  }

  /** Let go of its monitors (the replacement keeps running). */
  async detach(): Promise<void> {
    for (const p of this.monitors.values()) (await p)?.close();
    this.monitors.clear();
  }
}
