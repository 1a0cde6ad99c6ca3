// Where dump bytes go: a seekable file (written under a temporary name,
// renamed when complete) or makedumpfile's flattened stream on a pipe,
// where every write carries the offset it belongs at.
import { writeSync } from "node:fs";
import { GuestcoreError } from "../core/errors.js";
import { encodeFlatEnd, encodeFlatHeader, encodeFlatRecord } from "../format/kdump.js";
import { AtomicFile } from "./atomic-file.js";

export interface DumpSink {
  readonly name: string;
  /** A descriptor other threads may pwrite() to, when the sink is a seekable file. */
  readonly positionalFd?: number;
  writeAt(data: Uint8Array, pos: number): void;
  /** Data written so far is on the device. */
  sync(): void;
  /** Start writing this range back without waiting (a hint; may do nothing). */
  startWriteback?(offset: number, len: number): void;
  /** Make the dump final (rename, or the end record). */
  commit(): void;
  /** Give up: remove what was written where possible. */
  abort(): void;
}

export class FileSink implements DumpSink {
  private readonly file: AtomicFile;
  constructor(readonly name: string, opts: { keepOnAbort?: boolean } = {}) {
    this.file = new AtomicFile(name, opts);
  }
  get tmpPath(): string {
    return this.file.tmpPath;
  }
  get positionalFd(): number {
    return this.file.fd;
  }
  writeAt(data: Uint8Array, pos: number): void {
    this.file.writeAt(data, pos);
  }
  sync(): void {
    this.file.sync();
  }
  startWriteback(offset: number, len: number): void {
    this.file.startWriteback(offset, len);
  }
  commit(): void {
    this.file.commit();
  }
  abort(): void {
    this.file.abort();
  }
}

/**
 * The flattened form (makedumpfile -F) on a file descriptor, usually
 * stdout. A stream cannot be taken back, so an aborted one simply lacks
 * its end record, and `guestcore rearrange` refuses it.
 */
export class FlatSink implements DumpSink {
  readonly name: string;
  constructor(private readonly fd: number, name = "<stdout>") {
    this.name = name;
    this.write(encodeFlatHeader());
  }
  private write(b: Uint8Array): void {
    let off = 0;
    while (off < b.length) {
      try {
        off += writeSync(this.fd, b, off, b.length - off);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // A non-blocking pipe that is full: wait for the reader.
        if (code === "EAGAIN") {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
          continue;
        }
        throw new GuestcoreError(`writing ${this.name}: ${code ?? e}`);
      }
    }
  }
  writeAt(data: Uint8Array, pos: number): void {
    if (data.length === 0) return;
    this.write(encodeFlatRecord(pos, data.length));
    this.write(data);
  }
  sync(): void {}
  commit(): void {
    this.write(encodeFlatEnd());
  }
  abort(): void {}
}
