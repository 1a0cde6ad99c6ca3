// Performance recovery after a crash, as on CacheMind's slides: the read
// throughput of a big file before the crash and on the 1st to 6th read
// after the reboot.
//
//   node dist/bench/warm-reboot.js [--quick] [--json] [--runs 3] [--mem-mib 512] [--big-mib 300]
//                                  [--bw 50] [--pre-reads 4] [--out bench/results/warm-reboot]
//   node dist/bench/warm-reboot.js --render [--out DIR]   # tables and picture again from DIR/results.json
//
// A real guest (Debian 6.1 under TCG, --mem-mib of RAM) mounts its ext4
// disk (fixtures/warm-disk.sh: /data/big.bin of --big-mib MiB, as large as
// the guest's page cache holds), reads big.bin --pre-reads times, and
// panics (guest-init.sh role warmcrash, guestcore.bigreads): the first read
// comes from the disk, the rest from its page cache, and the last is the
// steady state the reboot is compared with. `guestcore recover -d 31
// --quit-crashed early` then dumps it and boots a replacement of the same
// size (role warmread) that reads big.bin six times, caches not dropped.
// Four cases:
//   cold-none       QEMU's file backend, cache=none (O_DIRECT): the reboot starts cold
//   cold-writeback  the file backend with cache=writeback: the host page
//                   cache keeps the image, a second copy of the guest's cache
//                   during normal running (fincore on the image at the crash)
//   warm            the disk on `guestcore disk serve`, recover --warm-cache:
//                   the crashed guest's clean cache pages that equal the disk
//                   are served to the replacement instead of the disk
//   warm-preload    the same with --warm-cache-preload: the replacement's
//                   init reads the files the kept pages belong to before its
//                   timed reads (fw_cfg opt/guestcore/preload)
// The slow shared disk: one cgroup v1 blkio group limited to --bw MB/s for
// reads and writes on the image's device, holding whoever does the direct
// I/O: both QEMUs for the file backend, the disk server for NBD.
// Every run starts from a fresh O_DIRECT copy of the same image, with none
// of it in the host page cache; runs interleave the cases. Figures are
// medians of --runs runs; degradation is 1 - (read after) / (pre-crash
// read), per run, against the same run's crashed guest.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { MB, MiB, RecoverRun, SlowDisk, arg, consoleText, copyDirect, cpuSeconds, dropHostCache, flag, hostCachedBytes, hostCpu, lineChartSvg, log, median, writeResults } from "./warm-common.js";
import { shellQuote } from "../test/helpers/qemu-guest.js";
import { startDiskServer, type DiskServer } from "../test/helpers/disk-server.js";
import { buildWarmDisk, launchWarmGuest, parseWarmConsole, warmReplacementArgv, type WarmDiskBackend } from "../test/helpers/warm-guest.js";

const QUICK = flag("--quick");
const RUNS = Number(arg("--runs", QUICK ? "1" : "3"));
const MEM_MIB = Number(arg("--mem-mib", "512"));
const BIG_MIB = Number(arg("--big-mib", "300"));
const BW_MB = Number(arg("--bw", "50"));
const PRE_READS = Number(arg("--pre-reads", "4"));
const POST_READS = 6;
const OUT = arg("--out", "bench/results/warm-reboot");
const WORK = arg("--work", "/var/tmp/guestcore-bench-warm");

interface Case { name: string; label: string; nbd: boolean; cache?: "none" | "writeback"; warm?: boolean; preload?: boolean; color: string }
const CASES: Case[] = [
  { name: "cold-none", label: "cold reboot, cache=none", nbd: false, cache: "none", color: "#c0392b" },
  { name: "cold-writeback", label: "cold reboot, cache=writeback", nbd: false, cache: "writeback", color: "#e67e22" },
  { name: "warm", label: "warm-cache reboot", nbd: true, warm: true, color: "#2471a3" },
  { name: "warm-preload", label: "warm-cache reboot + preload", nbd: true, warm: true, preload: true, color: "#27ae60" },
];

