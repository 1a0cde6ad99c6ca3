// The disk image under the NBD server. cache "none" opens it with O_DIRECT,
// as QEMU's cache=none does: the host page cache holds no second copy of the
// guest's data, so a warm-cache hit is really memory against the disk, and
// cgroup blkio throttling (v1 throttles direct I/O, not buffered writeback)
// sees every byte. FLUSH is fdatasync; FUA writes go through a second
// descriptor opened with O_DSYNC.
import { closeSync, constants, fdatasync, fstatSync, openSync, read, write } from "node:fs";
import { GuestcoreError } from "../core/errors.js";
import { errnoName, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, loadLibc, type Libc } from "../core/libc.js";

export type CacheMode = "none" | "writeback";

function ioError(what: string, e: NodeJS.ErrnoException): GuestcoreError {
  const g = new GuestcoreError(`${what}: ${e.code ?? e.message}`);
  g.code = e.code;
  return g;
}

export class ImageFile {
  readonly size: number;
  readonly readOnly: boolean;
  private readonly fd: number;
  private readonly syncFd: number;
  private libc: Libc | undefined;
  private canFallocate = true;

  constructor(readonly path: string, readonly cache: CacheMode, readOnly = false) {
    const direct = cache === "none" ? constants.O_DIRECT : 0;
    const mode = readOnly ? constants.O_RDONLY : constants.O_RDWR;
    try {
      this.fd = openSync(path, mode | direct);
      this.syncFd = readOnly ? this.fd : openSync(path, mode | direct | constants.O_DSYNC);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why = err.code === "EINVAL" && direct ? " (the filesystem has no direct I/O: use --cache writeback)" : "";
      throw new GuestcoreError(`cannot open ${path}: ${err.code ?? err.message}${why}`);
    }
    this.readOnly = readOnly;
    const st = fstatSync(this.fd);
    if (!st.isFile() && !st.isBlockDevice()) throw new GuestcoreError(`${path} is not a file or block device`);
    this.size = st.size;
  }

  pread(dst: Buffer, pos: number): Promise<number> {
    return new Promise((resolve, reject) =>
      read(this.fd, dst, 0, dst.length, pos, (e, n) => (e ? reject(ioError(`reading ${this.path}`, e)) : resolve(n))),
    );
  }

  async preadFull(dst: Buffer, pos: number): Promise<void> {
    let done = 0;
    // Short reads happen only at the end of the file, and the server keeps
    // requests inside it; a loop bounded by the length covers signals.
    while (done < dst.length) {
      const n = await this.pread(dst.subarray(done), pos + done);
      if (n === 0) throw new GuestcoreError(`reading ${this.path}: end of file at ${pos + done}`);
      done += n;
    }
  }

  async pwriteFull(src: Buffer, pos: number, fua: boolean): Promise<void> {
    const fd = fua ? this.syncFd : this.fd;
    let done = 0;
    while (done < src.length) {
      const n = await new Promise<number>((resolve, reject) =>
        write(fd, src, done, src.length - done, pos + done, (e, k) => (e ? reject(ioError(`writing ${this.path}`, e)) : resolve(k))),
      );
      if (n === 0) throw new GuestcoreError(`writing ${this.path}: no progress at ${pos + done}`);
      done += n;
    }
  }

  flush(): Promise<void> {
    return new Promise((resolve, reject) => fdatasync(this.fd, (e) => (e ? reject(ioError(`flushing ${this.path}`, e)) : resolve())));
  }

  /**
   * Zero (or, with `punch`, deallocate) a range. Returns false when the
   * filesystem cannot, so the caller writes zeros instead.
   */
  fallocate(pos: number, len: number, punch: boolean): boolean {
    if (!this.canFallocate) return false;
    this.libc ??= loadLibc("serving the disk image (fallocate)");
    const mode = punch ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    const r = this.libc.fallocate(this.fd, mode, pos, len);
    if (r === 0) return true;
    if (r === -95) {
      this.canFallocate = false;
      return false;
    }
    const g = new GuestcoreError(`fallocate ${this.path}: ${errnoName(r)}`);
    g.code = errnoName(r);
    throw g;
  }

  close(): void {
    if (this.syncFd !== this.fd) closeSync(this.syncFd);
    closeSync(this.fd);
  }
}
