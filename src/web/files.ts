// Files the user picked, read synchronously in slices (Blob.slice and
// FileReaderSync, which exists only in workers), never whole: the
// browser's stand-in for the file descriptors guestcore's readers use.
// A small cache of aligned blocks serves the many small reads of page
// table walks and kernel structs; large reads go straight through.

/** FileReaderSync (WebWorker lib; the project's tsconfig has the DOM one). */
interface SyncReader {
  readAsArrayBuffer(blob: Blob): ArrayBuffer;
}
declare const FileReaderSync: { new (): SyncReader } | undefined;

const BLOCK = 1 << 20;
const BLOCKS_KEPT = 16; // 16 MiB of file data at most

export class ErrnoError extends Error {
  constructor(readonly code: string, message: string) {
    super(`${code}: ${message}`);
  }
}

class OpenFile {
  private readonly blocks = new Map<number, Uint8Array>();
  constructor(readonly blob: Blob, private readonly reader: SyncReader) {}

  get size(): number {
    return this.blob.size;
  }

  /** Copy up to `len` bytes at `pos` into `dst[off..]`; the count (0 at the end of the file). */
  read(dst: Uint8Array, off: number, len: number, pos: number): number {
    const n = Math.max(0, Math.min(len, this.size - pos));
    if (n === 0) return 0;
    if (n >= BLOCK) {
      dst.set(new Uint8Array(this.reader.readAsArrayBuffer(this.blob.slice(pos, pos + n))), off);
      return n;
    }
    let done = 0;
    while (done < n) {
      const at = pos + done;
      const b = Math.floor(at / BLOCK);
      const block = this.block(b);
      const from = at - b * BLOCK;
      const k = Math.min(n - done, block.length - from);
      dst.set(block.subarray(from, from + k), off + done);
      done += k;
    }
    return n;
  }

  private block(b: number): Uint8Array {
    let data = this.blocks.get(b);
    if (data) {
      this.blocks.delete(b); // most recently used last
      this.blocks.set(b, data);
      return data;
    }
    data = new Uint8Array(this.reader.readAsArrayBuffer(this.blob.slice(b * BLOCK, Math.min(this.size, (b + 1) * BLOCK))));
    if (this.blocks.size >= BLOCKS_KEPT) this.blocks.delete(this.blocks.keys().next().value!);
    this.blocks.set(b, data);
    return data;
  }
}

/** Named files and assets, and the descriptors opened on them. */
export class WebFiles {
  private readonly files = new Map<string, Blob>();
  private readonly assets = new Map<string, Uint8Array>();
  private readonly open = new Map<number, OpenFile>();
  private nextFd = 3;
  private readonly reader: SyncReader;

  constructor() {
    if (typeof FileReaderSync === "undefined") throw new Error("FileReaderSync is missing: guestcore's readers run in a Worker");
    this.reader = new FileReaderSync();
  }

  /** Make `blob` readable as `path`. */
  add(path: string, blob: Blob): void {
    this.files.set(path, blob);
  }

  /** Bytes served whole by readFileSync, looked up by file name (the Wasm core). */
  addAsset(name: string, bytes: Uint8Array): void {
    this.assets.set(name, bytes);
  }

  asset(path: string): Uint8Array | undefined {
    return this.assets.get(path.slice(path.lastIndexOf("/") + 1));
  }

  openFd(path: string): number {
    const blob = this.files.get(path);
    if (!blob) throw new ErrnoError("ENOENT", `no such file, open '${path}'`);
    const fd = this.nextFd++;
    this.open.set(fd, new OpenFile(blob, this.reader));
    return fd;
  }

  file(fd: number): OpenFile {
    const f = this.open.get(fd);
    if (!f) throw new ErrnoError("EBADF", `bad file descriptor ${fd}`);
    return f;
  }

  closeFd(fd: number): void {
    if (!this.open.delete(fd)) throw new ErrnoError("EBADF", `bad file descriptor ${fd}`);
  }
}