interface Run {
  case: string;
  run: number;
  /** The crashed guest's reads of big.bin (MB/s), the last is the steady state. */
  preMBps: number[];
  /** The replacement's reads 1..6 (MB/s). */
  postMBps: number[];
  degradation: number[];
  preloadSeconds?: number;
  preloadBytes?: number;
  /**
   * Host page cache held by the image at the crash (fincore on the image:
   * /proc/meminfo's Cached would count the guests' RAM files on /dev/shm too).
   */
  hostCacheBytes: number;
  /** Bytes the slow disk read for the replacement (its blkio group, from recover's start to the last read). */
  diskReadAfterBytes: number;
  keptPages?: number;
  servedBlocks?: number;
  /** CPU seconds the disk server spent from recover's start to the replacement's last read. */
  serverCpuSeconds?: number;
  /** Share of the host's CPU time busy meanwhile (all users: the machine is shared). */
  hostBusy: number;
  /** recover's phases, seconds after the replacement started: the dump's end (its writes and CPU overlap the first reads when small). */
  dumpCompleteAfterStartS?: number;
  recoverSeconds: number;
}

const mbps = (b: { bytes: number; seconds: number }) => b.bytes / b.seconds / MB;
/** Seconds from recover's phase `a` to `b` (its report's timeline, epoch ms). */
function phaseGap(report: any, a: string, b: string): number | undefined {
  const p = report.timeline?.phases;
  return p?.[a] && p?.[b] ? (p[b].t - p[a].t) / 1000 : undefined;
}

async function oneRun(c: Case, run: number, pristine: string, disk: SlowDisk): Promise<Run> {
  const n = `${c.name}-${run}`;
  const img = join(WORK, "disk.img");
  copyDirect(pristine, img);
  dropHostCache(img);
  disk.limit(BW_MB * MB);
  const rr = new RecoverRun(WORK, n, { preload: c.preload });
  let server: DiskServer | undefined;
  let crashed: ReturnType<typeof launchWarmGuest> | undefined;
  try {
    if (c.nbd) server = await startDiskServer(img, join(WORK, `disk-${n}.nbd`), [], disk.wrap);
    const backend: WarmDiskBackend = server ? { kind: "nbd", socket: server.socket } : { kind: "file", image: img, cache: c.cache };
    crashed = launchWarmGuest({ role: "warmcrash", disk: backend, memMiB: MEM_MIB, bigReads: PRE_READS, cgroup: server ? undefined : disk.dir, profile: "warm-bench" });
    const before = await crashed.waitDone(900_000);
    if (before.bigReads.length !== PRE_READS) throw new Error(`${n}: the crashed guest read big.bin ${before.bigReads.length} times, not ${PRE_READS}`);
    const hostCacheBytes = hostCachedBytes(img);

    const argv = warmReplacementArgv({ memMiB: MEM_MIB, memPath: rr.replMem, consoleLog: rr.replLog, qmpSock: rr.replQmp, token: rr.token, disk: backend, bigReads: POST_READS, preloadFile: rr.preload });
    const io0 = disk.serviced();
    const cpu0 = server ? cpuSeconds(server.proc.pid!) : 0;
    const host = hostCpu();
    const { report, seconds } = await rr.recover({ crashedQmp: crashed.sock, replacement: server ? `exec ${shellQuote(argv)}` : disk.command(argv), readyLine: "WARM-DONE",
      warmControl: c.warm ? server!.control : undefined });
    const diskReadAfterBytes = disk.serviced().read - io0.read;
    const serverCpuSeconds = server ? cpuSeconds(server.proc.pid!) - cpu0 : undefined;
    const after = parseWarmConsole(consoleText(rr.replLog));
    if (after.bigReads.length !== POST_READS) throw new Error(`${n}: the replacement read big.bin ${after.bigReads.length} times, not ${POST_READS}`);
    const withheld = RecoverRun.withheld(report);
    const stats = server ? await server.stats() : undefined;
    const preMBps = before.bigReads.map(mbps);
    const postMBps = after.bigReads.map(mbps);
    const pre = preMBps[preMBps.length - 1];
    const res: Run = {
      case: c.name, run, preMBps, postMBps, degradation: postMBps.map((x) => 1 - x / pre),
      preloadSeconds: after.preload?.seconds, preloadBytes: after.preload?.bytes,
      hostCacheBytes, diskReadAfterBytes,
      keptPages: withheld?.keptPages, servedBlocks: stats?.warm?.servedBlocks, serverCpuSeconds, hostBusy: host.busy(), recoverSeconds: seconds,
      dumpCompleteAfterStartS: phaseGap(report, "replacement-started", "dump-complete"),
    };
    log(`${n}: pre-crash ${preMBps.map((x) => x.toFixed(0)).join("/")} MB/s; after ${postMBps.map((x) => x.toFixed(0)).join("/")} MB/s` +
      (res.preloadSeconds !== undefined ? `; preload ${res.preloadSeconds.toFixed(2)} s` : "") +
      `; host cache ${(hostCacheBytes / MiB).toFixed(0)} MiB; disk read after ${(diskReadAfterBytes / MiB).toFixed(0)} MiB` +
      (res.keptPages !== undefined ? `; kept ${res.keptPages} pages, served ${res.servedBlocks} blocks` : "") +
      (serverCpuSeconds !== undefined ? `; server CPU ${serverCpuSeconds.toFixed(1)} s` : "") + `; host CPU ${(res.hostBusy * 100).toFixed(0)} % busy`);
    return res;
  } finally {
    await rr.cleanup();
    await server?.stop();
    await crashed?.stop();
  }
}

