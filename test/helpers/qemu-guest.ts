// Boots a throwaway real guest under QEMU (TCG) for tests that need a live,
// paused QEMU: the cached Debian kernel and busybox initramfs that
// fixtures/build-real.sh made (/var/cache/guestcore/kernels, initramfs/),
// the same guest workload (guest-init.sh: fill memory, write the marker to
// the kernel log, panic with sysrq-c), pvpanic with -action panic=pause, and
// RAM in a memory-backend-file under /dev/shm.
//
// Nothing is cached or built here: a missing kernel or initramfs is an
// error that names the build command. Every guest gets its own temp dir
// (socket, console log) and /dev/shm file; stop() kills QEMU (quit, then
// SIGTERM, then SIGKILL) and removes both, and it is safe to call twice.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QmpClient } from "../../src/sources/qmp.js";
import { CACHE } from "./real.js";

export interface GuestBoot {
  vmlinuz: string;
  initrd: string;
  release: string;
}

/** The newest cached kernel tree and initramfs of a flavour. */
export function cachedBoot(flavour = "amd64"): GuestBoot {
  const kdirs = existsSync(join(CACHE, "kernels")) ? readdirSync(join(CACHE, "kernels")) : [];
  const re = new RegExp(`^linux-image-(\\d+\\.\\d+\\.\\d+-\\d+-${flavour})_`);
  const trees = kdirs.filter((d) => re.test(d) && !d.includes(".tmp.")).sort();
  const build = `run 'bash fixtures/build-real.sh q35-256m' (it caches the kernel and the initramfs)`;
  if (trees.length === 0) throw new Error(`no cached ${flavour} kernel in ${CACHE}/kernels: ${build}`);
  const tree = trees[trees.length - 1];
  const release = re.exec(tree)![1];
  const vmlinuz = join(CACHE, "kernels", tree, "boot", `vmlinuz-${release}`);
  // build-real.sh names initramfs images <release>-<content hash>.cpio; take the newest.
  const dir = join(CACHE, "initramfs");
  const cpios = (existsSync(dir) ? readdirSync(dir) : [])
    .filter((f) => f.startsWith(`${release}-`) && f.endsWith(".cpio") && /^[0-9a-f]+$/.test(f.slice(release.length + 1, -5)))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!existsSync(vmlinuz) || cpios.length === 0) throw new Error(`no cached kernel/initramfs for ${release}: ${build}`);
  return { vmlinuz, initrd: cpios[0], release };
}

export interface LaunchOptions {
  memMiB?: number;
  machine?: "q35" | "pc";
  /** Name in the marker and the shm file. */
  profile?: string;
  /**
   * How guest RAM is provided: "file" (memory-backend-file share=on, the
   * machine's memory-backend), "private-file" (share=off), or "plain"
   * (-m only, QEMU's anonymous RAM).
   */
  backend?: "file" | "private-file" | "plain" | "memfd";
  extraArgs?: string[];
  /** mem-path instead of a fresh /dev/shm file (removed by stop(), recursively). */
  memPath?: string;
  /** Start the guest stopped (-S) and never boot it (for error-path tests). */
  stopped?: boolean;
  /** A cgroup v1 directory (e.g. /sys/fs/cgroup/memory/NAME) QEMU runs in from its first instruction. */
  cgroup?: string;
  /** More kernel command line (e.g. guestcore.fill=full). */
  append?: string;
  /** vCPUs (default 1). */
  smp?: number;
}

export interface LaunchedGuest {
  dir: string;
  sock: string;
  shm?: string;
  marker: string;
  release: string;
  proc: ChildProcess;
  consoleLog: string;
  /** Last lines of the serial console (for failure messages). */
  consoleTail(lines?: number): string;
  /** Wait until QEMU reports the guest panicked and paused (its own QMP connection, closed after). */
  waitPanicked(timeoutMs: number): Promise<void>;
  /** Quit QEMU (QMP quit, then signals) and remove the temp dir and shm file. */
  stop(): Promise<void>;
}

