// What the QMP path reads from the QEMU side is bounded and checked: the
// length of a line (however it is chunked), the shape of each answer, the
// number of RAM regions, and where they lie against the backend's size
// and its file. A monitor that answers wrongly gets one line, not a
// TypeError, a multi-line message or a layout that reads the wrong bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GuestcoreError } from "../../src/core/errors.js";
import { openQemuGuest } from "../../src/sources/qemu-guest.js";
import { QmpClient } from "../../src/sources/qmp.js";
import { FakeQmp } from "../helpers/fake-qmp.js";
import { tempDir } from "../helpers/synthetic.js";

const MiB = 1 << 20;
const GREETING = JSON.stringify({ QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: "" }, capabilities: [] } }) + "\r\n";

/** A peer that greets, then answers every command with `reply(id)` written in `chunk`-sized pieces. */
async function rawPeer(dir: string, reply: (id: string) => string, chunk: number): Promise<{ path: string; close(): void }> {
  const path = join(dir, `raw-${chunk}.sock`);
  const server = net.createServer((c) => {
    c.on("error", () => {});
    c.write(GREETING);
    c.setEncoding("utf8");
    c.on("data", (d: string) => {
      for (const line of d.split("\n").filter(Boolean)) {
        const { id, execute } = JSON.parse(line) as { id: string; execute: string };
        const text = execute === "qmp_capabilities" ? JSON.stringify({ return: {}, id }) + "\n" : reply(id);
        for (let o = 0; o < text.length; o += chunk) c.write(text.slice(o, o + chunk));
      }
    });
  });
  const conns = new Set<net.Socket>();
  server.on("connection", (c) => { conns.add(c); c.on("close", () => conns.delete(c)); });
  await new Promise<void>((r) => server.listen(path, () => r()));
  return { path, close: () => { for (const c of conns) c.destroy(); server.close(); } };
}

