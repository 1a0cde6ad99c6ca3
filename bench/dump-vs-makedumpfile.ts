// ELF dumps: `guestcore dump -E -d 31` against `makedumpfile -E -d 31` on
// the same real guest, in one run. Machines here are shared and noisy:
// read the ratios, not the absolute numbers.
//
//   node dist/bench/dump-vs-makedumpfile.js [PROFILE...] [--runs N] [--json]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { realFixture } from "../test/helpers/real.js";
import { measure, parseArgs, printTable, rows, type Measure, type Row } from "./measure.js";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
const { names, runs, json } = parseArgs(process.argv.slice(2));
const all: Row[] = [];
for (const profile of names.length ? names : ["q35-512m"]) {
  const fx = realFixture(profile);
  const dir = mkdtempSync(join(tmpdir(), "guestcore-bench-"));
  const results: Record<string, Measure> = {
    "guestcore dump -E -d 31": measure([process.execPath, CLI, "dump", fx.elf, "-o", join(dir, "g.elf"), "-E", "-d", "31"], join(dir, "g.elf"), runs),
    "guestcore dump -E -d 31 (raw input)": measure([process.execPath, CLI, "dump", fx.raw, "-o", join(dir, "r.elf"), "-E", "-d", "31"], join(dir, "r.elf"), runs),
    "makedumpfile -E -d 31": measure(["makedumpfile", "-E", "-d", "31", fx.mdfElf, join(dir, "m.elf")], join(dir, "m.elf"), runs),
  };
  rmSync(dir, { recursive: true, force: true });
  all.push(...rows(`${profile} (${fx.memMiB} MiB)`, results, "makedumpfile -E -d 31"));
}
if (json) console.log(JSON.stringify(all, null, 2));
else printTable(all, `median of ${runs} runs; ratios against makedumpfile -E -d 31 on the same input in the same run`);
