// Guests of the warm-cache reboot, booted under QEMU (TCG) with the cached
// kernel and initramfs (qemu-guest.ts launchGuest: memory-backend-file on
// /dev/shm share=on, pvpanic with -action panic=pause, vmcoreinfo, QMP):
//   role=warmcrash  reads the disk's files, rewrites rw-*.bin without sync,
//                   panics (fixtures/guest-init.sh role_warmcrash);
//   role=warmread   the replacement: mounts (journal replay), preloads the
//                   fw_cfg list, reads and times the same files;
//   role=warmhttpd  serves /data with busybox httpd over user networking.
// The disk (fixtures/warm-disk.sh) is a raw file or an NBD export on a
// unix socket: qemu-nbd stands in for `guestcore disk serve` until that
// is ready, and any server on a socket plugs in the same way.
//
// The guest reports on its console, one GUESTCORE-* line each;
// parseWarmConsole() turns the console into a WarmReport.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FIXTURES } from "./oracles.js";
import { cachedBoot, launchGuest, type LaunchedGuest } from "./qemu-guest.js";

// ------------------------------------------------------------ the disk

export interface WarmDisk {
  image: string;
  /** The directory mkfs copied: dataDir/data/NAME holds each file's expected bytes. */
  dataDir: string;
  /** "/data/NAME" -> its size and md5, as the host computed them before mkfs. */
  manifest: Map<string, { size: number; md5: string }>;
}

export interface WarmDiskOptions {
  seed?: string;
  roFiles?: number;
  roKiB?: number;
  rwFiles?: number;
  rwKiB?: number;
  /** /data/big.bin in MiB, 0 for none (default 16). */
  bigMiB?: number;
  sizeMiB?: number;
}

/** fixtures/warm-disk.sh into `image` (image, image.d/, image.manifest). */
export function buildWarmDisk(image: string, o: WarmDiskOptions = {}): WarmDisk {
  const args = [join(FIXTURES, "warm-disk.sh")];
  const opt = (flag: string, v: string | number | undefined) => { if (v !== undefined) args.push(flag, String(v)); };
  opt("--seed", o.seed);
  opt("--ro", o.roFiles);
  opt("--ro-kib", o.roKiB);
  opt("--rw", o.rwFiles);
  opt("--rw-kib", o.rwKiB);
  opt("--big-mib", o.bigMiB);
  opt("--size-mib", o.sizeMiB);
  args.push(image);
  execFileSync("bash", args, { stdio: ["ignore", "ignore", "pipe"], timeout: 120_000 });
  return { image, dataDir: `${image}.d`, manifest: readManifest(`${image}.manifest`) };
}

export function readManifest(path: string): Map<string, { size: number; md5: string }> {
  const m = new Map<string, { size: number; md5: string }>();
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const f = /^(\/\S+) (\d+) ([0-9a-f]{32})$/.exec(line);
    if (f) m.set(f[1], { size: Number(f[2]), md5: f[3] });
  }
  return m;
}

/** How a guest reaches its disk. */
export type WarmDiskBackend =
  | { kind: "file"; image: string; /** QEMU's cache mode (default none: O_DIRECT). */ cache?: "none" | "writeback" }
  | { kind: "nbd"; socket: string; exportName?: string };

export interface DiskThrottle {
  /** Bytes per second the guest may write (QEMU block throttling). */
  writeBps?: number;
  readBps?: number;
}

/** QEMU option values double their commas. */
const qv = (s: string) => s.replace(/,/g, ",,");

/**
 * QEMU arguments for the guest's /dev/vda. A file: -drive if=virtio,
 * cache=none (O_DIRECT) unless asked for writeback (the host page cache),
 * aio=threads, throttling.* when asked. NBD: an
 * nbd blockdev on the unix socket (QEMU 7.2; the export name is left out
 * for the default export ""), behind a throttle filter node when asked,
 * on a virtio-blk-pci device.
 */
export function warmDiskArgs(disk: WarmDiskBackend, t: DiskThrottle = {}): string[] {
  if (disk.kind === "file") {
    const thr = [
      ...(t.writeBps ? [`throttling.bps-write=${t.writeBps}`] : []),
      ...(t.readBps ? [`throttling.bps-read=${t.readBps}`] : []),
    ];
    return ["-drive", [`file=${qv(disk.image)}`, "format=raw", "if=virtio", `cache=${disk.cache ?? "none"}`, "aio=threads", ...thr].join(",")];
  }
  const nbd = ["driver=nbd", "server.type=unix", `server.path=${qv(disk.socket)}`,
    ...(disk.exportName ? [`export=${qv(disk.exportName)}`] : []), "node-name=disk0"].join(",");
  if (!t.writeBps && !t.readBps) return ["-blockdev", nbd, "-device", "virtio-blk-pci,drive=disk0"];
  const limits = [...(t.writeBps ? [`x-bps-write=${t.writeBps}`] : []), ...(t.readBps ? [`x-bps-read=${t.readBps}`] : [])];
  return [
    "-blockdev", nbd,
    "-object", ["throttle-group", "id=tg0", ...limits].join(","),
    "-blockdev", "driver=throttle,throttle-group=tg0,file=disk0,node-name=disk0t",
    "-device", "virtio-blk-pci,drive=disk0t",
  ];
}

