// A small QMP (QEMU Machine Protocol) client: node:net, one JSON object
// per line. QEMU greets with {"QMP": {...}}, the client must send
// qmp_capabilities before anything else, replies are {"return": ...} or
// {"error": {...}} carrying the request's "id", and asynchronous
// {"event": ...} objects may arrive between them at any time.
//
// Everything is bounded: connecting, the greeting, every command and every
// wait for an event has a timeout, and a line longer than maxLineBytes (or
// a peer that talks something else than QMP) ends the connection with a
// one-line GuestcoreError. Every command sent is recorded in `commands`, so
// a caller can prove what it asked QEMU to do (e.g. that no dump was
// requested).
import net from "node:net";
import { GuestcoreError } from "../core/errors.js";

export interface QmpOptions {
  /** Connect + greeting + qmp_capabilities, in ms (default 5000). */
  connectTimeoutMs?: number;
  /** Default per-command timeout, in ms (default 10000). */
  commandTimeoutMs?: number;
  /**
   * Longest reply or event line accepted, in characters (default 4 MiB;
   * QEMU 7.2's largest answers here, info mtree and qom-list of a q35
   * machine, are tens of KiB).
   */
  maxLineBytes?: number;
  /** Events kept for waitEvent (oldest dropped first; default 256). */
  maxEvents?: number;
  /**
   * Keep retrying ENOENT/ECONNREFUSED until the connect timeout (for a
   * QEMU that is still starting). Default false: a missing socket fails
   * at once.
   */
  waitForSocket?: boolean;
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpVersion {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

/** An {"error": ...} reply: QEMU understood the command and refused it. */
export class QmpCommandError extends GuestcoreError {
  constructor(readonly command: string, readonly errorClass: string, readonly desc: string) {
    super(`QMP ${command}: ${desc} (${errorClass})`);
    this.name = "QmpCommandError";
  }
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class QmpClient {
  /** Every command sent, in order (qmp_capabilities included). */
  readonly commands: string[] = [];
  /** Recent events, oldest first. */
  readonly events: QmpEvent[] = [];
  version?: QmpVersion;

  /** The chunks of a line whose newline has not come yet, and their length. */
  private pendingLine: string[] = [];
  private pendingChars = 0;
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<(ev: QmpEvent | Error) => void>();
  private greeting?: { resolve: (g: unknown) => void; reject: (e: Error) => void };
  private closedWith?: Error;
  private readonly maxLine: number;
  private readonly maxEvents: number;
  private readonly commandTimeoutMs: number;

  private constructor(readonly path: string, private readonly sock: net.Socket, opts: QmpOptions) {
    this.maxLine = opts.maxLineBytes ?? 4 << 20;
    this.maxEvents = opts.maxEvents ?? 256;
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 10_000;
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => this.onData(d));
    sock.on("error", (e: NodeJS.ErrnoException) => this.shut(new GuestcoreError(`QMP ${path}: ${e.code ?? e.message}`)));
    sock.on("close", () => this.shut(new GuestcoreError(`QMP ${path}: QEMU closed the connection`)));
  }

  /** Connect, read the greeting and negotiate capabilities. */
  static async connect(path: string, opts: QmpOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.connectTimeoutMs ?? 5000;
    const deadline = Date.now() + timeoutMs;
    const sock = await openSocket(path, deadline, opts.waitForSocket ?? false);
    const c = new QmpClient(path, sock, opts);
    try {
      const g = await c.withDeadline(
        new Promise<unknown>((resolve, reject) => { c.greeting = { resolve, reject }; }),
        deadline,
        // QEMU serves one client per QMP socket; a second one is accepted by
        // the kernel's backlog but gets no greeting until the first leaves.
        `${path}: no QMP greeting within ${timeoutMs} ms (not a QMP socket, or another client is connected: QEMU serves one at a time)`,
      );
      const q = (g as { QMP?: { version?: QmpVersion } }).QMP;
      if (!q || typeof q !== "object") throw new GuestcoreError(`${path} is not a QEMU QMP socket (greeting ${clip(JSON.stringify(g))})`);
      c.version = q.version;
      await c.execute("qmp_capabilities", undefined, Math.max(1, deadline - Date.now()));
      return c;
    } catch (e) {
      c.close();
      throw e;
    }
  }

  /** Run one command; resolves with its "return" value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = this.commandTimeoutMs): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = `gc-${this.nextId++}`;
    this.commands.push(command);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new GuestcoreError(`QMP ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.sock.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + "\n");
    });
  }

  /** An HMP command through human-monitor-command; resolves with its text output. */
  hmp(commandLine: string, timeoutMs = this.commandTimeoutMs): Promise<string> {
    return this.execute<string>("human-monitor-command", { "command-line": commandLine }, timeoutMs);
  }

  /**
   * The first event (already received, or to come) for which pred() is
   * true. Rejects on timeout or when the connection closes.
   */
  waitEvent(pred: (ev: QmpEvent) => boolean, timeoutMs: number, what = "a QMP event"): Promise<QmpEvent> {
    const past = this.events.find(pred);
    if (past) return Promise.resolve(past);
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      const done = () => { clearTimeout(t); this.listeners.delete(l); };
      const t = setTimeout(() => { done(); reject(new GuestcoreError(`timed out after ${timeoutMs} ms waiting for ${what}`)); }, timeoutMs);
      const l = (ev: QmpEvent | Error) => {
        if (ev instanceof Error) { done(); reject(ev); return; }
        if (pred(ev)) { done(); resolve(ev); }
      };
      this.listeners.add(l);
    });
  }

