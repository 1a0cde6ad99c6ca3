// Warm-cache reboot end to end, on real guests under QEMU (TCG), with
// their disk served by `guestcore disk serve`:
//  - a guest reads a set of files from its ext4 disk, rewrites some
//    without syncing, and panics (pvpanic, paused);
//  - `recover --warm-cache` dumps it, keeps its clean cache pages that
//    equal the disk, and boots a replacement that reads the same files;
//  - a stated share of the replacement's reads comes from the warm cache,
//    every block served from it is byte-identical to the image (the
//    server reads the image again for each one: --verify-warm), and no
//    modified-but-unwritten page is served (the replacement sees the
//    disk's old bytes of the rewritten files, by md5 against the host's
//    manifest);
//  - e2fsck -fn on the image is clean after the replacement's journal
//    replay and unmount.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { shellQuote } from "../helpers/qemu-guest.js";
import { buildWarmDisk, launchWarmGuest, parseWarmConsole, warmReplacementArgv } from "../helpers/warm-guest.js";
import { startDiskServer } from "../helpers/disk-server.js";
import { runCli } from "../helpers/run-cli.js";
import { tempDir } from "../helpers/synthetic.js";

const MB = 1 << 20;


test("recover --warm-cache: the replacement reads the crashed guest's clean cache from memory, never a stale byte", { timeout: 400_000 }, async (t) => {
  // Removed also when what follows fails before the try below.
  const work = tempDir(t);
  const disk = buildWarmDisk(join(work, "disk.img"));
  const server = await startDiskServer(disk.image, join(work, "disk.nbd"), ["--verify-warm"]);
  const replMem = `/dev/shm/guestcore-test-warm-repl.${process.pid}.ram`;
  const replLog = join(work, "replacement.log");
  const crashed = launchWarmGuest({ role: "warmcrash", disk: { kind: "nbd", socket: server.socket }, memMiB: 256 });
  try {
    const before = await crashed.waitDone(180_000);
    assert.ok(before.files.length >= 10 && before.rewrote.length >= 1, `the crashed guest read files and rewrote some: ${crashed.consoleTail()}`);
    const roBytes = before.files.filter((f) => f.path.includes("/ro-")).reduce((n, f) => n + f.size, 0);
    const preload = join(work, "preload.list");
    const argv = warmReplacementArgv({ memPath: replMem, consoleLog: replLog, token: "warm1", disk: { kind: "nbd", socket: server.socket } });
    const r = await runCli([
      "recover", "--qmp", crashed.sock, "-o", join(work, "crash.kdump"), "-d", "31", "--quit-crashed", "early",
      "--warm-cache", server.control, "--warm-cache-preload", preload,
      "--replacement", shellQuote(argv), "--ready", `serial:${replLog}:^GUESTCORE-WARM-DONE warm1 `, "--ready-timeout", "240", "--json",
    ], 330_000);
    assert.equal(r.code, 0, `recover failed: ${r.stderr}\n${r.stdout.slice(0, 2000)}`);
    const report = JSON.parse(r.stdout);
    const withheld = (report.timeline.events as { phase?: string; data?: Record<string, number> }[]).find((e) => e.phase === "withheld")!.data!;
    // Every ro file's pages were clean cache in the crashed guest, and equal the disk.
    assert.ok(withheld.keptPages * 4096 >= 0.9 * roBytes, `kept ${withheld.keptPages} pages for ${roBytes} bytes of ro files: ${JSON.stringify(withheld)}`);
    const after = parseWarmConsole(readFileSync(replLog, "latin1"));
    assert.ok(after.done, "the replacement finished its reads");
    // The replacement read the disk's bytes: the manifest's, not the crashed guest's unwritten rewrites.
    for (const f of before.files) {
      const got = after.reads.find((x) => x.path === f.path);
      assert.ok(got, `the replacement read ${f.path}`);
      assert.equal(got!.md5, disk.manifest.get(f.path)!.md5, `${f.path} as on the disk`);
    }
    for (const w of before.rewrote) assert.notEqual(after.reads.find((x) => x.path === w.path)!.md5, w.md5, `${w.path}: the lost rewrite is not served`);
    const s = await server.stats();
    t.diagnostic(`kept ${JSON.stringify(withheld)}; served ${JSON.stringify(s.warm)}; disk ${JSON.stringify(s.disk)}`);
    // At least 80 % of the ro files' bytes came from the warm cache; every served block equals the image.
    assert.ok(s.warm.servedBlocks * 4096 >= 0.8 * roBytes, `served ${s.warm.servedBlocks} blocks for ${roBytes} bytes: ${JSON.stringify(s)}`);
    assert.equal(s.warm.verifiedBlocks, s.warm.servedBlocks);
    assert.equal(s.warm.verifyMismatches, 0, "no served block differs from the image");
    // The preload list names the files the kept blocks belong to.
    const listed = readFileSync(preload, "utf8").split("\n").filter(Boolean);
    for (const f of before.files.filter((x) => x.path.includes("/ro-"))) assert.ok(listed.includes(f.path), `${f.path} in the preload list`);
    // The same bytes through the server, for QEMU's and libnbd's clients.
    const nbdUri = `nbd+unix:///?socket=${server.socket}`;
    const cmp = spawnSync("qemu-img", ["compare", "-f", "raw", "-F", "raw", disk.image, nbdUri], { encoding: "utf8" });
    assert.equal(cmp.status, 0, `qemu-img compare: ${cmp.stdout}${cmp.stderr}`);
    assert.equal(Number(spawnSync("nbdinfo", ["--size", nbdUri], { encoding: "utf8" }).stdout), readFileSync(disk.image).length);
    const fsck = spawnSync("e2fsck", ["-fn", disk.image], { encoding: "utf8" });
    assert.equal(fsck.status, 0, `e2fsck -fn: ${fsck.stdout}${fsck.stderr}`);
    assert.ok(readFileSync(join(work, "crash.kdump")).length > MB, "the dump was written");
  } finally {
    await crashed.stop();
    spawnSync("pkill", ["-f", replMem]);
    await server.stop();
    rmSync(replMem, { force: true });
  }
});
