// Releasing a QEMU guest's RAM that lives in a memory-backend file: punch
// holes (fallocate PUNCH_HOLE|KEEP_SIZE) in the file. On tmpfs and
// hugetlbfs the pages go back to the host at once, and a punched page
// reads as zeros afterwards, so callers release only what no later read
// needs (see recover.ts).
//
// The file is opened a second time, read-write, only here: this is the
// single place where guestcore modifies an input, and only in ranges the
// caller names.
import { closeSync, fstatSync, openSync } from "node:fs";
import { GuestcoreError, hex } from "../core/errors.js";
import { errnoName, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, HUGETLBFS_MAGIC, loadLibc, type Libc } from "../core/libc.js";
import type { FileSegment } from "../sources/file-backed.js";
import type { PfnRun } from "../core/bitmap.js";
import { coalesce, type MemoryReleaser } from "./release.js";

const PAGE = 4096;

export interface FileReleaserStats {
  calls: number;
  bytes: number;
}

export class FileReleaser implements MemoryReleaser {
  readonly kind = "file";
  /** Hole granularity: 4 KiB on tmpfs, the huge page size on hugetlbfs. */
  readonly granule: number;
  readonly hugetlbfs: boolean;
  readonly stats: FileReleaserStats = { calls: 0, bytes: 0 };
  private fd: number;
  private readonly libc: Libc;

  constructor(readonly path: string, private readonly segments: readonly FileSegment[], libc?: Libc) {
    this.libc = libc ?? loadLibc("releasing guest memory");
    const fs = this.libc.statfs(path);
    this.hugetlbfs = fs.type === HUGETLBFS_MAGIC;
    // hugetlbfs frees only whole huge pages (its f_bsize is the huge page size).
    this.granule = this.hugetlbfs ? fs.bsize : PAGE;
    try {
      this.fd = openSync(path, "r+");
    } catch (e) {
      throw new GuestcoreError(`cannot open ${path} to release its memory: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
  }

  release(runs: readonly PfnRun[]): number {
    let freed = 0;
    for (const run of coalesce(runs)) {
      const a = run.pfn * PAGE;
      const b = (run.pfn + run.count) * PAGE;
      // A run may cross segments (e.g. the q35 split): each piece is its own file range.
      for (const s of this.segments) {
        const lo = Math.max(a, s.start);
        const hi = Math.min(b, s.end);
        if (hi <= lo) continue;
        const off = s.fileOffset + (lo - s.start);
        freed += this.punch(off, off + (hi - lo));
      }
    }
    return freed;
  }

  /** Punch [from, to) of the file, rounded inward to the granule. */
  private punch(from: number, to: number): number {
    const g = this.granule;
    const lo = Math.ceil(from / g) * g;
    const hi = Math.floor(to / g) * g;
    if (hi <= lo) return 0;
    const r = this.libc.fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, lo, hi - lo);
    if (r !== 0) {
      const why = r === -95 ? " (the filesystem cannot punch holes: put guest RAM on tmpfs or hugetlbfs)" : "";
      throw new GuestcoreError(`releasing ${this.path} bytes ${hex(lo)}-${hex(hi)}: ${errnoName(r)}${why}`);
    }
    this.stats.calls++;
    this.stats.bytes += hi - lo;
    return hi - lo;
  }

  /** Release the whole file: everything in it is dumped. */
  releaseAll(): number {
    const size = fstatSync(this.fd).size;
    return this.punch(0, Math.ceil(size / this.granule) * this.granule);
  }

  held(): number {
    return fstatSync(this.fd).blocks * 512;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** Bytes a file holds on its device (allocated blocks). */
export function allocatedBytes(path: string): number {
  const fd = openSync(path, "r");
  try {
    return fstatSync(fd).blocks * 512;
  } finally {
    closeSync(fd);
  }
}
