// Shared by the warm-cache benches (warm-reboot, warm-httpd, disk-overhead):
// the emulated slow shared disk (a cgroup v1 blkio group), the host page
// cache of an image, recover as a child process, the replacement's QMP
// quit, and a hand-written SVG line chart.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { QmpClient } from "../src/sources/qmp.js";
import { shellQuote } from "../test/helpers/qemu-guest.js";

export const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
export const MiB = 2 ** 20;
export const MB = 1e6;

export function arg(name: string, def: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
export const flag = (name: string) => process.argv.includes(name);
export const log = (s: string) => process.stderr.write(`bench: ${s}\n`);
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** "major:minor" of the device holding `path`, as blkio.throttle.* files name it. */
function deviceOf(path: string): string {
  const dev = statSync(path).dev;
  return `${Math.floor(dev / 256) & 0xfff}:${(dev & 0xff) | ((dev >> 12) & 0xfff00)}`;
}

/**
 * One emulated slow disk: a cgroup v1 blkio group whose members share one
 * read and one write limit on the device of `onPath` (field notes: it
 * holds O_DIRECT and buffered dd to the limit). Limits can change while
 * members run; 0 lifts a limit.
 */
export class SlowDisk {
  readonly dir: string;
  private readonly dev: string;

  constructor(name: string, onPath: string) {
    this.dir = `/sys/fs/cgroup/blkio/${name}-${process.pid}`;
    this.dev = deviceOf(onPath);
    mkdirSync(this.dir, { recursive: true });
  }

  /** Bytes per second, reads and writes; 0 for no limit. */
  limit(readBps: number, writeBps = readBps): void {
    writeFileSync(join(this.dir, "blkio.throttle.read_bps_device"), `${this.dev} ${Math.round(readBps)}`);
    writeFileSync(join(this.dir, "blkio.throttle.write_bps_device"), `${this.dev} ${Math.round(writeBps)}`);
  }

  /** argv prefix: sh joins the group, then execs the rest (same pid). */
  get wrap(): string[] {
    return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', this.dir];
  }

  /** A shell command line that joins the group, then execs `argv`. */
  command(argv: string[]): string {
    return `echo $$ > ${shellQuote([join(this.dir, "cgroup.procs")])} && exec ${shellQuote(argv)}`;
  }

  /** Bytes read and written on the device by the group's members so far. */
  serviced(): { read: number; write: number } {
    const text = readFileSync(join(this.dir, "blkio.throttle.io_service_bytes"), "utf8");
    const get = (op: string) => Number(new RegExp(`^${this.dev} ${op} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
    return { read: get("Read"), write: get("Write") };
  }

  /** rmdir, retried while the last members exit. */
  async remove(): Promise<void> {
    for (let i = 0; i < 50 && existsSync(this.dir); i++) {
      try {
        rmdirSync(this.dir);
      } catch {
        await sleep(100);
      }
    }
  }
}

/** Drop the host page cache of `file` (clean pages; GNU dd's nocache with no data asks for the whole file). */
export function dropHostCache(file: string): void {
  spawnSync("dd", [`if=${file}`, "iflag=nocache", "count=0", "status=none"]);
}

/** Bytes of `file` in the host page cache (util-linux fincore). */
export function hostCachedBytes(file: string): number {
  const r = spawnSync("fincore", ["--bytes", "--noheadings", "--output", "RES", file], { encoding: "utf8" });
  return r.status === 0 ? Number(r.stdout.trim()) : NaN;
}

/** A copy of `src` at `dst` through O_DIRECT: none of it left in the host page cache. */
export function copyDirect(src: string, dst: string): void {
  const r = spawnSync("dd", [`if=${src}`, `of=${dst}`, "bs=4M", "iflag=direct", "oflag=direct", "conv=fsync", "status=none"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`dd ${src} -> ${dst}: ${r.stderr}`);
}

import { runCli, type CliRun } from "../test/helpers/run-cli.js";
export { runCli, type CliRun };

/** A replacement recover started: QMP quit, then its pid (recover's report names it) killed if still there. */
export async function stopReplacement(qmpSock: string, pid: number | undefined): Promise<void> {
  if (existsSync(qmpSock)) {
    try {
      const q = await QmpClient.connect(qmpSock, { connectTimeoutMs: 3000, commandTimeoutMs: 3000 });
      await q.execute("quit").catch(() => {});
      q.close();
    } catch {
      // gone already, or not answering: the signal below
    }
  }
  if (pid === undefined) return;
  for (let i = 0; i < 30; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(100);
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // exited meanwhile
  }
}

/** User + system CPU seconds of a live process (/proc/PID/stat, USER_HZ 100 on Linux). */
export function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

/**
 * One `guestcore recover -d 31 --quit-crashed early` with a replacement:
 * its files (the replacement's console, QMP socket and memory file, the
 * dump, the preload list), its command line, and the cleanup.
 */
export class RecoverRun {
  readonly token = randomBytes(4).toString("hex");
  readonly replLog: string;
  readonly replQmp: string;
  readonly replMem: string;
  readonly dump: string;
  readonly preload: string | undefined;
  private replPid: number | undefined;

  constructor(work: string, name: string, o: { preload?: boolean } = {}) {
    this.replLog = join(work, `repl-${name}.log`);
    this.replQmp = join(work, `repl-${name}.qmp`);
    this.replMem = `/dev/shm/guestcore-bench-repl-${name}.${process.pid}.ram`;
    this.dump = join(work, `dump-${name}.kdump`);
    this.preload = o.preload ? join(work, `preload-${name}.list`) : undefined;
    this.remove(true);
  }

  /**
   * Run recover until the replacement's console shows
   * GUESTCORE-`readyLine` TOKEN; --warm-cache when `warmControl` is given
   * (with the preload list if the run has one). Returns recover's report.
   */
  async recover(o: { crashedQmp: string; replacement: string; readyLine: string; warmControl?: string }): Promise<{ report: any; seconds: number }> {
    const r = await runCli([
      "recover", "--qmp", o.crashedQmp, "-o", this.dump, "-d", "31", "--quit-crashed", "early",
      ...(o.warmControl ? ["--warm-cache", o.warmControl, ...(this.preload ? ["--warm-cache-preload", this.preload] : [])] : []),
      "--replacement", o.replacement,
      "--ready", `serial:${this.replLog}:^GUESTCORE-${o.readyLine} ${this.token} `, "--ready-timeout", "600", "--json",
    ], 900_000);
    if (r.code !== 0) throw new Error(`recover failed (${r.code}): ${r.stderr.slice(-2000)}`);
    const report = JSON.parse(r.stdout);
    this.replPid = report.replacement?.pid;
    return { report, seconds: r.seconds };
  }

  /** recover's "withheld" event: what the warm cache kept (keptPages, matchedBlocks, ...). */
  static withheld(report: any): Record<string, number> | undefined {
    return (report.timeline?.events ?? []).find((e: { phase?: string }) => e.phase === "withheld")?.data;
  }

  /** The replacement stopped, the run's files gone (its console kept unless `all`). */
  async cleanup(): Promise<void> {
    await stopReplacement(this.replQmp, this.replPid);
    this.remove(false);
  }

  private remove(all: boolean): void {
    for (const f of [this.replMem, this.dump, `${this.dump}.replacement.log`, this.replQmp, ...(this.preload ? [this.preload] : []), ...(all ? [this.replLog] : [])]) rmSync(f, { force: true });
  }
}

/**
 * The host's CPU use from here on: `busy()` is the share of all cores'
 * time not idle since the call (/proc/stat), ours and the other users' of
 * this shared machine alike; near 1, the guests' TCG threads waited for a
 * core, and their figures are low for that.
 */
export function hostCpu(): { busy(): number } {
  const read = () => {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    return { idle: f[3] + f[4], total: f.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  return {
    busy: () => {
      const b = read();
      return b.total > a.total ? 1 - (b.idle - a.idle) / (b.total - a.total) : 0;
    },
  };
}

/** A console file's text so far ("" before QEMU made it). */
export function consoleText(path: string): string {
  return existsSync(path) ? readFileSync(path, "latin1") : "";
}

/** The median; of an even count, the mean of the middle two (bench/measure.ts takes the upper one, fine for its odd run counts). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function writeResults(out: string, json: unknown, md: string, pictures: Record<string, string> = {}): void {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "results.json"), JSON.stringify(json, null, 1) + "\n");
  writeFileSync(join(out, "results.md"), md.endsWith("\n") ? md : md + "\n");
  for (const [name, svg] of Object.entries(pictures)) writeFileSync(join(out, name), svg);
}

// ------------------------------------------------------------ the picture

export interface Series {
  label: string;
  color: string;
  points: [number, number][];
  dash?: string;
  /** Dots on the points (for few points). */
  dots?: boolean;
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Horizontal reference lines (e.g. the pre-crash throughput). */
  hlines?: { y: number; label: string; color: string }[];
  /** Vertical markers (e.g. the crash). */
  vlines?: { x: number; label: string; color: string }[];
  /** Shaded x ranges with a label (e.g. where the service was down). */
  bands?: { x0: number; x1: number; label: string; color: string }[];
  xTicks?: number[];
  /** A log y axis from yMin (for throughputs that differ by orders of magnitude). */
  logY?: { yMin: number };
  xMin?: number;
  xMax?: number;
  width?: number;
  height?: number;
}

const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 3, 4, 5, 6, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** Lines over a shared x axis, a legend at the top, plain SVG. */
export function lineChartSvg(c: LineChart): string {
  const W = c.width ?? 720, H = c.height ?? 420, L = 70, R = 20, T = 48 + 16 * Math.ceil(c.series.length / 2), B = 56;
  const xs = c.series.flatMap((s) => s.points.map((p) => p[0]));
  const xMin = c.xMin ?? Math.min(...xs), xMax = c.xMax ?? Math.max(...xs);
  const yMax = niceMax(1.08 * Math.max(...c.series.flatMap((s) => s.points.map((p) => p[1])), ...(c.hlines ?? []).map((h) => h.y)));
  const sx = (x: number) => L + ((x - xMin) / (xMax - xMin || 1)) * (W - L - R);
  const lo = c.logY ? Math.log10(c.logY.yMin) : 0;
  const frac = (y: number) => (c.logY ? (Math.log10(Math.max(y, c.logY.yMin)) - lo) / (Math.log10(yMax) - lo) : y / yMax);
  const sy = (y: number) => H - B - frac(y) * (H - T - B);
  // Log axis: 1, 2, 5 of each decade.
  const yTicks = c.logY
    ? [1, 2, 5].flatMap((m) => Array.from({ length: 8 }, (_, d) => m * 10 ** (Math.floor(lo) + d))).filter((y) => y >= c.logY!.yMin && y <= yMax).sort((a, b) => a - b)
    : Array.from({ length: 6 }, (_, k) => (yMax * k) / 5);
  const o = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="18" font-size="13" font-weight="bold">${esc(c.title)}</text>`];
  for (const b of c.bands ?? []) {
    o.push(`<rect x="${sx(b.x0).toFixed(1)}" y="${T}" width="${Math.max(1, sx(b.x1) - sx(b.x0)).toFixed(1)}" height="${H - T - B}" fill="${b.color}" opacity="0.15"/>`);
    o.push(`<text x="${((sx(b.x0) + sx(b.x1)) / 2).toFixed(1)}" y="${T + 12}" text-anchor="middle" fill="${b.color}">${esc(b.label)}</text>`);
  }
  o.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#999"/>`);
  for (const y of yTicks) {
    o.push(`<line x1="${L}" y1="${sy(y).toFixed(1)}" x2="${W - R}" y2="${sy(y).toFixed(1)}" stroke="#eee"/>`);
    o.push(`<text x="${L - 6}" y="${(sy(y) + 4).toFixed(1)}" text-anchor="end">${+y.toFixed(1)}</text>`);
  }
  const ticks = c.xTicks ?? Array.from({ length: 6 }, (_, k) => xMin + ((xMax - xMin) * k) / 5);
  for (const x of ticks) o.push(`<text x="${sx(x).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${+x.toFixed(1)}</text>`);
  o.push(`<text x="${(W + L) / 2}" y="${H - 18}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  o.push(`<text x="16" y="${(H - B + T) / 2}" transform="rotate(-90 16 ${(H - B + T) / 2})" text-anchor="middle">${esc(c.yLabel)}</text>`);
  for (const h of c.hlines ?? []) {
    o.push(`<line x1="${L}" y1="${sy(h.y).toFixed(1)}" x2="${W - R}" y2="${sy(h.y).toFixed(1)}" stroke="${h.color}" stroke-dasharray="6 4"/>`);
    o.push(`<text x="${W - R - 4}" y="${(sy(h.y) - 4).toFixed(1)}" text-anchor="end" fill="${h.color}">${esc(h.label)}</text>`);
  }
  (c.vlines ?? []).forEach((v, i) => {
    o.push(`<line x1="${sx(v.x).toFixed(1)}" y1="${T}" x2="${sx(v.x).toFixed(1)}" y2="${H - B}" stroke="${v.color}" stroke-dasharray="2 3"/>`);
    o.push(`<text x="${(sx(v.x) + 3).toFixed(1)}" y="${T + 26 + 12 * i}" fill="${v.color}">${esc(v.label)}</text>`);
  });
  for (const s of c.series) {
    const pts = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    o.push(`<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`);
    if (s.dots) for (const [x, y] of s.points) o.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
  }
  c.series.forEach((s, i) => {
    const x = L + (i % 2) * ((W - L - R) / 2), y = 34 + 16 * Math.floor(i / 2);
    o.push(`<line x1="${x}" y1="${y - 4}" x2="${x + 22}" y2="${y - 4}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`);
    o.push(`<text x="${x + 28}" y="${y}">${esc(s.label)}</text>`);
  });
  o.push("</svg>");
  return o.join("\n") + "\n";
}
