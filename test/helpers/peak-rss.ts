// guestcore in a child, with the child's own peak RSS (VmHWM, read by the
// child itself as it exits: the kernel forgets it once the process is gone).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const PRELOAD = pathToFileURL(fileURLToPath(new URL("./peak-rss-preload.js", import.meta.url))).href;

export interface MeasuredRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Peak resident set of the child in MiB; NaN when it did not exit by itself. */
  peakMiB: number;
}

export function runCliMeasured(args: string[], timeoutMs = 60_000): MeasuredRun {
  const r = spawnSync(process.execPath, ["--import", PRELOAD, CLI, ...args], {
    encoding: "utf8", timeout: timeoutMs, stdio: ["ignore", "pipe", "pipe", "pipe"],
  });
  const kib = Number((r.output[3] ?? "").trim() || NaN);
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, peakMiB: kib / 1024 };
}

/** Issue 10: a hostile input costs less than this much resident memory. */
export const PEAK_MIB = 100;

/** What issue 10 asks of hostile input: one line, a non-zero exit, no internal error, under `peakMiB` of peak RSS. */
export function assertOneLineFailure(r: MeasuredRun, pattern: RegExp, peakMiB = PEAK_MIB): void {
  assert.equal(r.signal, null, "must not hang or be killed");
  assert.notEqual(r.status, 0, "must exit non-zero");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line of error, got:\n${r.stderr}`);
  assert.doesNotMatch(lines[0], /internal error/);
  assert.match(lines[0], pattern);
  assert.ok(r.peakMiB < peakMiB, `peak RSS ${r.peakMiB.toFixed(1)} MiB`);
}
