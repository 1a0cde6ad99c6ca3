// A stand-in for QEMU's QMP server on a unix socket, for tests that must
// not start guests. It keeps the part of QEMU's behaviour that clients
// depend on: the greeting, qmp_capabilities first, query-status, quit,
// events with {seconds, microseconds} timestamps, and one client at a time
// (QEMU's monitor greets the next client only when the current one has
// left; until then the kernel has accepted the connection and it waits).
import net from "node:net";

export interface FakeQmpConnection {
  acceptedAt: number;
  greetedAt?: number;
  closedAt?: number;
}

export class FakeQmp {
  status: string;
  /** Every connection accepted, in order. */
  readonly connections: FakeQmpConnection[] = [];
  /** Every command received, in order. */
  readonly commands: string[] = [];
  quitAt?: number;
  /** Answers by command name, given the command's arguments (they take over the built-in ones). */
  readonly handlers = new Map<string, (args: Record<string, unknown>) => unknown>();

  private active?: { sock: net.Socket; conn: FakeQmpConnection; negotiated: boolean };
  private readonly waiting: Array<{ sock: net.Socket; conn: FakeQmpConnection }> = [];
  private readonly all = new Set<net.Socket>();
  private closed = false;

  private constructor(readonly path: string, private readonly server: net.Server, status: string) {
    this.status = status;
    server.on("connection", (sock) => this.accept(sock));
  }

  static listen(path: string, opts: { status?: string } = {}): Promise<FakeQmp> {
    const server = net.createServer();
    const fake = new FakeQmp(path, server, opts.status ?? "running");
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => { server.off("error", reject); resolve(fake); });
    });
  }

  get running(): boolean {
    return this.status === "running";
  }

  /** True while a client has negotiated capabilities (i.e. someone is watching). */
  get hasClient(): boolean {
    return this.active?.negotiated ?? false;
  }

  /**
   * What pvpanic does with -action panic=pause: GUEST_PANICKED (action
   * pause) at once, the run state guest-panicked, and STOP a moment later
   * (QEMU emits it from the main loop after the vCPU thread's panic).
   */
  panic(ts: { seconds: number; microseconds: number }, opts: { action?: string; stopDelayMs?: number } = {}): void {
    const action = opts.action ?? "pause";
    this.event("GUEST_PANICKED", ts, { action, info: { type: "hyper-v" } });
    if (action !== "pause") return;
    this.status = "guest-panicked";
    const stop = () => this.event("STOP", { seconds: ts.seconds, microseconds: ts.microseconds + 1 });
    if (opts.stopDelayMs) setTimeout(stop, opts.stopDelayMs);
    else stop();
  }

  /** The guest runs again (cont, or a replacement on the same socket). */
  resume(): void {
    this.status = "running";
    const now = Date.now();
    this.event("RESUME", { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 });
  }

  /** Any event, stamped now, to the client that negotiated (none: dropped, as QEMU does). */
  emit(name: string, data?: unknown): void {
    const now = Date.now();
    this.event(name, { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 }, data);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    for (const s of this.all) s.destroy();
    // libuv unlinks a listening unix socket's path when it closes.
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private event(name: string, ts: { seconds: number; microseconds: number }, data?: unknown): void {
    if (!this.active?.negotiated) return;
    this.send(this.active.sock, { timestamp: ts, event: name, ...(data ? { data } : {}) });
  }

  private accept(sock: net.Socket): void {
    const conn: FakeQmpConnection = { acceptedAt: Date.now() };
    this.connections.push(conn);
    this.all.add(sock);
    sock.setEncoding("utf8");
    sock.on("error", () => {});
    sock.on("close", () => {
      conn.closedAt = Date.now();
      this.all.delete(sock);
      const w = this.waiting.findIndex((x) => x.sock === sock);
      if (w >= 0) this.waiting.splice(w, 1);
      if (this.active?.sock === sock) {
        this.active = undefined;
        const next = this.waiting.shift();
        if (next && !this.closed) this.greet(next.sock, next.conn);
      }
    });
    if (this.active) this.waiting.push({ sock, conn });
    else this.greet(sock, conn);
  }

  private greet(sock: net.Socket, conn: FakeQmpConnection): void {
    const me = { sock, conn, negotiated: false };
    this.active = me;
    conn.greetedAt = Date.now();
    this.send(sock, { QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: "fake" }, capabilities: ["oob"] } });
    let buf = "";
    sock.on("data", (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line) this.command(me, line);
      }
    });
  }

  private command(me: { sock: net.Socket; negotiated: boolean }, line: string): void {
    let msg: { execute?: string; id?: unknown; arguments?: Record<string, unknown> };
    try {
      msg = JSON.parse(line);
    } catch {
      this.send(me.sock, { error: { class: "GenericError", desc: "JSON parse error" } });
      return;
    }
    const cmd = String(msg.execute);
    this.commands.push(cmd);
    const reply = (r: object) => this.send(me.sock, { ...r, ...(msg.id !== undefined ? { id: msg.id } : {}) });
    if (!me.negotiated && cmd !== "qmp_capabilities") {
      reply({ error: { class: "CommandNotFound", desc: "Expecting capabilities negotiation with 'qmp_capabilities'" } });
      return;
    }
    const h = cmd === "qmp_capabilities" ? undefined : this.handlers.get(cmd);
    if (h) {
      reply({ return: h(msg.arguments ?? {}) });
      return;
    }
    switch (cmd) {
      case "qmp_capabilities":
        me.negotiated = true;
        reply({ return: {} });
        return;
      case "query-status":
        reply({ return: { status: this.status, singlestep: false, running: this.running } });
        return;
      case "quit": {
        // QEMU answers, says SHUTDOWN, and exits: the socket goes with it.
        reply({ return: {} });
        const now = Date.now();
        this.send(me.sock, { timestamp: { seconds: Math.floor(now / 1000), microseconds: 0 }, event: "SHUTDOWN", data: { guest: false, reason: "host-qmp-quit" } });
        this.quitAt = now;
        void this.close();
        return;
      }
      default:
        reply({ error: { class: "CommandNotFound", desc: `The command ${cmd} has not been found` } });
    }
  }

  private send(sock: net.Socket, obj: unknown): void {
    if (!sock.destroyed) sock.write(JSON.stringify(obj) + "\r\n");
  }
}
