// openQemuGuest against real QEMU processes that never boot a kernel (-S,
// "prelaunch"): the RAM layout QMP reports for guests with RAM above 4 GiB,
// and every refusal, each a one-line GuestcoreError. Each QEMU lives for
// well under a second; all are killed and their /dev/shm files removed.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestcoreError } from "../../src/core/errors.js";
import { openQemuGuest, parseMtreeRamAliases } from "../../src/sources/qemu-guest.js";
import { QmpClient } from "../../src/sources/qmp.js";
import { launchGuest, type LaunchOptions } from "../helpers/qemu-guest.js";
import { waitFor } from "../helpers/wait.js";

const GiB = 2 ** 30;
const MiB = 2 ** 20;

async function withGuest(opts: LaunchOptions, fn: (g: ReturnType<typeof launchGuest>) => Promise<void>): Promise<void> {
  const g = launchGuest({ stopped: true, ...opts });
  try {
    // QEMU creates the socket a moment after it starts.
    const q = await QmpClient.connect(g.sock, { waitForSocket: true, connectTimeoutMs: 10_000 });
    q.close();
    // QEMU lets go of this client asynchronously; the next one waits for its greeting (bounded by its connect timeout) until it has.
    await fn(g);
  } finally {
    await g.stop();
  }
}

