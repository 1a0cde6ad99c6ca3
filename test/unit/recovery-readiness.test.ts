// When the replacement VM counts as ready: every --ready form parses and
// each malformed one is a one-line error; the probes answer to real
// things (a console file that appears late and grows, a line written in
// two pieces, a real TCP server that starts after the probe, a QMP event
// from a QMP server on a unix socket) and stop when aborted, without
// piling up abort listeners while they poll. "Not yet" is asserted after
// the probe has demonstrably looked (polls on a virtual clock, refused
// connections counted), never after a fixed sleep.
import { test, after, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { getEventListeners } from "node:events";
import net from "node:net";
import { join } from "node:path";
import { parseProbe, waitReady, type ProbeContext } from "../../src/recovery/readiness.js";
import { QmpClient } from "../../src/sources/qmp.js";
import { FakeQmp } from "../helpers/fake-qmp.js";
import { oneLineError } from "../helpers/errors.js";
import { VirtualClock } from "../helpers/virtual-clock.js";
import { stateOf, waitFor } from "../helpers/wait.js";

const dir = mkdtempSync("/dev/shm/guestcore-ready-");
after(() => rmSync(dir, { recursive: true, force: true }));

/** Counts the TCP connections the code under test opens that are refused. */
function countRefused(t: TestContext): { refused: number } {
  const seen = { refused: 0 };
  const connect = net.connect;
  t.mock.method(net, "connect", ((...args: Parameters<typeof net.connect>) => {
    const s = connect(...args);
    s.once("error", () => seen.refused++);
    return s;
  }) as typeof net.connect);
  return seen;
}

/** `p`, or a failure naming `what` if it has not settled after `ms`: a probe that ignores its abort fails instead of hanging. */
function bounded<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_r, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not settled after ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(timer));
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

test("file probe: the file appears late and grows; a line written in two pieces matches once whole", async (t) => {
  // The probe polls every 20 ms of this clock: 200 ms are ten looks at the file.
  const clock = new VirtualClock(t);
  const path = join(dir, "console.log");
  const { p } = probe(`serial:${path}:^Welcome to (\\w+) READY$`, {});
  await clock.advance(200);
  assert.equal(await stateOf(p), "pending", "no file yet");
  writeFileSync(path, "SeaBIOS (version 1.16)\r\nBooting from Hard Disk...\r\n");
  await clock.advance(200);
  assert.equal(await stateOf(p), "pending");
  appendFileSync(path, "Welcome to Debian REA");
  await clock.advance(200);
  assert.equal(await stateOf(p), "pending", "half a line is not a line");
  appendFileSync(path, "DY\r\nmore output\r\n");
  assert.equal(await clock.run(p), `${path}: Welcome to Debian READY`, "a CRLF line matches a pattern anchored with $");
  assert.ok(clock.now < 5000, "answered before the probe's deadline");
});

test("file probe: a line without newline is cut at its cap, so a megabyte of it cannot match a long pattern", async (t) => {
  const clock = new VirtualClock(t);
  const path = join(dir, "flood.log");
  // Uncut, the 1 MiB line would match x{140000} and answer first; cut
  // to the follower's 64 KiB (plus one read slice) it cannot. (Anchored:
  // unanchored, V8 tries the repeat from every offset of the line.)
  const { p } = probe(`serial:${path}:^x{140000}|READY`, {});
  for (let i = 0; i < 16; i++) {
    appendFileSync(path, "x".repeat(64 << 10));
    if (i % 4 === 0) await clock.advance(40); // two looks while the line grows
  }
  await clock.advance(200);
  assert.equal(await stateOf(p), "pending");
  appendFileSync(path, "\nREADY\n");
  assert.equal(await clock.run(p), `${path}: READY`);
});

