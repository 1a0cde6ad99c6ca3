// Output that appears under its final name only when complete: written to
// a temporary name beside it, fsynced, then renamed. On failure the
// temporary file is removed, so an interrupted dump leaves nothing behind.
import { closeSync, fdatasyncSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { GuestcoreError } from "../core/errors.js";

export class AtomicFile {
  readonly tmpPath: string;
  private fd: number;
  private pos = 0;
  private done = false;
  private static live = new Set<AtomicFile>();

  /**
   * `keepOnAbort`: a failure closes the temporary file but leaves it
   * (recover: it may hold pages already released from the guest, which a
   * rerun reads back from it).
   */
  constructor(readonly path: string, private readonly opts: { keepOnAbort?: boolean } = {}) {
    this.tmpPath = join(dirname(path), `.${basename(path)}.partial-${process.pid}`);
    try {
      this.fd = openSync(this.tmpPath, "wx", 0o644);
    } catch (e) {
      throw new GuestcoreError(`cannot create ${this.tmpPath}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    AtomicFile.live.add(this);
  }

  get position(): number {
    return this.pos;
  }

  writeAt(data: Uint8Array, pos: number): void {
    let off = 0;
    while (off < data.length) {
      try {
        off += writeSync(this.fd, data, off, data.length - off, pos + off);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const err = new GuestcoreError(`writing ${this.path}: ${code === "ENOSPC" ? "no space left on device" : code ?? e}`);
        err.code = code;
        throw err;
      }
    }
  }

  append(data: Uint8Array): void {
    this.writeAt(data, this.pos);
    this.pos += data.length;
  }

  /** Flush written data to the device (for callers that release memory). */
  sync(): void {
    fdatasyncSync(this.fd);
  }

  commit(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
    renameSync(this.tmpPath, this.path);
    this.done = true;
    AtomicFile.live.delete(this);
    // The rename itself is durable only once the directory is (recover's
    // journal is trusted after a host crash; a dump's name should be too).
    const dfd = openSync(dirname(this.path), "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }

  abort(): void {
    if (this.done) return;
    this.done = true;
    AtomicFile.live.delete(this);
    try { closeSync(this.fd); } catch { /* already closed */ }
    if (this.opts.keepOnAbort) return;
    try { unlinkSync(this.tmpPath); } catch { /* already gone */ }
  }

  /** Remove every unfinished output; for signal handlers. */
  static abortAll(): void {
    for (const f of [...AtomicFile.live]) f.abort();
  }
}
