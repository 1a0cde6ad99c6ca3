// Rate policies of recover on the real q35-256m capture at dump level 1
// (~135 MB of output). What is asserted holds however busy the machine is:
// the bytes a policy lets through are bounded by its rate on recover's own
// clock (its timeline) and on the kernel's count of its write(2) calls
// (/proc/PID/io wchar, sampled by the test), and the policy's decisions are
// the ones its inputs call for. How close to the rate a dump comes is a
// measurement, for bench/.
//  - fixed never exceeds its rate over any second or more;
//  - adaptive yields while the replacement's disk is busy (its QMP
//    query-blockstats counters, served here by a stand-in monitor whose
//    counters the test drives, one step per query) and takes the
//    bandwidth back when idle.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { realFixture } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";
import { FakeQmp } from "../helpers/fake-qmp.js";
import { waitFor } from "../helpers/wait.js";
import { journalPath } from "../../src/recovery/journal.js";

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
function sampled(args: string[], everyMs: number, onTick?: (s: Sample[]) => void): Promise<{ code: number | null; stdout: string; stderr: string; samples: Sample[] }> {
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
      onTick?.(samples);
    }, everyMs);
    p.on("exit", (code) => {
      clearInterval(timer);
      resolve({ code, stdout, stderr, samples });
    });
  });
}

/**
 * The most bytes between two samples at least a second apart beyond what
 * `rate` allows, less `slack` (what a token bucket may let through at once:
 * its burst and one write); <= 0 when the rate held over every interval.
 */
function worstExcess(s: Sample[], rate: number, slack: number): { excess: number; at: string } {
  let worst = { excess: -Infinity, at: "no interval of a second" };
  for (let i = 0; i < s.length; i++) {
    for (let j = i + 1; j < s.length; j++) {
      const dt = s[j].t - s[i].t;
      if (dt < 1000) continue;
      const excess = s[j].bytes - s[i].bytes - (rate * dt) / 1000 - slack;
      if (excess > worst.excess) worst = { excess, at: `${s[j].bytes - s[i].bytes} bytes in ${dt.toFixed(0)} ms from ${s[i].t.toFixed(0)} ms` };
    }
  }
  return worst;
}

interface RecoverTimeline {
  events: { t: number; note?: string; phase?: string }[];
  samples: { t: number; writtenBytes: number; allowedBps: number | null }[];
}

