// Bad and hostile input: one clear line on stderr, a non-zero exit, and no
// output file left behind. A hang is killed at 30 s and fails the test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSynthetic, syntheticElf, type Corruption } from "../../fixtures/synthetic.js";
import { tempDir, writeTemp } from "../helpers/synthetic.js";
import { firstDifference, makedumpfileOracleOf, readKdumpBitmaps } from "../helpers/real.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));

function runDump(input: string, dir: string) {
  const out = join(dir, "out.elf");
  const r = spawnSync(process.execPath, [CLI, "dump", input, "-o", out, "-d", "31"], { encoding: "utf8", timeout: 30_000 });
  return { ...r, out };
}

function assertCleanFailure(r: ReturnType<typeof runDump>, pattern: RegExp, dir: string) {
  assert.equal(r.signal, null, "must not hang or be killed");
  assert.notEqual(r.status, 0, "must exit non-zero");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line of error, got:\n${r.stderr}`);
  assert.match(lines[0], /^guestcore: /);
  assert.doesNotMatch(lines[0], /internal error/);
  assert.match(lines[0], pattern);
  assert.ok(!existsSync(r.out), "no output file");
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes("partial")), [], "no partial file");
}

test("truncated ELF", (t) => {
  const dir = tempDir(t);
  const elf = syntheticElf(buildSynthetic({ memMiB: 16 }));
  const input = writeTemp(dir, "cut.elf", elf.subarray(0, elf.length >> 1));
  assertCleanFailure(runDump(input, dir), /truncated ELF/, dir);
});

test("ELF truncated inside its program headers", (t) => {
  const dir = tempDir(t);
  const elf = syntheticElf(buildSynthetic({ memMiB: 16 }));
  assertCleanFailure(runDump(writeTemp(dir, "cut.elf", elf.subarray(0, 100)), dir), /truncated ELF/, dir);
});

test("a file that is not a dump", (t) => {
  const dir = tempDir(t);
  const input = writeTemp(dir, "notes.txt", "just some text, not memory\n".repeat(100));
  assertCleanFailure(runDump(input, dir), /neither a vmcore nor a RAM image/, dir);
});

test("a page-sized file of noise is not a dump either", (t) => {
  const dir = tempDir(t);
  const noise = Buffer.alloc(1 << 20);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
  assertCleanFailure(runDump(writeTemp(dir, "noise.raw", noise), dir), /no VMCOREINFO found/, dir);
});

const corruptions: [Corruption, RegExp][] = [
  ["no-vmcoreinfo", /no VMCOREINFO found/],
  ["pt-self-loop", /page-table loop/],
  ["mem-section-outside", /mem_section root 0.*not in the raw image/],
];
for (const [corrupt, pattern] of corruptions) {
  test(`raw image with ${corrupt}`, (t) => {
    const dir = tempDir(t);
    const input = writeTemp(dir, "bad.raw", buildSynthetic({ memMiB: 32, corrupt }).image);
    assertCleanFailure(runDump(input, dir), pattern, dir);
  });
}

test("an absurd compound order is ignored, as makedumpfile does: the same pages and counts as makedumpfile on the same memory", (t) => {
  const dir = tempDir(t);
  const s = buildSynthetic({ memMiB: 32, corrupt: "huge-order" });
  const raw = spawnSync(process.execPath, [CLI, "dump", writeTemp(dir, "order.raw", s.image), "-o", join(dir, "raw.kdump"), "--json"], { encoding: "utf8", timeout: 30_000 });
  assert.equal(raw.status, 0, raw.stderr);
  assert.equal(JSON.parse(raw.stdout).table.total, 8192);
  // The ELF of the same memory, which makedumpfile reads too: it is the judge.
  const elf = writeTemp(dir, "order.elf", syntheticElf(s));
  const out = join(dir, "o.kdump");
  const r = spawnSync(process.execPath, [CLI, "dump", elf, "-o", out, "-d", "31", "--json"], { encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  const want = makedumpfileOracleOf(elf, 31, join(dir, "oracle"));
  assert.equal(report.table.original, want.original);
  assert.deepEqual(report.table.counts, want.counts);
  assert.equal(report.table.remaining, want.remaining);
  const got = readKdumpBitmaps(out);
  assert.equal(firstDifference(got.bitmap2, want.bitmap2, want.maxMapnr), -1, "bitmap 2 equals makedumpfile's");
});

test("missing input and bad options", (t) => {
  const dir = tempDir(t);
  assertCleanFailure(runDump(join(dir, "nope.raw"), dir), /cannot open/, dir);
  const r = spawnSync(process.execPath, [CLI, "dump", "x", "-o", join(dir, "o"), "-d", "99"], { encoding: "utf8" });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /dump level must be 0 to 31/);
});

test("--xen on a machine without Xen: one clear line", (t) => {
  const dir = tempDir(t);
  const r = spawnSync(process.execPath, [CLI, "dump", "--xen", "7", "-o", join(dir, "x.kdump")], { encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  assert.match(r.stderr, /^guestcore: cannot open Xen foreign memory: no \/dev\/xen\/privcmd/);
  assert.deepEqual(readdirSync(dir), []);
});
