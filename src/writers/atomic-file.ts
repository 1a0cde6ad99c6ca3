// Output that appears under its final name only when complete: written to
// a temporary name beside it (temporaries.ts), fsynced, renamed, and the
// directory fsynced. On failure the temporary is removed, so a failed
// dump leaves nothing behind; a writer killed outright leaves its
// temporary, which the next run's housekeeping recognises by its PID.
//
// Every failure of the output (ENOSPC, EIO at write or at fsync, EDQUOT,
// a rename refused) is one GuestcoreError naming the final path and the
// errno. An exit while the file is open (process.exit from a signal
// handler or from the CLI's error path) removes the temporary: each file
// registers that on the process itself and drops it when it is done.
import { closeSync, fdatasyncSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { GuestcoreError, ioError } from "../core/errors.js";
import { loadLibc, SYNC_FILE_RANGE_WRITE, type Libc } from "../core/libc.js";
import { temporaryPath } from "./temporaries.js";

let libc: Libc | null | undefined;

export class AtomicFile {
  readonly tmpPath: string;
  /** The temporary's descriptor, for threads that write their part of the file themselves. */
  readonly fd: number;
  private state: "open" | "committed" | "aborted" = "open";
  private readonly onExit?: () => void;

  /**
   * `keepOnAbort`: a failure closes the temporary file but leaves it
   * (recover: it may hold pages already released from the guest, which a
   * rerun reads back from it).
   */
  constructor(readonly path: string, private readonly opts: { keepOnAbort?: boolean } = {}) {
    this.tmpPath = temporaryPath(path);
    try {
      this.fd = openSync(this.tmpPath, "wx", 0o644);
    } catch (e) {
      throw ioError(`cannot create ${this.tmpPath}`, e);
    }
    if (!opts.keepOnAbort) {
      this.onExit = () => this.abort();
      process.on("exit", this.onExit);
    }
  }

  writeAt(data: Uint8Array, pos: number): void {
    let off = 0;
    while (off < data.length) {
      try {
        off += writeSync(this.fd, data, off, data.length - off, pos + off);
      } catch (e) {
        throw ioError(`cannot write ${this.path}`, e);
      }
    }
  }

  /**
   * Start writing [offset, offset + len) back to the device without
   * waiting for it. A big dump that only calls fsync at the end waits
   * there for all of its data at disk speed (2 s for 2 GB here); started
   * as it goes, the writeback overlaps the compression, and dirty memory
   * stays bounded. Best effort: without koffi, or where the call fails,
   * the final fsync does it all.
   */
  startWriteback(offset: number, len: number): void {
    if (libc === undefined) {
      try {
        libc = loadLibc();
      } catch {
        libc = null;
      }
    }
    libc?.syncFileRange(this.fd, offset, len, SYNC_FILE_RANGE_WRITE);
  }

  /** Flush written data to the device (for callers that release memory). */
  sync(): void {
    try {
      fdatasyncSync(this.fd);
    } catch (e) {
      throw ioError(`cannot write ${this.path}`, e);
    }
  }

  commit(): void {
    if (this.state !== "open") throw new GuestcoreError(`${this.path}: committed after it was ${this.state}`);
    // Write errors of buffered data surface here (EIO from writeback,
    // ENOSPC on NFS), and on some filesystems only at close.
    try {
      fsyncSync(this.fd);
    } catch (e) {
      throw ioError(`cannot write ${this.path}`, e);
    }
    this.state = "committed";
    this.release();
    try {
      closeSync(this.fd);
    } catch (e) {
      this.removeTemporary();
      throw ioError(`cannot write ${this.path}`, e);
    }
    try {
      renameSync(this.tmpPath, this.path);
    } catch (e) {
      this.removeTemporary();
      throw ioError(`cannot rename ${this.tmpPath} to ${this.path}`, e);
    }
    // The rename itself is durable only once the directory is (recover's
    // journal is trusted after a host crash; a dump's name should be too).
    // If that fails, the name is taken back: a failed run leaves no file.
    try {
      const dfd = openSync(dirname(this.path), "r");
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch (e) {
      try { unlinkSync(this.path); } catch { /* the error below says what matters */ }
      throw ioError(`cannot make ${this.path} durable (syncing ${dirname(this.path)})`, e);
    }
  }

  abort(): void {
    if (this.state !== "open") return;
    this.state = "aborted";
    this.release();
    try { closeSync(this.fd); } catch { /* already closed */ }
    if (!this.opts.keepOnAbort) this.removeTemporary();
  }

  private release(): void {
    if (this.onExit) process.removeListener("exit", this.onExit);
  }

  private removeTemporary(): void {
    try { unlinkSync(this.tmpPath); } catch { /* already gone */ }
  }
}

/** Replace `path` with `data` atomically (small files: reports, journals, lists). */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const f = new AtomicFile(path);
  try {
    f.writeAt(typeof data === "string" ? Buffer.from(data) : data, 0);
    f.commit();
  } finally {
    f.abort();
  }
}
