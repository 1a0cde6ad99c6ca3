// When the replacement VM counts as ready: every --ready form parses and
// each malformed one is a one-line error; the probes answer to real
// things (a console file that appears late and grows, a line written in
// two pieces, a real TCP server that starts after the probe, a QMP event
// from a QMP server on a unix socket) and stop when aborted, without
// piling up abort listeners while they poll.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { getEventListeners } from "node:events";
import net from "node:net";
import { join } from "node:path";
import { parseProbe, waitReady, type ProbeContext } from "../../src/recovery/readiness.js";
import { QmpClient } from "../../src/sources/qmp.js";
import { FakeQmp } from "../helpers/fake-qmp.js";
import { oneLineError } from "../helpers/errors.js";

const dir = mkdtempSync("/dev/shm/guestcore-ready-");
after(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Settles within `ms`, or "pending". */
async function within<T>(p: Promise<T>, ms: number): Promise<T | "pending"> {
  let t: NodeJS.Timeout | undefined;
  const r = await Promise.race([p, new Promise<"pending">((res) => { t = setTimeout(() => res("pending"), ms); })]);
  clearTimeout(t);
  return r;
}

/** A port on 127.0.0.1 that was free a moment ago. */
function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => res(a.port));
    });
  });
}

/** A probe with a deadline, so a broken one fails the test instead of hanging it. */
function probe(spec: string, ctx: ProbeContext, ms = 5000) {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), ms);
  const p = waitReady(parseProbe(spec), { pollMs: 20, ...ctx }, ac.signal).finally(() => clearTimeout(t));
  return { p, ac };
}

// ---- parsing ----

test("parseProbe: every form", () => {
  const f = parseProbe("serial:/run/vm/console.log:login: $");
  assert.equal(f.kind, "file");
  assert.ok(f.kind === "file" && f.path === "/run/vm/console.log" && f.pattern.source === "login: $", "the pattern keeps its colons");
  assert.ok(f.kind === "file" && f.pattern.test("debian login: ") && !f.pattern.test("login: failed"));
  const g = parseProbe("file:c.txt:x");
  assert.ok(g.kind === "file" && g.path === "c.txt");
  for (const spec of ["log:Reached target", "stdout:Reached target"]) {
    const l = parseProbe(spec);
    assert.ok(l.kind === "log" && l.pattern.test("[  OK  ] Reached target Multi-User System."), spec);
  }
  assert.deepEqual(parseProbe("tcp:127.0.0.1:22"), { kind: "tcp", host: "127.0.0.1", port: 22 });
  assert.deepEqual(parseProbe("tcp:[::1]:2222"), { kind: "tcp", host: "::1", port: 2222 });
  assert.deepEqual(parseProbe("tcp:vm.example:65535"), { kind: "tcp", host: "vm.example", port: 65535 });
  assert.deepEqual(parseProbe("qmp:RESUME"), { kind: "qmp", event: "RESUME" });
  assert.deepEqual(parseProbe("qmp:/run/vm/qmp.sock:VSERPORT_CHANGE"), { kind: "qmp", socket: "/run/vm/qmp.sock", event: "VSERPORT_CHANGE" });
});

test("parseProbe: each malformed spec is a one-line error", () => {
  const bad: [string, RegExp][] = [
    ["", /unknown probe ""/],
    ["bogus", /unknown probe "bogus"/],
    ["http:localhost:80", /unknown probe "http"/],
    ["serial", /serial:FILE:REGEX/],
    ["serial:", /serial:FILE:REGEX/],
    ["serial:/c.log", /serial:FILE:REGEX/],
    ["serial::login", /serial:FILE:REGEX/],
    ["serial:/c.log:", /the pattern is empty/],
    ["serial:/c.log:(unclosed", /Invalid regular expression/],
    ["log", /the pattern is empty/],
    ["log:", /the pattern is empty/],
    ["log:[", /Invalid regular expression/],
    ["tcp", /tcp:HOST:PORT/],
    ["tcp:", /tcp:HOST:PORT/],
    ["tcp:host", /tcp:HOST:PORT/],
    ["tcp::22", /tcp:HOST:PORT/],
    ["tcp:host:", /tcp:HOST:PORT/],
    ["tcp:host:0", /tcp:HOST:PORT/],
    ["tcp:host:65536", /tcp:HOST:PORT/],
    ["tcp:host:22.5", /tcp:HOST:PORT/],
    ["tcp:host:ssh", /tcp:HOST:PORT/],
    ["qmp", /qmp:EVENT or qmp:SOCKET:EVENT/],
    ["qmp:", /qmp:EVENT or qmp:SOCKET:EVENT/],
    // A probe that could never answer: no event, or no socket.
    ["qmp:/run/vm/qmp.sock:", /qmp:EVENT or qmp:SOCKET:EVENT/],
    ["qmp::RESUME", /qmp:EVENT or qmp:SOCKET:EVENT/],
  ];
  for (const [spec, re] of bad) {
    assert.throws(() => parseProbe(spec), oneLineError(re), `"${spec}"`);
    assert.throws(() => parseProbe(spec), (e: Error) => e.message.startsWith(`--ready ${spec}`), `"${spec}" names itself`);
  }
});

// ---- a console file ----

test("file probe: the file appears late and grows; a line written in two pieces matches once whole", async () => {
  const path = join(dir, "console.log");
  const { p } = probe(`serial:${path}:^Welcome to (\\w+) READY$`, {});
  assert.equal(await within(p, 150), "pending", "no file yet");
  writeFileSync(path, "SeaBIOS (version 1.16)\r\nBooting from Hard Disk...\r\n");
  assert.equal(await within(p, 150), "pending");
  appendFileSync(path, "Welcome to Debian REA");
  assert.equal(await within(p, 200), "pending", "half a line is not a line");
  appendFileSync(path, "DY\r\nmore output\r\n");
  assert.equal(await p, `${path}: Welcome to Debian READY`, "a CRLF line matches a pattern anchored with $");
});

