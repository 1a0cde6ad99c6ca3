// Issue 11's table: guestcore against makedumpfile (and cat) on the same
// real guest in one run, the commands of each round run alternately so
// that a noisy machine hurts both sides alike; medians of the rounds and
// ratios against each group's baseline.
//
//   node dist/bench/speed.js [PROFILE...] [--runs N] [--json]
//
// PROFILE defaults to q35-4g and q35-256m (fixtures/build-real.sh).
// Groups: -d 31 and -d 1 (kdump-compressed, against makedumpfile -l, with
// -c for the size; -d 1 also with dd writing as many bytes durably), -E
// -d 31 (ELF, against makedumpfile -E), and -d 0 (everything, against cat
// copying the ELF to the same filesystem). guestcore runs as `guestcore`
// does, with the flags of the CLI's first line.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CACHE, realFixture } from "../test/helpers/real.js";
import { cliCommand, measureOnce, median, parseArgs, type Measure } from "./measure.js";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
const { names, runs, json } = parseArgs(process.argv.slice(2));

interface Cmd { group: string; tool: string; cmd: string[]; out: string; stdoutTo?: string; baseline?: boolean }

const rowsOut: Record<string, unknown>[] = [];
for (const profile of names.length ? names : ["q35-4g", "q35-256m"]) {
  const fx = realFixture(profile);
  const dir = mkdtempSync(join(CACHE, "bench-speed-"));
  const o = (n: string) => join(dir, n);
  const gc = (input: string, out: string, ...args: string[]) => [...cliCommand(CLI), "dump", input, "-o", o(out), ...args];
  const big = fx.memMiB >= 4096;
  const cmds: Cmd[] = [
    { group: "-d 31", tool: "makedumpfile -l", cmd: ["makedumpfile", "-l", "-d", "31", fx.mdfElf, o("m31.l")], out: o("m31.l"), baseline: true },
    { group: "-d 31", tool: "makedumpfile -c", cmd: ["makedumpfile", "-c", "-d", "31", fx.mdfElf, o("m31.c")], out: o("m31.c") },
    { group: "-d 31", tool: "guestcore (ELF input)", cmd: gc(fx.mdfElf, "g31", "-d", "31"), out: o("g31") },
    { group: "-d 31", tool: "guestcore (raw input)", cmd: gc(fx.raw, "g31r", "-d", "31"), out: o("g31r") },
    { group: "-E -d 31", tool: "makedumpfile -E", cmd: ["makedumpfile", "-E", "-d", "31", fx.mdfElf, o("m31.e")], out: o("m31.e"), baseline: true },
    { group: "-E -d 31", tool: "guestcore -E", cmd: gc(fx.mdfElf, "g31.e", "-E", "-d", "31"), out: o("g31.e") },
    ...(big ? [
      { group: "-d 1", tool: "makedumpfile -l", cmd: ["makedumpfile", "-l", "-d", "1", fx.mdfElf, o("m1.l")], out: o("m1.l"), baseline: true },
      { group: "-d 1", tool: "makedumpfile -c", cmd: ["makedumpfile", "-c", "-d", "1", fx.mdfElf, o("m1.c")], out: o("m1.c") },
      { group: "-d 1", tool: "guestcore", cmd: gc(fx.mdfElf, "g1", "-d", "1"), out: o("g1") },
      // What writing that much durably costs this disk: guestcore's dump
      // is on the disk when it returns, makedumpfile's in the page cache.
      { group: "-d 1", tool: "dd 2016 MiB, fdatasync", cmd: ["dd", "if=/dev/zero", `of=${o("dd")}`, "bs=1M", "count=2016", "conv=fdatasync", "status=none"], out: o("dd") },
      { group: "-d 0", tool: "cat ELF > file", cmd: ["cat", fx.mdfElf], out: o("cat"), stdoutTo: o("cat"), baseline: true },
      { group: "-d 0", tool: "guestcore -d 0", cmd: gc(fx.mdfElf, "g0", "-d", "0"), out: o("g0") },
      { group: "-d 0", tool: "guestcore -E -d 0", cmd: gc(fx.mdfElf, "g0.e", "-E", "-d", "0"), out: o("g0.e") },
    ] : []),
  ];
  const got = new Map<Cmd, Measure[]>(cmds.map((c) => [c, []]));
  for (let r = 0; r < runs; r++) {
    for (const c of cmds) {
      got.get(c)!.push(measureOnce(c.cmd, c.out, c.stdoutTo));
      rmSync(c.out, { force: true });
    }
    process.stderr.write(`${profile}: round ${r + 1}/${runs} done\n`);
  }
  rmSync(dir, { recursive: true, force: true });
  const med = (c: Cmd) => {
    const ms = got.get(c)!;
    return { seconds: median(ms.map((m) => m.seconds)), maxRssMiB: median(ms.map((m) => m.maxRssMiB)), bytes: ms[0].bytes, all: ms.map((m) => m.seconds) };
  };
  for (const c of cmds) {
    const base = cmds.find((b) => b.group === c.group && b.baseline)!;
    const m = med(c);
    const b = med(base);
    rowsOut.push({ guest: `${profile} (${fx.memMiB} MiB)`, group: c.group, tool: c.tool, ...m, timeRatio: m.seconds / b.seconds, sizeRatio: m.bytes / b.bytes,
      gbPerSecond: (fx.memMiB * 2 ** 20) / m.seconds / 1e9 });
  }
}
if (json) console.log(JSON.stringify(rowsOut, null, 2));
else {
  console.log(`medians of ${runs} alternating runs; ratios against the group's first row, on the same input in the same run`);
  console.log("| guest | level | command | wall s | time ratio | guest GB/s | peak RSS MiB | output MB | size ratio |");
  console.log("|---|---|---|---:|---:|---:|---:|---:|---:|");
  for (const r of rowsOut as { guest: string; group: string; tool: string; seconds: number; timeRatio: number; gbPerSecond: number; maxRssMiB: number; bytes: number; sizeRatio: number }[]) {
    console.log(`| ${r.guest} | ${r.group} | ${r.tool} | ${r.seconds.toFixed(2)} | ${r.timeRatio.toFixed(2)} | ${r.gbPerSecond.toFixed(2)} | ${r.maxRssMiB.toFixed(0)} | ${(r.bytes / 1e6).toFixed(1)} | ${r.sizeRatio.toFixed(2)} |`);
  }
}