/**
 * Where the NBD path's ceiling is: the disk server with --cache writeback
 * over an image wholly in the host page cache (no disk I/O, no warm
 * copies), a fresh guest reading big.bin once. Its server CPU seconds
 * against the warm case's tell what serving a warm copy costs.
 */
async function nbdCeiling(run: number, pristine: string, disk: SlowDisk): Promise<{ mbps: number; serverCpuSeconds: number; hostBusy: number }> {
  const img = join(WORK, "disk.img");
  copyDirect(pristine, img);
  spawnSync("cat", [img], { stdio: "ignore" });
  const server = await startDiskServer(img, join(WORK, `ceiling-${run}.nbd`), ["--cache", "writeback"], disk.wrap);
  const g = launchWarmGuest({ role: "warmread", disk: { kind: "nbd", socket: server.socket }, memMiB: MEM_MIB, bigReads: 1, profile: "warm-bench" });
  try {
    const cpu0 = cpuSeconds(server.proc.pid!);
    const host = hostCpu();
    const r = await g.waitDone(600_000);
    const res = { mbps: mbps(r.bigReads[0]), serverCpuSeconds: cpuSeconds(server.proc.pid!) - cpu0, hostBusy: host.busy() };
    log(`ceiling-${run}: the disk server from the host page cache ${res.mbps.toFixed(0)} MB/s, server CPU ${res.serverCpuSeconds.toFixed(1)} s; host CPU ${(res.hostBusy * 100).toFixed(0)} % busy`);
    return res;
  } finally {
    await g.stop();
    await server.stop();
    dropHostCache(img);
  }
}

interface Summary {
  case: string;
  label: string;
  preMBps: number;
  /** The crashed guest's second read: its first from its own page cache, when the kernel activates each page (second touch). */
  preSecondMBps: number;
  postMBps: number[];
  degradation: number[];
  preloadSeconds?: number;
  hostCacheMiB: number;
  diskReadAfterMiB: number;
  keptMiB?: number;
  servedMiB?: number;
  serverCpuSeconds?: number;
  perRun: { read1: number; hostBusy: number }[];
}

