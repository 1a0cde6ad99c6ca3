// guestcore watch against fake QMP servers (test/helpers/fake-qmp.ts) and
// a stand-in for `guestcore recover`: a node script that records the argv
// it was given, checks that QEMU's one QMP client slot is free for it
// (watch let go), optionally sends quit like recover does, and exits with
// a chosen code.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FakeQmp } from "../helpers/fake-qmp.js";
import { waitFor } from "../helpers/wait.js";
import { GuestcoreError } from "../../src/core/errors.js";
import { loadWatchConfig, parseWatchConfig, type WatchConfig } from "../../src/recovery/watch-config.js";
import { Watcher, type WatchEvent, type WatcherOptions } from "../../src/recovery/watch.js";

const CLI = fileURLToPath(new URL("../helpers/watch-cli.js", import.meta.url));

const STANDIN = `
import net from "node:net";
import fs from "node:fs";
const [record, code, holdMs, mode, ...argv] = process.argv.slice(2);
const sock = argv[argv.indexOf("--qmp") + 1];
const t0 = Date.now();
// Beside the record: this stand-in runs (its t0 is taken).
fs.writeFileSync(record + ".started-" + process.pid, "");
console.log("stand-in recover " + argv.join(" "));
console.error("stand-in stderr line");
const done = (greeted, error) => {
  fs.appendFileSync(record, JSON.stringify({ argv, greeted, error, t0, t1: Date.now(), pid: process.pid }) + "\\n");
  process.exit(Number(code));
};
const s = net.createConnection(sock);
// QEMU greets a second client only when the first has left: no greeting, watch still holds it.
const t = setTimeout(() => { s.destroy(); done(false, "no greeting"); }, 2000);
let buf = "";
let stage = 0;
s.setEncoding("utf8");
s.on("error", (e) => { clearTimeout(t); done(false, e.code); });
s.on("data", (d) => {
  buf += d;
  for (let i; (i = buf.indexOf("\\n")) >= 0; ) {
    const msg = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (stage === 0 && msg.QMP) { stage = 1; clearTimeout(t); s.write('{"execute":"qmp_capabilities"}\\n'); }
    else if (stage === 1 && "return" in msg) {
      stage = 2;
      const go = () => {
        if (mode === "quit") s.write('{"execute":"quit"}\\n');
        else { s.end(); done(true); }
      };
      // A number holds that many ms (a recover's run); a path holds until the test creates it (at most 10 s).
      if (/^\\d+$/.test(holdMs)) setTimeout(go, Number(holdMs));
      else {
        const until = Date.now() + 10000;
        const look = () => (fs.existsSync(holdMs) || Date.now() > until ? go() : setTimeout(look, 10));
        look();
      }
    } else if (stage === 2 && "return" in msg) { s.destroy(); done(true); }
  }
});
`;

interface Record {
  argv: string[];
  greeted: boolean;
  error?: string;
  t0: number;
  t1: number;
}

class Fixture {
  readonly dir = mkdtempSync(path.join(tmpdir(), "gc-watch-"));
  readonly record = path.join(this.dir, "record.jsonl");
  readonly events: WatchEvent[] = [];
  readonly servers: FakeQmp[] = [];
  private readonly waiters: Array<{ pred: (e: WatchEvent) => boolean; resolve: (e: WatchEvent) => void }> = [];
  watcher?: Watcher;

  constructor() {
    writeFileSync(path.join(this.dir, "standin.mjs"), STANDIN);
  }

  /** The stand-in's command: exits with `code` after holding QMP for `hold` (ms, or until that file exists), sending quit when asked. */
  command(code: number, hold: number | string = 50, mode: "quit" | "stay" = "quit"): string[] {
    return [process.execPath, path.join(this.dir, "standin.mjs"), this.record, String(code), String(hold), mode];
  }

  async server(rel: string, status?: string): Promise<FakeQmp> {
    const s = await FakeQmp.listen(path.join(this.dir, rel), { status });
    this.servers.push(s);
    return s;
  }