  /** Call `listener` for every event from now on; returns the unsubscribe function. */
  onEvent(listener: (ev: QmpEvent) => void): () => void {
    const l = (ev: QmpEvent | Error) => { if (!(ev instanceof Error)) listener(ev); };
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Let the process exit while this connection is open. */
  unref(): void {
    this.sock.unref();
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  close(): void {
    this.shut(new GuestcoreError(`QMP ${this.path}: connection closed`));
    this.sock.destroy();
  }

  private withDeadline<T>(p: Promise<T>, deadline: number, msg: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new GuestcoreError(msg)), Math.max(0, deadline - Date.now()));
      p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
    });
  }

  private onData(d: string): void {
    // A long line arrives in many chunks. Each chunk is searched once for
    // a newline and kept apart until one comes: appending to one string
    // and searching it whole on every chunk would be quadratic.
    let rest = d;
    for (;;) {
      if (this.closedWith) return;
      const i = rest.indexOf("\n");
      if (i < 0) break;
      const line = (this.pendingChars ? this.pendingLine.join("") + rest.slice(0, i) : rest.slice(0, i)).trim();
      this.pendingLine = [];
      this.pendingChars = 0;
      rest = rest.slice(i + 1);
      if (line.length > this.maxLine) return this.tooLong();
      if (line) this.onLine(line);
    }
    if (rest) {
      this.pendingLine.push(rest);
      this.pendingChars += rest.length;
    }
    if (this.greeting) {
      // A QMP greeting is one short JSON object: anything else is another protocol.
      // (Joined only while it is short: past GREETING_MAX it fails.)
      const text = this.pendingChars > GREETING_MAX ? this.pendingLine[0] : this.pendingLine.join("");
      const head = text.trimStart();
      if ((head.length > 0 && head[0] !== "{") || this.pendingChars > GREETING_MAX) {
        this.fail(new GuestcoreError(`${this.path} is not a QEMU QMP socket (it sent ${clip(JSON.stringify(text.slice(0, 60)))})`));
      }
    } else if (this.pendingChars > this.maxLine) {
      this.tooLong();
    }
  }

  private tooLong(): void {
    this.pendingLine = [];
    this.pendingChars = 0;
    this.fail(new GuestcoreError(`QMP ${this.path}: a reply longer than ${this.maxLine} characters; giving up`));
  }

  private onLine(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line);
      if (!msg || typeof msg !== "object" || Array.isArray(msg)) throw new Error("not an object");
    } catch {
      this.fail(new GuestcoreError(`${this.path} is not a QEMU QMP socket (it sent ${clip(JSON.stringify(line))})`));
      return;
    }
    if (this.greeting) {
      const g = this.greeting;
      this.greeting = undefined;
      g.resolve(msg);
      return;
    }
    if (typeof msg.event === "string") {
      this.events.push(msg as unknown as QmpEvent);
      if (this.events.length > this.maxEvents) this.events.shift();
      for (const l of [...this.listeners]) l(msg as unknown as QmpEvent);
      return;
    }
    // A reply without our id (QEMU could not parse the request) goes to the oldest command.
    const id = typeof msg.id === "string" && this.pending.has(msg.id) ? msg.id : this.pending.keys().next().value;
    if (id === undefined) return;
    const p = this.pending.get(id)!;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ("error" in msg) {
      const err = (msg.error ?? {}) as { class?: string; desc?: string };
      p.reject(new QmpCommandError(p.command, String(err.class ?? "Error"), String(err.desc ?? "unknown error")));
    } else if ("return" in msg) {
      p.resolve(msg.return);
    } else {
      p.reject(new GuestcoreError(`QMP ${p.command}: unexpected reply ${clip(line)}`));
    }
  }

  private fail(e: Error): void {
    this.shut(e);
    this.sock.destroy();
  }

  private shut(e: Error): void {
    if (this.closedWith) return;
    this.closedWith = e;
    if (this.greeting) {
      this.greeting.reject(e);
      this.greeting = undefined;
    }
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new GuestcoreError(`QMP ${p.command}: ${e.message}`));
    }
    this.pending.clear();
    for (const l of [...this.listeners]) l(e);
  }
}

/** Longest greeting accepted (QEMU's is about 150 bytes). */
const GREETING_MAX = 64 << 10;

function clip(s: string, n = 120): string {
  return s.length > n ? s.slice(0, n) + "..." : s;
}

async function openSocket(path: string, deadline: number, retry: boolean): Promise<net.Socket> {
  for (;;) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.createConnection(path);
        const t = setTimeout(() => { s.destroy(); reject(Object.assign(new Error("timeout"), { code: "ETIMEDOUT" })); }, Math.max(1, deadline - Date.now()));
        s.once("connect", () => { clearTimeout(t); s.removeAllListeners("error"); resolve(s); });
        s.once("error", (e) => { clearTimeout(t); s.destroy(); reject(e); });
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (retry && (code === "ENOENT" || code === "ECONNREFUSED") && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      if (code === "ENOENT") throw new GuestcoreError(`no QMP socket at ${path} (is QEMU started with -qmp unix:${path},server=on,wait=off?)`);
      if (code === "ECONNREFUSED") throw new GuestcoreError(`nothing listens on ${path} (QEMU has exited?)`);
      if (code === "ENOTSOCK") throw new GuestcoreError(`${path} is not a socket`);
      if (code === "EACCES") throw new GuestcoreError(`no permission to connect to ${path}`);
      if (code === "ETIMEDOUT") throw new GuestcoreError(`cannot connect to ${path}: timed out`);
      throw new GuestcoreError(`cannot connect to ${path}: ${code ?? (e as Error).message}`);
    }
  }
}