function summarize(c: Case, runs: Run[]): Summary {
  const rs = runs.filter((r) => r.case === c.name);
  const at = (f: (r: Run) => number | undefined) => {
    const xs = rs.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
    return xs.length ? median(xs) : undefined;
  };
  return {
    case: c.name, label: c.label,
    preMBps: at((r) => r.preMBps[r.preMBps.length - 1])!,
    preSecondMBps: at((r) => r.preMBps[1])!,
    postMBps: Array.from({ length: POST_READS }, (_, i) => at((r) => r.postMBps[i])!),
    degradation: Array.from({ length: POST_READS }, (_, i) => at((r) => r.degradation[i])!),
    preloadSeconds: at((r) => r.preloadSeconds),
    hostCacheMiB: at((r) => r.hostCacheBytes)! / MiB,
    diskReadAfterMiB: at((r) => r.diskReadAfterBytes)! / MiB,
    keptMiB: c.warm ? at((r) => r.keptPages)! * 4096 / MiB : undefined,
    servedMiB: c.warm ? at((r) => r.servedBlocks)! * 4096 / MiB : undefined,
    serverCpuSeconds: at((r) => r.serverCpuSeconds),
    perRun: rs.map((r) => ({ read1: r.postMBps[0], hostBusy: r.hostBusy })),
  };
}

function tables(s: Summary[]): string {
  const f0 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(0));
  const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
  const cold = s.find((x) => x.case === "cold-none")!;
  const out = [
    `| case | pre-crash MB/s (its 2nd read) | ${Array.from({ length: POST_READS }, (_, i) => `read ${i + 1}`).join(" | ")} | read 1 vs cold cache=none | read 1 per run (host CPU busy) |`,
    `|---|---:|${"---:|".repeat(POST_READS)}---:|---|`,
    ...s.map((x) => `| ${x.label} | ${f0(x.preMBps)} (${f0(x.preSecondMBps)}) | ${x.postMBps.map(f0).join(" | ")} | ${(x.postMBps[0] / cold.postMBps[0]).toFixed(2)}× | ` +
      `${x.perRun.map((r) => `${f0(r.read1)} (${r.hostBusy === undefined ? "?" : (r.hostBusy * 100).toFixed(0)} %)`).join(", ")} |`),
    "",
    `| case | ${Array.from({ length: POST_READS }, (_, i) => `degradation read ${i + 1}`).join(" | ")} | preload s | host page cache of the image MiB | disk read after the reboot MiB | kept / served MiB | disk server CPU s |`,
    `|---|${"---:|".repeat(POST_READS)}---:|---:|---:|---:|---:|`,
    ...s.map((x) => `| ${x.label} | ${x.degradation.map(pct).join(" | ")} | ${x.preloadSeconds === undefined ? "–" : x.preloadSeconds.toFixed(2)} | ${f0(x.hostCacheMiB)} | ${f0(x.diskReadAfterMiB)} | ${x.keptMiB === undefined ? "–" : `${f0(x.keptMiB)} / ${f0(x.servedMiB)}`} | ${x.serverCpuSeconds === undefined ? "–" : x.serverCpuSeconds.toFixed(1)} |`),
  ];
  return out.join("\n");
}

function goals(s: Summary[]): { firstReadRatio: number; firstReadGoalMet: boolean; preloadWorstDegradation: number; preloadGoalMet: boolean; text: string } {
  const cold = s.find((x) => x.case === "cold-none")!;
  const warm = s.find((x) => x.case === "warm")!;
  const pre = s.find((x) => x.case === "warm-preload")!;
  const firstReadRatio = warm.postMBps[0] / cold.postMBps[0];
  const preloadWorstDegradation = Math.max(...pre.degradation);
  const worstAfterFirst = Math.max(...pre.degradation.slice(1));
  const text = [
    `- first read after a warm reboot ${firstReadRatio.toFixed(2)}× the cold cache=none reboot's (goal ≥ 3×): ${firstReadRatio >= 3 ? "met" : "missed"}`,
    `- with the preload (${pre.preloadSeconds?.toFixed(2) ?? "?"} s), worst degradation of reads 1–${POST_READS}: ${(preloadWorstDegradation * 100).toFixed(0)} % (goal ≤ 16 %): ${preloadWorstDegradation <= 0.16 ? "met" : "missed"}` +
      `; reads 2–${POST_READS}: ${(worstAfterFirst * 100).toFixed(0)} % at worst; read 1 (${pre.postMBps[0].toFixed(0)} MB/s) is the page's second touch, like the crashed guest's own 2nd read (${pre.preSecondMBps.toFixed(0)} MB/s, ${((1 - pre.postMBps[0] / pre.preSecondMBps) * 100).toFixed(0)} % apart)`,
  ].join("\n");
  return { firstReadRatio, firstReadGoalMet: firstReadRatio >= 3, preloadWorstDegradation, preloadGoalMet: preloadWorstDegradation <= 0.16, text };
}