/** Asserts a GuestcoreError whose one-line message matches re. */
async function refuses(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GuestcoreError, `not a GuestcoreError: ${e}`);
    assert.ok(!e.message.includes("\n"), `more than one line: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

test("parseMtreeRamAliases reads ram-below-4g/ram-above-4g of the backend from info mtree (QEMU 7.2, q35 4 GiB)", () => {
  const text = [
    "address-space: cpu-memory-0",
    "address-space: memory",
    "  0000000000000000-ffffffffffffffff (prio 0, i/o): system",
    "    0000000000000000-000000007fffffff (prio 0, ram): alias ram-below-4g @ram0 0000000000000000-000000007fffffff",
    "    0000000000000000-ffffffffffffffff (prio -1, i/o): pci",
    "      00000000000e0000-00000000000fffff (prio 1, rom): alias isa-bios @pc.bios 0000000000020000-000000000003ffff",
    "    00000000000c0000-00000000000c3fff (prio 1, ram): alias pam-rom @ram0 00000000000c0000-00000000000c3fff",
    "    0000000100000000-000000017fffffff (prio 0, ram): alias ram-above-4g @ram0 0000000080000000-00000000ffffffff",
    "",
    "address-space: cpu-smm-0",
    "  0000000000000000-ffffffffffffffff (prio 0, i/o): memory",
    "    0000000000000000-ffffffffffffffff (prio 0, i/o): alias memory @system 0000000000000000-ffffffffffffffff",
    "",
    "memory-region: system",
    "  0000000000000000-ffffffffffffffff (prio 0, i/o): system",
    "    0000000000000000-00000000ffffffff (prio 0, ram): alias ram-below-4g @ram0 0000000000000000-00000000ffffffff",
    "",
  ].join("\n");
  assert.deepEqual(parseMtreeRamAliases(text, "ram0"), [
    { name: "ram-below-4g", start: 0, size: 2 * GiB, offset: 0 },
    { name: "ram-above-4g", start: 4 * GiB, size: 2 * GiB, offset: 2 * GiB },
  ]);
  assert.deepEqual(parseMtreeRamAliases(text, "other"), []);
  assert.equal(parseMtreeRamAliases("memory-region: system\n  0-f (prio 0, i/o): system\n", "ram0"), undefined);
});

test("QMP layout of a 4 GiB q35 guest: GPA 0-2 GiB at file offset 0, GPA 4-6 GiB at 2 GiB", { timeout: 30_000 }, async () => {
  await withGuest({ memMiB: 4096, machine: "q35" }, async (g) => {
    // Prelaunch is not a stopped crashed guest: refused unless allowRunning.
    await refuses(openQemuGuest(g.sock), /state prelaunch/);
    const src = await openQemuGuest(g.sock, { allowRunning: true });
    try {
      assert.equal(src.qemu.layoutFrom, "info mtree + qom");
      assert.deepEqual(src.segments.map((s) => [s.start, s.end, s.fileOffset]), [[0, 2 * GiB, 0], [4 * GiB, 6 * GiB, 2 * GiB]]);
      assert.equal(src.qemu.layoutSpec, "0x0:0x80000000@0x0,0x100000000:0x80000000@0x80000000");
      assert.equal(src.qemu.backend.size, 4 * GiB);
    } finally {
      src.close();
    }
  });
});

test("QMP layout of a 4 GiB pc (i440fx) guest: split at 3 GiB", { timeout: 30_000 }, async () => {
  await withGuest({ memMiB: 4096, machine: "pc" }, async (g) => {
    const src = await openQemuGuest(g.sock, { allowRunning: true, holdMonitor: false });
    try {
      assert.deepEqual(src.segments.map((s) => [s.start, s.end, s.fileOffset]), [[0, 3 * GiB, 0], [4 * GiB, 5 * GiB, 3 * GiB]]);
    } finally {
      src.close();
    }
  });
});

test("openQemuGuest refuses guests it cannot read, in one line each", { timeout: 60_000 }, async () => {
  await withGuest({ backend: "plain" }, async (g) => {
    await refuses(openQemuGuest(g.sock, { allowRunning: true }), /pc\.ram.*anonymous memory.*-machine memory-backend=ram0/);
  });
  await withGuest({ backend: "private-file" }, async (g) => {
    await refuses(openQemuGuest(g.sock, { allowRunning: true }), /share=off.*use share=on/);
  });
  const dir = `/dev/shm/guestcore-test-dir.${process.pid}`;
  mkdirSync(dir);
  await withGuest({ memPath: dir }, async (g) => {
    await refuses(openQemuGuest(g.sock, { allowRunning: true }), /is a directory/);
  });
  await withGuest({}, async (g) => {
    rmSync(g.shm!); // QEMU keeps its mapping; the name is gone
    await refuses(openQemuGuest(g.sock, { allowRunning: true }), /file .* is not accessible: ENOENT/);
  });
  // A guest that runs (booting the kernel).
  await withGuest({ stopped: false }, async (g) => {
    await refuses(openQemuGuest(g.sock), /is running \(status running\)/);
  });
});

test("openQemuGuest: no socket, not QEMU, a silent peer, a busy monitor", { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "gc-qmp-"));
  const servers: net.Server[] = [];
  try {
    await refuses(openQemuGuest(join(dir, "none.sock")), /no QMP socket at/);
    const listen = (name: string, onConn: (c: net.Socket) => void) => new Promise<string>((resolve) => {
      const s = net.createServer((c) => {
        c.on("error", () => {}); // the client hangs up on us: expected
        onConn(c);
      });
      servers.push(s);
      const p = join(dir, name);
      s.listen(p, () => resolve(p));
    });
    const ssh = await listen("ssh.sock", (c) => c.end("SSH-2.0-OpenSSH_9.2\r\n"));
    await refuses(openQemuGuest(ssh), /is not a QEMU QMP socket/);
    const json = await listen("json.sock", (c) => c.end('{"hello": "world"}\n'));
    await refuses(openQemuGuest(json), /is not a QEMU QMP socket/);
    const silent = await listen("silent.sock", () => {});
    await refuses(openQemuGuest(silent, { commandTimeoutMs: 300 }), /no QMP greeting within 300 ms/);
    const huge = await listen("huge.sock", (c) => c.write("x".repeat(20 * MiB)));
    await refuses(openQemuGuest(huge, { commandTimeoutMs: 3000 }), /is not a QEMU QMP socket \(it sent "xxxx/);
    const bigJson = await listen("bigjson.sock", (c) => c.write('{"QMP": "' + "y".repeat(MiB)));
    await refuses(openQemuGuest(bigJson, { commandTimeoutMs: 3000 }), /is not a QEMU QMP socket/);
  } finally {
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  }
  // QEMU serves one QMP client at a time: while a source holds the monitor, a second one waits for a greeting.
  await withGuest({}, async (g) => {
    const src = await openQemuGuest(g.sock, { allowRunning: true });
    try {
      await refuses(openQemuGuest(g.sock, { allowRunning: true, commandTimeoutMs: 500 }), /no QMP greeting.*another client is connected/);
    } finally {
      src.close();
    }
  });
});

test("a guest resumed by another monitor fails reads and verifyStillStopped", { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "gc-qmp2-"));
  const sock2 = join(dir, "qmp2.sock");
  try {
    await withGuest({ extraArgs: ["-qmp", `unix:${sock2},server=on,wait=off`] }, async (g) => {
      const src = await openQemuGuest(g.sock, { allowRunning: true });
      try {
        const buf = new Uint8Array(4096);
        src.readBatch([{ paddr: 0x100000, dst: buf }]);
        await src.verifyStillStopped();
        const other = await QmpClient.connect(sock2, { waitForSocket: true });
        try {
          await other.execute("cont");
        } finally {
          other.close();
        }
        // The RESUME event reaches every monitor.
        await waitFor(() => src.resumed, "RESUME on our monitor", 5000);
        assert.throws(() => src.readBatch([{ paddr: 0x100000, dst: buf }]), /resumed while its memory was being read/);
        await refuses(src.verifyStillStopped(), /resumed/);
        assert.ok(!src.commands.includes("cont"));
      } finally {
        src.close();
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