  watch(opts: WatcherOptions): Watcher {
    this.watcher = new Watcher({
      pollMs: 100, retryMinMs: 50, retryMaxMs: 200, connectTimeoutMs: 1000, stopWaitMs: 500,
      ...opts,
      onEvent: (e) => {
        this.events.push(e);
        for (const w of [...this.waiters]) {
          if (w.pred(e)) { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve(e); }
        }
      },
    });
    return this.watcher;
  }

  /** One configured guest with its own server, watched until watch reports it connected. */
  async watchOne(name: string, command: string[]): Promise<FakeQmp> {
    const vm = await this.server(`${name}.qmp`);
    await this.watch({ config: { command, defaultArgs: [], guests: [{ name, qmp: vm.path }] } }).start();
    await this.until((e) => e.type === "watching" && e.guest === name, `watching ${name}`);
    return vm;
  }

  /** The first event (past or future) matching pred; fails after ms. */
  until(pred: (e: WatchEvent) => boolean, what: string, ms = 5000): Promise<WatchEvent> {
    const past = this.events.find(pred);
    if (past) return Promise.resolve(past);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}; events: ${this.events.map((e) => e.type + ("guest" in e ? ":" + e.guest : "")).join(" ")}`)), ms);
      this.waiters.push({ pred, resolve: (e) => { clearTimeout(t); resolve(e); } });
    });
  }

  count(type: WatchEvent["type"], guest?: string): number {
    return this.events.filter((e) => e.type === type && (guest === undefined || ("guest" in e && e.guest === guest))).length;
  }

  records(): Record[] {
    if (!existsSync(this.record)) return [];
    return readFileSync(this.record, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  }

  async close(): Promise<void> {
    await this.watcher?.stop({ signal: "SIGKILL" });
    await Promise.all(this.servers.map((s) => s.close()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const is = (type: WatchEvent["type"], guest?: string) => (e: WatchEvent) => e.type === type && (guest === undefined || ("guest" in e && e.guest === guest));

/** Connections the server accepted while the stand-in ran: its own only, if watch kept away. */
function acceptedDuring(s: FakeQmp, r: Record): number {
  return s.connections.filter((c) => c.acceptedAt >= r.t0 - 5 && c.acceptedAt <= r.t1).length;
}

test("a GUEST_PANICKED guest: watch lets go of its socket and runs recover --qmp SOCK --panicked-at <event ms> ARGS", { timeout: 20_000 }, async () => {
  const f = new Fixture();
  try {
    const vm1 = await f.server("vm1.qmp");
    const cfgFile = path.join(f.dir, "watch.json");
    writeFileSync(cfgFile, JSON.stringify({
      command: f.command(3),
      defaults: { args: ["-d", "31"] },
      // Relative to the config file; {name} is the guest's name.
      guests: [{ name: "vm1", qmp: "vm1.qmp", args: ["-o", "/var/crash/{name}.kdump", "--replacement", "x", "--ready", "serial:/run/vm1.log:login:"] }],
    }));
    const w = f.watch({ config: loadWatchConfig(cfgFile), logDir: path.join(f.dir, "logs"), once: true });
    await w.start();
    await f.until(is("watching", "vm1"), "watching vm1");
    assert.ok(vm1.hasClient);
    vm1.panic({ seconds: 1_700_000_000, microseconds: 123_456 }, { stopDelayMs: 30 });
    await w.finished;

    const [r, ...more] = f.records();
    assert.equal(more.length, 0);
    assert.deepEqual(r.argv, ["recover", "--qmp", vm1.path, "--panicked-at", "1700000000123",
      "-o", "/var/crash/vm1.kdump", "--replacement", "x", "--ready", "serial:/run/vm1.log:login:"]);
    assert.equal(r.greeted, true, `the stand-in got no QMP greeting (${r.error}): watch still held the socket`);
    assert.equal(acceptedDuring(vm1, r), 1, "watch connected again while recover ran");
    assert.ok(vm1.quitAt !== undefined && !existsSync(vm1.path), "the stand-in's quit reached QEMU and the socket went");

    const p = f.events.find(is("panicked", "vm1"));
    assert.ok(p && p.type === "panicked");
    assert.equal(p.from, "event");
    assert.equal(p.stopped, true, "watch waited for the STOP that follows GUEST_PANICKED");
    const x = f.events.find(is("recover-exited", "vm1"));
    assert.ok(x && x.type === "recover-exited");
    assert.equal(x.code, 3);
    assert.deepEqual(w.exits.map((e) => e.code), [3]);
    const log = readFileSync(path.join(f.dir, "logs", "vm1.log"), "utf8");
    assert.match(log, /guestcore watch: vm1 panicked at 2023-11-14T22:13:20\.123Z/);
    assert.match(log, /stand-in recover recover --qmp/);
    assert.match(log, /stand-in stderr line/);
    assert.match(log, /exited with code 3 after/);
  } finally {
    await f.close();
  }
});

test("a guest already panicked when watch connects is recovered, with the connect time as --panicked-at", { timeout: 20_000 }, async () => {
  const f = new Fixture();
  try {
    const vm2 = await f.server("vm2.sock", "guest-panicked");
    writeFileSync(path.join(f.dir, "vm2.args.json"), JSON.stringify(["-o", "/var/crash/own.kdump"]));
    const config: WatchConfig = { command: f.command(0), defaultArgs: ["-o", "/var/crash/{name}.kdump"], guests: [] };
    const before = Date.now();
    const w = f.watch({ dir: f.dir, config, once: true, logDir: path.join(f.dir, "logs") });
    await w.start();
    await w.finished;
    const after = Date.now();
    const [r] = f.records();
    assert.deepEqual(r.argv.slice(0, 4), ["recover", "--qmp", vm2.path, "--panicked-at"]);
    const at = Number(r.argv[4]);
    assert.ok(at >= before && at <= after, `--panicked-at ${at} is not the connect time (${before}..${after})`);
    assert.deepEqual(r.argv.slice(5), ["-o", "/var/crash/own.kdump"], "vm2.args.json beside the socket wins over the defaults");
    assert.equal(r.greeted, true);
    const p = f.events.find(is("panicked", "vm2"));
    assert.ok(p && p.type === "panicked" && p.from === "status");
    assert.match(readFileSync(path.join(f.dir, "logs", "vm2.log"), "utf8"), /already panicked when watch connected; --panicked-at is the connect time/);
  } finally {
    await f.close();
  }
});

test("a socket that appears in the directory is picked up; other files are not", { timeout: 20_000 }, async () => {
  const f = new Fixture();
  try {
    writeFileSync(path.join(f.dir, "junk.qmp"), "not a socket");
    const config: WatchConfig = { command: f.command(0), defaultArgs: ["-o", "/var/crash/{name}.kdump"], guests: [] };
    const w = f.watch({ dir: f.dir, config, once: true });
    await w.start();
    const vm3 = await f.server("vm3.qmp");
    await f.until(is("added", "vm3"), "vm3 added");
    await f.until(is("watching", "vm3"), "watching vm3");
    vm3.panic({ seconds: 1_700_000_100, microseconds: 999_999 });
    await w.finished;
    const [r] = f.records();
    assert.deepEqual(r.argv, ["recover", "--qmp", vm3.path, "--panicked-at", "1700000100999", "-o", "/var/crash/vm3.kdump"]);
    // Scans that found vm3 saw junk.qmp too: it was never taken for a socket.
    assert.equal(f.count("added"), 1);
    assert.deepEqual(f.events.filter((e) => "guest" in e && e.guest === "junk"), [], "a regular file named *.qmp was taken for a socket");
  } finally {
    await f.close();
  }
});

async function twoPanics(maxParallel: number): Promise<{ f: Fixture; records: Record[] }> {
  const f = new Fixture();
  try {
    return await runTwoPanics(f, maxParallel);
  } catch (e) {
    // The caller's finally never sees f: stop the watcher here, or its handles keep the test process up.
    await f.close();
    throw e;
  }
}

async function runTwoPanics(f: Fixture, maxParallel: number): Promise<{ f: Fixture; records: Record[] }> {
  const a = await f.server("a.qmp");
  const b = await f.server("b.qmp");
  // "stay": the stand-in leaves the guests panicked, as a failed recover would.
  // Each holds until `release` exists: the test decides when a recover ends, not a race of timers.
  const release = path.join(f.dir, "release");
  const config: WatchConfig = {
    command: f.command(1, release, "stay"), defaultArgs: [],
    guests: [{ name: "a", qmp: a.path }, { name: "b", qmp: b.path }],
  };
  const w = f.watch({ config, maxParallel });
  await w.start();
  await f.until(is("watching", "a"), "watching a");
  await f.until(is("watching", "b"), "watching b");
  a.panic({ seconds: 1_700_000_200, microseconds: 0 });
  b.panic({ seconds: 1_700_000_200, microseconds: 1000 });
  // One slot: one recover runs while the other waits its turn. Two: both run at once.
  if (maxParallel === 1) {
    await f.until(is("queued"), "the second panic queued");
    await f.until(is("recover-started"), "the first recover started");
  } else {
    await waitFor(() => f.count("recover-started") === 2, "both recovers to start");
  }
  // The running stand-ins have started (their t0 taken) and none has ended before the release.
  const running = () => readdirSync(f.dir).filter((n) => n.startsWith("record.jsonl.started-")).length;
  await waitFor(() => running() === maxParallel, `${maxParallel} stand-in(s) running`);
  assert.equal(f.records().length, 0, "a stand-in ended before its release");
  writeFileSync(release, "");
  await f.until(is("recover-exited", "a"), "a recovered", 10_000);
  await f.until(is("recover-exited", "b"), "b recovered", 10_000);
  return { f, records: f.records() };
}

test("--max-parallel 1 runs two panics' recovers one after the other; a guest left panicked is not recovered twice", { timeout: 20_000 }, async () => {
  const { f, records } = await twoPanics(1);
  try {
    assert.equal(records.length, 2);
    const [x, y] = records.sort((p, q) => p.t0 - q.t0);
    assert.ok(y.t0 >= x.t1, `recovers overlapped: ${x.t0}-${x.t1} and ${y.t0}-${y.t1}`);
    assert.equal(f.count("queued"), 1);
    assert.ok(records.every((r) => r.greeted));
    // Both still panicked: watch reconnects, sees guest-panicked, and leaves them alone.
    await f.until(is("ignored", "a"), "a left alone");
    await f.until(is("ignored", "b"), "b left alone");
    // Watch looks again now and then (every retryMaxMs): two more looks at each, and still no third recover.
    const [sa, sb] = f.servers;
    const seen = [sa.connections.length, sb.connections.length];
    await waitFor(() => sa.connections.length >= seen[0] + 2 && sb.connections.length >= seen[1] + 2, "watch to look at both guests twice more");
    assert.equal(f.records().length, 2, "a guest still panicked after its recover was recovered again");
    assert.equal(f.count("recover-started"), 2);
  } finally {
    await f.close();
  }
});

test("--max-parallel 2 lets the same two recovers overlap (the limit is what serialised them)", { timeout: 20_000 }, async () => {
  const { f, records } = await twoPanics(2);
  try {
    const [x, y] = records.sort((p, q) => p.t0 - q.t0);
    assert.ok(y.t0 < x.t1, "with two slots, the second recover waited for the first");
    assert.equal(f.count("queued"), 0);
  } finally {
    await f.close();
  }
});

test("after recover, a socket that still answers is watched again, and a new panic is recovered", { timeout: 20_000 }, async () => {
  const f = new Fixture();
  try {
    const vm = await f.watchOne("vm", f.command(0, 50, "stay"));
    vm.panic({ seconds: 1_700_000_300, microseconds: 0 });
    await f.until(is("recover-exited", "vm"), "first recover");
    const n = f.events.length;
    const later = (pred: (e: WatchEvent) => boolean) => (e: WatchEvent) => pred(e) && f.events.indexOf(e) >= n;
    // What a replacement on the same socket looks like to QMP: running again.
    vm.status = "running";
    await f.until(later((e) => e.type === "watching" && e.status === "running"), "watching vm again");
    assert.ok(vm.hasClient);
    vm.panic({ seconds: 1_700_000_400, microseconds: 5000 });
    await f.until(later(is("recover-exited", "vm")), "second recover");
    assert.deepEqual(f.records().map((r) => r.argv[4]), ["1700000300000", "1700000400005"]);
  } finally {
    await f.close();
  }
});

test("GUEST_PANICKED with an action other than pause is reported and not recovered", { timeout: 20_000 }, async () => {
  const f = new Fixture();
  try {
    const vm = await f.watchOne("vm", f.command(0));
    vm.panic({ seconds: 1_700_000_500, microseconds: 0 }, { action: "poweroff" });
    const e = await f.until(is("ignored", "vm"), "ignored");
    assert.ok(e.type === "ignored" && /action poweroff/.test(e.reason));
    // A pausing panic on the same connection is recovered: the first was not.
    vm.panic({ seconds: 1_700_000_600, microseconds: 0 });
    await f.until(is("recover-exited", "vm"), "the pausing panic recovered");
    assert.deepEqual(f.records().map((r) => r.argv[4]), ["1700000600000"], "only the pausing panic was recovered");
    assert.equal(f.count("recover-started"), 1);
  } finally {
    await f.close();
  }
});

test("a bad config fails with one line naming the file and the key", () => {
  const bad: Array<[unknown, RegExp]> = [
    [[], /must hold a JSON object/],
    [{ guests: {} }, /guests must be an array/],
    [{ guests: [{ name: "vm1" }] }, /guests\[0\]\.qmp must be the path of a QMP socket/],
    [{ guests: [{ name: "a/b", qmp: "/x" }] }, /guests\[0\]\.name must be a name/],
    [{ guests: [{ name: "vm1", qmp: "/x", args: "-o x" }] }, /guests\[0\]\.args must be an array of strings/],
    [{ guests: [{ name: "vm1", qmp: "/x", socket: "/y" }] }, /unknown key guests\[0\]\.socket/],
    [{ guests: [{ name: "a", qmp: "/x" }, { name: "b", qmp: "/x" }] }, /\/x is also guest "a"'s socket/],
    [{ guests: [{ name: "a", qmp: "/x" }, { name: "a", qmp: "/y" }] }, /the name "a" is used twice/],
    [{ defaults: { args: [1] } }, /defaults\.args must be an array of strings/],
    [{ default: {} }, /unknown key default /],
    [{ command: [] }, /command must name a program/],
  ];
  for (const [json, re] of bad) {
    assert.throws(() => parseWatchConfig(json, "/etc/w.json"), (e: unknown) => {
      assert.ok(e instanceof GuestcoreError, String(e));
      assert.match(e.message, /^\/etc\/w\.json: /);
      assert.match(e.message, re);
      assert.ok(!e.message.includes("\n"), `two lines: ${e.message}`);
      return true;
    }, JSON.stringify(json));
  }
  const dir = mkdtempSync(path.join(tmpdir(), "gc-watch-"));
  try {
    const f = path.join(dir, "w.json");
    writeFileSync(f, '{"guests": [}');
    assert.throws(() => loadWatchConfig(f), (e: unknown) => e instanceof GuestcoreError && /w\.json: not JSON/.test(e.message) && !e.message.includes("\n"));
    assert.throws(() => loadWatchConfig(path.join(dir, "none.json")), /no file .*none\.json/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

interface Run { code: number | null; stdout: string; stderr: string }

function runCli(args: string[], timeoutMs = 15_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => { stdout += d; });
    child.stderr.setEncoding("utf8").on("data", (d: string) => { stderr += d; });
    const t = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`watch did not exit: ${stdout}${stderr}`)); }, timeoutMs);
    // "close", not "exit": the pipes too must be gone before the next test counts handles.
    child.on("close", (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

test("the command line: bad input is one line and exit code 2; --help has examples", { timeout: 20_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "gc-watch-"));
  try {
    const cfg = path.join(dir, "w.json");
    writeFileSync(cfg, JSON.stringify({ guests: [{ name: "vm1", qmp: "/run/vm1.qmp", arg: [] }] }));
    const cases: Array<[string[], RegExp]> = [
      [["watch", "--config", cfg], /^guestcore: .*w\.json: unknown key guests\[0\]\.arg /],
      [["watch", dir, "--max-parallel", "0"], /^guestcore: --max-parallel must be 1 to 64, not "0"$/],
      [["watch", path.join(dir, "nope")], /^guestcore: no directory .*nope$/],
      [["watch"], /^guestcore: give a directory of QMP sockets, --config FILE, or both$/],
    ];
    for (const [args, re] of cases) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      assert.match(r.stderr.trimEnd(), re);
    }
    const help = await runCli(["watch", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Examples:\n {2}guestcore watch \/run\/guestcore\/qmp --log-dir \/var\/log\/guestcore/);
    assert.match(help.stdout, /--max-parallel <n>/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the command line: watch DIR --config FILE --json --once prints JSON events and exits with recover's code", { timeout: 20_000 }, async () => {
  const f = new Fixture();
  try {
    const vm = await f.server("vm7.qmp", "guest-panicked");
    const cfg = path.join(f.dir, "defaults.json");
    writeFileSync(cfg, JSON.stringify({ command: f.command(5), defaults: { args: ["-o", "/var/crash/{name}.kdump"] } }));
    const r = await runCli(["watch", f.dir, "--config", cfg, "--json", "--once", "--log-dir", path.join(f.dir, "logs")]);
    assert.equal(r.code, 5, r.stderr);
    const events = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as WatchEvent);
    assert.deepEqual(events.map((e) => e.type), ["added", "watching", "panicked", "recover-started", "recover-exited"]);
    assert.ok(events.every((e) => typeof e.time === "string"));
    const [rec] = f.records();
    assert.deepEqual(rec.argv.slice(5), ["-o", "/var/crash/vm7.kdump"]);
    assert.equal(rec.argv[2], vm.path);
    assert.equal(rec.greeted, true);
  } finally {
    await f.close();
  }
});

test("stop() ends every connection, retry and poll: no handle is left behind", { timeout: 20_000 }, async () => {
  const f = new Fixture();
  try {
    // Requests (CloseReq, FSReqCallback) are in flight briefly; handles are what keep a process up.
    const handles = () => process.getActiveResourcesInfo().filter((h) => h.endsWith("Wrap") && h !== "TTYWrap").sort();
    const settled = async (want: string[]) => {
      // A destroyed socket's handle goes a loop turn or two later.
      for (let i = 0; i < 50 && JSON.stringify(handles()) !== JSON.stringify(want); i++) await new Promise((r) => setTimeout(r, 20));
      return handles();
    };
    const before = await settled([]);
    const live = await f.server("live.qmp");
    const config: WatchConfig = {
      command: f.command(0), defaultArgs: [],
      // A guest whose QEMU is not there: watch is in its reconnect backoff, of an hour:
    // a stop() that waited for it to run out would fail the test at its timeout.
      guests: [{ name: "gone", qmp: path.join(f.dir, "gone.qmp") }],
    };
    const w = f.watch({ dir: f.dir, config, retryMinMs: 3_600_000, retryMaxMs: 3_600_000 });
    await w.start();
    await f.until(is("watching", "live"), "watching live");
    await f.until(is("unreachable", "gone"), "gone unreachable");
    await w.stop();
    await waitFor(() => !live.hasClient, "the watcher's QMP connection to close", 5000);
    await live.close();
    f.servers.length = 0;
    assert.deepEqual(await settled(before), before, "the watcher left handles behind");
  } finally {
    await f.close();
  }
});