/** User networking with the host's 127.0.0.1:PORT forwarded to the guest's port 80. */
function httpArgs(port: number): string[] {
  // romfile= : no iPXE option ROM (the kernel is booted directly, and the ROM package may be absent).
  return ["-netdev", `user,id=n0,hostfwd=tcp:127.0.0.1:${port}-:80`, "-device", "virtio-net-pci,netdev=n0,romfile="];
}

export interface NbdServer {
  socket: string;
  proc: ChildProcess;
  /** SIGTERM (qemu-nbd flushes and closes the image), SIGKILL after 5 s. */
  stop(): Promise<void>;
}

/**
 * qemu-nbd serving `image` raw on a unix socket, O_DIRECT (--cache=none),
 * persistent (-t: a replacement connects after the crashed guest's QEMU
 * has gone), `shared` clients at once (default 1).
 */
export async function startQemuNbd(image: string, socket: string, o: { shared?: number; exportName?: string } = {}): Promise<NbdServer> {
  const args = ["-f", "raw", "-k", socket, "--cache=none", "--aio=threads", "-t", "-e", String(o.shared ?? 1),
    ...(o.exportName ? ["-x", o.exportName] : []), image];
  const proc = spawn("qemu-nbd", args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr!.setEncoding("utf8");
  proc.stderr!.on("data", (d: string) => { if (stderr.length < 8192) stderr += d; });
  const exit = new Promise<void>((r) => proc.once("exit", () => r()));
  proc.once("error", () => {});
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    const killed = await Promise.race([exit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000).unref())]);
    if (!killed) { proc.kill("SIGKILL"); await exit; }
  };
  // Ready when the socket accepts a connection (it exists a little before).
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`qemu-nbd exited (${proc.exitCode}): ${stderr.trim()}`);
    if (existsSync(socket) && await canConnect(socket)) break;
    if (Date.now() > deadline) { await stop(); throw new Error(`qemu-nbd did not listen on ${socket} in 10 s: ${stderr.trim()}`); }
    await sleep(50);
  }
  return { socket, proc, stop };
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once("connect", () => { s.destroy(); resolve(true); });
    s.once("error", () => resolve(false));
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ------------------------------------------------------------ the guests

export type WarmRole = "warmcrash" | "warmread" | "warmhttpd";

export interface WarmGuestOptions {
  role: WarmRole;
  disk: WarmDiskBackend;
  throttle?: DiskThrottle;
  /** Guest RAM in MiB (default 256). */
  memMiB?: number;
  /** Also read /data/big.bin (guestcore.readbig=1), both roles. */
  readBig?: boolean;
  /** warmcrash: a background write + fsync in flight at the panic (guestcore.writeinflight=1). */
  writeInflightMiB?: number;
  /** warmread: paths to read first, relative to the fs root (fw_cfg opt/guestcore/preload). */
  preload?: string[];
  /** warmread: read /data/big.bin this many times after the timed reads; warmcrash: after its file reads, before the panic. */
  bigReads?: number;
  /**
   * Panic on an NMI (kernel parameter unknown_nmi_panic): QMP inject-nmi
   * then crashes the guest at a moment the host chooses.
   */
  nmiPanic?: boolean;
  /** A cgroup v1 directory QEMU runs in from its first instruction (e.g. a blkio throttle group). */
  cgroup?: string;
  /** mount -o options (guestcore.mountopts; default commit=600 for warmcrash, defaults otherwise). */
  mountOptions?: string;
  /** warmhttpd: host port forwarded (127.0.0.1) to the guest's port 80. */
  httpPort?: number;
  profile?: string;
  memPath?: string;
  extraArgs?: string[];
}

