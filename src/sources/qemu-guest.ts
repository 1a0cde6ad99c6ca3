// A live QEMU guest, stopped (typically by pvpanic with -action
// panic=pause), read through its RAM's memory-backend file.
//
// QMP says everything needed, and nothing is asked of QEMU but questions
// (no dump-guest-memory: QEMU writes nothing):
//   query-status                        the guest must not be running
//   qom-get /machine memory-backend     the machine's RAM backend object
//   qom-get BACKEND type|mem-path|size|share
//   query-memory-devices                hot-plugged DIMMs live in other backends
//   human-monitor-command "info mtree"  the aliases ram-below-4g / ram-above-4g
//                                       of the backend: guest-physical range and
//                                       offset in the backend, i.e. in the file
//   qom-list /machine/unattached + qom-get ram-*-4g[N] addr|size
//                                       the same, without HMP (the alias offset
//                                       is not a QOM property: below-4g starts at
//                                       0, above-4g right after it, as QEMU's
//                                       pc_memory_init / microvm lay them out)
//   qom-list /machine/peripheral(-anon) whether -device vmcoreinfo is there
// QEMU 7.2 keeps the guest's VMCOREINFO address (written by the guest into
// fw_cfg's etc/vmcoreinfo) private to the vmcoreinfo device: the device has
// no QOM property for it and no QMP command returns it except
// dump-guest-memory. So the source carries no notes, and GuestImage scans
// guest memory for VMCOREINFO, as for any raw image.
//
// The QMP connection stays open while the source is (socket unref'd, so it
// never keeps the process alive): a RESUME event makes every later read
// fail, because a running guest's memory is not a consistent image, and
// verifyStillStopped() asks QEMU once more before a dump is committed.
import { closeSync, statSync } from "node:fs";
import { GuestcoreError, hex } from "../core/errors.js";
import type { ElfNote } from "../format/elf64.js";
import { checkSegments, FileBackedSource, openReadOnly, type FileSegment } from "./file-backed.js";
import { QmpClient, QmpCommandError, type QmpEvent } from "./qmp.js";
import { memfdPath } from "./qemu-memfd.js";
import type { MemorySource, PhysSegment, ReadRequest } from "./source.js";

export interface QemuGuestOptions {
  /**
   * Accept a guest in any run state, running included. Reading a running
   * guest's memory gives an inconsistent image: for tests and last resorts.
   */
  allowRunning?: boolean;
  /** Budget for the whole QMP conversation of openQemuGuest, in ms (default 15000). */
  timeoutMs?: number;
  /** Per QMP command, in ms (default 5000). */
  commandTimeoutMs?: number;
  /**
   * Keep the QMP connection while the source is open (default true): reads
   * fail once QEMU reports RESUME. QEMU serves one client per QMP socket, so
   * other clients of this socket wait until close().
   */
  holdMonitor?: boolean;
  /**
   * With the monitor held, QEMU quitting by itself (killed, crashed) fails
   * every later read and verifyStillStopped (default true): nothing vouches
   * for the memory file any more, and a QEMU started again on the same
   * mem-path would write into it while it is read. Recover passes false: it
   * quits the crashed QEMU itself and reads on from the file.
   */
  requireQemu?: boolean;
}

export interface QemuMemoryBackend {
  /** QOM path, e.g. /objects/ram0. */
  qomPath: string;
  id: string;
  type: string;
  memPath: string;
  size: number;
  share: boolean;
  /** The memory goes with QEMU (a memfd, reached as /proc/PID/fd/N): it must not quit before the dump is done. */
  volatile: boolean;
}

export interface QemuRamAlias {
  name: string;
  /** Guest-physical start, bytes. */
  start: number;
  size: number;
  /** Offset in the backend (= in the file). */
  offset: number;
}

export interface QemuGuestInfo {
  socket: string;
  qemuVersion: string;
  status: string;
  running: boolean;
  machine?: string;
  backend: QemuMemoryBackend;
  aliases: QemuRamAlias[];
  /** Where the layout came from: "info mtree", "qom", or both agreeing. */
  layoutFrom: string;
  /** The layout as guestcore's --layout spec (PADDR:SIZE@FILEOFFSET,...). */
  layoutSpec: string;
  /** QOM path of the vmcoreinfo device, if the guest has one. */
  vmcoreinfoDevice?: string;
  /** Milliseconds spent on QMP in openQemuGuest. */
  qmpMs: number;
}

