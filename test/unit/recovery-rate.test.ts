// Rate policies: the --rate specs and their one-line errors; what a fixed
// rate lets through on a virtual clock (exact, whatever the machine's load);
// the adaptive policy driven by blockstats samples (busy: the floor; idle
// long enough: the max; in between: the capacity it saw less what the
// replacement uses now), and the rate it chose enforced on the same clock;
// and sumBlockstats on garbage replies. Wall-clock rates are bench/'s.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AdaptiveRate, defaultPolicies, FixedRate, sumBlockstats, type BlockSample } from "../../src/recovery/rate-policy.js";
import { oneLineError } from "../helpers/errors.js";
import { VirtualClock } from "../helpers/virtual-clock.js";

const MiB = 1 << 20;

test("--rate specs: none, fixed:70M, adaptive with options", () => {
  const p = defaultPolicies();
  assert.deepEqual(p.names(), ["none", "fixed", "adaptive"]);
  assert.match(p.help(), /^none: .*; fixed: .*; adaptive: .*floor=BYTES/);
  const none = p.parse("none");
  assert.equal(none.name, "none");
  assert.equal(none.currentRate(), Infinity);
  const fixed = p.parse("fixed:70M");
  assert.ok(fixed instanceof FixedRate);
  assert.equal(fixed.currentRate(), 70 * MiB);
  const a = p.parse("adaptive:floor=2M,max=20M");
  assert.ok(a instanceof AdaptiveRate);
  assert.equal(a.opts.floor, 2 * MiB);
  assert.equal(a.opts.max, 20 * MiB);
  assert.equal(a.opts.busyBytes, MiB, "defaults stay for options not given");
  assert.equal(a.currentRate(), 20 * MiB, "until it has seen the replacement, the max");
  const b = p.parse("adaptive:busy=4M,ops=100,interval=5") as AdaptiveRate;
  assert.deepEqual([b.opts.busyBytes, b.opts.busyOps, b.opts.intervalMs, b.opts.max], [4 * MiB, 100, 20, Infinity]);
  assert.equal((p.parse("adaptive") as AdaptiveRate).currentRate(), Infinity);
});

test("--rate: each bad spec is a one-line error", () => {
  const p = defaultPolicies();
  const bad: [string, RegExp][] = [
    ["", /unknown rate policy ""/],
    ["slow", /unknown rate policy "slow" \(known: none, fixed, adaptive\)/],
    ["fixed", /fixed needs a rate/],
    ["fixed:", /fixed needs a rate/],
    ["fixed:0", /not a positive rate/],
    ["fixed:-5M", /not a size/],
    ["fixed:fast", /not a size/],
    ["fixed:99999999T", /too large/],
    ["adaptive:floor", /KEY=VALUE/],
    ["adaptive:,", /KEY=VALUE/],
    ["adaptive:speed=2M", /known options are floor, max, busy, ops, interval/],
    ["adaptive:floor=0", /floor must be positive/],
    ["adaptive:ops=many", /ops must be positive/],
    ["adaptive:ops=-1", /ops must be positive/],
    ["adaptive:floor=20M,max=2M", /floor is above max/],
    ["adaptive:floor=2M=3M", /KEY=VALUE/],
    // Names every object has: not options.
    ["adaptive:__proto__=1", /known options/],
    ["adaptive:constructor=1", /known options/],
    ["adaptive:valueOf=1", /known options/],
    ["adaptive:hasOwnProperty=1", /known options/],
  ];
  for (const [spec, re] of bad) assert.throws(() => p.parse(spec), oneLineError(re), `"${spec}"`);
});

