// Rate policies of recover, measured from outside the process: the bytes
// its write(2) calls hand the kernel (/proc/PID/io wchar), sampled by the
// test, on the real q35-256m capture at dump level 1 (~135 MB of output).
//  - fixed holds its rate within 10 % over 5-second windows;
//  - adaptive yields while the replacement's disk is busy (its QMP
//    query-blockstats counters, served here by a stand-in monitor whose
//    counters the test drives) and takes the bandwidth back when idle.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { realFixture } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";
import { FakeQmp } from "../helpers/fake-qmp.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const MB = 1 << 20;

function wchar(pid: number): number | undefined {
  try {
    return Number(/^wchar: (\d+)/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"))![1]);
  } catch {
    return undefined;
  }
}

interface Sample { t: number; bytes: number }

/** Run recover and sample its wchar every `everyMs` until it exits. */
function sampled(args: string[], everyMs: number, onTick?: (t: number) => void): Promise<{ code: number | null; stdout: string; stderr: string; samples: Sample[] }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let stdout = "";
    p.stderr!.on("data", (d) => (stderr += d));
    p.stdout!.on("data", (d) => (stdout += d));
    const samples: Sample[] = [];
    const t0 = performance.now();
    const timer = setInterval(() => {
      const b = wchar(p.pid!);
      const t = performance.now() - t0;
      if (b !== undefined) samples.push({ t, bytes: b });
      onTick?.(t);
    }, everyMs);
    p.on("exit", (code) => {
      clearInterval(timer);
      resolve({ code, stdout, stderr, samples });
    });
  });
}

/** Bytes per second between the samples nearest to times a and b. */
function rateBetween(s: Sample[], a: number, b: number): number {
  const near = (t: number) => s.reduce((best, x) => (Math.abs(x.t - t) < Math.abs(best.t - t) ? x : best));
  const x = near(a);
  const y = near(b);
  return ((y.bytes - x.bytes) * 1000) / (y.t - x.t);
}

