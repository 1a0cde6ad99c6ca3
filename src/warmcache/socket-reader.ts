// Exact-length reads from a stream socket, with back-pressure: the socket is
// paused while nobody asks for bytes, so a client that sends faster than we
// serve cannot grow our memory.
import type { Socket } from "node:net";

export class SocketReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private want = 0;
  private resolve: ((b: Buffer) => void) | undefined;
  private reject: ((e: Error) => void) | undefined;
  private ended: Error | undefined;

  constructor(private readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.chunks.push(d);
      this.have += d.length;
      this.pump();
    });
    const end = (e?: Error) => {
      this.ended ??= e ?? new Error("connection closed");
      this.pump();
    };
    socket.on("end", () => end());
    socket.on("close", () => end());
    socket.on("error", (e) => end(e));
    socket.pause();
  }

  /** The next n bytes; rejects when the peer goes away first. */
  read(n: number): Promise<Buffer> {
    if (this.resolve) throw new Error("internal: overlapping socket reads");
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    return new Promise((resolve, reject) => {
      this.want = n;
      this.resolve = resolve;
      this.reject = reject;
      this.pump();
    });
  }

  private pump(): void {
    if (!this.resolve) {
      this.socket.pause();
      return;
    }
    if (this.have >= this.want) {
      const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.have);
      const out = all.subarray(0, this.want);
      const rest = all.subarray(this.want);
      this.chunks = rest.length ? [rest] : [];
      this.have = rest.length;
      const r = this.resolve;
      this.resolve = this.reject = undefined;
      // Copy out of a shared slab so a long-lived request keeps only its bytes.
      r(Buffer.from(out));
      return;
    }
    if (this.ended) {
      const j = this.reject!;
      this.resolve = this.reject = undefined;
      j(this.ended);
      return;
    }
    this.socket.resume();
  }
}
