// Issue 11's memory bound: guestcore's peak RSS against makedumpfile's on
// the same inputs in one run, from a real 4 GiB guest to a 32 GiB one and
// a sparse one whose RAM sits at both ends of a 1 TiB span. Each round
// runs every command once, alternately; the table gives the median wall
// time and the median and largest peak RSS of the rounds (GNU time's %M:
// the process's own, worker threads included).
//
//   node dist/bench/memory-bound.js [--runs N] [--json] [--out DIR] [GUEST...]
//
// GUEST: q35-4g (fixtures/build-real.sh), synthetic-32g
// (fixtures/build-synthetic-large.sh --elf 32), synthetic-16g-in-1024g
// (fixtures/build-synthetic-large.sh --elf --span=1024 16). Default: all
// three. --out writes table.md and results.json there.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CACHE, realFixture } from "../test/helpers/real.js";
import { cliCommand, measureOnce, median, parseArgs, type Measure } from "./measure.js";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
const LIMIT_MIB = 128;
const { names: guests, runs, json, values } = parseArgs(process.argv.slice(2), ["--out"], 5);
const outDir = values["--out"];

interface Guest { name: string; elf: string; raw?: string; ramGiB: number; spanGiB: number }

function guest(name: string): Guest {
  if (name.startsWith("synthetic-")) {
    const dir = join(CACHE, "fixtures", name);
    const elf = join(dir, "vmcore.mdf.elf");
    if (!existsSync(elf)) throw new Error(`${elf} missing: build it with fixtures/build-synthetic-large.sh (see the header of this file)`);
    const m = /^synthetic-(\d+)g(?:-in-(\d+)g)?/.exec(name)!;
    const ram = Number(m[1]);
    const span = Number(m[2] ?? m[1]);
    // The raw image of a sparse guest is the whole span, the hole as zero pages: 1 TiB of reading.
    return { name, elf, raw: span === ram ? join(dir, "mem.raw") : undefined, ramGiB: ram, spanGiB: span };
  }
  const fx = realFixture(name);
  return { name, elf: fx.mdfElf, raw: fx.raw, ramGiB: fx.memMiB / 1024, spanGiB: fx.memMiB / 1024 };
}

interface Cmd { guest: string; tool: string; cmd: string[]; out: string }

const list = (guests.length ? guests : ["q35-4g", "synthetic-32g", "synthetic-16g-in-1024g"]).map(guest);
const work = mkdtempSync(join(CACHE, "bench-memory-"));
const cmds: Cmd[] = [];
for (const g of list) {
  const o = (n: string) => join(work, `${g.name}.${n}`);
  const gc = (input: string, out: string, ...args: string[]) => [...cliCommand(CLI), "dump", input, "-o", out, ...args];
  cmds.push(
    { guest: g.name, tool: "makedumpfile -l -d 31", cmd: ["makedumpfile", "-l", "-d", "31", g.elf, o("m.l")], out: o("m.l") },
    { guest: g.name, tool: "guestcore -d 31", cmd: gc(g.elf, o("g"), "-d", "31"), out: o("g") },
    ...(g.raw ? [{ guest: g.name, tool: "guestcore -d 31 (raw input)", cmd: gc(g.raw, o("gr"), "-d", "31"), out: o("gr") }] : []),
    { guest: g.name, tool: "makedumpfile -E -d 31", cmd: ["makedumpfile", "-E", "-d", "31", g.elf, o("m.e")], out: o("m.e") },
    { guest: g.name, tool: "guestcore -E -d 31", cmd: gc(g.elf, o("g.e"), "-E", "-d", "31"), out: o("g.e") },
  );
  if (g.ramGiB === 4) {
    cmds.push(
      { guest: g.name, tool: "makedumpfile -l -d 1", cmd: ["makedumpfile", "-l", "-d", "1", g.elf, o("m1.l")], out: o("m1.l") },
      { guest: g.name, tool: "guestcore -d 1", cmd: gc(g.elf, o("g1"), "-d", "1"), out: o("g1") },
    );
  }
}

const got = new Map<Cmd, Measure[]>(cmds.map((c) => [c, []]));
try {
  for (let r = 0; r < runs; r++) {
    for (const c of cmds) {
      got.get(c)!.push(measureOnce(c.cmd, c.out));
      rmSync(c.out, { force: true });
    }
    process.stderr.write(`memory-bound: round ${r + 1}/${runs} done\n`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const rows = cmds.map((c) => {
  const ms = got.get(c)!;
  const g = list.find((x) => x.name === c.guest)!;
  return {
    guest: c.guest, ramGiB: g.ramGiB, spanGiB: g.spanGiB, tool: c.tool, seconds: median(ms.map((m) => m.seconds)),
    rssMedianMiB: median(ms.map((m) => m.maxRssMiB)), rssMaxMiB: Math.max(...ms.map((m) => m.maxRssMiB)), bytes: ms[0].bytes,
    allRssMiB: ms.map((m) => Math.round(m.maxRssMiB * 10) / 10),
  };
});
const lines = [
  `medians of ${runs} alternating runs (peak RSS: median and largest of the runs; guestcore's bound is ${LIMIT_MIB} MiB)`,
  "| guest | RAM / span GiB | command | wall s | peak RSS MiB (median) | peak RSS MiB (max) | within bound | output MB |",
  "|---|---:|---|---:|---:|---:|:---:|---:|",
  ...rows.map((r) => `| ${r.guest} | ${r.ramGiB} / ${r.spanGiB} | ${r.tool} | ${r.seconds.toFixed(2)} | ${r.rssMedianMiB.toFixed(1)} | ${r.rssMaxMiB.toFixed(1)} | ${r.tool.startsWith("guestcore") ? (r.rssMaxMiB <= LIMIT_MIB ? "yes" : "**no**") : ""} | ${(r.bytes / 1e6).toFixed(1)} |`),
];
if (outDir) {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "table.md"), lines.join("\n") + "\n");
  writeFileSync(join(outDir, "results.json"), JSON.stringify({ runs, date: new Date().toISOString(), rows }, null, 2) + "\n");
}
console.log(json ? JSON.stringify(rows, null, 2) : lines.join("\n"));
