// A web server through a crash: the throughput a client on the host gets
// from busybox httpd in the guest, before the crash, while the guest is
// down, and while the replacement's cache warms up again, for a cold
// restart against `recover --warm-cache` with the guest-side preload.
//
//   node dist/bench/warm-httpd.js [--quick] [--json] [--runs 3] [--mem-mib 512] [--files 160] [--file-kib 1024]
//                                 [--bw 5] [--before 15] [--after 75] [--bin 0.5] [--out bench/results/warm-httpd]
//
// The disk (fixtures/warm-disk.sh: --files files of --file-kib KiB under
// /data) is served by `guestcore disk serve` in both cases, so that only
// the warm cache differs. A guest (Debian 6.1 under TCG, role warmhttpd)
// serves /data on port 80, forwarded from 127.0.0.1:PORT by QEMU user
// networking. The client fetches every file once (the guest's page cache
// now holds them all: the steady state of a server whose working set fits
// in memory), then the measured loop starts: files in a random order (the
// same seeded order in every run), one request at a time, a fresh
// connection each, bytes counted as they arrive in --bin second bins.
// --before seconds in, the host injects an NMI (QMP inject-nmi; the guest
// runs with unknown_nmi_panic), the guest panics and pvpanic pauses it;
// `guestcore recover -d 31 --quit-crashed early` dumps it and boots the
// replacement (warmhttpd too, on the same host port: the crashed QEMU has
// quit and released it) with or without --warm-cache and the preload list,
// which the replacement reads in the background once httpd serves. The
// client keeps asking (a refused or stalled request is retried after
// 0.1 s) until --after seconds after the crash.
// The slow shared disk: the disk server runs in a cgroup v1 blkio group
// limited to --bw MB/s. TCG's user networking carries only about 17 MB/s
// here, so a disk at the field's 50 MB/s would hide behind the network:
// the disk is slower than the network, as it is for a real web server with
// a cold cache. The limit is lifted while the crashed guest's cache is
// first filled (that is not measured), and set before the measured loop.
import http from "node:http";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { MB, MiB, RecoverRun, SlowDisk, arg, consoleText, copyDirect, flag, hostCpu, lineChartSvg, log, median, sleep, writeResults } from "./warm-common.js";
import { QmpClient } from "../src/sources/qmp.js";
import { shellQuote } from "../test/helpers/qemu-guest.js";
import { startDiskServer, type DiskServer } from "../test/helpers/disk-server.js";
import { buildWarmDisk, freePort, launchWarmGuest, parseWarmConsole, warmReplacementArgv } from "../test/helpers/warm-guest.js";

const QUICK = flag("--quick");
const RUNS = Number(arg("--runs", QUICK ? "1" : "3"));
const MEM_MIB = Number(arg("--mem-mib", "512"));
const FILES = Number(arg("--files", QUICK ? "80" : "160"));
const FILE_KIB = Number(arg("--file-kib", "1024"));
const BW_MB = Number(arg("--bw", "5"));
const BEFORE_S = Number(arg("--before", QUICK ? "12" : "15"));
const AFTER_S = Number(arg("--after", QUICK ? "50" : "75"));
const BIN_S = Number(arg("--bin", "0.5"));
const OUT = arg("--out", "bench/results/warm-httpd");
const WORK = arg("--work", "/var/tmp/guestcore-bench-httpd");
/** A request that gets no byte for this long is given up (the guest is paused or gone). */
const STALL_MS = 2000;

interface Case { name: string; label: string; warm: boolean; color: string }
const CASES: Case[] = [
  { name: "cold", label: "cold restart (no warm cache)", warm: false, color: "#c0392b" },
  { name: "warm", label: "recover --warm-cache + preload", warm: true, color: "#27ae60" },
];

/** One GET; resolves with the bytes received (counted into `onData` as they arrive), rejects on an error or a stall. */
function fetchFile(port: number, path: string, onData: (n: number) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const req = http.get({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`HTTP ${res.statusCode}`));
        return;
      }
      res.on("data", (d: Buffer) => { got += d.length; onData(d.length); });
      res.on("end", () => resolve(got));
      res.on("error", reject);
      res.on("aborted", () => reject(new Error("aborted")));
    });
    req.setTimeout(STALL_MS, () => req.destroy(new Error("stalled")));
    req.on("error", reject);
  });
}

/** xorshift32: the same file order in every run and case. */
function order(n: number, count: number): number[] {
  let x = 0x9e3779b9;
  return Array.from({ length: count }, () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x % n;
  });
}