export interface WarmGuest extends LaunchedGuest {
  role: WarmRole;
  token: string;
  /** performance.now() when QEMU was spawned. */
  startedAt: number;
  /** The whole console so far. */
  console(): string;
  report(): WarmReport;
  /**
   * Resolve with the first console line matching `re` (one line, \r
   * stripped); reject at the timeout, when the init script reports a
   * failure, on a kernel panic that `re` is not waiting for, or when QEMU exits.
   */
  waitLine(re: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
  /**
   * The role's end marker: GUESTCORE-WARM-CRASH-READY then the pvpanic
   * pause (warmcrash), GUESTCORE-WARM-DONE (warmread),
   * GUESTCORE-WARM-HTTPD-READY (warmhttpd); returns the report then.
   */
  waitDone(timeoutMs: number): Promise<WarmReport>;
}

export function launchWarmGuest(o: WarmGuestOptions): WarmGuest {
  if (/\s/.test(o.mountOptions ?? "")) throw new Error("mount options go on the kernel command line: no spaces");
  const append = [
    `guestcore.role=${o.role}`,
    ...(o.readBig ? ["guestcore.readbig=1"] : []),
    ...(o.writeInflightMiB ? ["guestcore.writeinflight=1", `guestcore.inflightmib=${o.writeInflightMiB}`] : []),
    ...(o.bigReads ? [`guestcore.bigreads=${o.bigReads}`] : []),
    ...(o.mountOptions ? [`guestcore.mountopts=${o.mountOptions}`] : []),
    ...(o.preload ? ["guestcore.preload=1"] : ["guestcore.preload=0"]),
    ...(o.nmiPanic ? ["unknown_nmi_panic"] : []),
  ];
  const args = [...warmDiskArgs(o.disk, o.throttle)];
  if (o.httpPort !== undefined) args.push(...httpArgs(o.httpPort));
  const startedAt = performance.now();
  // QEMU reads the fw_cfg file at startup, before launchGuest's temp dir exists: it goes beside it.
  let preloadFile: string | undefined;
  if (o.preload) {
    preloadFile = join(tmpdir(), `gc-preload-${process.pid}-${Math.random().toString(36).slice(2, 10)}.list`);
    writeFileSync(preloadFile, o.preload.map((p) => p + "\n").join(""));
    // Like launchGuest's files: gone also when the test process ends without stop().
    const file = preloadFile;
    process.once("exit", () => rmSync(file, { force: true }));
    args.push("-fw_cfg", `name=opt/guestcore/preload,file=${qv(preloadFile)}`);
  }
  const g = launchGuest({
    memMiB: o.memMiB ?? 256, profile: o.profile ?? o.role, memPath: o.memPath, cgroup: o.cgroup,
    append: append.join(" "), extraArgs: [...args, ...(o.extraArgs ?? [])],
  });
  const token = g.marker.split(" ")[2];
  const stop = async () => {
    await g.stop();
    if (preloadFile) rmSync(preloadFile, { force: true });
  };
  const consoleText = () => {
    try {
      return readFileSync(g.consoleLog, "latin1");
    } catch {
      return "";
    }
  };
  const waitLine = async (re: RegExp, timeoutMs: number): Promise<RegExpExecArray> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = consoleText();
      for (const line of consoleLines(text)) {
        const m = re.exec(line);
        if (m) return m;
      }
      const why = failure(text, re) ?? (g.proc.exitCode !== null || g.proc.signalCode !== null ? `QEMU exited (${g.proc.exitCode ?? g.proc.signalCode})` : undefined)
        ?? (Date.now() > deadline ? `no console line matching ${re} in ${timeoutMs} ms` : undefined);
      if (why) throw new Error(`${o.role} guest: ${why}\nconsole tail:\n${g.consoleTail(30)}`);
      await sleep(100);
    }
  };
  const waitDone = async (timeoutMs: number): Promise<WarmReport> => {
    const t0 = Date.now();
    if (o.role === "warmcrash") {
      await waitLine(new RegExp(`^GUESTCORE-WARM-CRASH-READY ${token} `), timeoutMs);
      await g.waitPanicked(Math.max(5000, timeoutMs - (Date.now() - t0)));
    } else {
      await waitLine(new RegExp(`^GUESTCORE-${o.role === "warmread" ? "WARM-DONE" : "WARM-HTTPD-READY"} ${token} `), timeoutMs);
    }
    return parseWarmConsole(consoleText());
  };
  return { ...g, stop, role: o.role, token, startedAt, console: consoleText, report: () => parseWarmConsole(consoleText()), waitLine, waitDone };
}

/** A failure the console shows, unless `expected` is the line being waited for. */
function failure(text: string, expected: RegExp): string | undefined {
  const f = /guestcore-init: FAILED: (.*)/.exec(text);
  if (f) return `init failed: ${f[1].trim()}`;
  const p = /Kernel panic - not syncing: (.*)/.exec(text);
  // A warmcrash guest's own sysrq panic comes after its ready line, which its waiter has seen.
  if (p && !/sysrq triggered crash/.test(p[1]) && !expected.test(p[0])) return `kernel panic: ${p[1].trim()}`;
  return undefined;
}

