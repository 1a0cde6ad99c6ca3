// --input-format offers what the README promises and openSource reads:
// each format forced on a file of that format opens it, forcing the wrong
// one fails in one line, and an unknown one lists the choices.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSynthetic, syntheticElf } from "../../fixtures/synthetic.js";
import { tempDir, writeTemp } from "../helpers/synthetic.js";
import { INPUT_FORMATS } from "../../src/sources/open.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const README = fileURLToPath(new URL("../../../README.md", import.meta.url));

function cli(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60_000 });
}

test("the README's --input-format list is the one the CLI accepts", () => {
  const m = /`--input-format ([a-z|-]+)`/.exec(readFileSync(README, "utf8"));
  assert.ok(m, "README documents --input-format");
  assert.deepEqual(m[1].split("|"), [...INPUT_FORMATS]);
  const r = cli(["info", "--input-format", "vmdk", "x"]);
  assert.equal(r.status, 1);
  for (const f of INPUT_FORMATS) assert.match(r.stderr, new RegExp(`"${f}"`));
});

test("--input-format opens each format it names, and a wrong one fails in one line", (t) => {
  const dir = tempDir(t);
  const s = buildSynthetic({ memMiB: 16 });
  const raw = writeTemp(dir, "mem.raw", s.image);
  const elf = writeTemp(dir, "vmcore.elf", syntheticElf(s));
  const kdump = join(dir, "vmcore.kdump");
  const flat = join(dir, "vmcore.flat");
  assert.equal(cli(["dump", elf, "-o", kdump, "-d", "31", "--codec", "zlib"]).status, 0);
  const f = spawnSync(process.execPath, [CLI, "dump", elf, "-F", "-d", "31", "--codec", "zlib"], { timeout: 60_000, maxBuffer: 64 << 20 });
  assert.equal(f.status, 0, String(f.stderr));
  writeTemp(dir, "vmcore.flat", f.stdout);
  for (const [format, path, shown] of [["raw", raw, "raw"], ["elf", elf, "elf"], ["kdump", kdump, "kdump"], ["flattened", flat, "kdump-flattened"]]) {
    const r = cli(["info", "--json", "--no-pages", "--input-format", format, path]);
    assert.equal(r.status, 0, `${format}: ${r.stderr}`);
    const info = JSON.parse(r.stdout) as { format: string; kernelRelease: string };
    assert.equal(info.format, shown);
    assert.equal(info.kernelRelease, s.release);
  }
  for (const [format, path] of [["kdump", elf], ["flattened", kdump], ["xen-dumpcore", elf]]) {
    const r = cli(["info", "--no-pages", "--input-format", format, path]);
    assert.equal(r.status, 2, `${format} on ${path}: ${r.stderr}`);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^guestcore: /);
  }
});
