// Wall time and peak RSS of `guestcore dump -d 31` against
// `makedumpfile -E -d 31` on the same real guest, in one run. Machines here
// are shared and noisy: read the ratios, not the absolute numbers.
//
//   node dist/bench/dump-vs-makedumpfile.js [PROFILE...] [--runs N] [--json]
//
// Profiles come from fixtures/build-real.sh (default: q35-512m).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { realFixture } from "../test/helpers/real.js";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));

interface Measure {
  seconds: number;
  maxRssMiB: number;
  bytes: number;
}

/** Run a command under GNU time; wall seconds and peak RSS of the child. */
function measure(cmd: string[], out: string): Measure {
  rmSync(out, { force: true });
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", ...cmd], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd.join(" ")} failed:\n${r.stderr}`);
  const [sec, kib] = r.stderr.trim().split("\n").pop()!.split(" ").map(Number);
  return { seconds: sec, maxRssMiB: kib / 1024, bytes: statSync(out).size };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const args = process.argv.slice(2);
const json = args.includes("--json");
const runsAt = args.indexOf("--runs");
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
const profiles = args.filter((a, i) => !a.startsWith("--") && (runsAt < 0 || i !== runsAt + 1));
const rows = [];
for (const profile of profiles.length ? profiles : ["q35-512m"]) {
  const fx = realFixture(profile);
  const dir = mkdtempSync(join(tmpdir(), "guestcore-bench-"));
  const tools: Record<string, { cmd: string[]; out: string }> = {
    "guestcore dump -d 31 (ELF)": { cmd: [process.execPath, CLI, "dump", fx.elf, "-o", join(dir, "g.elf"), "-d", "31"], out: join(dir, "g.elf") },
    "guestcore dump -d 31 (raw input)": { cmd: [process.execPath, CLI, "dump", fx.raw, "-o", join(dir, "r.elf"), "-d", "31"], out: join(dir, "r.elf") },
    "makedumpfile -E -d 31": { cmd: ["makedumpfile", "-E", "-d", "31", fx.mdfElf, join(dir, "m.elf")], out: join(dir, "m.elf") },
  };
  const results: Record<string, Measure> = {};
  for (const [name, t] of Object.entries(tools)) {
    const ms: Measure[] = [];
    for (let i = 0; i < runs; i++) ms.push(measure(t.cmd, t.out));
    results[name] = { seconds: median(ms.map((m) => m.seconds)), maxRssMiB: median(ms.map((m) => m.maxRssMiB)), bytes: ms[0].bytes };
  }
  rmSync(dir, { recursive: true, force: true });
  const base = results["makedumpfile -E -d 31"];
  for (const [name, m] of Object.entries(results)) {
    rows.push({ profile, memMiB: fx.memMiB, tool: name, ...m, timeRatio: m.seconds / base.seconds, sizeRatio: m.bytes / base.bytes });
  }
}
if (json) {
  console.log(JSON.stringify(rows, null, 2));
} else {
  console.log(`median of ${runs} runs; ratios are against makedumpfile -E -d 31 on the same input in the same run`);
  console.log("| guest | command | wall s | time ratio | peak RSS MiB | output MiB | size ratio |");
  console.log("|---|---|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    console.log(`| ${r.profile} (${r.memMiB} MiB) | ${r.tool} | ${r.seconds.toFixed(2)} | ${r.timeRatio.toFixed(2)} | ${r.maxRssMiB.toFixed(0)} | ${(r.bytes / 2 ** 20).toFixed(1)} | ${r.sizeRatio.toFixed(2)} |`);
  }
}

