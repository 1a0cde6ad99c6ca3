// The few libc calls Node does not offer (fallocate, lseek with
// SEEK_DATA/SEEK_HOLE, statfs), through koffi, loaded on first use by
// whoever needs them and kept in the object that asked.
import { createRequire } from "node:module";
import { constants as osConstants } from "node:os";
import { GuestcoreError } from "./errors.js";

type KoffiFn = (...args: unknown[]) => unknown;

/** fallocate(2) modes (linux/falloc.h). */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;
/** statfs f_type values (linux/magic.h). */
export const TMPFS_MAGIC = 0x01021994;
export const HUGETLBFS_MAGIC = 0x958458f6;

export interface Libc {
  /** 0, or -errno. */
  fallocate(fd: number, mode: number, offset: number, len: number): number;
  /** The filesystem magic (statfs f_type) of a path, and its block size. */
  statfs(path: string): { type: number; bsize: number };
  /** sync_file_range(2): 0, or -errno. */
  syncFileRange(fd: number, offset: number, len: number, flags: number): number;
}

/** sync_file_range(2) flags (linux/fs.h). */
export const SYNC_FILE_RANGE_WRITE = 2;

const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);

/** "ENOENT" for 2 or -2 (privcmd reports per-page errors as negative errnos). */
export function errnoName(e: number): string {
  return ERRNO_NAMES.get(Math.abs(e)) ?? `errno ${e}`;
}

/** The koffi FFI package, loaded on demand; `purpose` says what needed it when it is missing. */
export function requireKoffi(purpose: string): typeof import("koffi") {
  try {
    return createRequire(import.meta.url)("koffi");
  } catch (e) {
    throw new GuestcoreError(`${purpose} needs the koffi package (npm install koffi@3): ${(e as Error).message.split("\n")[0]}`);
  }
}

/** `purpose` names what needs libc in the error when koffi is missing. */
export function loadLibc(purpose = "calling libc (fallocate, statfs, sync_file_range)"): Libc {
  const k = requireKoffi(purpose);
  const lib = k.load("libc.so.6");
  const fallocate = lib.func("int fallocate(int fd, int mode, int64_t offset, int64_t len)") as KoffiFn;
  // struct statfs on x86-64: f_type and f_bsize are the first two longs.
  const statfs = lib.func("int statfs(const char *path, _Out_ uint8_t *buf)") as KoffiFn;
  const syncFileRange = lib.func("int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags)") as KoffiFn;
  return {
    fallocate: (fd, mode, offset, len) => ((fallocate(fd, mode, offset, len) as number) === 0 ? 0 : -k.errno()),
    syncFileRange: (fd, offset, len, flags) => ((syncFileRange(fd, offset, len, flags) as number) === 0 ? 0 : -k.errno()),
    statfs: (path) => {
      const buf = Buffer.alloc(120);
      if ((statfs(path, buf) as number) !== 0) throw new GuestcoreError(`statfs ${path}: ${errnoName(k.errno())}`);
      return { type: Number(buf.readBigInt64LE(0)) >>> 0, bsize: Number(buf.readBigInt64LE(8)) };
    },
  };
}
