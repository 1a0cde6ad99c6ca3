// Normal-running overhead of the disk server: the same raw image served by
// QEMU's own file backend (cache=none: O_DIRECT, aio=threads) and by
// `guestcore disk serve` (O_DIRECT, every block tracked and hashed), measured
// by fio inside the guest; qemu-nbd (--cache=none --aio=threads) as a third,
// to tell what NBD itself costs (QEMU's NBD client, a unix socket, one more
// copy) from what the server adds.
//
//   node dist/bench/disk-overhead.js [--quick] [--json] [--runs 3] [--runtime 8] [--out bench/results/disk-overhead]
//
// The guest (Debian 6.1 under TCG, 512 MiB, guest-init.sh role diskbench)
// boots an initramfs built here: the cached one with a second cpio archive
// appended that holds /usr/bin/fio and the libraries ldd names (the kernel
// unpacks concatenated archives in order), so the default initramfs stays
// small. The job file reaches it through fw_cfg. Jobs, one after another on
// the raw /dev/vda (1 GiB, filled with random bytes), O_DIRECT in the guest,
// --runtime seconds each after 1 s of ramp:
//   seq-read, seq-write          1 MiB, libaio, queue depth 4
//   rand-read, rand-write        4 KiB, libaio, queue depth 16
//   rand-read-qd1, rand-write-qd1  4 KiB, one at a time (psync): latency-bound
// The disk is not throttled: the overhead is measured at the real disk's
// speed, where a slower path shows. Each figure is the median of --runs
// boots per backend, backends alternating; ratios are against QEMU's file
// backend.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { MB, arg, consoleText, cpuSeconds, flag, log, median, sleep, writeResults } from "./warm-common.js";
import { cachedBoot } from "../test/helpers/qemu-guest.js";
import { startDiskServer, type DiskServer } from "../test/helpers/disk-server.js";
import { consoleLines, startQemuNbd, warmReplacementArgv, type NbdServer, type WarmDiskBackend } from "../test/helpers/warm-guest.js";

const QUICK = flag("--quick");
const RUNS = Number(arg("--runs", QUICK ? "1" : "3"));
const RUNTIME_S = Number(arg("--runtime", QUICK ? "3" : "8"));
const OUT = arg("--out", "bench/results/disk-overhead");
const WORK = arg("--work", "/var/tmp/guestcore-bench-disk");
const DISK_MIB = 1024;
const MEM_MIB = 512;

interface Job { name: string; label: string; rw: string; bs: string; engine: "libaio" | "psync"; depth: number; write: boolean; unit: "MB/s" | "IOPS" }
const JOBS: Job[] = [
  { name: "seq-read", label: "sequential read, 1 MiB, QD 4", rw: "read", bs: "1M", engine: "libaio", depth: 4, write: false, unit: "MB/s" },
  { name: "seq-write", label: "sequential write, 1 MiB, QD 4", rw: "write", bs: "1M", engine: "libaio", depth: 4, write: true, unit: "MB/s" },
  { name: "rand-read", label: "random read, 4 KiB, QD 16", rw: "randread", bs: "4k", engine: "libaio", depth: 16, write: false, unit: "IOPS" },
  { name: "rand-write", label: "random write, 4 KiB, QD 16", rw: "randwrite", bs: "4k", engine: "libaio", depth: 16, write: true, unit: "IOPS" },
  { name: "rand-read-qd1", label: "random read, 4 KiB, QD 1", rw: "randread", bs: "4k", engine: "psync", depth: 1, write: false, unit: "IOPS" },
  { name: "rand-write-qd1", label: "random write, 4 KiB, QD 1", rw: "randwrite", bs: "4k", engine: "psync", depth: 1, write: true, unit: "IOPS" },
];

function jobFile(): string {
  const lines = ["[global]", "filename=/dev/vda", "direct=1", "thread", "time_based", `runtime=${RUNTIME_S}`, "ramp_time=1",
    `size=${DISK_MIB}M`, "randrepeat=0", "stonewall", ""];
  for (const j of JOBS) lines.push(`[${j.name}]`, `rw=${j.rw}`, `bs=${j.bs}`, `ioengine=${j.engine}`, `iodepth=${j.depth}`, "");
  return lines.join("\n");
}

