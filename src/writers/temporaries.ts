// The hidden names outputs are written under until they are complete,
// and the housekeeping of those a writer left behind when it was killed
// (SIGKILL, the OOM killer, a host crash): `.NAME.guestcore-PID.tmp`
// beside NAME. `ls -a` shows whose file it is, and a later run tells one
// that is still being written (its PID lives) from an abandoned one.
//
// Liveness is kill(PID, 0) on this host, as for PID lock files: a
// directory shared by several hosts (NFS) or PID namespaces must be
// cleaned where its writers run. A PID reused by an unrelated process
// keeps the file until that process ends, which errs on the side of
// keeping.
import { lstatSync, readdirSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { GuestcoreError, ioError } from "../core/errors.js";

const PREFIX = ".";
const INFIX = ".guestcore-";
const SUFFIX = ".tmp";
/** Linux's pid_max is at most 2^22 (PID_MAX_LIMIT). */
const PID_MAX = 1 << 22;
/** A directory of more entries than this is not read through (a dump directory holds a few). */
const MAX_ENTRIES = 1 << 20;

export function temporaryPath(final: string, pid = process.pid): string {
  return join(dirname(final), `${PREFIX}${basename(final)}${INFIX}${pid}${SUFFIX}`);
}

/** The final name and writer PID a temporary's name holds, or undefined for any other name. */
export function parseTemporaryName(name: string): { final: string; pid: number } | undefined {
  if (!name.startsWith(PREFIX) || !name.endsWith(SUFFIX)) return undefined;
  const inner = name.slice(PREFIX.length, -SUFFIX.length);
  const at = inner.lastIndexOf(INFIX);
  if (at <= 0) return undefined;
  const digits = inner.slice(at + INFIX.length);
  if (!/^[1-9][0-9]{0,6}$/.test(digits)) return undefined;
  const pid = Number(digits);
  if (pid >= PID_MAX) return undefined;
  return { final: inner.slice(0, at), pid };
}

export interface Temporary {
  path: string;
  /** The final name's path it becomes. */
  final: string;
  pid: number;
  bytes: number;
  mtimeMs: number;
  /** Its writer runs (or another user's process has that PID). */
  writerAlive: boolean;
}

export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The guestcore temporaries in `dir` (regular files named as temporaryPath names them). */
export function listTemporaries(dir: string): Temporary[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw ioError(`cannot list ${dir}`, e);
  }
  if (names.length > MAX_ENTRIES) throw new GuestcoreError(`${dir} has ${names.length} entries: not a dump directory`);
  const out: Temporary[] = [];
  for (const name of names.sort()) {
    const t = parseTemporaryName(name);
    if (!t) continue;
    const path = join(dir, name);
    let st;
    try {
      st = lstatSync(path);
    } catch {
      continue; // removed meanwhile
    }
    if (!st.isFile()) continue;
    out.push({ path, final: join(dir, t.final), pid: t.pid, bytes: st.size, mtimeMs: st.mtimeMs, writerAlive: processAlive(t.pid) });
  }
  return out;
}

export interface Verdict {
  remove: boolean;
  why: string;
}

/** Whether a temporary is abandoned, before any caller's own rule (recover's journal). */
export function staleness(t: Temporary): Verdict {
  return t.writerAlive
    ? { remove: false, why: `its writer, process ${t.pid}, is still running` }
    : { remove: true, why: `its writer, process ${t.pid}, is gone` };
}

export function removeTemporary(t: Temporary): void {
  try {
    unlinkSync(t.path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw ioError(`cannot remove ${t.path}`, e);
  }
}