interface Run {
  case: string;
  run: number;
  /** MB/s per bin, bin 0 starting at the measured loop's start. */
  bins: number[];
  /** Seconds from the loop's start. */
  crashAt: number;
  /** The replacement's ready line (httpd serving), and the end of its background preload. */
  readyAt?: number;
  preloadEndAt?: number;
  preloadSeconds?: number;
  firstByteAfterCrashAt?: number;
  errors: number;
  /** Share of the host's CPU busy from the crash to the window's end (all users: the machine is shared). */
  hostBusy: number;
  servedMiB?: number;
  keptMiB?: number;
}

async function oneRun(c: Case, run: number, pristine: string, disk: SlowDisk): Promise<Run> {
  const n = `${c.name}-${run}`;
  const img = join(WORK, "disk.img");
  copyDirect(pristine, img);
  disk.limit(0);
  const rr = new RecoverRun(WORK, n, { preload: c.warm });
  let server: DiskServer | undefined;
  let crashed: ReturnType<typeof launchWarmGuest> | undefined;
  let stop = false;
  try {
    server = await startDiskServer(img, join(WORK, `disk-${n}.nbd`), [], disk.wrap);
    const port = await freePort();
    crashed = launchWarmGuest({ role: "warmhttpd", disk: { kind: "nbd", socket: server.socket }, memMiB: MEM_MIB, httpPort: port, nmiPanic: true, profile: "httpd-bench" });
    await crashed.waitDone(180_000);
    // The crashed guest's cache: every file once, not measured, unthrottled.
    for (let i = 0; i < FILES; i++) {
      for (let tries = 0; ; tries++) {
        try {
          if (await fetchFile(port, `/ro-${i}.bin`, () => {}) !== FILE_KIB * 1024) throw new Error("short file");
          break;
        } catch (e) {
          if (tries > 20) throw new Error(`${n}: warm-up GET /ro-${i}.bin: ${(e as Error).message}`);
          await sleep(200);
        }
      }
    }
    disk.limit(BW_MB * MB);

    const bins: number[] = [];
    const t0 = performance.now();
    const epoch0 = Date.now();
    const now = () => (performance.now() - t0) / 1000;
    let errors = 0;
    let crashAt = Infinity;
    let firstByteAfterCrashAt: number | undefined;
    const onData = (k: number) => {
      const t = now();
      const b = Math.floor(t / BIN_S);
      while (bins.length <= b) bins.push(0);
      bins[b] += k;
      if (t > crashAt + 0.5 && firstByteAfterCrashAt === undefined) firstByteAfterCrashAt = t;
    };
    const seq = order(FILES, 1_000_000);
    const client = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          await fetchFile(port, `/ro-${seq[i % seq.length]}.bin`, onData);
        } catch {
          errors++;
          await sleep(100);
        }
      }
    })();

    await sleep(BEFORE_S * 1000);
    const q = await QmpClient.connect(crashed.sock, { connectTimeoutMs: 5000, commandTimeoutMs: 5000 });
    await q.execute("inject-nmi");
    q.close();
    crashAt = now();
    const host = hostCpu();
    await crashed.waitPanicked(30_000);
    const argv = warmReplacementArgv({ role: "warmhttpd", httpPort: port, memMiB: MEM_MIB, memPath: rr.replMem, consoleLog: rr.replLog, qmpSock: rr.replQmp, token: rr.token,
      disk: { kind: "nbd", socket: server.socket }, preloadFile: rr.preload });
    const recover = rr.recover({ crashedQmp: crashed.sock, replacement: `exec ${shellQuote(argv)}`, readyLine: "WARM-HTTPD-READY", warmControl: c.warm ? server.control : undefined });
    // Not awaited before the window ends: a failed recover still ends the client first.
    recover.catch(() => {});
    await sleep(Math.max(0, (crashAt + AFTER_S - now()) * 1000));
    stop = true;
    const hostBusy = host.busy();
    await client;
    const { report } = await recover;
    // recover's replacement-ready (epoch ms) is when it saw the ready line; the preload starts right after that line.
    const readyPhase = report.timeline?.phases?.["replacement-ready"]?.t as number | undefined;
    const readyAt = readyPhase !== undefined ? (readyPhase - epoch0) / 1000 : undefined;
    const rep = parseWarmConsole(consoleText(rr.replLog));
    const preloadEndAt = readyAt !== undefined && rep.preload ? readyAt + rep.preload.seconds : undefined;
    const stats = await server.stats();
    const withheld = RecoverRun.withheld(report);
    while (bins.length < Math.ceil((crashAt + AFTER_S) / BIN_S)) bins.push(0);
    const res: Run = {
      case: c.name, run, bins: bins.map((b) => b / BIN_S / MB), crashAt, readyAt, preloadEndAt, preloadSeconds: rep.preload?.seconds,
      firstByteAfterCrashAt, errors, hostBusy, servedMiB: stats.warm ? stats.warm.servedBlocks * 4096 / MiB : undefined,
      keptMiB: withheld?.keptPages !== undefined ? withheld.keptPages * 4096 / MiB : undefined,
    };
    const m = metrics(res);
    log(`${n}: pre-crash ${m.preMBps.toFixed(1)} MB/s; down ${m.downSeconds.toFixed(1)} s; back to 90 % after ${m.recoverySeconds?.toFixed(1) ?? "never"} s; ` +
      `first 30 s after the restart at ${(m.first30Ratio * 100).toFixed(0)} %` + (res.preloadSeconds !== undefined ? `; preload ${res.preloadSeconds.toFixed(1)} s` : "") +
      (res.servedMiB !== undefined ? `; served ${res.servedMiB.toFixed(0)} MiB from warm copies` : "") + `; host CPU ${(hostBusy * 100).toFixed(0)} % busy`);
    return res;
  } finally {
    stop = true;
    await rr.cleanup();
    await server?.stop();
    await crashed?.stop();
  }
}