/** The cached initramfs with fio and its libraries appended as a second archive. */
function fioInitrd(out: string): string {
  const fio = spawnSync("sh", ["-c", "command -v fio"], { encoding: "utf8" }).stdout.trim();
  if (!fio) throw new Error("fio not found: apt-get install fio");
  const ldd = spawnSync("ldd", [fio], { encoding: "utf8" });
  if (ldd.status !== 0) throw new Error(`ldd ${fio}: ${ldd.stderr}`);
  // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" and the loader's "/lib64/ld-linux-x86-64.so.2 (0x...)".
  const libs = [...ldd.stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)].map((m) => m[1]);
  const stage = mkdtempSync(join(WORK, "fio-stage-"));
  try {
    for (const f of [fio, ...libs]) {
      mkdirSync(join(stage, dirname(f)), { recursive: true });
      copyFileSync(f, join(stage, f)); // follows symlinks: the archive holds the files under the names ldd uses
    }
    const extra = join(WORK, "fio.cpio");
    const r = spawnSync("sh", ["-c", 'cd "$0" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > "$1"', stage, extra], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`cpio: ${r.stderr}`);
    // The guest has no ld.so.cache either: fio must start in a chroot of the tree alone.
    const check = spawnSync("chroot", [stage, fio, "--version"], { encoding: "utf8" });
    if (check.status !== 0) throw new Error(`fio does not start from its staged libraries: ${check.stderr}`);
    const c = spawnSync("sh", ["-c", `cat "$0" "$1" > "$2"`, cachedBoot().initrd, extra, out]);
    if (c.status !== 0) throw new Error("concatenating the initramfs failed");
    rmSync(extra, { force: true });
    log(`initramfs with fio: ${out} (${libs.length} libraries)`);
    return out;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

interface JobResult { job: string; mbps: number; iops: number; latUs: number }

/** fio terse v3: read bw (KiB/s) field 7, iops 8, total latency mean (µs) 40; write 48, 49, 81 (1-based). */
function parseTerse(line: string): JobResult {
  const f = line.split(";");
  const name = f[2];
  const job = JOBS.find((j) => j.name === name);
  if (!job || f.length < 80) throw new Error(`fio line: ${line.slice(0, 200)}`);
  const [bw, iops, lat] = job.write ? [f[47], f[48], f[80]] : [f[6], f[7], f[39]];
  return { job: name, mbps: (Number(bw) * 1024) / MB, iops: Number(iops), latUs: Number(lat) };
}

type Kind = "qemu" | "server" | "qemu-nbd";
const KINDS: Kind[] = ["qemu", "server", "qemu-nbd"];

async function oneBoot(kind: Kind, run: number, image: string, initrd: string, jobs: string): Promise<{ jobs: JobResult[]; serverCpuSeconds?: number }> {
  const token = randomBytes(4).toString("hex");
  const consoleLog = join(WORK, `console-${kind}-${run}.log`);
  const memPath = `/dev/shm/guestcore-bench-disk.${process.pid}.ram`;
  rmSync(consoleLog, { force: true });
  let server: DiskServer | undefined;
  let qemuNbd: NbdServer | undefined;
  let qemu: ReturnType<typeof spawn> | undefined;
  try {
    if (kind === "server") server = await startDiskServer(image, join(WORK, `disk-${run}.nbd`));
    if (kind === "qemu-nbd") qemuNbd = await startQemuNbd(image, join(WORK, `qemu-nbd-${run}.nbd`));
    const socket = server?.socket ?? qemuNbd?.socket;
    const disk: WarmDiskBackend = socket ? { kind: "nbd", socket } : { kind: "file", image };
    const argv = warmReplacementArgv({ role: "diskbench", initrd, memMiB: MEM_MIB, memPath, consoleLog, token, disk,
      extraArgs: ["-fw_cfg", `name=opt/guestcore/fio,file=${jobs}`] });
    const cpu0 = server ? cpuSeconds(server.proc.pid!) : 0;
    qemu = spawn(argv[0], argv.slice(1), { stdio: "ignore" });
    const deadline = Date.now() + 120_000 + JOBS.length * (RUNTIME_S + 1) * 4000;
    for (;;) {
      const lines = consoleLines(consoleText(consoleLog));
      if (lines.some((l) => l.startsWith(`GUESTCORE-DISKBENCH-DONE ${token}`))) {
        const res = lines.filter((l) => l.startsWith("GUESTCORE-FIO ")).map((l) => parseTerse(l.slice("GUESTCORE-FIO ".length)));
        if (res.length !== JOBS.length) throw new Error(`${kind}: ${res.length} fio results, not ${JOBS.length}`);
        return { jobs: res, serverCpuSeconds: server ? cpuSeconds(server.proc.pid!) - cpu0 : undefined };
      }
      const failed = lines.find((l) => /guestcore-init: FAILED|Kernel panic/.test(l));
      if (failed || qemu.exitCode !== null || Date.now() > deadline) throw new Error(`${kind}: ${failed ?? (qemu.exitCode !== null ? "QEMU exited" : "timed out")}\n${lines.slice(-20).join("\n")}`);
      await sleep(250);
    }
  } finally {
    if (qemu && qemu.exitCode === null) {
      qemu.kill("SIGKILL");
      await new Promise((r) => qemu!.once("exit", r));
    }
    await server?.stop();
    await qemuNbd?.stop();
    rmSync(memPath, { force: true });
  }
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  const image = join(WORK, "disk.raw");
  if (!existsSync(image)) {
    const r = spawnSync("dd", ["if=/dev/urandom", `of=${image}`, "bs=4M", `count=${DISK_MIB / 4}`, "oflag=direct", "status=none"]);
    if (r.status !== 0) throw new Error("making the disk image failed");
  }
  const initrd = fioInitrd(join(WORK, "diskbench.cpio"));
  const jobs = join(WORK, "jobs.fio");
  writeFileSync(jobs, jobFile());
  const all: { kind: Kind; run: number; jobs: JobResult[]; serverCpuSeconds?: number }[] = [];
  for (let run = 0; run < RUNS; run++) {
    for (const kind of KINDS) {
      const r = await oneBoot(kind, run, image, initrd, jobs);
      all.push({ kind, run, ...r });
      log(`${kind} run ${run}: ${r.jobs.map((j) => `${j.job} ${j.mbps.toFixed(1)} MB/s ${j.iops.toFixed(0)} IOPS`).join(", ")}` +
        (r.serverCpuSeconds !== undefined ? `; server CPU ${r.serverCpuSeconds.toFixed(1)} s` : ""));
    }
  }
  const med = (kind: string, job: string, k: keyof Omit<JobResult, "job">) => median(all.filter((a) => a.kind === kind).map((a) => a.jobs.find((j) => j.job === job)![k]));
  const rows = JOBS.map((j) => {
    const at = (kind: Kind) => ({ mbps: med(kind, j.name, "mbps"), iops: med(kind, j.name, "iops"), latUs: med(kind, j.name, "latUs") });
    const [q, s, n] = [at("qemu"), at("server"), at("qemu-nbd")];
    const ratio = (x: typeof q) => (j.unit === "MB/s" ? x.mbps / q.mbps : x.iops / q.iops);
    return { job: j.name, label: j.label, unit: j.unit, qemu: q, server: s, qemuNbd: n, ratio: ratio(s), qemuNbdRatio: ratio(n) };
  });
  const fmt = (r: (typeof rows)[number], x: { mbps: number; iops: number; latUs: number }) => r.unit === "MB/s" ? `${x.mbps.toFixed(1)} MB/s` : `${x.iops.toFixed(0)} IOPS`;
  const serverCpu = median(all.filter((a) => a.kind === "server").map((a) => a.serverCpuSeconds!));
  const md = [
    "| workload (fio in the guest, O_DIRECT on /dev/vda) | QEMU file backend, cache=none | guestcore disk serve | server / QEMU | qemu-nbd (reference) | qemu-nbd / QEMU | mean latency µs: QEMU / server / qemu-nbd |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...rows.map((r) => `| ${r.label} | ${fmt(r, r.qemu)} | ${fmt(r, r.server)} | ${r.ratio.toFixed(2)} | ${fmt(r, r.qemuNbd)} | ${r.qemuNbdRatio.toFixed(2)} | ` +
      `${r.qemu.latUs.toFixed(0)} / ${r.server.latUs.toFixed(0)} / ${r.qemuNbd.latUs.toFixed(0)} |`),
    "",
    `The disk server used ${serverCpu.toFixed(1)} s of CPU over the ${JOBS.length} jobs (${(JOBS.length * (RUNTIME_S + 1))} s of fio; median of ${RUNS} boots).`,
  ].join("\n");
  const json = { date: new Date().toISOString(), runs: RUNS, runtimeS: RUNTIME_S, diskMiB: DISK_MIB, memMiB: MEM_MIB, jobFile: jobFile(), rows, serverCpuSeconds: serverCpu, all };
  writeResults(OUT, json, md);
  if (flag("--json")) console.log(JSON.stringify(json, null, 1));
  else console.log(md);
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
