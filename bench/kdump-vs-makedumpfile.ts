// kdump-compressed dumps: `guestcore dump -d 31` (zstd, zlib) against
// `makedumpfile -d 31 -c` (zlib) and `-l` (lzo) on the same input in one
// run: wall-time ratio, output-size ratio and peak RSS.
//
//   node dist/bench/kdump-vs-makedumpfile.js [GUEST...] [--runs N] [--json]
//
// GUEST is a fixture profile (fixtures/build-real.sh, e.g. q35-2g-full) or
// synthetic-32g (fixtures/build-synthetic-large.sh). guestcore reads the
// raw memory file; makedumpfile, which cannot, reads the ELF of the same
// memory.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CACHE } from "../test/helpers/real.js";
import { measure, parseArgs, printTable, rows, type Measure, type Row } from "./measure.js";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
const { names, runs, json } = parseArgs(process.argv.slice(2));
const all: Row[] = [];
for (const guest of names.length ? names : ["q35-2g-full"]) {
  const dir = join(CACHE, "fixtures", guest);
  const raw = join(dir, "mem.raw");
  const mdf = join(dir, "vmcore.mdf.elf");
  for (const f of [raw, mdf]) if (!existsSync(f)) throw new Error(`missing ${f}: build the ${guest} fixture first`);
  const meta = JSON.parse(readFileSync(join(dir, "meta.json"), "utf8"));
  const memMiB = meta.memMiB ?? (meta.gib ? meta.gib * 1024 : "?");
  // Output beside the cache, not in /tmp: a 32 GiB guest's dump may not fit a small /tmp.
  const out = mkdtempSync(join(CACHE, "bench-"));
  const gc = (codec: string, file: string) => [process.execPath, CLI, "dump", raw, "-o", join(out, file), "-d", "31", "--codec", codec];
  const results: Record<string, Measure> = {
    "makedumpfile -d 31 -c": measure(["makedumpfile", "-c", "-d", "31", mdf, join(out, "m.c")], join(out, "m.c"), runs),
    "makedumpfile -d 31 -l": measure(["makedumpfile", "-l", "-d", "31", mdf, join(out, "m.l")], join(out, "m.l"), runs),
    "guestcore dump -d 31 (zstd)": measure(gc("zstd", "g.zstd"), join(out, "g.zstd"), runs),
    "guestcore dump -d 31 -c (zlib)": measure(gc("zlib", "g.zlib"), join(out, "g.zlib"), runs),
  };
  rmSync(out, { recursive: true, force: true });
  all.push(...rows(`${guest} (${memMiB} MiB)`, results, "makedumpfile -d 31 -c"));
}
if (json) console.log(JSON.stringify(all, null, 2));
else printTable(all, `median of ${runs} runs; ratios against makedumpfile -d 31 -c on the same memory in the same run`);