interface Setup { date: string; memMiB: number; bigMiB: number; bwMBps: number; preReads: number; runs: number }
type Ceiling = { mbps: number; serverCpuSeconds: number; hostBusy: number };

function report(setup: Setup, runs: Run[], ceilings: Ceiling[]): void {
  const s = CASES.map((c) => summarize(c, runs));
  const ceiling = { mbps: median(ceilings.map((x) => x.mbps)), serverCpuSeconds: median(ceilings.map((x) => x.serverCpuSeconds)) };
  const g = goals(s);
  const warm = s.find((x) => x.case === "warm")!;
  const cold = s.find((x) => x.case === "cold-none")!;
  const md = `${tables(s)}\n\n${g.text}\n` +
    `- reference: the disk server reading the host page cache (--cache writeback, no warm copies) gives a first read of ${ceiling.mbps.toFixed(0)} MB/s ` +
    `(${(ceiling.mbps / cold.postMBps[0]).toFixed(2)}× cold cache=none; per run ${ceilings.map((x) => `${x.mbps.toFixed(0)} (${x.hostBusy === undefined ? "?" : (x.hostBusy * 100).toFixed(0)} % busy)`).join(", ")}) ` +
    `for ${ceiling.serverCpuSeconds.toFixed(1)} s of server CPU; serving the warm copies took ${warm.serverCpuSeconds?.toFixed(1) ?? "?"} s of server CPU for the same ${setup.bigMiB} MiB\n`;
  const picture = lineChartSvg({
    title: `big.bin (${setup.bigMiB} MiB) read after the reboot, ${setup.memMiB} MiB guest, disk ${setup.bwMBps} MB/s`,
    xLabel: "read after the reboot", yLabel: "read throughput (MB/s, log scale)", logY: { yMin: 20 },
    series: s.map((x, i) => ({ label: x.label, color: CASES[i].color, points: x.postMBps.map((y, k) => [k + 1, y] as [number, number]), dots: true })),
    hlines: [{ y: median(s.map((x) => x.preMBps)), label: "pre-crash (median of the crashed guests' last reads)", color: "#555" }],
    xTicks: Array.from({ length: POST_READS }, (_, i) => i + 1), xMin: 0.8, xMax: POST_READS + 0.2,
  });
  const json = { ...setup, summary: s, goals: g, ceiling, ceilings, all: runs };
  writeResults(OUT, json, md, { "reads.svg": picture });
  if (flag("--json")) console.log(JSON.stringify(json, null, 1));
  else console.log(md);
}

async function main(): Promise<void> {
  if (flag("--render")) {
    const j = JSON.parse(readFileSync(join(OUT, "results.json"), "utf8"));
    return report({ date: j.date, memMiB: j.memMiB, bigMiB: j.bigMiB, bwMBps: j.bwMBps, preReads: j.preReads, runs: j.runs }, j.all, j.ceilings);
  }
  mkdirSync(WORK, { recursive: true });
  log(`building the disk: /data/big.bin of ${BIG_MIB} MiB`);
  const pristine = buildWarmDisk(join(WORK, "pristine.img"), { roFiles: 0, rwFiles: 0, bigMiB: BIG_MIB }).image;
  const disk = new SlowDisk("guestcore-bench-warm", WORK);
  const runs: Run[] = [];
  const ceilings: Ceiling[] = [];
  try {
    for (let run = 0; run < RUNS; run++) {
      for (const c of CASES) runs.push(await oneRun(c, run, pristine, disk));
      ceilings.push(await nbdCeiling(run, pristine, disk));
    }
  } finally {
    await disk.remove();
    rmSync(join(WORK, "disk.img"), { force: true });
  }
  report({ date: new Date().toISOString(), memMiB: MEM_MIB, bigMiB: BIG_MIB, bwMBps: BW_MB, preReads: PRE_READS, runs: RUNS }, runs, ceilings);
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