/** Run states whose memory is stable: the vCPUs are stopped and no migration writes RAM. */
const STOPPED_STATES = new Set([
  "guest-panicked", "paused", "internal-error", "io-error", "watchdog", "shutdown", "debug",
  "suspended", "postmigrate", "finish-migrate", "save-vm",
]);

export class QemuGuestSource implements MemorySource {
  readonly format = "qemu";
  readonly notes: readonly ElfNote[] = [];
  readonly zeroFill: readonly PhysSegment[] = [];
  private resumedAt?: string;
  private closing = false;

  constructor(
    private readonly file: FileBackedSource,
    readonly qemu: QemuGuestInfo,
    private readonly qmp: QmpClient,
    private readonly opts: { heldMonitor: boolean; requireQemu: boolean } = { heldMonitor: true, requireQemu: true },
  ) {
    qmp.onEvent((e: QmpEvent) => {
      if (e.event === "RESUME") this.resumedAt ??= "QEMU reported RESUME";
    });
  }

  get path(): string {
    return this.file.path;
  }

  get segments(): readonly FileSegment[] {
    return this.file.segments;
  }

  /** Every QMP command sent so far, in order. */
  get commands(): readonly string[] {
    return this.qmp.commands;
  }

  /** True once QEMU said the guest runs again. */
  get resumed(): boolean {
    return this.resumedAt !== undefined;
  }

  /** Set once QEMU went away by itself while the source needed it (requireQemu). */
  private qemuGone(): GuestcoreError | undefined {
    if (!this.opts.requireQemu || !this.opts.heldMonitor || this.quitSent || this.closing || !this.qmp.closed) return undefined;
    const b = this.qemu.backend;
    const hint = b.volatile
      ? "its RAM was a memfd, gone with it"
      : `a QEMU started again on ${b.memPath} would write into it; dump the file itself (--layout ${this.qemu.layoutSpec}) if nothing else uses it`;
    return new GuestcoreError(`QEMU behind ${this.qemu.socket} went away while its guest's memory was being read, so the dump is not made final: ${hint}`);
  }

  readBatch(reqs: readonly ReadRequest[]): void {
    if (this.resumedAt) throw new GuestcoreError(`the guest was resumed while its memory was being read (${this.resumedAt}): the image would be inconsistent`);
    const gone = this.qemuGone();
    if (gone) throw gone;
    this.file.readBatch(reqs);
  }

  /**
   * Ask QEMU whether the guest is still stopped (call before committing a
   * dump). Throws if it runs now or was resumed meanwhile; does nothing
   * when the monitor was not held (holdMonitor: false) or with allowRunning.
   */
  async verifyStillStopped(timeoutMs = 5000): Promise<void> {
    const gone = this.qemuGone();
    if (gone) throw gone;
    if (this.qmp.closed) return;
    if (this.resumedAt) throw new GuestcoreError(`the guest was resumed while its memory was being read (${this.resumedAt})`);
    const st = await this.qmp.execute<{ status: string; running: boolean }>("query-status", undefined, timeoutMs).catch((e) => {
      // The connection closed under the question: QEMU went away meanwhile.
      throw this.qemuGone() ?? e;
    });
    if (st.running && !this.qemu.running) throw new GuestcoreError(`the guest was resumed while its memory was being read (status now ${st.status})`);
  }

  /** True once this source asked QEMU to quit and the monitor closed. */
  get quitted(): boolean {
    return this.quitSent && this.qmp.closed;
  }
  private quitSent = false;

