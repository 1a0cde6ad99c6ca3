// A QEMU memory-backend-memfd has no path: its RAM is an anonymous
// memfd that only QEMU holds. From the host, root reaches it through
// /proc/PID/fd/N of the QEMU process, which is found as the owner of the
// QMP socket's listening inode (/proc/net/unix). QEMU names every such
// memfd "memory-backend-memfd" (backends/hostmem-memfd.c); the one of
// the machine's backend is told apart by its size.
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { GuestcoreError } from "../core/errors.js";

const MEMFD_NAME = "/memfd:memory-backend-memfd";
// /proc/net/unix of a busy host is long; a QMP socket is found in far less.
const MAX_UNIX_LINES = 200_000;
const MAX_PIDS = 100_000;
const MAX_FDS = 65_536;

/** Inode of the listening unix socket bound to `path`. */
function socketInode(path: string): string | undefined {
  const lines = readFileSync("/proc/net/unix", "latin1").split("\n").slice(1, MAX_UNIX_LINES);
  for (const line of lines) {
    const f = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path; flags 00010000 = __SO_ACCEPTCON (listening).
    if (f.length >= 8 && f[7] === path && (parseInt(f[3], 16) & 0x10000) !== 0) return f[6];
  }
  return undefined;
}

function fdsOf(pid: string): string[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).slice(0, MAX_FDS);
  } catch {
    return [];
  }
}

function link(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}

/** The QEMU process that listens on this QMP socket. */
export function qemuPidOfSocket(sock: string): number {
  const inode = socketInode(sock);
  if (!inode) throw new GuestcoreError(`no process listens on ${sock} (in this network namespace)`);
  const want = `socket:[${inode}]`;
  const pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d)).slice(0, MAX_PIDS);
  for (const pid of pids) {
    for (const fd of fdsOf(pid)) if (link(`/proc/${pid}/fd/${fd}`) === want) return Number(pid);
  }
  throw new GuestcoreError(`cannot find the process behind ${sock} (guestcore needs root to see QEMU's descriptors)`);
}

/** /proc/PID/fd/N of QEMU's memfd of `size` bytes. */
export function memfdPath(sock: string, size: number): string {
  const pid = qemuPidOfSocket(sock);
  const found: string[] = [];
  for (const fd of fdsOf(String(pid))) {
    const p = `/proc/${pid}/fd/${fd}`;
    if (!link(p)?.startsWith(MEMFD_NAME)) continue;
    try {
      if (statSync(p).size === size) found.push(p);
    } catch {
      // closed meanwhile
    }
  }
  if (found.length === 0) throw new GuestcoreError(`QEMU (pid ${pid}) holds no memfd of ${size} bytes`);
  if (found.length > 1) throw new GuestcoreError(`QEMU (pid ${pid}) holds ${found.length} memfds of ${size} bytes: cannot tell which is the machine's RAM`);
  return found[0];
}
