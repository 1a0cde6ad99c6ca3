// AtomicFile and the housekeeping of its temporaries: nothing under the
// final name until commit; a temporary named for its writer's PID; an
// abort, or an exit while open, removes it; a SIGKILLed writer's is left
// and `guestcore clean` (and the next dump into the directory) removes it,
// but never one whose writer lives or one an unfinished recover needs.
// Failures are one line naming the path and the errno.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AtomicFile, writeFileAtomic } from "../../src/writers/atomic-file.js";
import { listTemporaries, parseTemporaryName, temporaryPath } from "../../src/writers/temporaries.js";
import { cleanDirectory } from "../../src/cli/clean-command.js";
import { journalPath } from "../../src/recovery/journal.js";
import { oneLineError } from "../helpers/errors.js";
import { tempDir } from "../helpers/synthetic.js";

const ATOMIC = fileURLToPath(new URL("../../src/writers/atomic-file.js", import.meta.url));
const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));

/** A dead PID: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "console.log(process.pid)"], { encoding: "utf8" });
  return Number(r.stdout.trim());
}

test("nothing under the final name until commit; the temporary is named for the writer", (t) => {
  const dir = tempDir(t);
  try {
    const out = join(dir, "vmcore");
    const listeners = process.listenerCount("exit");
    const f = new AtomicFile(out);
    assert.equal(f.tmpPath, join(dir, `.vmcore.guestcore-${process.pid}.tmp`));
    assert.equal(process.listenerCount("exit"), listeners + 1, "an exit while open removes the temporary");
    f.writeAt(Buffer.from("world"), 6);
    f.writeAt(Buffer.from("hello "), 0);
    assert.deepEqual(readdirSync(dir), [`.vmcore.guestcore-${process.pid}.tmp`]);
    f.commit();
    assert.deepEqual(readdirSync(dir), ["vmcore"]);
    assert.equal(readFileSync(out, "utf8"), "hello world");
    assert.equal(process.listenerCount("exit"), listeners, "no listener left behind");
    f.abort(); // after commit: nothing to undo
    assert.equal(readFileSync(out, "utf8"), "hello world");
    writeFileAtomic(out, "replaced");
    assert.equal(readFileSync(out, "utf8"), "replaced");
    assert.deepEqual(readdirSync(dir), ["vmcore"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("abort removes the temporary, keepOnAbort keeps it (recover's partial)", (t) => {
  const dir = tempDir(t);
  try {
    const listeners = process.listenerCount("exit");
    const a = new AtomicFile(join(dir, "a"));
    a.writeAt(Buffer.alloc(4096, 1), 0);
    a.abort();
    const k = new AtomicFile(join(dir, "k"), { keepOnAbort: true });
    assert.equal(process.listenerCount("exit"), listeners, "a kept partial needs no exit cleanup");
    k.writeAt(Buffer.alloc(10, 2), 0);
    k.abort();
    assert.deepEqual(readdirSync(dir), [`.k.guestcore-${process.pid}.tmp`]);
    assert.equal(process.listenerCount("exit"), listeners);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an exit while a file is open removes its temporary; SIGKILL leaves it for the housekeeping", (t) => {
  const dir = tempDir(t);
  try {
    const script = (end: string) =>
      `import(${JSON.stringify(ATOMIC)}).then(({ AtomicFile }) => { const f = new AtomicFile(${JSON.stringify(join(dir, "out"))}); f.writeAt(Buffer.alloc(8192, 7), 0); ${end}; })`;
    const exited = spawnSync(process.execPath, ["-e", script("process.exit(3)")]);
    assert.equal(exited.status, 3);
    assert.deepEqual(readdirSync(dir), [], "process.exit removed the temporary");
    const killed = spawnSync(process.execPath, ["-e", script("process.kill(process.pid, 'SIGKILL')")]);
    assert.equal(killed.signal, "SIGKILL");
    const left = listTemporaries(dir);
    assert.equal(left.length, 1);
    assert.equal(left[0].final, join(dir, "out"));
    assert.equal(left[0].bytes, 8192);
    assert.equal(left[0].writerAlive, false);
    assert.equal(left[0].pid, killed.pid);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("clean removes the temporaries of dead writers only, and keeps what an unfinished recover needs", (t) => {
  const dir = tempDir(t);
  try {
    const dead = deadPid();
    const stale = temporaryPath(join(dir, "vmcore"), dead);
    const live = temporaryPath(join(dir, "other"), process.pid);
    const recovering = temporaryPath(join(dir, "rec"), dead);
    writeFileSync(stale, "x".repeat(100));
    writeFileSync(live, "y");
    writeFileSync(recovering, "z");
    writeFileSync(journalPath(join(dir, "rec")), "{}");
    // Look-alikes that are not guestcore's temporaries.
    for (const name of [".vmcore.partial-1", "vmcore.guestcore-1.tmp", ".vmcore.guestcore-0.tmp", ".vmcore.guestcore-x.tmp", ".vmcore.guestcore-99999999.tmp", "..guestcore-5.tmp"]) {
      writeFileSync(join(dir, name), "");
    }
    mkdirSync(temporaryPath(join(dir, "adir"), dead));

    const dry = cleanDirectory(dir, true);
    assert.deepEqual(dry.map((e) => [e.path, e.action]), [
      [live, "kept"], [recovering, "kept"], [stale, "would remove"],
    ]);
    assert.ok(existsSync(stale), "a dry run removes nothing");
    assert.match(dry[0].why, new RegExp(`process ${process.pid}, is still running`));
    assert.match(dry[1].why, /unfinished recover/);

    // The command: lists, removes, says why, one JSON document.
    const r = spawnSync(process.execPath, [CLI, "clean", dir, "--json"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as { path: string; action: string; pid: number; bytes: number; why: string }[];
    assert.deepEqual(got.map((e) => [e.path, e.action]), [[live, "kept"], [recovering, "kept"], [stale, "removed"]]);
    assert.equal(got[2].pid, dead);
    assert.equal(got[2].bytes, 100);
    assert.match(got[2].why, new RegExp(`process ${dead}, is gone`));
    assert.equal(existsSync(stale), false);
    assert.ok(existsSync(live) && existsSync(recovering));
    const again = spawnSync(process.execPath, [CLI, "clean", dir], { encoding: "utf8" });
    assert.equal(again.status, 0);
    assert.doesNotMatch(again.stdout, /removed/);
    const help = spawnSync(process.execPath, [CLI, "clean", "--help"], { encoding: "utf8" });
    assert.match(help.stdout, /Examples:\n  guestcore clean \/var\/crash/);
    const missing = spawnSync(process.execPath, [CLI, "clean", join(dir, "nope")], { encoding: "utf8" });
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /^guestcore: cannot list .*nope: ENOENT \(no such file or directory\)\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("temporary names: parsed back exactly, nothing else taken for one", () => {
  assert.deepEqual(parseTemporaryName(".vm.core.guestcore-12.tmp"), { final: "vm.core", pid: 12 });
  assert.deepEqual(parseTemporaryName("..vmcore.recover.json.guestcore-7.tmp"), { final: ".vmcore.recover.json", pid: 7 });
  assert.deepEqual(parseTemporaryName(".a.guestcore-1.guestcore-2.tmp"), { final: "a.guestcore-1", pid: 2 });
  for (const n of ["", ".tmp", ".guestcore-1.tmp", ".a.guestcore-.tmp", ".a.guestcore-01.tmp", ".a.guestcore-4194304.tmp", ".a.guestcore-1.tmpx", "a.guestcore-1.tmp"]) {
    assert.equal(parseTemporaryName(n), undefined, n);
  }
});

test("failures are one line naming the path and the errno, and leave no temporary", (t) => {
  const dir = tempDir(t);
  try {
    assert.throws(() => new AtomicFile(join(dir, "no", "such", "dir")), oneLineError(/^cannot create .*no\/such\/\.dir\.guestcore-\d+\.tmp: ENOENT \(no such file or directory\)$/));
    // A directory where the output should go: the rename fails.
    mkdirSync(join(dir, "taken"));
    writeFileSync(join(dir, "taken", "x"), "");
    const f = new AtomicFile(join(dir, "taken"));
    f.writeAt(Buffer.from("data"), 0);
    assert.throws(() => f.commit(), oneLineError(/^cannot rename .*\.taken\.guestcore-\d+\.tmp to .*taken: (EISDIR|ENOTEMPTY|EEXIST) \(/));
    f.abort();
    assert.deepEqual(readdirSync(dir), ["taken"]);
    assert.throws(() => writeFileAtomic(join(dir, "taken"), "x"), oneLineError(/^cannot rename /));
    assert.deepEqual(readdirSync(dir), ["taken"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