  /**
   * Ask QEMU to quit, and wait until it has closed the monitor. The guest's
   * memory stays readable here: a named memory-backend-file keeps it after
   * QEMU exits (discard-data is off by default), and QEMU lets go of its
   * disk images, which a replacement on the same disk needs.
   */
  async quit(timeoutMs = 10_000): Promise<void> {
    if (this.qmp.closed) throw new GuestcoreError(`QMP ${this.qemu.socket}: the monitor is not held, cannot quit QEMU`);
    this.quitSent = true;
    await this.qmp.execute("quit", undefined, timeoutMs).catch((e) => {
      // QEMU may close the socket before the reply reaches us.
      if (!this.qmp.closed) throw e;
    });
    const deadline = Date.now() + timeoutMs;
    while (!this.qmp.closed) {
      if (Date.now() > deadline) throw new GuestcoreError(`QEMU behind ${this.qemu.socket} did not quit within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.closing = true;
    this.qmp.close();
    this.file.close();
  }
}

/**
 * Attach to the QEMU behind a QMP socket and open its guest's RAM
 * (read-only) from the machine's memory-backend file.
 */
export async function openQemuGuest(socketPath: string, opts: QemuGuestOptions = {}): Promise<QemuGuestSource> {
  const t0 = Date.now();
  const budget = opts.timeoutMs ?? 15_000;
  const deadline = t0 + budget;
  const perCommand = opts.commandTimeoutMs ?? 5000;
  const left = () => {
    const ms = deadline - Date.now();
    if (ms <= 0) throw new GuestcoreError(`QMP ${socketPath}: no answer within ${budget} ms`);
    return Math.min(ms, perCommand);
  };
  const qmp = await QmpClient.connect(socketPath, { connectTimeoutMs: Math.min(budget, perCommand), commandTimeoutMs: perCommand });
  let file: FileBackedSource | undefined;
  try {
    const ask = <T>(cmd: string, args?: Record<string, unknown>) => qmp.execute<T>(cmd, args, left());
    const qomGet = <T>(path: string, property: string) => ask<T>("qom-get", { path, property });
    const v = qmp.version?.qemu;
    const qemuVersion = v ? `${v.major}.${v.minor}.${v.micro}` : "unknown";

    const st = shaped(await ask<unknown>("query-status"), isStatus, "query-status");
    if (!opts.allowRunning) {
      if (st.running) {
        throw new GuestcoreError(`the guest behind ${socketPath} is running (status ${st.status}): its memory changes while it is read; stop it first (QMP stop, or -action panic=pause with pvpanic)`);
      }
      if (!STOPPED_STATES.has(st.status)) {
        throw new GuestcoreError(`the guest behind ${socketPath} is in state ${st.status}, not stopped after running (expected guest-panicked or paused)`);
      }
    }

    // The machine's RAM backend.
    const machine = await qomGet<unknown>("/machine", "type").then((t) => (typeof t === "string" ? clip(t) : undefined), () => undefined);
    const backendPath = shaped(await qomGet<unknown>("/machine", "memory-backend").catch((e) => {
      if (e instanceof QmpCommandError) return "";
      throw e;
    }), isString, "qom-get /machine memory-backend");
    if (!backendPath) {
      throw new GuestcoreError(`the machine has no single memory-backend (NUMA nodes with several backends, or a QEMU older than 5.0): start QEMU with -object memory-backend-file,id=ram0,size=SIZE,mem-path=/dev/shm/NAME,share=on -machine memory-backend=ram0`);
    }
    const id = backendPath.slice(backendPath.lastIndexOf("/") + 1);
    const type = shaped(await qomGet<unknown>(backendPath, "type"), isString, `qom-get ${clip(backendPath)} type`);
    if (type !== "memory-backend-file" && type !== "memory-backend-memfd") {
      const why = type === "memory-backend-ram" ? "anonymous memory inside QEMU (plain -m, or memory-backend-ram)" : `a ${type}`;
      throw new GuestcoreError(`guest RAM (${backendPath}) is ${why}, not a file guestcore can read: start QEMU with -object memory-backend-file,id=ram0,size=SIZE,mem-path=/dev/shm/NAME,share=on -machine memory-backend=ram0`);
    }
    const size = Number(await qomGet<unknown>(backendPath, "size"));
    if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_RAM) throw new GuestcoreError(`memory backend ${clip(id)} reports size ${size}: not a guest's RAM`);
    const memfd = type === "memory-backend-memfd";
    const memPath = memfd ? memfdPath(socketPath, size) : shaped(await qomGet<unknown>(backendPath, "mem-path"), isPath, `qom-get ${clip(backendPath)} mem-path`);
    const share = shaped(await qomGet<unknown>(backendPath, "share"), isBoolean, `qom-get ${clip(backendPath)} share`);
    const backend: QemuMemoryBackend = { qomPath: backendPath, id, type, memPath, size, share, volatile: memfd };
    if (!share) {
      throw new GuestcoreError(`memory backend ${id} has share=off: the guest's writes stay in QEMU's private copy and ${memPath} does not hold them; use share=on`);
    }

    const dimms = await ask<unknown[]>("query-memory-devices").catch(() => []);
    if (Array.isArray(dimms) && dimms.length > 0) {
      throw new GuestcoreError(`the guest has ${dimms.length} hot-plugged memory device(s); their RAM lives in other backends, which guestcore does not read`);
    }

    // Where the backend sits in guest-physical memory.
    const fromMtree = await ask<unknown>("human-monitor-command", { "command-line": "info mtree" })
      .then((text) => parseMtreeRamAliases(shaped(text, isText, "info mtree"), id))
      .catch((e) => {
        if (e instanceof QmpCommandError) return undefined;
        throw e;
      });
    const fromQom = await qomRamAliases(qmp, left);
    let aliases: QemuRamAlias[];
    let layoutFrom: string;
    if (fromMtree && fromMtree.length > 0) {
      aliases = fromMtree;
      layoutFrom = "info mtree";
      if (fromQom.length > 0) {
        if (!sameAliases(fromMtree, fromQom)) {
          throw new GuestcoreError(`QEMU's RAM layout disagrees between info mtree (${describe(fromMtree)}) and QOM (${describe(fromQom)})`);
        }
        layoutFrom = "info mtree + qom";
      }
    } else if (fromQom.length > 0) {
      aliases = fromQom;
      layoutFrom = "qom";
    } else {
      throw new GuestcoreError(`cannot find where ${id} sits in guest-physical memory (no ram-below-4g/ram-above-4g alias of it: not a pc/q35/microvm machine?)`);
    }
    checkAliases(aliases, size, id);
    const covered = aliases.reduce((n, a) => n + a.size, 0);
    if (covered !== size) {
      throw new GuestcoreError(`the RAM aliases of ${id} cover ${covered} bytes of its ${size} (${describe(aliases)})`);
    }

    const vmcoreinfoDevice = await findDevice(qmp, left, "vmcoreinfo");

    // The file, read-only.
    let isDir = false;
    try {
      isDir = statSync(memPath).isDirectory();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new GuestcoreError(`memory backend ${id}'s file ${memPath} is not accessible: ${code ?? e}${code === "ENOENT" ? " (QEMU in another mount namespace or container, or the file was removed?)" : ""}`);
    }
    if (isDir) {
      throw new GuestcoreError(`memory backend ${id}'s mem-path ${memPath} is a directory: QEMU made an unlinked file inside it that only QEMU can reach; give mem-path a file name`);
    }
    let opened: { fd: number; size: number };
    try {
      opened = openReadOnly(memPath);
    } catch (e) {
      throw new GuestcoreError(`memory backend ${id}'s file is not accessible: ${(e as Error).message}`);
    }
    let checked: FileSegment[];
    try {
      if (opened.size < size) {
        throw new GuestcoreError(`${memPath} has ${opened.size} bytes but memory backend ${id} has ${size}: not the file QEMU maps?`);
      }
      const segs: FileSegment[] = aliases.map((a) => ({ start: a.start, end: a.start + a.size, vaddr: 0n, fileOffset: a.offset }));
      checked = checkSegments(segs, opened.size, memPath);
    } catch (e) {
      closeSync(opened.fd);
      throw e;
    }
    file = new FileBackedSource("qemu", memPath, opened.fd, checked, []);

    const info: QemuGuestInfo = {
      socket: socketPath, qemuVersion, status: st.status, running: st.running, machine, backend, aliases, layoutFrom,
      layoutSpec: checked.map((s) => `${hex(s.start)}:${hex(s.end - s.start)}@${hex(s.fileOffset)}`).join(","),
      vmcoreinfoDevice, qmpMs: Date.now() - t0,
    };
    const src = new QemuGuestSource(file, info, qmp, { heldMonitor: opts.holdMonitor !== false, requireQemu: opts.requireQemu !== false });
    if (opts.holdMonitor === false) qmp.close();
    else qmp.unref();
    return src;
  } catch (e) {
    qmp.close();
    file?.close();
    throw e;
  }
}

/**
 * The RAM aliases of backend `id` that `info mtree` (HMP) shows directly
 * under the root of address space "memory": lines such as
 *   "    0000000100000000-000000017fffffff (prio 0, ram): alias ram-above-4g @ram0 0000000080000000-00000000ffffffff"
 * Only ram-below-4g and ram-above-4g count (pam, smram and vapic aliases
 * overlay parts of the same RAM).
 */
export function parseMtreeRamAliases(text: string, id: string): QemuRamAlias[] | undefined {
  const lines = text.split(/\r?\n/);
  let inMemory = false;
  let headers: string[] = [];
  let found = false;
  const out: QemuRamAlias[] = [];
  const seen = new Set<string>();
  for (const line of lines) {
    // The regular expression below backtracks: it must not meet a crafted
    // megabyte, nor thousands of crafted lines that are not alias lines.
    if (line.length > MAX_MTREE_LINE) continue;
    if (line.trim() === "") {
      headers = [];
      inMemory = false;
      continue;
    }
    const h = /^(address-space|memory-region): (.*)$/.exec(line);
    if (h) {
      headers.push(line);
      inMemory = h[1] === "address-space" && headers.some((x) => x === "address-space: memory");
      if (inMemory) found = true;
      continue;
    }
    if (!inMemory || !/ alias ram-(below|above)-4g @/.test(line)) continue;
    const m = /^( +)([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, [\w-]+\): alias (.+?) @(.+?) ([0-9a-f]+)-([0-9a-f]+)( \[disabled\])?$/.exec(line);
    // Root at 2 spaces, its children at 4: only those have absolute addresses.
    if (!m || m[1].length !== 4 || m[8]) continue;
    if (m[4] !== "ram-below-4g" && m[4] !== "ram-above-4g") continue;
    if (m[5] !== id) continue;
    const start = big(m[2]);
    const end = big(m[3]);
    const offset = big(m[6]);
    const oend = big(m[7]);
    if (end < start || oend - offset !== end - start) throw new GuestcoreError(`info mtree: malformed alias line "${line.trim()}"`);
    // One alias of each: more would be another machine than pc/q35/microvm.
    if (seen.has(m[4])) throw new GuestcoreError(`info mtree: ${m[4]} of ${clip(id)} appears twice`);
    seen.add(m[4]);
    out.push({ name: m[4], start, size: end - start + 1, offset });
  }
  if (!found) return undefined;
  return out.sort((a, b) => a.start - b.start);
}

function big(h: string): number {
  const v = Number(BigInt("0x" + h));
  if (!Number.isSafeInteger(v)) throw new GuestcoreError(`address 0x${h} is too large`);
  return v;
}

/** ram-below-4g / ram-above-4g from their QOM memory-region objects (x86 pc, q35, microvm). */
async function qomRamAliases(qmp: QmpClient, left: () => number): Promise<QemuRamAlias[]> {
  let children: { name: string; type: string }[];
  try {
    children = qomList(await qmp.execute("qom-list", { path: "/machine/unattached" }, left()), "/machine/unattached");
  } catch (e) {
    if (e instanceof QmpCommandError) return [];
    throw e;
  }
  const pick = (base: string) => children.filter((c) => c.type === "child<memory-region>" && new RegExp(`^${base}\\[\\d+\\]$`).test(c.name));
  const below = pick("ram-below-4g");
  const above = pick("ram-above-4g");
  if (below.length !== 1 || above.length > 1) return [];
  const get = async (name: string) => {
    const p = `/machine/unattached/${name}`;
    const start = Number(await qmp.execute<unknown>("qom-get", { path: p, property: "addr" }, left()));
    const size = Number(await qmp.execute<unknown>("qom-get", { path: p, property: "size" }, left()));
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || start < 0 || size < 0) throw new GuestcoreError(`${p}: addr ${start}, size ${size}`);
    return { start, size };
  };
  const b = await get(below[0].name);
  const out: QemuRamAlias[] = [{ name: "ram-below-4g", start: b.start, size: b.size, offset: 0 }];
  if (above.length === 1) {
    const a = await get(above[0].name);
    out.push({ name: "ram-above-4g", start: a.start, size: a.size, offset: b.size });
  }
  return out.filter((a) => a.size > 0);
}

/** QOM path of the first -device of this type, or undefined. */
async function findDevice(qmp: QmpClient, left: () => number, type: string): Promise<string | undefined> {
  for (const dir of ["/machine/peripheral", "/machine/peripheral-anon"]) {
    try {
      const list = qomList(await qmp.execute<unknown>("qom-list", { path: dir }, left()), dir);
      const d = list.find((c) => c.type === `child<${type}>`);
      if (d) return `${dir}/${d.name}`;
    } catch (e) {
      if (!(e instanceof QmpCommandError)) throw e;
    }
  }
  return undefined;
}

/** x86-64's MAX_PHYSMEM_BITS with 5-level paging: no guest has RAM beyond 4 PiB. */
const MAX_RAM = 2 ** 52;
/** An alias line is about 110 characters plus the backend's id. */
const MAX_MTREE_LINE = 256;
/** qom-list entries taken (a q35 machine's /machine/unattached has a few hundred). */
const MAX_QOM_CHILDREN = 16_384;

/** A QMP answer of the shape asked for, or one line saying what QEMU sent instead. */
function shaped<T>(v: unknown, ok: (v: unknown) => v is T, what: string): T {
  if (ok(v)) return v;
  throw new GuestcoreError(`QMP ${what}: unexpected answer ${clip(JSON.stringify(v) ?? String(v))}`);
}

const isText = (v: unknown): v is string => typeof v === "string";
const isString = (v: unknown): v is string => isText(v) && v.length <= 4096;
const isPath = (v: unknown): v is string => isString(v) && v.length > 0 && !v.includes("\0");
const isBoolean = (v: unknown): v is boolean => typeof v === "boolean";
const isStatus = (v: unknown): v is { status: string; running: boolean } =>
  typeof v === "object" && v !== null && isString((v as { status?: unknown }).status) && isBoolean((v as { running?: unknown }).running);

/** qom-list's children that are {name, type} strings, at most MAX_QOM_CHILDREN of them. */
function qomList(v: unknown, path: string): { name: string; type: string }[] {
  if (!Array.isArray(v)) throw new GuestcoreError(`QMP qom-list ${path}: unexpected answer ${clip(JSON.stringify(v) ?? String(v))}`);
  if (v.length > MAX_QOM_CHILDREN) throw new GuestcoreError(`QMP qom-list ${path}: ${v.length} children, more than any machine has`);
  return v.filter((c): c is { name: string; type: string } => typeof c === "object" && c !== null && isString(c.name) && isString(c.type));
}

/**
 * The aliases must lie within the backend and within guest-physical
 * space, and must not share backend bytes: with that, covering `size`
 * bytes means tiling the backend exactly once.
 */
function checkAliases(aliases: QemuRamAlias[], size: number, id: string): void {
  const byOffset = [...aliases].sort((a, b) => a.offset - b.offset);
  byOffset.forEach((a, i) => {
    if (a.offset + a.size > size || a.start + a.size > MAX_RAM) {
      throw new GuestcoreError(`${a.name} of ${clip(id)} (${hex(a.start)}+${hex(a.size)}@${hex(a.offset)}) lies outside the backend's ${size} bytes or past 2^52`);
    }
    if (i > 0 && a.offset < byOffset[i - 1].offset + byOffset[i - 1].size) {
      throw new GuestcoreError(`${a.name} and ${byOffset[i - 1].name} of ${clip(id)} map the same backend bytes at ${hex(a.offset)}`);
    }
  });
}

function clip(s: string, n = 120): string {
  return s.length > n ? s.slice(0, n) + "..." : s;
}

function sameAliases(a: QemuRamAlias[], b: QemuRamAlias[]): boolean {
  const key = (x: QemuRamAlias[]) => x.filter((y) => y.size > 0).map((y) => `${y.name}:${y.start}:${y.size}:${y.offset}`).sort().join(",");
  return key(a) === key(b);
}

function describe(a: QemuRamAlias[]): string {
  return a.map((x) => `${x.name} ${hex(x.start)}+${hex(x.size)}@${hex(x.offset)}`).join(", ");
}
