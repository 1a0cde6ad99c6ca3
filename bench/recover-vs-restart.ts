// Crash to recovery: guestcore recover against dump-then-restart.
//
//   node dist/bench/recover-vs-restart.js [--plan full|curve|large] [--mem-mib 4096] [--levels 31,1] [--bw 70M,none]
//                                         [--curve 20M,50M] [--snapshot-dir DIR] [--mem-limit BYTES] [--out bench/results/recover-4g]
//
// Plans: full, every contender at every level and bandwidth; curve, the
// policies at -d 1 and the first bandwidth with a replacement that also
// writes (the trade-off picture); large, the dump-then-restart baselines
// and recover adaptive only, for the biggest guest.
//
// One real guest (Debian 6.1 under TCG, memory filled by guest-init.sh's
// fill=full: page cache, tmpfs and anonymous memory) boots and panics
// once. Its paused state is saved (QMP migrate with x-ignore-shared: the
// device state only; RAM stays in the memory-backend file, which is
// copied), and every run restores a fresh copy: a QEMU started with
// -incoming defer that reports guest-panicked again, so every contender
// faces the same crashed guest.
//
// Contenders, each ending with a replacement guest (same kernel, RAM
// preallocated, a virtio disk it reads with O_DIRECT over and over) that
// prints GUESTCORE-READY on its console:
//   qemu-elf        QMP dump-guest-memory (full ELF), quit, restart: libvirt's coredump-restart
//   guestcore-dump  guestcore dump --qmp at the level, quit, restart
//   recover POLICY  guestcore recover --quit-crashed early with the rate policy
// The dump disk's bandwidth is emulated identically for all: the crashed
// QEMU, guestcore and the replacement run in one cgroup v1 blkio group
// throttled to BW for reads and for writes on the root disk (or none).
//
// Measured per run: downtime (restored → replacement ready), time until
// the dump is complete, peak host memory of the two guests (allocated
// blocks of both memory files), and the replacement's disk throughput
// while the dump still ran: the speed of its O_DIRECT read passes of
// 64 MiB, timed by the guest, which rests 2 s between passes (a service's
// bursts; a replacement reading without pause would leave an adaptive
// policy nothing but its floor).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, rmdirSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { QmpClient } from "../src/sources/qmp.js";
import { parseSize } from "../src/sources/raw.js";
import { launchGuest, replacementArgv, shellQuote } from "../test/helpers/qemu-guest.js";
import { timelineSvg } from "../src/cli/timeline-svg.js";
import { allocatedBytes } from "../src/recovery/hole-punch.js";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
const MiB = 2 ** 20;
const MB = 1e6;

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
}
const MEM_MIB = Number(arg("--mem-mib", "4096"));
const LEVELS = arg("--levels", "31,1").split(",").map(Number);
const BWS = arg("--bw", "70M,none").split(",");
const CURVE = arg("--curve", "20M,50M").split(",").filter(Boolean);
const PLAN = arg("--plan", "full");
const OUT = arg("--out", `bench/results/recover-${MEM_MIB >= 1024 ? `${MEM_MIB / 1024}g` : `${MEM_MIB}m`}`);
const WORK = arg("--work", "/var/tmp/guestcore-bench");
const DISK_MIB = 512;
const PASS_MIB = 64;
const IDLE_S = 2;

// The curve's replacement writes too: blkio v1 throttles reads and
// writes separately, so only its writes meet the dump's in the emulated disk.
const REPLACEMENT_WRITES = PLAN === "curve";
// The files come and go between samples.
const allocated = (p: string) => {
  try { return allocatedBytes(p); } catch { return 0; }
};
const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

function blkioGroup(bw: string): string | undefined {
  if (bw === "none") return undefined;
  const dir = `/sys/fs/cgroup/blkio/guestcore-bench-${process.pid}`;
  mkdirSync(dir, { recursive: true });
  const dev = statSync(WORK).dev;
  const majmin = `${Math.floor(dev / 256) & 0xfff}:${(dev & 0xff) | ((dev >> 12) & 0xfff00)}`;
  const bps = parseSize(bw) / 2 ** 20 * MB; // "70M" means 70 MB/s, the paper's unit
  writeFileSync(join(dir, "blkio.throttle.write_bps_device"), `${majmin} ${Math.round(bps)}`);
  writeFileSync(join(dir, "blkio.throttle.read_bps_device"), `${majmin} ${Math.round(bps)}`);
  return dir;
}