export function launchGuest(opts: LaunchOptions = {}): LaunchedGuest {
  const boot = cachedBoot();
  const memMiB = opts.memMiB ?? 256;
  const machine = opts.machine ?? "q35";
  const profile = opts.profile ?? `qmp-${machine}-${memMiB}m`;
  const backend = opts.backend ?? "file";
  const token = randomBytes(6).toString("hex");
  // Unix socket paths are limited to 108 bytes: keep the dir short, in /tmp.
  const dir = mkdtempSync(join(tmpdir(), "gc-qmp-"));
  const sock = join(dir, "qmp.sock");
  const consoleLog = join(dir, "console.log");
  const shm = backend === "plain" || backend === "memfd" ? undefined : opts.memPath ?? `/dev/shm/guestcore-test-${profile}.${process.pid}.${token}.ram`;
  const marker = `GUESTCORE-MARKER ${profile} ${token}`;
  const append = `console=ttyS0 panic=0 guestcore.profile=${profile} guestcore.token=${token}${opts.append ? " " + opts.append : ""}`;
  const mem = shm
    ? ["-machine", `${machine},memory-backend=ram0`, "-object", `memory-backend-file,id=ram0,size=${memMiB}M,mem-path=${shm},share=${backend === "file" ? "on" : "off"}`]
    : backend === "memfd"
      ? ["-machine", `${machine},memory-backend=ram0`, "-object", `memory-backend-memfd,id=ram0,size=${memMiB}M,share=on`]
      : ["-machine", machine];
  const args = [
    ...mem, "-m", `${memMiB}M`, "-smp", String(opts.smp ?? 1), "-cpu", "qemu64",
    "-nodefaults", "-no-user-config", "-display", "none",
    "-serial", `file:${consoleLog}`,
    "-device", "pvpanic", "-action", "panic=pause", "-device", "vmcoreinfo", "-no-reboot",
    "-qmp", `unix:${sock},server=on,wait=off`,
    "-kernel", boot.vmlinuz, "-initrd", boot.initrd, "-append", append,
    ...(opts.stopped ? ["-S"] : []),
    ...(opts.extraArgs ?? []),
  ];
  const proc = opts.cgroup
    // The shell joins the cgroup, then becomes QEMU (same pid): every page QEMU touches is charged there.
    ? spawn("/bin/sh", ["-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', opts.cgroup, "qemu-system-x86_64", ...args], { stdio: ["ignore", "ignore", "pipe"] })
    : spawn("qemu-system-x86_64", args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr!.setEncoding("utf8");
  proc.stderr!.on("data", (d: string) => { if (stderr.length < 8192) stderr += d; });
  let exited = false;
  const exit = new Promise<void>((resolve) => proc.once("exit", () => { exited = true; resolve(); }));
  proc.once("error", () => { exited = true; });

  const consoleTail = (n = 20) => {
    try {
      return readFileSync(consoleLog, "latin1").split("\n").slice(-n).join("\n");
    } catch {
      return "(no console output)";
    }
  };

  const waitPanicked = async (timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    const q = await QmpClient.connect(sock, { waitForSocket: true, connectTimeoutMs: Math.min(timeoutMs, 15_000) });
    try {
      for (;;) {
        const st = await q.execute<{ status: string; running: boolean }>("query-status");
        if (st.status === "guest-panicked" && !st.running) return;
        if (st.status === "shutdown" || exited) throw new Error(`guest stopped without panicking (status ${st.status})`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`guest did not panic within ${timeoutMs} ms (status ${st.status})`);
        // Events wake us early; the poll covers the STOP that follows GUEST_PANICKED.
        await q.waitEvent((e) => e.event === "GUEST_PANICKED" || e.event === "SHUTDOWN" || e.event === "STOP", Math.min(left, 1000)).catch(() => {});
        q.events.length = 0;
      }
    } catch (e) {
      throw new Error(`${(e as Error).message}\nQEMU stderr: ${stderr.trim()}\nconsole tail:\n${consoleTail()}`);
    } finally {
      q.close();
    }
  };

  // If the test process ends without stop() (a crash, process.exit), take QEMU and its files along.
  const onExit = () => {
    if (!exited) proc.kill("SIGKILL");
    if (shm) rmSync(shm, { force: true, recursive: true });
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);

  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => {
    if (!exited && existsSync(sock)) {
      try {
        const q = await QmpClient.connect(sock, { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
        await q.execute("quit").catch(() => {});
        q.close();
      } catch {
        // fall through to signals
      }
    }
    const waitExit = (ms: number) => Promise.race([exit, new Promise<void>((r) => setTimeout(r, ms).unref())]);
    await waitExit(3000);
    if (!exited) {
      proc.kill("SIGTERM");
      await waitExit(3000);
    }
    if (!exited) {
      proc.kill("SIGKILL");
      await waitExit(3000);
    }
    if (shm) rmSync(shm, { force: true, recursive: true });
    rmSync(dir, { recursive: true, force: true });
    process.removeListener("exit", onExit);
  })());

  return { dir, sock, shm, marker, release: boot.release, proc, consoleLog, consoleTail, waitPanicked, stop };
}

/** Quote for /bin/sh. */
export function shellQuote(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}

export interface ReplacementOptions {
  memMiB?: number;
  /** Its fresh memory file (removed by the caller). */
  memPath: string;
  consoleLog: string;
  qmpSock?: string;
  token: string;
  /** A raw disk image it reads (guestcore.diskread=MIB passes). */
  disk?: string;
  diskReadMiB?: number;
  /** Seconds it rests between read passes. */
  diskIdleS?: number;
  /** Each pass also writes what it read (O_DIRECT), past the part it reads. */
  diskWrite?: boolean;
  /** prealloc=on: QEMU touches all of its RAM at start, as hugepage and real-time setups do. */
  prealloc?: boolean;
}

/**
 * The argv of a replacement guest: the same kernel and initramfs, booted
 * with guestcore.role=replacement (guest-init.sh prints GUESTCORE-READY
 * TOKEN on its console and, with a disk, reads it over and over).
 */
export function replacementArgv(o: ReplacementOptions): string[] {
  const boot = cachedBoot();
  const mem = o.memMiB ?? 256;
  const append = [
    "console=ttyS0", "panic=0", "guestcore.role=replacement", `guestcore.profile=replacement`, `guestcore.token=${o.token}`,
    ...(o.disk ? [`guestcore.diskread=${o.diskReadMiB ?? 64}`, `guestcore.diskidle=${o.diskIdleS ?? 0}`, `guestcore.diskwrite=${o.diskWrite ? 1 : 0}`] : []),
  ].join(" ");
  return [
    "qemu-system-x86_64",
    "-machine", "q35,memory-backend=ram1",
    "-object", `memory-backend-file,id=ram1,size=${mem}M,mem-path=${o.memPath},share=on${o.prealloc ? ",prealloc=on" : ""}`,
    "-m", `${mem}M`, "-smp", "1", "-cpu", "qemu64", "-accel", "tcg,tb-size=64",
    "-nodefaults", "-no-user-config", "-display", "none",
    "-serial", `file:${o.consoleLog}`, "-no-reboot",
    ...(o.qmpSock ? ["-qmp", `unix:${o.qmpSock},server=on,wait=off`] : []),
    ...(o.disk ? ["-drive", `file=${o.disk},format=raw,if=virtio,cache=none,aio=threads`] : []),
    "-kernel", boot.vmlinuz, "-initrd", boot.initrd, "-append", append,
  ];
}