test("QMP lines: a long reply in small chunks is read whole; one past the limit ends the connection in one line", async (t) => {
  const dir = tempDir(t);
  const peers: { close(): void }[] = [];
  try {
    const big = "z".repeat(3 * MiB);
    const ok = await rawPeer(dir, (id) => JSON.stringify({ return: big, id }) + "\n", 4096);
    peers.push(ok);
    const c = await QmpClient.connect(ok.path);
    assert.equal((await c.execute<string>("anything")).length, big.length);
    c.close();

    const huge = await rawPeer(dir, (id) => JSON.stringify({ return: "y".repeat(5 * MiB), id }) + "\n", 65536);
    peers.push(huge);
    const h = await QmpClient.connect(huge.path);
    await assert.rejects(h.execute("anything"), (e: Error) => {
      assert.ok(e instanceof GuestcoreError);
      assert.match(e.message, /^QMP anything: QMP .*: a reply longer than 4194304 characters; giving up$/);
      return true;
    });
    assert.ok(h.closed);
  } finally {
    for (const p of peers) p.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

interface Scenario {
  answers: Record<string, (args: Record<string, unknown>) => unknown>;
  file: string;
}

const SIZE = 8 * MiB;

function mtree(lines: string[]): string {
  return ["address-space: memory", "  0000000000000000-ffffffffffffffff (prio 0, i/o): system", ...lines, ""].join("\r\n");
}
const h16 = (n: number) => n.toString(16).padStart(16, "0");
const alias = (name: string, start: number, size: number, offset: number, id = "ram0") =>
  `    ${h16(start)}-${h16(start + size - 1)} (prio 0, ram): alias ${name} @${id} ${h16(offset)}-${h16(offset + size - 1)}`;

/** A stopped q35 guest with an 8 MiB memory-backend-file, as QEMU 7.2 describes it. */
function goodScenario(dir: string): Scenario {
  const file = join(dir, "guest.ram");
  writeFileSync(file, Buffer.alloc(SIZE));
  const props: Record<string, unknown> = {
    "/machine type": "pc-q35-7.2-machine", "/machine memory-backend": "/objects/ram0",
    "/objects/ram0 type": "memory-backend-file", "/objects/ram0 size": SIZE, "/objects/ram0 mem-path": file, "/objects/ram0 share": true,
  };
  return {
    file,
    answers: {
      "qom-get": (a) => props[`${a.path} ${a.property}`],
      "query-memory-devices": () => [],
      "human-monitor-command": () => mtree([alias("ram-below-4g", 0, SIZE, 0)]),
      "qom-list": () => [],
    },
  };
}

async function openWith(dir: string, tweak: (s: Scenario) => void) {
  const s = goodScenario(dir);
  tweak(s);
  const qmp = await FakeQmp.listen(join(dir, "qmp.sock"), { status: "paused" });
  for (const [cmd, f] of Object.entries(s.answers)) qmp.handlers.set(cmd, f);
  try {
    const src = await openQemuGuest(qmp.path, { holdMonitor: false });
    src.close();
    return src;
  } finally {
    await qmp.close();
  }
}

test("openQemuGuest: the well-formed scenario opens (so the refusals below are the answers' doing)", async (t) => {
  const dir = tempDir(t);
  try {
    const src = await openWith(dir, () => {});
    assert.deepEqual(src.qemu.aliases, [{ name: "ram-below-4g", start: 0, size: SIZE, offset: 0 }]);
    assert.equal(src.qemu.layoutSpec, "0x0:0x800000@0x0");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const refusals: [string, (s: Scenario) => void, RegExp][] = [
  ["query-status is not an object", (s) => { s.answers["query-status"] = () => null; }, /^QMP query-status: unexpected answer null$/],
  ["the backend path is a number", (s) => {
    const g = s.answers["qom-get"];
    s.answers["qom-get"] = (a) => (a.property === "memory-backend" ? 42 : g(a));
  }, /^QMP qom-get \/machine memory-backend: unexpected answer 42$/],
  ["mem-path is an object", (s) => {
    const g = s.answers["qom-get"];
    s.answers["qom-get"] = (a) => (a.property === "mem-path" ? { evil: true } : g(a));
  }, /^QMP qom-get \/objects\/ram0 mem-path: unexpected answer \{"evil":true\}$/],
  ["a backend of 2^53 bytes", (s) => {
    const g = s.answers["qom-get"];
    s.answers["qom-get"] = (a) => (a.property === "size" ? 2 ** 53 : g(a));
  }, /^memory backend ram0 reports size 9007199254740992: not a guest's RAM$/],
  ["qom-list answers an object", (s) => { s.answers["qom-list"] = () => ({ length: 1e9 }); }, /^QMP qom-list \/machine\/unattached: unexpected answer/],
  ["qom-list of a million children", (s) => { s.answers["qom-list"] = () => Array.from({ length: 100_000 }, () => 0); }, /^QMP qom-list \/machine\/unattached: 100000 children/],
  ["thousands of RAM regions", (s) => {
    s.answers["human-monitor-command"] = () => mtree(Array.from({ length: 5000 }, (_, i) => alias("ram-below-4g", i * 4096, 4096, i * 4096)));
  }, /^info mtree: ram-below-4g of ram0 appears twice$/],
  ["a region past the backend's end", (s) => {
    s.answers["human-monitor-command"] = () => mtree([alias("ram-below-4g", 0, SIZE / 2, 0), alias("ram-above-4g", 4 * 2 ** 30, SIZE / 2, SIZE)]);
  }, /^ram-above-4g of ram0 \(0x100000000\+0x400000@0x800000\) lies outside the backend's 8388608 bytes/],
  ["two regions over the same backend bytes", (s) => {
    s.answers["human-monitor-command"] = () => mtree([alias("ram-below-4g", 0, SIZE / 2, 0), alias("ram-above-4g", 4 * 2 ** 30, SIZE / 2, SIZE / 4)]);
  }, /^ram-above-4g and ram-below-4g of ram0 map the same backend bytes at 0x200000$/],
  ["a backend larger than its file", (s) => {
    const g = s.answers["qom-get"];
    s.answers["qom-get"] = (a) => (a.property === "size" ? 2 * SIZE : g(a));
    s.answers["human-monitor-command"] = () => mtree([alias("ram-below-4g", 0, 2 * SIZE, 0)]);
  }, /has 8388608 bytes but memory backend ram0 has 16777216: not the file QEMU maps\?$/],
  ["a backend id with a newline", (s) => {
    const g = s.answers["qom-get"];
    s.answers["qom-get"] = (a) => (a.path === "/machine" && a.property === "memory-backend" ? "/objects/ram\n0" : a.path === "/objects/ram\n0" && a.property === "type" ? "memory-backend-ram" : g(a));
  }, /^guest RAM \(\/objects\/ram\\x0a0\) is anonymous memory/],
];

for (const [name, tweak, pattern] of refusals) {
  test(`openQemuGuest refuses in one line: ${name}`, async (t) => {
    const dir = tempDir(t);
    try {
      await assert.rejects(openWith(dir, tweak), (e: Error) => {
        assert.ok(e instanceof GuestcoreError, e.stack);
        assert.doesNotMatch(e.message, /\n/);
        assert.match(e.message, pattern);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