interface Metrics {
  preMBps: number;
  /** Crash to the first byte served by the replacement. */
  downSeconds: number;
  /** From the first byte after the crash until a 5 s moving mean is back at 90 % of the pre-crash throughput (undefined: not within the window). */
  recoverySeconds: number | undefined;
  /** Mean throughput over that recovery, against the pre-crash. */
  recoveryMeanRatio: number | undefined;
  /** Mean throughput in the first 30 s of service after the crash, against the pre-crash. */
  first30Ratio: number;
  /** Bytes lost against the pre-crash rate from the crash to the end of the window, in seconds of pre-crash service. */
  lostSeconds: number;
}

function metrics(r: Run): Metrics {
  const bin = (t: number) => Math.floor(t / BIN_S);
  const mean = (a: number, b: number) => {
    const xs = r.bins.slice(Math.max(0, bin(a)), Math.max(0, bin(b)));
    return xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : 0;
  };
  // The first 2 s are the loop starting; the last bin before the crash may hold the crash.
  const preMBps = mean(2, r.crashAt - BIN_S);
  const back = r.firstByteAfterCrashAt ?? r.crashAt + AFTER_S;
  const end = r.crashAt + AFTER_S;
  let recovered: number | undefined;
  for (let t = back; t + 5 <= end; t += BIN_S) {
    if (mean(t, t + 5) >= 0.9 * preMBps) { recovered = t; break; }
  }
  const lost = (r.bins.slice(bin(r.crashAt), bin(end)).reduce((s, x) => s + (preMBps - x) * BIN_S, 0)) / preMBps;
  return {
    preMBps,
    downSeconds: back - r.crashAt,
    recoverySeconds: recovered !== undefined ? recovered - back : undefined,
    recoveryMeanRatio: recovered !== undefined && recovered > back ? mean(back, recovered) / preMBps : recovered !== undefined ? 1 : undefined,
    first30Ratio: mean(back, back + 30) / preMBps,
    lostSeconds: lost,
  };
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  log(`building the disk: ${FILES} files of ${FILE_KIB} KiB`);
  const pristine = buildWarmDisk(join(WORK, "pristine.img"), { roFiles: FILES, roKiB: FILE_KIB, rwFiles: 0, bigMiB: 0 }).image;
  const disk = new SlowDisk("guestcore-bench-httpd", WORK);
  const runs: Run[] = [];
  try {
    for (let run = 0; run < RUNS; run++) for (const c of CASES) runs.push(await oneRun(c, run, pristine, disk));
  } finally {
    await disk.remove();
    rmSync(join(WORK, "disk.img"), { force: true });
  }
  const per = runs.map((r) => ({ r, m: metrics(r) }));
  const f1 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(1));
  const summary = CASES.map((c) => {
    const xs = per.filter((p) => p.r.case === c.name);
    const med = (f: (p: (typeof xs)[number]) => number | undefined) => {
      const v = xs.map(f).filter((x): x is number => x !== undefined);
      return v.length === xs.length ? median(v) : undefined;
    };
    return {
      case: c.name, label: c.label,
      preMBps: med((p) => p.m.preMBps)!, downSeconds: med((p) => p.m.downSeconds)!,
      recoverySeconds: med((p) => p.m.recoverySeconds), recoveryMeanRatio: med((p) => p.m.recoveryMeanRatio),
      first30Ratio: med((p) => p.m.first30Ratio)!, lostSeconds: med((p) => p.m.lostSeconds)!,
      preloadSeconds: med((p) => p.r.preloadSeconds), servedMiB: med((p) => p.r.servedMiB), errors: med((p) => p.r.errors)!,
      hostBusy: xs.map((p) => p.r.hostBusy),
    };
  });
  const md = [
    `| restart | pre-crash MB/s | down s (crash → first byte) | back to 90 % after s | mean during that, vs pre-crash | first 30 s of service, vs pre-crash | lost, s of pre-crash service | preload s | served from warm copies MiB | host CPU busy per run |`,
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ...summary.map((s) => `| ${s.label} | ${f1(s.preMBps)} | ${f1(s.downSeconds)} | ${s.recoverySeconds === undefined ? `> ${AFTER_S - s.downSeconds | 0}` : f1(s.recoverySeconds)} | ` +
      `${s.recoveryMeanRatio === undefined ? "–" : `${(s.recoveryMeanRatio * 100).toFixed(0)} %`} | ${(s.first30Ratio * 100).toFixed(0)} % | ${f1(s.lostSeconds)} | ${f1(s.preloadSeconds)} | ${s.servedMiB === undefined ? "–" : s.servedMiB.toFixed(0)} | ${s.hostBusy.map((b) => `${(b * 100).toFixed(0)} %`).join(", ")} |`),
  ].join("\n");
  // The picture: per case, the median over runs of each bin, on seconds since the crash.
  const series = CASES.map((c) => {
    const rs = runs.filter((r) => r.case === c.name);
    const len = Math.min(...rs.map((r) => r.bins.length));
    const shift = (r: Run) => Math.round(r.crashAt / BIN_S);
    const from = -Math.min(...rs.map(shift));
    const to = Math.min(...rs.map((r) => len - shift(r)));
    const points: [number, number][] = [];
    for (let k = from; k < to; k++) points.push([k * BIN_S, median(rs.map((r) => r.bins[k + shift(r)] ?? 0))]);
    return { label: c.label, color: c.color, points };
  });
  const vlines = [
    { x: 0, label: "crash (NMI, pvpanic)", color: "#555" },
    ...CASES.flatMap((c) => {
      const rs = runs.filter((r) => r.case === c.name);
      const ready = rs.map((r) => r.readyAt !== undefined ? r.readyAt - r.crashAt : undefined).filter((x): x is number => x !== undefined);
      const pre = rs.map((r) => r.preloadEndAt !== undefined ? r.preloadEndAt - r.crashAt : undefined).filter((x): x is number => x !== undefined);
      return [
        ...(ready.length ? [{ x: median(ready), label: `${c.name}: httpd up`, color: c.color }] : []),
        ...(pre.length ? [{ x: median(pre), label: `${c.name}: preload done`, color: c.color }] : []),
      ];
    }),
  ];
  const pre = median(summary.map((s) => s.preMBps));
  const picture = lineChartSvg({
    title: `busybox httpd through a crash: ${FILES} × ${FILE_KIB} KiB files, ${MEM_MIB} MiB guest, disk ${BW_MB} MB/s`,
    xLabel: `seconds since the crash (${BIN_S} s bins)`, yLabel: "client throughput (MB/s)",
    series, vlines, hlines: [{ y: pre, label: "pre-crash", color: "#555" }],
    xTicks: Array.from({ length: Math.floor((AFTER_S + BEFORE_S) / 10) + 1 }, (_, k) => Math.ceil(-BEFORE_S / 10) * 10 + 10 * k).filter((x) => x <= AFTER_S),
    width: 860,
  });
  const json = { date: new Date().toISOString(), memMiB: MEM_MIB, files: FILES, fileKiB: FILE_KIB, bwMBps: BW_MB, beforeS: BEFORE_S, afterS: AFTER_S, binS: BIN_S, runs: RUNS, summary, all: per.map((p) => ({ ...p.r, metrics: p.m })) };
  writeResults(OUT, json, md, { "throughput.svg": picture });
  if (flag("--json")) console.log(JSON.stringify(json, null, 1));
  else console.log(md);
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