test("rate policy fixed holds its rate within 10 % over every 5-second window", { timeout: 120_000 }, async (t) => {
  const fx = realFixture("q35-256m");
  const dir = tempDir();
  const mem = `/dev/shm/guestcore-test-fixed.${process.pid}.ram`;
  try {
    copyFileSync(fx.raw, mem);
    const rate = 8 * MB;
    const r = await sampled(["recover", "--mem-path", mem, "-o", join(dir, "d1.kdump"), "-d", "1", "--rate", `fixed:${rate}`], 100);
    assert.equal(r.code, 0, r.stderr);
    const s = r.samples;
    // The steady part: from the first megabyte written to a second before the end.
    const start = s.find((x) => x.bytes > s[0].bytes + MB)!.t;
    const end = s[s.length - 1].t - 1000;
    assert.ok(end - start >= 10_000, `only ${(end - start) / 1000} s of writing`);
    const windows: number[] = [];
    for (let a = start; a + 5000 <= end; a += 1000) windows.push(rateBetween(s, a, a + 5000));
    t.diagnostic(`fixed:${rate / MB}M, ${windows.length} windows of 5 s: ${windows.map((w) => (w / MB).toFixed(2)).join(" ")} MiB/s`);
    for (const w of windows) assert.ok(Math.abs(w - rate) <= 0.1 * rate, `a 5-s window wrote ${(w / MB).toFixed(2)} MiB/s, not ${rate / MB} ±10 %`);
  } finally {
    rmSync(mem, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test("rate policy adaptive yields while the replacement's disk is busy and takes the idle bandwidth back", { timeout: 120_000 }, async (t) => {
  const fx = realFixture("q35-256m");
  const dir = tempDir();
  const mem = `/dev/shm/guestcore-test-adaptive.${process.pid}.ram`;
  const sock = join(dir, "replacement.qmp");
  const monitor = await FakeQmp.listen(sock);
  // The replacement's disk counters: they grow by 30 MB/s from 3 s to 7 s after start, else stay.
  let rd = 0;
  let ops = 0;
  let last = performance.now();
  let busy = false;
  monitor.handlers.set("query-blockstats", () => {
    const now = performance.now();
    if (busy) {
      rd += ((now - last) / 1000) * 30 * MB;
      ops += ((now - last) / 1000) * 400;
    }
    last = now;
    return [{ device: "", qdev: "/machine/peripheral-anon/device[0]/virtio-backend", stats: { rd_bytes: Math.round(rd), wr_bytes: 0, rd_operations: Math.round(ops), wr_operations: 0, flush_operations: 0, rd_total_time_ns: Math.round(ops) * 200_000, wr_total_time_ns: 0, flush_total_time_ns: 0 } }];
  });
  let replacementPid: number | undefined;
  try {
    copyFileSync(fx.raw, mem);
    const r = await sampled(["recover", "--mem-path", mem, "-o", join(dir, "d1.kdump"), "-d", "1",
      "--rate", "adaptive:floor=2M,max=24M,interval=100", "--replacement", "exec sleep 300", "--replacement-qmp", sock, "--json"], 100,
      (t) => { busy = t >= 3000 && t < 7000; });
    assert.equal(r.code, 0, r.stderr);
    replacementPid = JSON.parse(r.stdout).replacement?.pid;
    const s = r.samples;
    const idleBefore = rateBetween(s, 1500, 3000);
    const whileBusy = rateBetween(s, 3800, 7000);
    const idleAfter = rateBetween(s, 7800, Math.min(9500, s[s.length - 1].t - 300));
    t.diagnostic(`dump write rate: ${(idleBefore / MB).toFixed(1)} MiB/s idle, ${(whileBusy / MB).toFixed(1)} MiB/s while the replacement reads 30 MB/s, ${(idleAfter / MB).toFixed(1)} MiB/s idle again`);
    assert.ok(monitor.commands.filter((c) => c === "query-blockstats").length >= 20, "the policy asked the replacement's monitor");
    assert.ok(whileBusy < 0.25 * idleBefore, "the dump yields while the replacement is busy");
    assert.ok(whileBusy <= 2.6 * MB, `while busy the dump keeps about its floor (${(whileBusy / MB).toFixed(2)} MiB/s)`);
    assert.ok(idleAfter > 3 * whileBusy, "and takes the bandwidth back once the replacement is idle");
  } finally {
    if (replacementPid) try { process.kill(-replacementPid, "SIGKILL"); } catch { /* gone */ }
    await monitor.close();
    rmSync(mem, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--start-when-room: the replacement starts at attach when the room is there, and only at the end when it never is", { timeout: 120_000 }, async () => {
  const fx = realFixture("q35-256m");
  const dir = tempDir();
  const mem = `/dev/shm/guestcore-test-room.${process.pid}.ram`;
  const pids: number[] = [];
  try {
    for (const [room, when] of [["1M", "at once"], ["1T", "never"]] as const) {
      copyFileSync(fx.raw, mem);
      const r = await sampled(["recover", "--mem-path", mem, "-o", join(dir, `room-${room}.kdump`), "-d", "31",
        "--replacement", "exec sleep 300", "--start-when-room", room, "--json"], 1000);
      assert.equal(r.code, 0, r.stderr);
      const rep = JSON.parse(r.stdout);
      pids.push(rep.replacement.pid);
      const p = rep.timeline.phases;
      if (when === "at once") {
        assert.ok(p["replacement-started"].t <= p["classified"].t, "started before classifying");
      } else {
        // No room ever: the replacement waits for everything to be released, at the end.
        assert.ok(p["replacement-started"].t >= p["dump-complete"].t, "started once the crashed guest was gone");
        assert.equal(rep.heldBytes.atReplacementStart, 0);
      }
    }
  } finally {
    for (const pid of pids) try { process.kill(-pid, "SIGKILL"); } catch { /* gone */ }
    rmSync(mem, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a rerun after recover was killed does not start a second replacement beside the first", { timeout: 120_000 }, async () => {
  const fx = realFixture("q35-256m");
  const dir = tempDir();
  const mem = `/dev/shm/guestcore-test-adopt.${process.pid}.ram`;
  const out = join(dir, "adopt.kdump");
  // A duration no other sleep has: how pgrep tells our replacement apart.
  const marker = `300.${process.pid}`;
  const args = ["recover", "--mem-path", mem, "-o", out, "-d", "1", "--rate", "fixed:8M", "--replacement", `exec sleep ${marker}`, "--json"];
  const replacements = () => spawnSync("pgrep", ["-f", `^sleep ${marker.replace(".", "\\.")}$`], { encoding: "utf8" }).stdout.trim().split("\n").filter(Boolean).map(Number);
  try {
    copyFileSync(fx.raw, mem);
    // Killed once the replacement runs (its start is in the journal by then).
    await new Promise<void>((resolve) => {
      // Without --json, recover prints its phases on stderr.
      const p = spawn(process.execPath, [CLI, ...args.filter((a) => a !== "--json")], { stdio: ["ignore", "ignore", "pipe"] });
      p.stderr.on("data", (d) => { if (/replacement-started/.test(String(d))) setTimeout(() => p.kill("SIGKILL"), 300); });
      p.on("exit", () => resolve());
    });
    const first = replacements();
    assert.equal(first.length, 1, "the killed run's replacement survives it");
    const r = await sampled(args, 1000);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.deepEqual(rep.replacement, { pid: first[0], adopted: true });
    assert.deepEqual(replacements(), first, "still one replacement");
  } finally {
    for (const pid of replacements()) try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
    rmSync(mem, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
