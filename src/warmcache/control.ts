// The disk server's control socket: one JSON object per line each way.
// `recover --warm-cache` asks it to adopt a crashed guest's clean cache
// pages; operators and tests read its counters. Lines are bounded: the
// largest message, a pfn bitmap of a 1 TiB guest in base64, is ~43 MB.
import { createConnection, type Socket } from "node:net";
import { GuestcoreError } from "../core/errors.js";
import { UnixServer } from "./unix-server.js";

const MAX_LINE = 64 * 1024 * 1024;

export type ControlRequest = { op: string } & Record<string, unknown>;
export type ControlHandlers = Record<string, (req: ControlRequest) => Promise<Record<string, unknown>> | Record<string, unknown>>;

function lines(socket: Socket, onLine: (line: string) => void): void {
  let buf = "";
  socket.setEncoding("utf8");
  socket.on("data", (d: string) => {
    buf += d;
    if (buf.length > MAX_LINE) {
      socket.destroy(new Error("control message too long"));
      return;
    }
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) onLine(line);
    }
  });
}

export class ControlServer {
  private readonly listener: UnixServer;

  constructor(handlers: ControlHandlers) {
    this.listener = new UnixServer((s) => {
      // One request at a time per connection, answered in order.
      let chain = Promise.resolve();
      lines(s, (line) => {
        chain = chain.then(async () => {
          let reply: Record<string, unknown>;
          try {
            const req = JSON.parse(line) as ControlRequest;
            const h = typeof req?.op === "string" ? handlers[req.op] : undefined;
            if (!h) throw new GuestcoreError(`unknown control request ${JSON.stringify(req?.op)}`);
            reply = { ok: true, ...(await h(req)) };
          } catch (e) {
            reply = { ok: false, error: e instanceof GuestcoreError || e instanceof SyntaxError ? e.message : `internal error: ${(e as Error).message}` };
          }
          if (!s.destroyed) s.write(JSON.stringify(reply) + "\n");
        });
      });
    });
  }

  listen(path: string): Promise<void> {
    return this.listener.listen(path);
  }

  close(): Promise<void> {
    return this.listener.close();
  }
}

/** One request to a disk server's control socket; rejects with its error line. */
export function controlRequest(path: string, req: ControlRequest, timeoutMs = 120_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new GuestcoreError(`${path}: no answer to ${req.op} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    s.on("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new GuestcoreError(`cannot reach the disk server's control socket ${path}: ${e.code ?? e.message}`));
    });
    lines(s, (line) => {
      clearTimeout(timer);
      s.end();
      const r = JSON.parse(line) as Record<string, unknown>;
      if (r.ok) resolve(r);
      else reject(new GuestcoreError(`disk server: ${String(r.error)}`));
    });
    s.write(JSON.stringify(req) + "\n");
  });
}
