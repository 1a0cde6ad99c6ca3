// Bounded reads from files: exact reads at an offset, small whole files, tails.
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { GuestcoreError, ioError } from "./errors.js";

/** Read exactly `len` bytes at `pos` into `dst[off..]`, or fail with `what`. */
export function preadExact(fd: number, dst: Uint8Array, off: number, len: number, pos: number, what: string): void {
  let done = 0;
  while (done < len) {
    let n: number;
    try {
      n = readSync(fd, dst, off + done, len - done, pos + done);
    } catch (e) {
      // A disk that fails (EIO), a file on a network filesystem gone stale (ESTALE).
      throw ioError(`${what}: cannot read ${len - done} bytes at ${pos + done}`, e);
    }
    if (n === 0) throw new GuestcoreError(`${what}: file ends at ${pos + done}, ${len - done} bytes short (truncated?)`);
    done += n;
  }
}

/**
 * A whole small file (a journal, a config, a manifest, a VMCOREINFO text),
 * refused once it passes `max` bytes. Reads at most max + 1 bytes whatever
 * the file is: checking st_size first and then reading it all trusts a
 * file that grows meanwhile, and a FIFO or /dev/zero has no size at all.
 * With `regular`, anything but a regular file is refused. Errors from
 * open and read are thrown as they come (ENOENT stays checkable by the
 * caller).
 */
export function readSmallFile(path: string, max: number, what = path, opts: { regular?: boolean } = {}): Buffer {
  // Non-blocking, so that a FIFO in place of a regular file is refused instead of waited on.
  const fd = openSync(path, opts.regular ? constants.O_RDONLY | constants.O_NONBLOCK : constants.O_RDONLY);
  try {
    const regular = fstatSync(fd).isFile();
    if (opts.regular && !regular) throw new GuestcoreError(`${what} is not a regular file`);
    let out = Buffer.alloc(Math.min(max + 1, 64 << 10));
    let got = 0;
    for (;;) {
      if (got === out.length) {
        if (out.length > max) break;
        const bigger = Buffer.alloc(Math.min(max + 1, out.length * 2));
        out.copy(bigger, 0, 0, got);
        out = bigger;
      }
      // A pipe has no position to read at.
      const n = readSync(fd, out, got, out.length - got, regular ? got : null);
      if (n === 0) return out.subarray(0, got);
      got += n;
    }
    throw new GuestcoreError(`${what}: more than ${max} bytes`);
  } finally {
    closeSync(fd);
  }
}

/**
 * The last `max` bytes of a file (a log another process writes without
 * limit, such as a guest's serial console): one pread at the end, never
 * the whole file.
 */
export function readFileTail(path: string, max: number): Buffer {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, max);
    const buf = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = readSync(fd, buf, got, len - got, size - len + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}
