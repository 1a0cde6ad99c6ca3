// guestcore in a child, with the child's own peak RSS (VmHWM, read by the
// child itself as it exits: the kernel forgets it once the process is gone).
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
