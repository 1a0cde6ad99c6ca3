// recover's journal: what is written is read back, it is replaced
// atomically (no temporary left), and a hostile or foreign journal (huge,
// another version, partials that are not a list, a thousand partials, not
// JSON, not an object) is refused with one line, before it is believed.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { journalPath, readJournal, removeJournal, writeJournal, type RecoverJournal } from "../../src/recovery/journal.js";
import { oneLineError } from "../helpers/errors.js";

const dir = mkdtempSync("/dev/shm/guestcore-journal-");
after(() => rmSync(dir, { recursive: true, force: true }));

const output = join(dir, "vmcore");
const journal: RecoverJournal = {
  version: 1, output, memPath: "/dev/shm/vm1.ram", layout: "0x0:0x80000000@0x0,0x100000000:0x80000000@0x80000000",
  memSize: 4 << 30, memIno: 123456, level: 31, format: "kdump",
  partials: [join(dir, ".vmcore.guestcore-111.tmp"), join(dir, ".vmcore.guestcore-222.tmp")], startedAt: 1_700_000_000_000, panickedAt: 1_699_999_999_000,
};

test("journal: written beside the dump, read back equal, replaced without a temporary, removed", () => {
  assert.equal(journalPath(output), join(dir, ".vmcore.recover.json"));
  assert.equal(readJournal(output), undefined, "no journal: no unfinished recover");
  writeJournal(journal);
  assert.deepEqual(readJournal(output), journal);
  // The file is plain JSON another program can read.
  assert.deepEqual(JSON.parse(readFileSync(journalPath(output), "utf8")), journal);
  const next = { ...journal, partials: [...journal.partials, join(dir, ".vmcore.guestcore-333.tmp")], panickedAt: undefined };
  // Replaced by renaming a complete new file over it (a new inode): rewritten in place, a kill could leave half a journal.
  const before = statSync(journalPath(output)).ino;
  writeJournal(next);
  assert.notEqual(statSync(journalPath(output)).ino, before, "the journal was rewritten in place, not replaced");
  const back = readJournal(output)!;
  assert.deepEqual(back.partials, next.partials);
  assert.equal("panickedAt" in back, false);
  assert.deepEqual(readdirSync(dir), [".vmcore.recover.json"], "no temporary file left");
  removeJournal(output);
  assert.equal(existsSync(journalPath(output)), false);
  removeJournal(output); // twice is fine
});

test("journal: hostile or foreign journals are each a one-line error", () => {
  const out = join(dir, "hostile");
  const p = journalPath(out);
  const good = { ...journal, output: out };
  const cases: [string, string | Buffer, RegExp][] = [
    ["huge", JSON.stringify({ ...good, pad: "x".repeat(1 << 20) }), /: more than 65536 bytes: not a recover journal/],
    ["version 2", JSON.stringify({ ...good, version: 2 }), /not a recover journal this guestcore writes/],
    ["version as a string", JSON.stringify({ ...good, version: "1" }), /not a recover journal this guestcore writes/],
    ["partials an object", JSON.stringify({ ...good, partials: { 0: "/a" } }), /this guestcore writes/],
    ["partials a string", JSON.stringify({ ...good, partials: "/a" }), /this guestcore writes/],
    ["1000 partials", JSON.stringify({ ...good, partials: Array.from({ length: 1000 }, (_, i) => `/p${i}`) }), /this guestcore writes/],
    ["a partial that is not a path", JSON.stringify({ ...good, partials: ["/a", 7] }), /this guestcore writes/],
    // A rerun deletes the partials a journal names: only recover's own files beside the output pass.
    ["a partial elsewhere", JSON.stringify({ ...good, partials: ["/etc/passwd"] }), /this guestcore writes/],
    ["a partial of another output", JSON.stringify({ ...good, partials: [join(dir, ".other.guestcore-1.tmp")] }), /this guestcore writes/],
    ["no memPath", JSON.stringify({ ...good, memPath: undefined }), /this guestcore writes/],
    ["memSize not an integer", JSON.stringify({ ...good, memSize: 1.5 }), /this guestcore writes/],
    ["memSize beyond 2^53", JSON.stringify({ ...good, memSize: 2 ** 60 }), /this guestcore writes/],
    ["memIno a string", JSON.stringify({ ...good, memIno: "123456" }), /this guestcore writes/],
    ["dump level 99", JSON.stringify({ ...good, level: 99 }), /this guestcore writes/],
    ["panickedAt an object", JSON.stringify({ ...good, panickedAt: {} }), /this guestcore writes/],
    ["unknown format", JSON.stringify({ ...good, format: "zip" }), /this guestcore writes/],
    ["null", "null", /this guestcore writes/],
    ["an array", "[1]", /this guestcore writes/],
    ["empty", "", /not a recover journal \(.*\); remove it if no recover runs/],
    ["not JSON", "version=1\nmemPath=/dev/shm/vm1.ram\npartials=\n", /not a recover journal \(.*\); remove it if no recover runs/],
    ["cut short", JSON.stringify(good, null, 1).slice(0, 200), /not a recover journal \(/],
    ["binary", Buffer.from([0xff, 0xfe, 0x00, 0x1b, 0x5b, 0x32, 0x4a, 0x7b, 0x0a, 0x0d, 0x0a]), /not a recover journal \(/],
  ];
  for (const [what, body, re] of cases) {
    writeFileSync(p, body);
    assert.throws(() => readJournal(out), oneLineError(re), what);
    assert.throws(() => readJournal(out), (e: Error) => !/[\x00-\x1f\x7f]/.test(e.message), `${what}: no control bytes from the file`);
    assert.throws(() => readJournal(out), (e: Error) => e.message.startsWith(p), `${what}: names the file`);
  }
  // A directory where the journal should be.
  rmSync(p);
  const d = join(dir, "dir");
  mkdirSync(journalPath(d));
  assert.throws(() => readJournal(d), oneLineError(/is not a regular file: not a recover journal/));
  // A FIFO is refused at once, not waited on, and so is a link to an endless device.
  const f = join(dir, "fifo");
  execFileSync("mkfifo", [journalPath(f)]);
  assert.throws(() => readJournal(f), oneLineError(/is not a regular file: not a recover journal/));
  const z = join(dir, "zero");
  symlinkSync("/dev/zero", journalPath(z));
  assert.throws(() => readJournal(z), oneLineError(/is not a regular file/));
});
