// End to end: a real guest panics under QEMU, pvpanic pauses it, and
// guestcore dumps it live through QMP (openQemuGuest) from its
// memory-backend file, without ever asking QEMU to write a dump.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GuestImage } from "../../src/image.js";
import { writeKdump } from "../../src/pipeline/kdump-dump.js";
import { openQemuGuest } from "../../src/sources/qemu-guest.js";
import { QmpClient } from "../../src/sources/qmp.js";
import { FileSink } from "../../src/writers/sinks.js";
import { launchGuest } from "../helpers/qemu-guest.js";

const MiB = 1 << 20;

test("dump a pvpanic-paused q35 guest through QMP and its memory-backend file", { timeout: 115_000 }, async (t) => {
  const guest = launchGuest({ memMiB: 256, machine: "q35", profile: "qmp-q35-256m" });
  const work = mkdtempSync(join(tmpdir(), "gc-qmpdump-"));
  try {
    const t0 = performance.now();
    await guest.waitPanicked(85_000);
    const tPanic = performance.now();

    const src = await openQemuGuest(guest.sock);
    const tOpen = performance.now();
    assert.equal(src.format, "qemu");
    assert.equal(src.qemu.status, "guest-panicked");
    assert.equal(src.qemu.running, false);
    assert.deepEqual(src.qemu.backend, {
      qomPath: "/objects/ram0", id: "ram0", type: "memory-backend-file", memPath: guest.shm, size: 256 * MiB, share: true, volatile: false,
    });
    assert.equal(src.qemu.layoutFrom, "info mtree + qom");
    assert.deepEqual(src.segments, [{ start: 0, end: 256 * MiB, vaddr: 0n, fileOffset: 0 }]);
    assert.equal(src.qemu.layoutSpec, "0x0:0x10000000@0x0");
    assert.match(src.qemu.vmcoreinfoDevice ?? "", /^\/machine\/peripheral-anon\/device\[\d+\]$/);
    assert.equal(src.notes.length, 0, "QMP gives no VMCOREINFO note: the image must scan for it");

    const out = join(work, "vmcore.kdump");
    let commands: string[];
    let tKernel = 0;
    const img = GuestImage.fromSource(src);
    try {
      tKernel = performance.now();
      assert.equal(img.kernel.origin, "scan");
      assert.equal(img.vmcoreinfo.osrelease, guest.release);
      const sink = new FileSink(out);
      try {
        const r = await writeKdump(img, sink, { level: 31, codec: "zlib", workers: 0 });
        // The workload's page classes are all there (guest-init.sh).
        assert.ok(r.counts.cache > 0 && r.counts.cachePrivate > 0 && r.counts.user > 0 && r.counts.free > 0, JSON.stringify(r.counts));
        assert.equal(r.maxPfn, (256 * MiB) / 4096);
        await src.verifyStillStopped();
        sink.commit();
      } catch (e) {
        sink.abort();
        throw e;
      }
      assert.equal(src.resumed, false);
      commands = [...src.commands];
    } finally {
      img.close();
    }
    const tDump = performance.now();

    // What guestcore asked QEMU: questions only, never a dump.
    assert.deepEqual(commands, [
      "qmp_capabilities",
      "query-status",
      "qom-get", "qom-get", // /machine type, memory-backend
      "qom-get", "qom-get", "qom-get", "qom-get", // backend type, mem-path, size, share
      "query-memory-devices",
      "human-monitor-command", // info mtree
      "qom-list", "qom-get", "qom-get", // ram-below-4g[0] addr, size (no ram-above-4g at 256 MiB)
      "qom-list", "qom-list", // peripheral, peripheral-anon: the vmcoreinfo device
      "query-status", // verifyStillStopped
    ]);
    assert.ok(!commands.some((c) => /dump|migrate|memsave|pmemsave|cont|stop|system_/.test(c)), commands.join(","));

    // QEMU's side: no dump was ever started, and the guest is still paused.
    const q = await QmpClient.connect(guest.sock, { connectTimeoutMs: 5000 });
    try {
      assert.deepEqual(await q.execute("query-dump"), { status: "none", completed: 0, total: 0 });
      assert.equal((await q.execute<{ status: string }>("query-status")).status, "guest-panicked");
    } finally {
      q.close();
    }

    // makedumpfile reads the kdump-compressed zlib file and finds the guest's log.
    assert.ok(statSync(out).size > 1 * MiB);
    const dmesg = join(work, "dmesg.txt");
    execFileSync("makedumpfile", ["--dump-dmesg", out, dmesg], { stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
    const log = readFileSync(dmesg, "latin1");
    assert.ok(log.includes(guest.marker), `marker "${guest.marker}" not in makedumpfile --dump-dmesg output`);
    assert.match(log, /sysrq: Trigger a crash/);

    // The same through the command line: guestcore dump --qmp SOCKET.
    const cliOut = join(work, "cli.kdump");
    const cli = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
    const run = spawnSync(process.execPath, [cli, "dump", "--qmp", guest.sock, "-o", cliOut, "-c", "-d", "31", "--json"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(JSON.parse(run.stdout).codec, "zlib");
    const cliDmesg = join(work, "cli-dmesg.txt");
    execFileSync("makedumpfile", ["--dump-dmesg", cliOut, cliDmesg], { stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
    assert.ok(readFileSync(cliDmesg, "latin1").includes(guest.marker), "marker in the CLI's dump");

    t.diagnostic(`boot to pvpanic pause ${((tPanic - t0) / 1000).toFixed(1)} s; openQemuGuest ${(tOpen - tPanic).toFixed(0)} ms (QMP ${src.qemu.qmpMs} ms); ` +
      `kernel found (VMCOREINFO scan) ${(tKernel - tOpen).toFixed(0)} ms; kdump zlib d31 ${((tDump - tKernel) / 1000).toFixed(2)} s, ${statSync(out).size} bytes`);
  } finally {
    await guest.stop();
    rmSync(work, { recursive: true, force: true });
    assert.ok(!guest.shm || !existsSync(guest.shm), "the /dev/shm backing file is removed");
    assert.equal(guest.proc.exitCode !== null || guest.proc.signalCode !== null, true, "QEMU has exited");
  }
});