test("file probe: a line without newline is cut at its cap, so a megabyte of it cannot match a long pattern", async () => {
  const path = join(dir, "flood.log");
  // Uncut, the 1 MiB line would match x{140000} and answer first; cut
  // to the follower's 64 KiB (plus one read slice) it cannot. (Anchored:
  // unanchored, V8 tries the repeat from every offset of the line.)
  const { p } = probe(`serial:${path}:^x{140000}|READY`, {});
  for (let i = 0; i < 16; i++) {
    appendFileSync(path, "x".repeat(64 << 10));
    if (i % 4 === 0) await sleep(30); // the follower reads while the line grows
  }
  assert.equal(await within(p, 150), "pending");
  appendFileSync(path, "\nREADY\n");
  assert.equal(await p, `${path}: READY`);
});

test("log probe: reads the replacement's own output log; without one it is an error", async () => {
  const path = join(dir, "replacement.out");
  writeFileSync(path, "qemu-system-x86_64: warning: host doesn't support requested feature\nguest agent up\n");
  const { p } = probe("log:agent up", { logPath: path });
  assert.equal(await p, "output: guest agent up");
  await assert.rejects(probe("log:agent up", {}).p, oneLineError(/needs the replacement's output log/));
});

// ---- TCP ----

test("tcp probe: a real server on 127.0.0.1 that starts listening after the probe began", async () => {
  const port = await freePort();
  const { p } = probe(`tcp:127.0.0.1:${port}`, {});
  assert.equal(await within(p, 300), "pending", "refused while nothing listens");
  let accepted = 0;
  const server = net.createServer((sock) => { accepted++; sock.destroy(); });
  await new Promise<void>((res) => server.listen(port, "127.0.0.1", () => res()));
  try {
    assert.equal(await p, `tcp 127.0.0.1:${port} accepts`);
    assert.ok(accepted >= 1, "the server saw the probe's connection");
  } finally {
    await new Promise((res) => server.close(res));
  }
});

// ---- QMP ----

test("qmp probe: a QMP server that appears late; other events do not count, the named one does", async () => {
  const sock = join(dir, "replacement.qmp");
  const clients: QmpClient[] = [];
  let cached: Promise<QmpClient | undefined> | undefined;
  const monitor = (socket?: string) => {
    assert.equal(socket, sock, "the probe asks for the socket it names");
    // Like Replacement.monitor: one shared connection, retried while QEMU is not up.
    cached ??= QmpClient.connect(sock, { connectTimeoutMs: 500 }).then((q) => { clients.push(q); return q; }, () => { cached = undefined; return undefined; });
    return cached;
  };
  const { p } = probe(`qmp:${sock}:VSERPORT_CHANGE`, { monitor });
  assert.equal(await within(p, 300), "pending", "no QMP server yet");
  const fake = await FakeQmp.listen(sock);
  try {
    for (let i = 0; i < 200 && !fake.hasClient; i++) await sleep(10);
    assert.ok(fake.hasClient, "the probe connected once the socket existed");
    fake.emit("RESUME");
    fake.emit("NIC_RX_FILTER_CHANGED", { path: "/machine/peripheral-anon/device[0]/virtio-backend" });
    assert.equal(await within(p, 300), "pending", "other events are not the one named");
    fake.emit("VSERPORT_CHANGE", { id: "channel0", open: true });
    assert.equal(await p, "QMP event VSERPORT_CHANGE");
    assert.deepEqual(clients[0].events.map((e) => e.event), ["RESUME", "NIC_RX_FILTER_CHANGED", "VSERPORT_CHANGE"]);
  } finally {
    for (const c of clients) c.close();
    await fake.close();
  }
});

test("qmp probe: an event that came before the probe looked counts", async () => {
  const sock = join(dir, "early.qmp");
  const fake = await FakeQmp.listen(sock);
  const q = await QmpClient.connect(sock);
  try {
    fake.emit("RESET", { guest: true });
    for (let i = 0; i < 200 && q.events.length === 0; i++) await sleep(10);
    const t0 = performance.now();
    assert.equal(await probe("qmp:RESET", { monitor: async (s) => { assert.equal(s, undefined); return q; } }).p, "QMP event RESET");
    assert.ok(performance.now() - t0 < 500, "at once, not after a wait");
  } finally {
    q.close();
    await fake.close();
  }
});

// ---- stopping ----

test("every probe stops when aborted, with one-line errors, and polling does not pile up abort listeners", async () => {
  const port = await freePort();
  const specs: [string, ProbeContext][] = [
    [`serial:${join(dir, "never.log")}:READY`, {}],
    [`tcp:127.0.0.1:${port}`, {}],
    ["qmp:RESUME", { monitor: async () => undefined }],
  ];
  for (const [spec, ctx] of specs) {
    const ac = new AbortController();
    const p = waitReady(parseProbe(spec), { pollMs: 5, ...ctx }, ac.signal);
    p.catch(() => {});
    let listeners: number;
    try {
      await sleep(400);
      listeners = getEventListeners(ac.signal, "abort").length;
    } finally {
      ac.abort();
    }
    const t0 = performance.now();
    await assert.rejects(p, oneLineError(/readiness probe stopped/), spec);
    assert.ok(performance.now() - t0 < 1500, `${spec} stopped within 1.5 s`);
    // A probe polls every few ms for as long as recover waits (up to ten
    // minutes): each wait must take its abort listener back.
    assert.ok(listeners <= 2, `${spec}: ${listeners} abort listeners after 400 ms`);
  }
});
