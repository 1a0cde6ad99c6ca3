// Reading a flattened kdump file (see format/flattened.ts) as a memory
// source, in place: one pass over the record headers builds an index
// {offset, size, fileOffset} sorted by offset, and reads map through it
// (as crash does), so nothing is copied. Holes between records read as
// zeros, like the sparse file `makedumpfile -R` leaves. If records overlap
// (no known writer does that) or there are more than FLAT_INDEX_MAX_RECORDS
// of them, it rearranges into an unlinked temporary file instead.
import { closeSync, mkdtempSync, openSync, readSync, rmdirSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestcoreError } from "../core/errors.js";
import { preadExact } from "../core/file.js";
import { checkFlatHeader, checkFlatRecord, FlatParser } from "../format/flattened.js";
import { FLAT_HEADER_SIZE, FLAT_RECORD_HEADER } from "../format/kdump.js";
import { FileBytes, openKdumpBytes, type ByteSource, type KdumpOpenOptions, type KdumpSource } from "./kdump.js";
import { openReadOnly } from "./file-backed.js";
import { lastAtOrBefore } from "../core/search.js";

/**
 * Above this many records openFlattened rearranges instead of indexing
 * (the index keeps 24 bytes per record, about twice that while sorting).
 * makedumpfile -F writes records of up to 64 KiB and QEMU of 16 KiB, so
 * this is a flattened dump of 32 GiB or more.
 */
export const FLAT_INDEX_MAX_RECORDS = 1 << 21;

/** Synchronous rearrange of a flattened file into an open descriptor. */
function rearrangeSync(path: string, outFd: number): void {
  const { fd, size } = openReadOnly(path);
  try {
    const p = new FlatParser(path, (off, b) => {
      for (let done = 0; done < b.length;) done += writeSync(outFd, b, done, b.length - done, off + done);
    }, size);
    const buf = new Uint8Array(1 << 20);
    for (let pos = 0; pos < size;) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
      if (n === 0) break;
      p.push(buf.subarray(0, n));
      pos += n;
      if (p.done) break;
    }
    p.finish();
  } finally {
    closeSync(fd);
  }
}