/** Console lines, \r removed (the serial console ends kernel lines with \r\n). */
export function consoleLines(text: string): string[] {
  return text.split("\n").map((l) => l.replace(/\r/g, ""));
}

// ------------------------------------------------------------ the report

export interface WarmFileLine { path: string; size: number; md5: string }
export interface WarmReadLine extends WarmFileLine { seconds: number }

export interface WarmReport {
  /** GUESTCORE-WARM-MOUNTED TOKEN uptime S */
  mounted?: { token: string; uptime: number };
  /** warmcrash: GUESTCORE-FILE PATH SIZE MD5, each file it read. */
  files: WarmFileLine[];
  /** warmcrash: GUESTCORE-PROBE PATH SIZE MD5, the fsync'd file whose metadata is only in the journal. */
  probe?: WarmFileLine;
  /** warmcrash: GUESTCORE-REWROTE PATH NEWMD5, the dirty rewrites that never reach the disk. */
  rewrote: { path: string; md5: string }[];
  /** warmcrash with writeinflight: GUESTCORE-INFLIGHT SECTORS_WRITTEN IN_FLIGHT at the panic. */
  inflight?: { sectorsWritten: number; inFlight: number };
  /** GUESTCORE-WARM-CRASH-READY TOKEN uptime S */
  crashReady?: { token: string; uptime: number };
  /** warmread: GUESTCORE-PRELOAD FILES BYTES SECONDS */
  preload?: { files: number; bytes: number; seconds: number };
  /** warmread: GUESTCORE-PRELOAD-MISSING PATH */
  preloadMissing: string[];
  /** warmread: GUESTCORE-READ-OVERHEAD SECONDS (the timing of an empty read). */
  readOverhead?: number;
  /** warmread: GUESTCORE-READ PATH SIZE MD5 SECONDS */
  reads: WarmReadLine[];
  /** warmread: GUESTCORE-BIGREAD I SECONDS BYTES */
  bigReads: { i: number; seconds: number; bytes: number }[];
  /** GUESTCORE-WARM-DONE TOKEN uptime S */
  done?: { token: string; uptime: number };
  /** GUESTCORE-WARM-HTTPD-READY TOKEN uptime S nic NAME */
  httpdReady?: { token: string; uptime: number; nic: string };
  /** The kernel said "EXT4-fs (vda): recovery complete" (it replayed the journal). */
  journalRecovered: boolean;
  /** GUESTCORE- lines that match no format (e.g. a kernel message landed inside one). */
  unparsed: string[];
}

const MD5 = "([0-9a-f]{32})";
const NUM = "(\\d+(?:\\.\\d+)?)";
const PATH = "(/\\S+)";

