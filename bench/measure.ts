// Shared by the benchmarks: run a command under GNU time, take medians,
// print ratios against a baseline measured in the same run.
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, statSync } from "node:fs";

/**
 * How to run the CLI as `guestcore` runs: node with the flags of its
 * first line (`#!/usr/bin/env -S node FLAGS`), then the script.
 */
export function cliCommand(cli: string): string[] {
  const first = readFileSync(cli, "utf8").split("\n", 1)[0];
  const m = /^#!\/usr\/bin\/env -S node(.*)$/.exec(first);
  return [process.execPath, ...(m ? m[1].trim().split(/\s+/).filter(Boolean) : []), cli];
}

export interface Measure {
  seconds: number;
  maxRssMiB: number;
  bytes: number;
}

/** Wall seconds and peak RSS of one run (the child's own, as GNU time reports it). */
export function measureOnce(cmd: string[], out: string, stdoutTo?: string): Measure {
  rmSync(out, { force: true });
  const shell = stdoutTo ? ["sh", "-c", '"$@" > "$0"', stdoutTo, ...cmd] : cmd;
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", ...shell], { encoding: "utf8", maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd.join(" ")} failed:\n${r.stderr}`);
  const [sec, kib] = r.stderr.trim().split("\n").pop()!.split(" ").map(Number);
  return { seconds: sec, maxRssMiB: kib / 1024, bytes: statSync(out).size };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median of `runs` runs; the output is deleted afterwards (big guests fill disks). */
export function measure(cmd: string[], out: string, runs: number): Measure {
  const ms = Array.from({ length: runs }, () => measureOnce(cmd, out));
  rmSync(out, { force: true });
  return { seconds: median(ms.map((m) => m.seconds)), maxRssMiB: median(ms.map((m) => m.maxRssMiB)), bytes: ms[0].bytes };
}

export interface Row extends Measure {
  guest: string;
  tool: string;
  timeRatio: number;
  sizeRatio: number;
}

export function rows(guest: string, results: Record<string, Measure>, baseline: string): Row[] {
  const base = results[baseline];
  return Object.entries(results).map(([tool, m]) => ({ guest, tool, ...m, timeRatio: m.seconds / base.seconds, sizeRatio: m.bytes / base.bytes }));
}

export function printTable(all: Row[], note: string): void {
  console.log(note);
  console.log("| guest | command | wall s | time ratio | peak RSS MiB | output MiB | size ratio |");
  console.log("|---|---|---:|---:|---:|---:|---:|");
  for (const r of all) {
    console.log(`| ${r.guest} | ${r.tool} | ${r.seconds.toFixed(2)} | ${r.timeRatio.toFixed(2)} | ${r.maxRssMiB.toFixed(0)} | ${(r.bytes / 2 ** 20).toFixed(1)} | ${r.sizeRatio.toFixed(2)} |`);
  }
}

/** --runs N, --json, the options named in `valued` (each with a value), and the other words. */
export function parseArgs(argv: string[], valued: string[] = [], defaultRuns = 3): {
  names: string[]; runs: number; json: boolean; values: Record<string, string | undefined>;
} {
  const taken = new Set<number>();
  const value = (name: string) => {
    const at = argv.indexOf(name);
    if (at < 0) return undefined;
    taken.add(at + 1);
    return argv[at + 1];
  };
  const runs = Number(value("--runs") ?? defaultRuns);
  const values = Object.fromEntries(valued.map((v) => [v, value(v)]));
  const names = argv.filter((a, i) => !a.startsWith("--") && !taken.has(i));
  return { names, runs, json: argv.includes("--json"), values };
}
