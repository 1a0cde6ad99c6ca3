// A unix-socket listener that knows its connections, so that closing it
// ends them too (net.Server.close() waits for clients to leave, and a
// paused QEMU never leaves).
import { createServer, type Server, type Socket } from "node:net";
import { rmSync } from "node:fs";
import { GuestcoreError } from "../core/errors.js";

export class UnixServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly onConnection: (s: Socket) => void) {}

  listen(path: string): Promise<void> {
    // A stale socket of an earlier run would make listen fail with EADDRINUSE.
    rmSync(path, { force: true });
    const server = createServer((s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
      s.on("error", () => {});
      this.onConnection(s);
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", (e) => reject(new GuestcoreError(`cannot listen on ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`)));
      server.listen(path, () => resolve());
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