test("log probe: reads the replacement's own output log; without one it is an error", async () => {
  const path = join(dir, "replacement.out");
  writeFileSync(path, "qemu-system-x86_64: warning: host doesn't support requested feature\nguest agent up\n");
  const { p } = probe("log:agent up", { logPath: path });
  assert.equal(await p, "output: guest agent up");
  await assert.rejects(probe("log:agent up", {}).p, oneLineError(/needs the replacement's output log/));
});

// ---- TCP ----

test("tcp probe: a real server on 127.0.0.1 that starts listening after the probe began", async (t) => {
  const port = await freePort();
  const seen = countRefused(t);
  const { p } = probe(`tcp:127.0.0.1:${port}`, {});
  await waitFor(() => seen.refused >= 2, "two refused connections");
  assert.equal(await stateOf(p), "pending", "refused while nothing listens");
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
  let failed = 0;
  const monitor = (socket?: string) => {
    assert.equal(socket, sock, "the probe asks for the socket it names");
    // Like Replacement.monitor: one shared connection, retried while QEMU is not up.
    cached ??= QmpClient.connect(sock, { connectTimeoutMs: 500 }).then((q) => { clients.push(q); return q; }, () => { cached = undefined; failed++; return undefined; });
    return cached;
  };
  const { p } = probe(`qmp:${sock}:VSERPORT_CHANGE`, { monitor });
  await waitFor(() => failed >= 2, "two failed connections to the absent socket");
  assert.equal(await stateOf(p), "pending", "no QMP server yet");
  const fake = await FakeQmp.listen(sock);
  try {
    // The server sees the negotiation a moment before the client's connect resolves.
    await waitFor(() => fake.hasClient && clients.length === 1, "the probe to connect once the socket existed", 5000);
    fake.emit("RESUME");
    fake.emit("NIC_RX_FILTER_CHANGED", { path: "/machine/peripheral-anon/device[0]/virtio-backend" });
    await waitFor(() => clients[0].events.length >= 2, "the probe's client to receive both events", 5000);
    assert.equal(await stateOf(p), "pending", "other events are not the one named");
    fake.emit("VSERPORT_CHANGE", { id: "channel0", open: true });
    assert.equal(await p, "QMP event VSERPORT_CHANGE");
    assert.deepEqual(clients[0].events.map((e) => e.event), ["RESUME", "NIC_RX_FILTER_CHANGED", "VSERPORT_CHANGE"]);
  } finally {
    for (const c of clients) c.close();
    await fake.close();
  }
});

test("qmp probe: an event that came before the probe looked counts", async (t) => {
  const sock = join(dir, "early.qmp");
  const fake = await FakeQmp.listen(sock);
  const q = await QmpClient.connect(sock);
  try {
    fake.emit("RESET", { guest: true });
    await waitFor(() => q.events.length > 0, "the client to receive RESET", 5000);
    const waits = t.mock.method(q, "waitEvent");
    assert.equal(await probe("qmp:RESET", { monitor: async (s) => { assert.equal(s, undefined); return q; } }).p, "QMP event RESET");
    assert.equal(waits.mock.callCount(), 0, "at once, from the events already seen, not after waiting for another");
  } finally {
    q.close();
    await fake.close();
  }
});

// ---- stopping ----

// A probe polls every few ms for as long as recover waits (up to ten
// minutes): each wait must take its abort listener back.
async function stopsWhenAborted(spec: string, ctx: ProbeContext, polled: () => Promise<void>, settle: (p: Promise<unknown>) => Promise<unknown>): Promise<void> {
  const ac = new AbortController();
  const p = waitReady(parseProbe(spec), { pollMs: 5, ...ctx }, ac.signal);
  p.catch(() => {});
  let listeners: number;
  try {
    await polled();
    listeners = getEventListeners(ac.signal, "abort").length;
  } finally {
    ac.abort();
  }
  await settle(assert.rejects(p, oneLineError(/readiness probe stopped/), spec));
  assert.ok(listeners <= 2, `${spec}: ${listeners} abort listeners after polling`);
}

test("every probe stops when aborted, with one-line errors, and polling does not pile up abort listeners", async (t) => {
  await t.test("serial", async (t) => {
    // 80 polls of 5 ms on the virtual clock.
    const clock = new VirtualClock(t);
    await stopsWhenAborted(`serial:${join(dir, "never.log")}:READY`, {}, () => clock.advance(400), (p) => clock.run(p));
  });
  await t.test("tcp", async (t) => {
    const port = await freePort();
    const seen = countRefused(t);
    await stopsWhenAborted(`tcp:127.0.0.1:${port}`, {}, () => waitFor(() => seen.refused >= 3, "three refused connections"), (p) => bounded(p, "tcp probe after abort"));
  });
  await t.test("qmp", async () => {
    let asked = 0;
    await stopsWhenAborted("qmp:RESUME", { monitor: async () => { asked++; return undefined; } }, () => waitFor(() => asked >= 3, "three looks for the monitor"),
      (p) => bounded(p, "qmp probe after abort"));
  });
});
