// Bounded, exact reads from a file descriptor.
import { readSync } from "node:fs";
import { GuestcoreError } from "./errors.js";

/** Read exactly `len` bytes at `pos` into `dst[off..]`, or fail with `what`. */
export function preadExact(fd: number, dst: Uint8Array, off: number, len: number, pos: number, what: string): void {
  let done = 0;
  while (done < len) {
    const n = readSync(fd, dst, off + done, len - done, pos + done);
    if (n === 0) throw new GuestcoreError(`${what}: file ends at ${pos + done}, ${len - done} bytes short (truncated?)`);
    done += n;
  }
}