test("FixedRate: in 10 s of its clock it lets through its burst and 10 s at its rate, to one write", async (t) => {
  const clock = new VirtualClock(t);
  const rate = 4 * MiB;
  const f = new FixedRate(rate);
  const burst = 512 << 10; // rate / 8, at least 256 KiB
  const chunk = 64 << 10;
  assert.equal(await clock.run(f.acquire(burst)), undefined);
  assert.equal(clock.now, 0, "the burst goes at once");
  let bytes = 0;
  // Bounded: a limiter that never waits would not move the clock.
  for (let i = 0; i < 100_000 && clock.now < 10_000; i++) {
    await clock.run(f.acquire(chunk));
    if (clock.now <= 10_000) bytes += chunk;
  }
  assert.ok(clock.now >= 10_000, `the clock reached only ${clock.now} ms: the writes did not wait`);
  assert.ok(bytes <= 10 * rate && bytes > 10 * rate - chunk, `${bytes} bytes after the burst in 10 s, wanted ${10 * rate}`);
});

function near(got: number, want: number, what: string): void {
  assert.ok(Math.abs(got - want) <= want * 1e-12, `${what}: ${got}, wanted ${want}`);
}

/** Samples at 1 s steps: `bps` bytes and `ops` operations per second each. */
function feed(a: AdaptiveRate, steps: [bps: number, ops: number][], start: BlockSample = { t: 0, bytes: 0, ops: 0, timeNs: 0 }): BlockSample {
  let s = start;
  for (const [bps, ops] of steps) {
    s = { t: s.t + 1000, bytes: s.bytes + bps, ops: s.ops + ops, timeNs: s.timeNs + ops * 250_000 };
    a.observe(s);
  }
  return s;
}

test("AdaptiveRate: busy gives the floor, idle for idleSamples gives the max, in between capacity less the replacement's use", () => {
  const notes: { what: string; data?: Record<string, unknown> }[] = [];
  const a = new AdaptiveRate({ floor: 2 * MiB, max: 100 * MiB, busyBytes: MiB, busyOps: 32, idleSamples: 3 });
  a.start({ note: (what, data) => notes.push({ what, data }) });
  assert.deepEqual(notes.map((n) => n.what), ["adaptive: no replacement QMP socket, the dump is not limited"]);
  assert.equal(a.currentRate(), 100 * MiB);
  a.observe({ t: 0, bytes: 0, ops: 0, timeNs: 0 });
  assert.equal(a.currentRate(), 100 * MiB, "one sample is no rate yet");
  // The replacement reads 50 MiB/s: the dump yields to the floor.
  let s = feed(a, [[50 * MiB, 400]]);
  assert.equal(a.currentRate(), 2 * MiB);
  assert.equal(notes[1].what, "adaptive: replacement busy, dump yields");
  assert.deepEqual(notes[1].data, { replacementBps: 50 * MiB, replacementOps: 400, latencyUs: 250 });
  // Quiet (0.5 MiB/s, 10 ops/s), once: the capacity seen (50 MiB/s, aged by 2%) less 0.5 MiB/s.
  s = feed(a, [[MiB / 2, 10]], s);
  assert.equal(a.currentRate(), 50 * MiB * 0.98 - MiB / 2);
  assert.equal(notes[2].what, "adaptive: replacement idle");
  s = feed(a, [[MiB / 2, 10]], s);
  assert.equal(a.currentRate(), 50 * MiB * 0.98 * 0.98 - MiB / 2);
  // The third idle sample: the whole disk, up to max.
  s = feed(a, [[MiB / 2, 10]], s);
  assert.equal(a.currentRate(), 100 * MiB);
  // Busy by operations alone (small I/O: 100 ops/s of 4 KiB).
  s = feed(a, [[100 * 4096, 100]], s);
  assert.equal(a.currentRate(), 2 * MiB);
  // A sample that does not move forward in time changes nothing.
  a.observe({ ...s, bytes: s.bytes + 500 * MiB });
  assert.equal(a.currentRate(), 2 * MiB);
  // Counters that go back (a device removed) count as no traffic, not as negative.
  a.observe({ t: s.t + 2000, bytes: 0, ops: 0, timeNs: 0 });
  near(a.currentRate(), 50 * MiB * 0.98 ** 5, "idle again: the capacity, aged five times, less nothing");
  assert.equal(a.samples.length, 6);
  assert.deepEqual(a.samples.map((x) => x.t), [1000, 2000, 3000, 4000, 5000, 7000]);
  a.stop();
});