export function parseWarmConsole(text: string): WarmReport {
  const r: WarmReport = { files: [], rewrote: [], preloadMissing: [], reads: [], bigReads: [], journalRecovered: false, unparsed: [] };
  const rules: [RegExp, (m: RegExpExecArray) => void][] = [
    [new RegExp(`^GUESTCORE-WARM-MOUNTED (\\S+) uptime ${NUM}$`), (m) => { r.mounted = { token: m[1], uptime: Number(m[2]) }; }],
    [new RegExp(`^GUESTCORE-FILE ${PATH} (\\d+) ${MD5}$`), (m) => { r.files.push({ path: m[1], size: Number(m[2]), md5: m[3] }); }],
    [new RegExp(`^GUESTCORE-PROBE ${PATH} (\\d+) ${MD5}$`), (m) => { r.probe = { path: m[1], size: Number(m[2]), md5: m[3] }; }],
    [new RegExp(`^GUESTCORE-REWROTE ${PATH} ${MD5}$`), (m) => { r.rewrote.push({ path: m[1], md5: m[2] }); }],
    [/^GUESTCORE-INFLIGHT (-?\d+) (\d+)$/, (m) => { r.inflight = { sectorsWritten: Number(m[1]), inFlight: Number(m[2]) }; }],
    [new RegExp(`^GUESTCORE-WARM-CRASH-READY (\\S+) uptime ${NUM}$`), (m) => { r.crashReady = { token: m[1], uptime: Number(m[2]) }; }],
    [new RegExp(`^GUESTCORE-PRELOAD (\\d+) (\\d+) ${NUM}$`), (m) => { r.preload = { files: Number(m[1]), bytes: Number(m[2]), seconds: Number(m[3]) }; }],
    [new RegExp(`^GUESTCORE-PRELOAD-MISSING ${PATH}$`), (m) => { r.preloadMissing.push(m[1]); }],
    [new RegExp(`^GUESTCORE-READ-OVERHEAD ${NUM}$`), (m) => { r.readOverhead = Number(m[1]); }],
    [new RegExp(`^GUESTCORE-READ ${PATH} (\\d+) ${MD5} ${NUM}$`), (m) => { r.reads.push({ path: m[1], size: Number(m[2]), md5: m[3], seconds: Number(m[4]) }); }],
    [new RegExp(`^GUESTCORE-BIGREAD (\\d+) ${NUM} (\\d+)$`), (m) => { r.bigReads.push({ i: Number(m[1]), seconds: Number(m[2]), bytes: Number(m[3]) }); }],
    [new RegExp(`^GUESTCORE-WARM-DONE (\\S+) uptime ${NUM}$`), (m) => { r.done = { token: m[1], uptime: Number(m[2]) }; }],
    [new RegExp(`^GUESTCORE-WARM-HTTPD-READY (\\S+) uptime ${NUM} nic (\\S+)$`), (m) => { r.httpdReady = { token: m[1], uptime: Number(m[2]), nic: m[3] }; }],
  ];
  for (const line of consoleLines(text)) {
    if (/EXT4-fs \(vda\): recovery complete/.test(line)) r.journalRecovered = true;
    if (!line.startsWith("GUESTCORE-")) continue;
    const rule = rules.find(([re]) => re.test(line));
    if (rule) rule[1](rule[0].exec(line)!);
    else if (/^GUESTCORE-(WARM|FILE|PROBE|REWROTE|INFLIGHT|PRELOAD|READ|BIGREAD)/.test(line)) r.unparsed.push(line);
  }
  return r;
}

/** A free TCP port on 127.0.0.1 (for hostfwd; the port is free when this returns, not reserved). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface WarmReplacementOptions {
  /** The guest's role (default warmread; diskbench needs an initrd with fio). */
  role?: "warmread" | "warmhttpd" | "diskbench";
  /** Another initramfs than the cached one (bench/disk-overhead.ts appends fio to it). */
  initrd?: string;
  extraArgs?: string[];
  /** warmhttpd: host port forwarded (127.0.0.1) to the guest's port 80. */
  httpPort?: number;
  memPath: string;
  consoleLog: string;
  token: string;
  disk: WarmDiskBackend;
  throttle?: DiskThrottle;
  memMiB?: number;
  readBig?: boolean;
  bigReads?: number;
  /** A preload list file QEMU reads at start (fw_cfg opt/guestcore/preload); it must exist by then. */
  preloadFile?: string;
  qmpSock?: string;
}

/**
 * The argv of a `warmread` (or `warmhttpd`) replacement, for `recover
 * --replacement`: recover starts it detached, so it is a command line, not
 * a LaunchedGuest. A bench starts a `diskbench` guest from it the same way.
 */
export function warmReplacementArgv(o: WarmReplacementOptions): string[] {
  const boot = cachedBoot();
  const mem = o.memMiB ?? 256;
  const append = [
    "console=ttyS0", "panic=0", `guestcore.role=${o.role ?? "warmread"}`, "guestcore.profile=warm-replacement", `guestcore.token=${o.token}`,
    ...(o.readBig ? ["guestcore.readbig=1"] : []),
    ...(o.bigReads ? [`guestcore.bigreads=${o.bigReads}`] : []),
    o.preloadFile ? "guestcore.preload=1" : "guestcore.preload=0",
  ].join(" ");
  return [
    "qemu-system-x86_64",
    "-machine", "q35,memory-backend=ram1",
    "-object", `memory-backend-file,id=ram1,size=${mem}M,mem-path=${qv(o.memPath)},share=on`,
    "-m", `${mem}M`, "-smp", "1", "-cpu", "qemu64",
    "-nodefaults", "-no-user-config", "-display", "none",
    "-serial", `file:${o.consoleLog}`, "-no-reboot",
    ...(o.qmpSock ? ["-qmp", `unix:${o.qmpSock},server=on,wait=off`] : []),
    ...warmDiskArgs(o.disk, o.throttle),
    ...(o.preloadFile ? ["-fw_cfg", `name=opt/guestcore/preload,file=${qv(o.preloadFile)}`] : []),
    ...(o.httpPort !== undefined ? httpArgs(o.httpPort) : []),
    ...(o.extraArgs ?? []),
    "-kernel", boot.vmlinuz, "-initrd", o.initrd ?? boot.initrd, "-append", append,
  ];
}