test("rate policy fixed: the bytes written never exceed its rate, on recover's clock and on the kernel's count", { timeout: 120_000 }, async (t) => {
  const fx = realFixture("q35-256m");
  const dir = tempDir(t);
  const mem = `/dev/shm/guestcore-test-fixed.${process.pid}.ram`;
  try {
    copyFileSync(fx.raw, mem);
    const rate = 8 * MB;
    const r = await sampled(["recover", "--mem-path", mem, "-o", join(dir, "d1.kdump"), "-d", "1", "--rate", `fixed:${rate}`, "--json"], 100);
    assert.equal(r.code, 0, r.stderr);
    const tl = JSON.parse(r.stdout).timeline as RecoverTimeline;
    // The sampler's samples (the phase marks between them have no allowed rate, and count file bytes).
    const ticks = tl.samples.filter((x) => x.allowedBps !== null);
    const written = ticks.map((x) => ({ t: x.t, bytes: x.writtenBytes }));
    assert.ok(written.length > 10 && written[written.length - 1].bytes >= 100 * MB, `the dump wrote ${written[written.length - 1]?.bytes} bytes: too few to hold a rate against`);
    assert.ok(ticks.every((x) => x.allowedBps === rate), `the policy allowed its rate throughout, not ${[...new Set(ticks.map((x) => x.allowedBps))].join(", ")}`);
    // The bucket's burst (rate / 8) and one write (a batch of pages, at most a few MiB).
    const slack = rate / 8 + 4 * MB;
    const own = worstExcess(written, rate, slack);
    assert.ok(own.excess <= 0, `recover's timeline: ${own.at}, above ${rate} bytes/s`);
    // The kernel's count also has the journal and the headers: one more MiB.
    const kernel = worstExcess(r.samples, rate, slack + MB);
    assert.ok(kernel.excess <= 0, `wchar: ${kernel.at}, above ${rate} bytes/s`);
    const s = r.samples;
    t.diagnostic(`fixed:${rate / MB}M: ${((s[s.length - 1].bytes - s[0].bytes) / MB).toFixed(1)} MiB in ${((s[s.length - 1].t - s[0].t) / 1000).toFixed(1)} s (wchar)`);
  } finally {
    rmSync(mem, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test("rate policy adaptive: busy counters make it yield to its floor, and the bytes follow; idle ones give the bandwidth back", { timeout: 120_000 }, async (t) => {
  const fx = realFixture("q35-256m");
  const dir = tempDir(t);
  const mem = `/dev/shm/guestcore-test-adaptive.${process.pid}.ram`;
  const sock = join(dir, "replacement.qmp");
  const monitor = await FakeQmp.listen(sock);
  // The replacement's disk counters, one step per query (the policy asks
  // every 100 ms): still until the dump has written 16 MB (the kernel's
  // count says so), then 8 MB and 400 operations more at each of the next
  // 40 queries (busy at any interval up to seconds), then still again.
  let rd = 0;
  let ops = 0;
  let queries = 0;
  let busyQueries = 0;
  let dumping = false;
  monitor.handlers.set("query-blockstats", () => {
    queries++;
    if (dumping && busyQueries < 40) {
      busyQueries++;
      rd += 8 * MB;
      ops += 400;
    }
    return [{ device: "", qdev: "/machine/peripheral-anon/device[0]/virtio-backend", stats: { rd_bytes: rd, wr_bytes: 0, rd_operations: ops, wr_operations: 0, flush_operations: 0, rd_total_time_ns: ops * 200_000, wr_total_time_ns: 0, flush_total_time_ns: 0 } }];
  });
  let replacementPid: number | undefined;
  try {
    copyFileSync(fx.raw, mem);
    const r = await sampled(["recover", "--mem-path", mem, "-o", join(dir, "d1.kdump"), "-d", "1",
      "--rate", "adaptive:floor=2M,max=24M,interval=100", "--replacement", "exec sleep 300", "--replacement-qmp", sock, "--json"], 100,
      (s) => { dumping ||= s.length > 0 && s[s.length - 1].bytes - s[0].bytes >= 16 * MB; });
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    replacementPid = rep.replacement?.pid;
    const tl = rep.timeline as RecoverTimeline;
    tl.samples = tl.samples.filter((x) => x.allowedBps !== null);
    assert.ok(busyQueries === 40 && queries > busyQueries + 3, `the policy asked the replacement's monitor ${queries} times (${busyQueries} busy): too few to see it busy and idle again`);
    const notes = tl.events.filter((e) => e.note?.startsWith("adaptive:"));
    assert.deepEqual(notes.map((e) => e.note), ["adaptive: replacement busy, dump yields", "adaptive: replacement idle"], "one yield, one return");
    const [busyAt, idleAt] = notes.map((e) => e.t);
    const before = tl.samples.filter((x) => x.t < busyAt && x.writtenBytes > 0);
    const during = tl.samples.filter((x) => x.t > busyAt && x.t < idleAt);
    const after = tl.samples.filter((x) => x.t > idleAt);
    assert.ok(before.length > 0 && during.length >= 5 && after.length > 0, `samples before ${before.length}, while busy ${during.length}, after ${after.length}`);
    // Idle: what the disk showed it can do less the replacement's use, and after three idle samples the max.
    assert.ok(before.every((x) => x.allowedBps! > 2 * MB) && before.some((x) => x.allowedBps === 24 * MB), `before the replacement is busy: above the floor, up to the max, not ${before.map((x) => x.allowedBps).join(" ")}`);
    assert.ok(during.every((x) => x.allowedBps === 2 * MB), `while it is busy: the floor, not ${during.map((x) => x.allowedBps).join(" ")}`);
    assert.ok(after.some((x) => x.allowedBps !== null && x.allowedBps > 2 * MB), "once it is idle: more than the floor again");
    // While busy, the bytes follow the floor: its burst (a tenth of it) and one write beyond.
    const busyBytes = during.map((x) => ({ t: x.t, bytes: x.writtenBytes }));
    const excess = worstExcess(busyBytes, 2 * MB, 0.2 * MB + 4 * MB);
    assert.ok(excess.excess <= 0, `while busy: ${excess.at}, above the 2 MiB/s floor`);
    const rate = (xs: { t: number; writtenBytes: number }[]) => xs.length > 1 ? ((xs[xs.length - 1].writtenBytes - xs[0].writtenBytes) * 1000) / (xs[xs.length - 1].t - xs[0].t) / MB : NaN;
    t.diagnostic(`dump write rate: ${rate(before).toFixed(1)} MiB/s idle, ${rate(during).toFixed(1)} MiB/s while the replacement is busy, ${rate(after).toFixed(1)} MiB/s idle again`);
  } finally {
    if (replacementPid) try { process.kill(-replacementPid, "SIGKILL"); } catch { /* gone */ }
    await monitor.close();
    rmSync(mem, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--start-when-room: the replacement starts at attach when the room is there, and only at the end when it never is", { timeout: 120_000 }, async (t) => {
  const fx = realFixture("q35-256m");
  const dir = tempDir(t);
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

test("a rerun after recover was killed does not start a second replacement beside the first", { timeout: 120_000 }, async (t) => {
  const fx = realFixture("q35-256m");
  const dir = tempDir(t);
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
      let seen = false;
      p.stderr.on("data", (d) => {
        if (seen || !/replacement-started/.test(String(d))) return;
        seen = true;
        // Once the replacement runs and the journal names it: what a rerun finds.
        const journaled = () => existsSync(journalPath(out)) && readFileSync(journalPath(out), "utf8").includes("replacementPid");
        waitFor(() => replacements().length === 1 && journaled(), "the replacement and its journal entry")
          .finally(() => p.kill("SIGKILL")).catch(() => {});
      });
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