/** A flattened file read in place through an index of its records. */
export class FlatIndex implements ByteSource {
  private closed = false;
  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly size: number,
    /** Sorted by offset, non-overlapping: logical offset, size, offset in the flattened file. */
    private readonly offs: Float64Array,
    private readonly sizes: Float64Array,
    private readonly fileOffs: Float64Array,
    readonly records: number,
    /** Record data really in the file: what the records hold, no more than the flattened file's own allocated bytes. */
    readonly held: number,
  ) {}

  /**
   * Index a flattened file. Returns undefined (and closes nothing) when it
   * cannot be read in place: overlapping records, or too many of them.
   */
  static build(path: string): FlatIndex | undefined {
    const { fd, size, held: fileHeld } = openReadOnly(path);
    try {
      const head = new Uint8Array(Math.min(FLAT_HEADER_SIZE, size));
      preadExact(fd, head, 0, head.length, 0, path);
      checkFlatHeader(head, path);
      let cap = 1024;
      let offs = new Float64Array(cap);
      let sizes = new Float64Array(cap);
      let fileOffs = new Float64Array(cap);
      let n = 0;
      let logical = 0;
      // Record headers are read through a 64 KiB window: small records
      // (QEMU writes 4 KiB ones) share a read, large ones are skipped.
      const win = new Uint8Array(64 << 10);
      let winStart = -1;
      let winLen = 0;
      const view = new DataView(win.buffer);
      let pos = FLAT_HEADER_SIZE;
      for (;;) {
        if (pos + FLAT_RECORD_HEADER > size) {
          throw new GuestcoreError(`${path}: truncated flattened dump: it ends without its end record`);
        }
        if (pos < winStart || pos + FLAT_RECORD_HEADER > winStart + winLen) {
          winLen = Math.min(win.length, size - pos);
          preadExact(fd, win, 0, winLen, pos, path);
          winStart = pos;
        }
        const r = checkFlatRecord(view.getBigInt64(pos - winStart, false), view.getBigInt64(pos - winStart + 8, false),
          pos, size - pos - FLAT_RECORD_HEADER, path);
        if (!r) break;
        if (n === cap) {
          if (cap >= FLAT_INDEX_MAX_RECORDS) {
            closeSync(fd);
            return undefined;
          }
          cap *= 2;
          const grow = (a: Float64Array) => {
            const b = new Float64Array(cap);
            b.set(a);
            return b;
          };
          offs = grow(offs);
          sizes = grow(sizes);
          fileOffs = grow(fileOffs);
        }
        offs[n] = r.offset;
        sizes[n] = r.size;
        fileOffs[n] = pos + FLAT_RECORD_HEADER;
        n++;
        logical = Math.max(logical, r.offset + r.size);
        pos += FLAT_RECORD_HEADER + r.size;
      }
      // Sort by logical offset (records arrive as a few interleaved
      // ascending sequences), then make sure none overlap.
      const order = new Uint32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
      order.sort((a, b) => offs[a] - offs[b] || a - b);
      const so = new Float64Array(n);
      const ss = new Float64Array(n);
      const sf = new Float64Array(n);
      let m = 0;
      for (let k = 0; k < n; k++) {
        const i = order[k];
        if (sizes[i] === 0) continue;
        if (m > 0 && so[m - 1] + ss[m - 1] > offs[i]) {
          closeSync(fd);
          return undefined;
        }
        so[m] = offs[i];
        ss[m] = sizes[i];
        sf[m] = fileOffs[i];
        m++;
      }
      let held = 0;
      for (let k = 0; k < m; k++) held += ss[k];
      return new FlatIndex(path, fd, logical, so.subarray(0, m), ss.subarray(0, m), sf.subarray(0, m), n, Math.min(held, fileHeld));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  read(dst: Uint8Array, off: number, len: number, pos: number): void {
    if (pos < 0 || pos + len > this.size) {
      throw new GuestcoreError(`${this.path}: needs bytes ${pos}..${pos + len} of the rearranged dump, which has ${this.size} (truncated?)`);
    }
    let done = 0;
    let k = lastAtOrBefore(this.offs.length, (i) => this.offs[i], pos);
    while (done < len) {
      const at = pos + done;
      if (k >= 0 && at < this.offs[k] + this.sizes[k]) {
        const n = Math.min(len - done, this.offs[k] + this.sizes[k] - at);
        preadExact(this.fd, dst, off + done, n, this.fileOffs[k] + (at - this.offs[k]), this.path);
        done += n;
        continue;
      }
      // A hole up to the next record: zeros, as in the sparse rearranged file.
      const next = k + 1 < this.offs.length ? this.offs[k + 1] : Infinity;
      const n = Math.min(len - done, next - at);
      dst.fill(0, off + done, off + done + n);
      done += n;
      k++;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/**
 * Open a flattened dump as a memory source (format "kdump-flattened"):
 * in place through a record index, or, for streams that cannot be indexed,
 * rearranged into a temporary file that is unlinked at once (it lives only
 * as long as the source's descriptor).
 */
export function openFlattened(path: string, opts: Pick<KdumpOpenOptions, "codecs"> = {}): KdumpSource {
  const idx = FlatIndex.build(path);
  if (idx) return openKdumpBytes(idx, "kdump-flattened", opts);
  const dir = mkdtempSync(join(tmpdir(), "guestcore-flat-"));
  const tmp = join(dir, "rearranged.kdump");
  let bytes: FileBytes;
  try {
    const wfd = openSync(tmp, "wx", 0o600);
    try {
      rearrangeSync(path, wfd);
    } finally {
      closeSync(wfd);
    }
    // Errors name the flattened file, not the vanished temporary one.
    bytes = FileBytes.open(tmp, path);
  } finally {
    try { unlinkSync(tmp); } catch { /* not created */ }
    try { rmdirSync(dir); } catch { /* already gone */ }
  }
  return openKdumpBytes(bytes, "kdump-flattened", opts);
}
