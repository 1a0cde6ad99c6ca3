// Small files guestcore reads whole (a --vmcoreinfo text, a fixture
// manifest, a watch config, a replacement's console log, a directory of
// QMP sockets) are read only up to their limit, whatever size they claim
// or lack, and their contents are checked before anything walks them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import net from "node:net";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GuestcoreError } from "../../src/core/errors.js";
import { readFileTail, readSmallFile } from "../../src/core/file.js";
import { fromFile } from "../../src/introspect/vmcoreinfo.js";
import { parseManifest } from "../../src/fixture/manifest.js";
import { scanSocketDir } from "../../src/recovery/watch-config.js";
import { oneLineError } from "../helpers/errors.js";
import { scratchDir } from "../helpers/synthetic.js";

function withDir(f: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = scratchDir();
  return Promise.resolve(f(dir)).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test("readSmallFile: up to the limit, refused past it, endless devices and FIFOs bounded", () => withDir((dir) => {
  const at = join(dir, "f");
  writeFileSync(at, Buffer.alloc(100_000, 7));
  assert.equal(readSmallFile(at, 100_000).length, 100_000);
  assert.throws(() => readSmallFile(at, 99_999), oneLineError(/: more than 99999 bytes$/));
  // /dev/zero has no size and no end: read to the limit, then refused.
  assert.throws(() => readSmallFile("/dev/zero", 1 << 20), oneLineError(/^\/dev\/zero: more than 1048576 bytes$/));
  const fifo = join(dir, "fifo");
  execFileSync("mkfifo", [fifo]);
  assert.throws(() => readSmallFile(fifo, 10, "the journal", { regular: true }), oneLineError(/^the journal is not a regular file$/));
  assert.throws(() => readSmallFile(join(dir, "none"), 10), (e: NodeJS.ErrnoException) => e.code === "ENOENT");
}));

test("readFileTail: a console log of 8 MiB gives its last bytes in one read", () => withDir((dir) => {
  const log = join(dir, "console.log");
  writeFileSync(log, Buffer.concat([Buffer.alloc(8 << 20, "x"), Buffer.from("\nlast line\n")]));
  const t = readFileTail(log, 16 << 10);
  assert.equal(t.length, 16 << 10);
  assert.ok(t.toString("latin1").endsWith("x\nlast line\n"));
  assert.equal(readFileTail(log, 100 << 20).length, (8 << 20) + 11, "a short file whole");
}));

test("--vmcoreinfo of an endless device: one line after 1 MiB, not a read of all of it", () => {
  assert.throws(() => fromFile("/dev/zero"), oneLineError(/^\/dev\/zero is too large to be VMCOREINFO$/));
});

test("fixture manifests: every list and count has its shape before the comparison walks it", () => {
  const good = {
    guestcoreFixture: 1, name: "g", dump: "vmcore.kdump", markerPattern: "^x", recorded: {},
    expect: { kernelRelease: "6.1.0", pageSize: 4096, tasks: [{ pid: 1, comm: "init", ppid: 0 }], modules: [{ name: "m", size: 4096 }] },
  };
  assert.equal(parseManifest(JSON.stringify(good), "m.json").expect.tasks?.length, 1);
  const cases: [string, unknown, RegExp][] = [
    ["tasks a string", { tasks: "all of them" }, /"expect\.tasks" must be a list of \{pid, comm, ppid\}/],
    ["a task without a pid", { tasks: [{ comm: "x", ppid: 0 }] }, /"expect\.tasks" must be a list/],
    ["modules an object", { modules: { length: 1e9 } }, /"expect\.modules" must be a list of \{name, size\}/],
    ["pages.total an object", { pages: { level: 31, total: {}, present: 1, kept: 1, zero: 0, cache: 0, cachePrivate: 0, user: 0, free: 0, hwpoison: 0, offline: 0 } }, /"expect\.pages\.total" must be an integer/],
    ["markers a string", { kernelLog: { records: 1, sha256: "0", markers: "x" } }, /"expect\.kernelLog" must be/],
    ["pageSize a string", { pageSize: "4096" }, /"expect\.pageSize" must be an integer/],
    ["reasons not strings", { unavailable: { tasks: 1 } }, /"expect\.unavailable" must map sections to reasons/],
  ];
  for (const [what, patch, re] of cases) {
    const m = { ...good, expect: { ...good.expect, ...(patch as object) } };
    assert.throws(() => parseManifest(JSON.stringify(m), "m.json"), (e: Error) => e instanceof GuestcoreError && oneLineError(re)(e), what);
  }
});

test("a socket directory: files that are not sockets do not push the guests out of the bound", () => withDir(async (dir) => {
  for (let i = 0; i < 4200; i++) writeFileSync(join(dir, `a-${String(i).padStart(4, "0")}.log`), "");
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(join(dir, "vm1.qmp"), () => r()));
  try {
    assert.deepEqual(scanSocketDir(dir), [{ name: "vm1", qmp: join(dir, "vm1.qmp") }]);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}));
