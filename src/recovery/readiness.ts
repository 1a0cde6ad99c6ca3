// When is the replacement VM "ready"? A user-given probe says: a line on
// its serial console (a file QEMU writes with -serial file:PATH), a line
// in its own output, a TCP port that accepts, or a QMP event. Downtime
// runs from the panic to the first success.
import { closeSync, openSync, readSync } from "node:fs";
import net from "node:net";
import { GuestcoreError } from "../core/errors.js";
import { QmpClient } from "../sources/qmp.js";

export type ProbeSpec =
  | { kind: "file"; path: string; pattern: RegExp }
  | { kind: "log"; pattern: RegExp }
  | { kind: "tcp"; host: string; port: number }
  | { kind: "qmp"; socket?: string; event: string };

/** serial:FILE:REGEX | log:REGEX | tcp:HOST:PORT | qmp:EVENT | qmp:SOCKET:EVENT */
export function parseProbe(spec: string): ProbeSpec {
  const i = spec.indexOf(":");
  const kind = i < 0 ? spec : spec.slice(0, i);
  const rest = i < 0 ? "" : spec.slice(i + 1);
  const regex = (s: string) => {
    if (!s) throw new GuestcoreError(`--ready ${spec}: the pattern is empty`);
    try {
      return new RegExp(s);
    } catch (e) {
      throw new GuestcoreError(`--ready ${spec}: ${(e as Error).message}`);
    }
  };
  switch (kind) {
    case "serial":
    case "file": {
      const j = rest.indexOf(":");
      if (j <= 0) throw new GuestcoreError(`--ready ${spec}: use serial:FILE:REGEX (the file QEMU's -serial file:FILE writes)`);
      return { kind: "file", path: rest.slice(0, j), pattern: regex(rest.slice(j + 1)) };
    }
    case "log":
    case "stdout":
      return { kind: "log", pattern: regex(rest) };
    case "tcp": {
      const j = rest.lastIndexOf(":");
      const port = /^\d{1,5}$/.test(rest.slice(j + 1)) ? Number(rest.slice(j + 1)) : NaN;
      if (j <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new GuestcoreError(`--ready ${spec}: use tcp:HOST:PORT`);
      return { kind: "tcp", host: rest.slice(0, j).replace(/^\[(.*)\]$/, "$1"), port };
    }
    case "qmp": {
      const j = rest.lastIndexOf(":");
      // An empty event or socket would make a probe that never answers.
      if (!rest || j === 0 || j === rest.length - 1) throw new GuestcoreError(`--ready ${spec}: use qmp:EVENT or qmp:SOCKET:EVENT`);
      return j < 0 ? { kind: "qmp", event: rest } : { kind: "qmp", socket: rest.slice(0, j), event: rest.slice(j + 1) };
    }
  }
  throw new GuestcoreError(`--ready ${spec}: unknown probe "${kind}" (serial:FILE:REGEX, log:REGEX, tcp:HOST:PORT, qmp:[SOCKET:]EVENT)`);
}

export interface ProbeContext {
  /** The replacement's own stdout/stderr log (for "log:"). */
  logPath?: string;
  /** The replacement's QMP monitor, shared with the rate policy (QEMU serves one client per socket). */
  monitor?: (socket?: string) => Promise<QmpClient | undefined>;
  pollMs?: number;
}

// A console is read in slices; a line longer than this is cut, so a
// replacement that prints without newlines cannot grow our memory.
const MAX_LINE = 64 << 10;
const SLICE = 64 << 10;

/** Follows a growing file line by line, from its start. */
class LineFollower {
  private pos = 0;
  private partial = "";
  private readonly buf = Buffer.alloc(SLICE);
  constructor(private readonly path: string) {}

  /** New complete lines since the last call (the file may not exist yet). */
  poll(): string[] {
    let fd: number;
    try {
      fd = openSync(this.path, "r");
    } catch {
      return [];
    }
    const lines: string[] = [];
    try {
      for (let i = 0; i < 64; i++) {
        const n = readSync(fd, this.buf, 0, SLICE, this.pos);
        if (n <= 0) break;
        this.pos += n;
        const text = this.partial + this.buf.toString("latin1", 0, n);
        const parts = text.split(/\r?\n/);
        this.partial = parts.pop()!.slice(-MAX_LINE);
        lines.push(...parts);
      }
    } finally {
      closeSync(fd);
    }
    return lines;
  }
}

/**
 * Resolves with a description of what answered, once the probe succeeds;
 * `signal` stops it. Never rejects for a probe that has not answered yet:
 * the caller bounds the wait.
 */
export async function waitReady(probe: ProbeSpec, ctx: ProbeContext, signal: AbortSignal): Promise<string> {
  const poll = ctx.pollMs ?? 100;
  // Each wait takes its abort listener back: a probe polls for up to the
  // ready timeout (ten minutes: 6000 waits at 100 ms).
  const sleep = (ms: number) => new Promise<void>((r) => {
    const wake = () => { clearTimeout(t); signal.removeEventListener("abort", wake); r(); };
    const t = setTimeout(wake, ms);
    signal.addEventListener("abort", wake, { once: true });
  });
  const aborted = () => new GuestcoreError("readiness probe stopped");
  switch (probe.kind) {
    case "file":
    case "log": {
      const path = probe.kind === "file" ? probe.path : ctx.logPath;
      if (!path) throw new GuestcoreError("--ready log: needs the replacement's output log");
      const f = new LineFollower(path);
      while (!signal.aborted) {
        for (const line of f.poll()) if (probe.pattern.test(line)) return `${probe.kind === "file" ? path : "output"}: ${line.trim().slice(0, 200)}`;
        await sleep(poll);
      }
      throw aborted();
    }
    case "tcp": {
      while (!signal.aborted) {
        const ok = await new Promise<boolean>((resolve) => {
          const s = net.connect({ host: probe.host, port: probe.port });
          const done = (v: boolean) => { s.destroy(); resolve(v); };
          s.once("connect", () => done(true));
          s.once("error", () => done(false));
          s.setTimeout(1000, () => done(false));
        });
        if (ok) return `tcp ${probe.host}:${probe.port} accepts`;
        await sleep(Math.max(poll, 200));
      }
      throw aborted();
    }
    case "qmp": {
      while (!signal.aborted) {
        const q = await ctx.monitor?.(probe.socket).catch(() => undefined);
        if (q && !q.closed) {
          const seen = q.events.find((e) => e.event === probe.event);
          if (seen) return `QMP event ${probe.event}`;
          try {
            await q.waitEvent((e) => e.event === probe.event, 1000);
            return `QMP event ${probe.event}`;
          } catch {
            // not yet
          }
        } else {
          await sleep(Math.max(poll, 200));
        }
      }
      throw aborted();
    }
  }
}