test("AdaptiveRate: capacity less use never goes below the floor nor above the max", () => {
  const a = new AdaptiveRate({ floor: 8 * MiB, max: 20 * MiB, idleSamples: 5 });
  a.observe({ t: 0, bytes: 0, ops: 0, timeNs: 0 });
  let s = feed(a, [[200 * MiB, 1000]]); // capacity 200 MiB/s seen
  assert.equal(a.currentRate(), 8 * MiB);
  s = feed(a, [[0, 0]], s);
  assert.equal(a.currentRate(), 20 * MiB, "capacity less use is above max: max");
  const b = new AdaptiveRate({ floor: 8 * MiB, idleSamples: 5 });
  b.observe({ t: 0, bytes: 0, ops: 0, timeNs: 0 });
  feed(b, [[0.9 * MiB, 5], [0.9 * MiB, 5]]); // never busy: capacity only what it uses
  assert.equal(b.currentRate(), 8 * MiB, "a capacity below the floor gives the floor");
});

test("AdaptiveRate enforces the rate it chose: at a 4 MiB/s floor, 1 MiB past the burst takes a quarter second of its clock", async (t) => {
  const clock = new VirtualClock(t);
  const a = new AdaptiveRate({ floor: 4 * MiB, max: Infinity });
  await clock.run(a.acquire(64 * MiB));
  assert.equal(clock.now, 0, "unlimited while idle: no wait at all");
  assert.equal(clock.pending, 0);
  a.observe({ t: 0, bytes: 0, ops: 0, timeNs: 0 });
  feed(a, [[50 * MiB, 400]]);
  assert.equal(a.currentRate(), 4 * MiB);
  const burst = Math.max(128 << 10, (4 * MiB) / 10);
  await clock.run(a.acquire(burst));
  assert.equal(clock.now, 0, "the burst goes at once");
  for (let i = 0; i < 16; i++) await clock.run(a.acquire(64 << 10));
  // 1 MiB at 4 MiB/s; each wait is rounded up to a whole ms, the surplus kept.
  assert.ok(clock.now >= 250 && clock.now <= 251, `${clock.now} ms for 1 MiB at 4 MiB/s`);
});

test("sumBlockstats: the devices' counters summed; garbage ignored", () => {
  const dev = (rd: number, wr: number, ops: number) => ({
    device: "", qdev: "/machine/peripheral/disk0/virtio-backend",
    stats: { rd_bytes: rd, wr_bytes: wr, rd_operations: ops, wr_operations: ops, flush_operations: 1, rd_total_time_ns: 1000, wr_total_time_ns: 2000, flush_total_time_ns: 3 },
  });
  assert.deepEqual(sumBlockstats([dev(100, 50, 2), dev(1, 2, 3)], 7), { t: 7, bytes: 153, ops: 12, timeNs: 6006 });
  const zero = { t: 1, bytes: 0, ops: 0, timeNs: 0 };
  for (const reply of [undefined, null, 42, "[]", { stats: { rd_bytes: 5 } }, {}]) assert.deepEqual(sumBlockstats(reply, 1), zero, JSON.stringify(reply));
  const garbage = [
    null, 7, "disk", [], {}, { stats: null }, { stats: "x" }, { stats: [] },
    { stats: { rd_bytes: NaN, wr_bytes: Infinity, rd_operations: "9", wr_operations: -Infinity, flush_operations: null, rd_total_time_ns: {} } },
    { stats: { rd_bytes: 10 } },
  ];
  assert.deepEqual(sumBlockstats(garbage, 1), { t: 1, bytes: 10, ops: 0, timeNs: 0 });
  // Only the first 256 devices are looked at.
  const many = Array.from({ length: 1000 }, () => ({ stats: { rd_bytes: 1 } }));
  assert.equal(sumBlockstats(many, 1).bytes, 256);
});