/**
 * --mem-limit: a cgroup v1 memory group that stands for a host holding
 * the two guests only with release. The crashed guest's memory is copied
 * into place from inside it, so its tmpfs pages are charged there (to the
 * process that first touches a page), like the replacement's.
 */
const MEM_LIMIT = process.argv.includes("--mem-limit") ? parseSize(arg("--mem-limit", "0")) : 0;
function memoryGroup(): string | undefined {
  if (!MEM_LIMIT) return undefined;
  const dir = `/sys/fs/cgroup/memory/guestcore-bench-${process.pid}`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "memory.limit_in_bytes"), String(MEM_LIMIT));
  return dir;
}

/** `cmd` run in the cgroups `cg` (sh joins them, then execs). */
const inGroup = (cg: string | string[] | undefined, argv: string[]) => {
  const dirs = (Array.isArray(cg) ? cg : cg ? [cg] : []).filter(Boolean);
  return dirs.map((d) => `echo $$ > ${shellQuote([join(d, "cgroup.procs")])} && `).join("") + `exec ${shellQuote(argv)}`;
};

interface Snapshot { mem: string; state: string; args: string[] }

async function makeSnapshot(): Promise<Snapshot> {
  log(`booting a ${MEM_MIB} MiB guest and filling its memory (fill=full)`);
  const g = launchGuest({ memMiB: MEM_MIB, profile: `bench-${MEM_MIB}m`, append: "guestcore.fill=full" });
  try {
    const t0 = Date.now();
    await g.waitPanicked(1_200_000);
    log(`panicked after ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const q = await QmpClient.connect(g.sock, { commandTimeoutMs: 60_000 });
    const state = join(WORK, "crashed.state");
    await q.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
    await q.execute("migrate", { uri: `exec:cat > ${state}` });
    for (;;) {
      const s = await q.execute<{ status: string }>("query-migrate");
      if (s.status === "completed") break;
      if (s.status === "failed" || s.status === "cancelled") throw new Error(`migrate: ${s.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    q.close();
    // A big guest's snapshot waits on disk: three copies of its RAM would not fit in memory.
    const mem = join(arg("--snapshot-dir", "/dev/shm"), `guestcore-bench-snapshot.${process.pid}.ram`);
    copyFileSync(g.shm!, mem);
    return { mem, state, args: g.proc.spawnargs.slice(1) };
  } finally {
    await g.stop();
  }
}

interface Crashed { proc: ChildProcess; sock: string; mem: string; t0: number }

/** A fresh crashed guest from the snapshot, in cgroup `cg`, paused as guest-panicked. */
async function restore(snap: Snapshot, cg: string[], n: number): Promise<Crashed> {
  const mem = `/dev/shm/guestcore-bench-crashed.${process.pid}.ram`;
  rmSync(mem, { force: true });
  if (MEM_LIMIT) spawnSync("/bin/sh", ["-c", inGroup(cg, ["cp", snap.mem, mem])], { stdio: "inherit" });
  else copyFileSync(snap.mem, mem);
  const sock = join(WORK, `crashed-${n}.qmp`);
  const args = snap.args.map((a) => a
    .replace(/mem-path=[^,]+/, `mem-path=${mem}`)
    .replace(/^unix:[^,]+/, `unix:${sock}`)
    .replace(/^file:.*console\.log$/, `file:${join(WORK, "crashed-console.log")}`));
  const proc = spawn("/bin/sh", ["-c", inGroup(cg, ["qemu-system-x86_64", ...args, "-incoming", "defer"])], { stdio: "ignore" });
  const q = await QmpClient.connect(sock, { waitForSocket: true, connectTimeoutMs: 30_000, commandTimeoutMs: 60_000 });
  await q.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
  await q.execute("migrate-incoming", { uri: `exec:cat ${snap.state}` });
  for (;;) {
    const s = await q.execute<{ status: string }>("query-status");
    if (s.status === "guest-panicked") break;
    if (s.status !== "inmigrate") throw new Error(`restored guest is ${s.status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  q.close();
  return { proc, sock, mem, t0: Date.now() };
}

interface Replacement { cmd: string; console: string; mem: string; qmp: string; token: string }

function replacementSpec(cg: string[], n: number): Replacement {
  const token = randomBytes(4).toString("hex");
  const console = join(WORK, `replacement-${n}.log`);
  const mem = `/dev/shm/guestcore-bench-replacement.${process.pid}.ram`;
  const qmp = join(WORK, `replacement-${n}.qmp`);
  rmSync(console, { force: true });
  rmSync(mem, { force: true });
  const argv = replacementArgv({ memMiB: MEM_MIB, memPath: mem, consoleLog: console, qmpSock: qmp, token, disk: join(WORK, "disk.raw"), diskReadMiB: PASS_MIB, diskIdleS: IDLE_S, diskWrite: REPLACEMENT_WRITES, prealloc: true });
  return { cmd: inGroup(cg, argv), console, mem, qmp, token };
}

/** Host time (epoch ms) when the console shows the READY line; the guest's uptime then. */
async function waitReadyLine(r: Replacement, timeoutMs: number): Promise<{ t: number; uptime: number }> {
  const re = new RegExp(`GUESTCORE-READY replacement ${r.token} uptime ([\\d.]+)`);
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const m = existsSync(r.console) ? re.exec(readFileSync(r.console, "latin1")) : null;
    if (m) return { t: Date.now(), uptime: Number(m[1]) };
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`replacement not ready within ${timeoutMs} ms`);
}

/** The replacement's read (or write) passes as host-time intervals (its uptime, offset by the READY line). */
function passes(r: Replacement, ready: { t: number; uptime: number }, kind = "READ"): { start: number; end: number; mib: number }[] {
  const text = existsSync(r.console) ? readFileSync(r.console, "latin1") : "";
  return [...text.matchAll(new RegExp(`GUESTCORE-DISK${kind} pass=\\d+ mib=(\\d+) start=([\\d.]+) end=([\\d.]+)`, "g"))].map((m) => ({
    mib: Number(m[1]), start: ready.t + (Number(m[2]) - ready.uptime) * 1000, end: ready.t + (Number(m[3]) - ready.uptime) * 1000,
  }));
}

/** Read speed (MB/s while reading) of the passes that ran wholly inside [a, b]. */
function throughput(ps: { start: number; end: number; mib: number }[], a: number, b: number): number | null {
  const inside = ps.filter((p) => p.start >= a && p.end <= b);
  if (inside.length === 0) return null;
  const bytes = inside.reduce((n, p) => n + p.mib * MiB, 0);
  const busy = inside.reduce((n, p) => n + (p.end - p.start), 0) / 1000;
  return busy > 0 ? bytes / busy / MB : null;
}

function runCli(args: string[], cg: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn("/bin/sh", ["-c", inGroup(cg, [process.execPath, CLI, ...args])], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

const waitExit = (p: ChildProcess, ms: number) => new Promise<void>((res) => {
  if (p.exitCode !== null || p.signalCode !== null) return res();
  const t = setTimeout(() => { p.kill("SIGKILL"); res(); }, ms);
  p.once("exit", () => { clearTimeout(t); res(); });
});

async function quit(sock: string): Promise<void> {
  const q = await QmpClient.connect(sock, { connectTimeoutMs: 5000 });
  await q.execute("quit").catch(() => {});
  q.close();
}

export interface Result {
  contender: string;
  level: number | null;
  bw: string;
  downtime: number;
  dumpSeconds: number;
  dumpBytes: number;
  peakHostMiB: number;
  /** The replacement's disk throughput while the dump ran (MB/s), and undisturbed after it. */
  replacementDuringMBps: number | null;
  replacementAfterMBps: number | null;
  /** The same for its writes (plan curve). */
  replacementWriteDuringMBps?: number | null;
  replacementWriteAfterMBps?: number | null;
  timeline?: unknown;
}

async function oneRun(snap: Snapshot, contender: string, level: number | null, bw: string, n: number): Promise<Result> {
  const cgs = [blkioGroup(bw), memoryGroup()].filter((x): x is string => x !== undefined);
  const cg = cgs;
  const out = join(WORK, `dump-${n}`);
  rmSync(out, { force: true });
  const c = await restore(snap, cg, n);
  const r = replacementSpec(cg, n);
  let peak = 0;
  const sampler = setInterval(() => { peak = Math.max(peak, allocated(c.mem) + allocated(r.mem)); }, 100);
  let repl: ChildProcess | undefined;
  let ready: { t: number; uptime: number };
  let dumpDone: number;
  let timeline: unknown;
  try {
    if (contender === "qemu-elf" || contender === "guestcore-dump") {
      if (contender === "qemu-elf") {
        const q = await QmpClient.connect(c.sock, { commandTimeoutMs: 3_600_000 });
        await q.execute("dump-guest-memory", { paging: false, protocol: `file:${out}` });
        q.close();
        // QEMU leaves its dump in the page cache; complete means durable,
        // as guestcore's fsync before the rename makes it (in the same cgroup).
        spawnSync("/bin/sh", ["-c", inGroup(cg, ["sync", "--data", out])]);
      } else {
        const d = await runCli(["dump", "--qmp", c.sock, "-o", out, "-d", String(level)], cg);
        if (d.code !== 0) throw new Error(`guestcore dump: ${d.stderr}`);
      }
      dumpDone = Date.now();
      // coredump-restart: the crashed VM goes, then the new one starts.
      await quit(c.sock);
      await waitExit(c.proc, 10_000);
      rmSync(c.mem, { force: true });
      repl = spawn("/bin/sh", ["-c", r.cmd], { stdio: "ignore", detached: true });
      ready = await waitReadyLine(r, 600_000);
    } else {
      const policy = contender.replace(/^recover /, "");
      // Watched while recover runs: the console says when the replacement is ready.
      const readyWait = waitReadyLine(r, 600_000);
      const rr = await runCli(["recover", "--qmp", c.sock, "-o", out, "-d", String(level), "--quit-crashed", "early", "--remove-backing",
        "--rate", policy, ...(MEM_LIMIT ? ["--start-when-room", `${MEM_MIB + 256}M`] : []), "--replacement", r.cmd, "--replacement-qmp", r.qmp, "--ready", `serial:${r.console}:GUESTCORE-READY replacement ${r.token}`,
        "--panicked-at", String(c.t0), "--json"], cg);
      if (rr.code !== 0) throw new Error(`recover: ${rr.stderr}`);
      const rep = JSON.parse(rr.stdout);
      timeline = rep.timeline;
      dumpDone = rep.timeline.phases["dump-complete"].t;
      ready = await readyWait;
    }
    // The replacement undisturbed: a few more passes after the dump.
    await new Promise((res) => setTimeout(res, 6000));
    const ps = passes(r, ready);
    const res: Result = {
      contender, level, bw,
      downtime: (ready.t - c.t0) / 1000,
      dumpSeconds: (dumpDone - c.t0) / 1000,
      dumpBytes: statSync(out).size,
      peakHostMiB: peak / MiB,
      replacementDuringMBps: throughput(ps, ready.t, dumpDone),
      replacementAfterMBps: throughput(ps, Math.max(ready.t, dumpDone), Date.now()),
      timeline,
    };
    if (REPLACEMENT_WRITES) {
      const ws = passes(r, ready, "WRITE");
      res.replacementWriteDuringMBps = throughput(ws, ready.t, dumpDone);
      res.replacementWriteAfterMBps = throughput(ws, Math.max(ready.t, dumpDone), Date.now());
    }
    log(`${contender} d${level ?? "-"} bw ${bw}: downtime ${res.downtime.toFixed(1)} s, dump ${res.dumpSeconds.toFixed(1)} s, ${(res.dumpBytes / MiB).toFixed(0)} MiB, peak ${res.peakHostMiB.toFixed(0)} MiB, replacement reads ${res.replacementDuringMBps?.toFixed(1) ?? "-"} MB/s during / ${res.replacementAfterMBps?.toFixed(1) ?? "-"} after` +
      (REPLACEMENT_WRITES ? `, writes ${res.replacementWriteDuringMBps?.toFixed(1) ?? "-"} during / ${res.replacementWriteAfterMBps?.toFixed(1) ?? "-"} after` : ""));
    return res;
  } finally {
    clearInterval(sampler);
    if (repl?.pid) try { process.kill(-repl.pid, "SIGKILL"); } catch { /* gone */ }
    spawnSync("pkill", ["-KILL", "-f", r.mem]);
    if (c.proc.exitCode === null) c.proc.kill("SIGKILL");
    spawnSync("pkill", ["-KILL", "-f", c.mem]);
    rmSync(out, { force: true });
    rmSync(c.mem, { force: true });
    rmSync(r.mem, { force: true });
    for (const d of cgs) for (let i = 0; i < 50; i++) { try { rmdirSync(d); break; } catch { await new Promise((res) => setTimeout(res, 100)); } }
  }
}

function table(results: Result[]): string {
  const f = (x: number | null | undefined) => (x === null || x === undefined ? "–" : x.toFixed(1));
  const lines = REPLACEMENT_WRITES
    ? ["| contender | level | disk | downtime s | dump complete s | output MiB | peak host MiB | replacement writes MB/s during dump | after | reads during | after |",
      "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    : ["| contender | level | disk | downtime s | dump complete s | output MiB | peak host MiB | replacement reads MB/s during dump | after |",
      "|---|---:|---|---:|---:|---:|---:|---:|---:|"];
  for (const r of results) {
    const head = `| ${r.contender} | ${r.level ?? "full"} | ${r.bw === "none" ? "unthrottled" : `${r.bw}B/s`} | ${r.downtime.toFixed(1)} | ${r.dumpSeconds.toFixed(1)} | ${(r.dumpBytes / MiB).toFixed(0)} | ${r.peakHostMiB.toFixed(0)}`;
    lines.push(REPLACEMENT_WRITES
      ? `${head} | ${f(r.replacementWriteDuringMBps)} | ${f(r.replacementWriteAfterMBps)} | ${f(r.replacementDuringMBps)} | ${f(r.replacementAfterMBps)} |`
      : `${head} | ${f(r.replacementDuringMBps)} | ${f(r.replacementAfterMBps)} |`);
  }
  return lines.join("\n");
}

/** Dump time against the replacement's throughput during the dump, one point per policy. */
export function curveSvg(points: { label: string; dumpSeconds: number; mbps: number }[], title: string, yLabel: string): string {
  const W = 640, H = 420, L = 70, R = 20, T = 40, B = 60;
  const xmax = Math.max(...points.map((p) => p.dumpSeconds)) * 1.1 || 1;
  const ymax = Math.max(...points.map((p) => p.mbps)) * 1.15 || 1;
  const sx = (x: number) => L + (x / xmax) * (W - L - R);
  const sy = (y: number) => H - B - (y / ymax) * (H - T - B);
  const esc = (s: string) => s.replace(/[<>&]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;" })[c]!);
  const o = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`, `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="20" font-size="13" font-weight="bold">${esc(title)}</text>`,
    `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#999"/>`];
  for (let k = 0; k <= 4; k++) {
    o.push(`<text x="${sx((xmax * k) / 4)}" y="${H - B + 16}" text-anchor="middle">${((xmax * k) / 4).toFixed(0)}</text>`);
    o.push(`<text x="${L - 6}" y="${sy((ymax * k) / 4) + 4}" text-anchor="end">${((ymax * k) / 4).toFixed(0)}</text>`);
  }
  o.push(`<text x="${(W + L) / 2}" y="${H - 20}" text-anchor="middle">time until the dump is complete (s)</text>`);
  o.push(`<text x="16" y="${(H - B + T) / 2}" transform="rotate(-90 16 ${(H - B + T) / 2})" text-anchor="middle">${esc(yLabel)}</text>`);
  const sorted = [...points].sort((a, b) => a.dumpSeconds - b.dumpSeconds);
  o.push(`<polyline points="${sorted.map((p) => `${sx(p.dumpSeconds).toFixed(1)},${sy(p.mbps).toFixed(1)}`).join(" ")}" fill="none" stroke="#2471a3" stroke-dasharray="3 3"/>`);
  // Labels alternate above and below their points, so neighbours do not overlap.
  sorted.forEach((p, i) => {
    o.push(`<circle cx="${sx(p.dumpSeconds).toFixed(1)}" cy="${sy(p.mbps).toFixed(1)}" r="4" fill="${p.label.includes("adaptive") ? "#c0392b" : "#2471a3"}"/>`);
    o.push(`<text x="${(sx(p.dumpSeconds) + 6).toFixed(1)}" y="${(sy(p.mbps) + (i % 2 ? 16 : -8)).toFixed(1)}">${esc(p.label)}</text>`);
  });
  o.push("</svg>");
  return o.join("\n") + "\n";
}

function finishPlan(results: Result[]): void {
  writeFileSync(join(OUT, "results.json"), JSON.stringify({ plan: PLAN, memMiB: MEM_MIB, date: new Date().toISOString(), results }, null, 1) + "\n");
  const md = table(results);
  writeFileSync(join(OUT, "table.md"), md + "\n");
  console.log(md);
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  mkdirSync(OUT, { recursive: true });
  const disk = join(WORK, "disk.raw");
  if (!existsSync(disk) || statSync(disk).size !== DISK_MIB * MiB) {
    const fd = openSync(disk, "w");
    const buf = randomBytes(MiB);
    for (let i = 0; i < DISK_MIB; i++) writeSync(fd, buf, 0, MiB, i * MiB);
    closeSync(fd);
  }
  const snap = await makeSnapshot();
  const results: Result[] = [];
  let n = 0;
  try {
    if (PLAN === "curve") {
      const level = LEVELS[LEVELS.length - 1];
      const bw = BWS[0];
      results.push(await oneRun(snap, "guestcore-dump", level, bw, n++));
      for (const p of ["none", ...CURVE.map((c) => `fixed:${c}`), "adaptive"]) results.push(await oneRun(snap, `recover ${p}`, level, bw, n++));
      const pts = results.filter((r) => r.contender.startsWith("recover") && r.replacementWriteDuringMBps != null)
        .map((r) => ({ label: r.contender.replace("recover ", ""), dumpSeconds: r.dumpSeconds, mbps: r.replacementWriteDuringMBps! }));
      writeFileSync(join(OUT, "tradeoff.svg"), curveSvg(pts, `recover -d ${level}, ${MEM_MIB / 1024} GiB guest, disk ${bw}B/s: dump time vs the replacement's writes`, "replacement's disk writes during the dump (MB/s)"));
      const ad = results.find((r) => r.contender === "recover adaptive" && r.timeline);
      if (ad) writeFileSync(join(OUT, "timeline-adaptive.svg"), timelineSvg(ad.timeline as never, `recover -d ${level} --rate adaptive, ${MEM_MIB / 1024} GiB, ${bw}B/s`));
      return finishPlan(results);
    }
    if (PLAN === "large") {
      const bw = BWS[0];
      results.push(await oneRun(snap, "qemu-elf", null, bw, n++));
      for (const level of LEVELS) {
        results.push(await oneRun(snap, "guestcore-dump", level, bw, n++));
        results.push(await oneRun(snap, "recover adaptive", level, bw, n++));
      }
      return finishPlan(results);
    }
    for (const bw of BWS) {
      results.push(await oneRun(snap, "qemu-elf", null, bw, n++));
      for (const level of LEVELS) {
        results.push(await oneRun(snap, "guestcore-dump", level, bw, n++));
        for (const p of ["none", `fixed:${Math.round(parseSize(bw === "none" ? "140M" : bw) / 2 / MiB)}M`, "adaptive"]) {
          results.push(await oneRun(snap, `recover ${p}`, level, bw, n++));
        }
      }
    }
    // The trade-off curve: level 1 at the first bandwidth, fixed rates and adaptive.
    const curveBw = BWS[0];
    const curve: Result[] = results.filter((r) => r.bw === curveBw && r.level === LEVELS[LEVELS.length - 1] && r.contender.startsWith("recover"));
    for (const rate of CURVE) curve.push(await oneRun(snap, `recover fixed:${rate}`, LEVELS[LEVELS.length - 1], curveBw, n++));
    results.push(...curve.filter((r) => !results.includes(r)));
    finishPlan(results);
    const pts = curve.filter((r) => r.replacementDuringMBps !== null).map((r) => ({ label: r.contender.replace("recover ", ""), dumpSeconds: r.dumpSeconds, mbps: r.replacementDuringMBps! }));
    writeFileSync(join(OUT, "tradeoff.svg"), curveSvg(pts, `recover -d ${LEVELS[LEVELS.length - 1]}, ${MEM_MIB / 1024} GiB guest, disk ${curveBw}B/s: dump time vs the replacement's disk`, "replacement's disk reads during the dump (MB/s)"));
    const last = results.find((r) => r.contender === "recover adaptive" && r.bw === curveBw && r.timeline);
    if (last) writeFileSync(join(OUT, "timeline-adaptive.svg"), timelineSvg(last.timeline as never, `recover -d ${last.level} --rate adaptive, ${MEM_MIB / 1024} GiB, ${curveBw}B/s`));
  } finally {
    rmSync(snap.mem, { force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
