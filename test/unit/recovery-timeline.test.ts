// A recovery's timeline: phase times and the seconds between them, a
// bounded number of samples however long the recovery, and the SVG
// picture of it, parsed by Python's XML parser (well-formed, every phase
// labelled, a title with <&> escaped, every sample plotted inside its
// box). And the host room recover waits for: positive, at most the
// host's memory.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Timeline, type Phase } from "../../src/recovery/timeline.js";
import { timelineSvg } from "../../src/cli/timeline-svg.js";
import { cgroupLimit, hostRoom } from "../../src/recovery/room.js";

const MiB = 1 << 20;

test("Timeline: between() gives seconds between phases that happened; a phase keeps its first time", () => {
  const tl = new Timeline();
  const T = 1_700_000_000_000;
  tl.mark("attach", T - 500);
  tl.mark("panic", T);
  tl.mark("replacement-ready", T + 3500, { how: "tcp" });
  tl.mark("panic", T + 9999);
  assert.equal(tl.time("panic"), T);
  assert.equal(tl.between("panic", "replacement-ready"), 3.5);
  assert.equal(tl.between("attach", "panic"), 0.5);
  assert.equal(tl.between("replacement-ready", "panic"), -3.5);
  assert.equal(tl.between("panic", "dump-complete"), undefined);
  assert.equal(tl.between("done", "panic"), undefined);
  assert.equal(tl.events.length, 4, "every mark is an event, repeated ones too");
  assert.deepEqual(tl.events[2], { t: T + 3500, phase: "replacement-ready", data: { how: "tcp" } });
  const j = tl.toJSON() as { origin: number; phases: Record<string, { t: number; s: number }>; downtimeSeconds: number | null };
  assert.equal(j.origin, T, "times count from the panic");
  assert.deepEqual(j.phases.attach, { t: T - 500, s: -0.5 });
  assert.deepEqual(j.phases["replacement-ready"], { t: T + 3500, s: 3.5 });
  assert.equal(j.downtimeSeconds, 3.5);
  // Without a panic the origin is the attach, and there is no downtime.
  const t2 = new Timeline();
  t2.mark("attach", 5000);
  t2.mark("done", 6000);
  const j2 = t2.toJSON() as { origin: number; downtimeSeconds: number | null };
  assert.equal(j2.origin, 5000);
  assert.equal(j2.downtimeSeconds, null);
  // Notes are bounded.
  for (let i = 0; i < 12_000; i++) t2.note(`note ${i}`);
  assert.equal(t2.events.length, 10_000);
});

test("Timeline samples stay bounded over 50,000 samples: ordered, oldest and newest kept, recent ones dense", () => {
  const tl = new Timeline();
  for (let i = 0; i < 50_000; i++) tl.sample({ t: i, writtenBytes: i, writeBps: 0, allowedBps: null });
  const t = tl.samples.map((s) => s.t);
  assert.ok(t.length <= 20_000 && t.length >= 10_000, `${t.length} samples kept`);
  assert.equal(t[0], 0);
  assert.equal(t[t.length - 1], 49_999);
  let maxGap = 0;
  for (let i = 1; i < t.length; i++) {
    assert.ok(t[i] > t[i - 1], `ordered at ${i}`);
    maxGap = Math.max(maxGap, t[i] - t[i - 1]);
  }
  assert.ok(maxGap <= 16, `thinned evenly (largest gap ${maxGap})`);
  assert.ok(t.slice(-1000).every((x, i, a) => i === 0 || x === a[i - 1] + 1), "the last 1000 samples are all there");
});

/** A recovery of 10 s: every phase, 101 samples. */
function recovery(): { json: ReturnType<Timeline["toJSON"]>; phases: Phase[]; samples: number; held: number; allowed: number } {
  const tl = new Timeline();
  const T = 1_700_000_000_000;
  const phases: [Phase, number][] = [
    ["panic", 0], ["attach", 150], ["classified", 900], ["released", 1100], ["replacement-started", 1200],
    ["replacement-ready", 3500], ["dump-complete", 9000], ["crashed-vm-gone", 9500], ["done", 10_000],
  ];
  for (const [p, dt] of phases) tl.mark(p, T + dt);
  let held = 0;
  let allowed = 0;
  for (let i = 0; i <= 100; i++) {
    const h = i < 95 ? (512 - i * 5) * MiB : undefined;
    const a = i % 3 === 0 ? null : 70e6;
    if (h !== undefined) held++;
    if (a !== null) allowed++;
    tl.sample({ t: T + i * 100, heldBytes: h, writtenBytes: i * 5e6, writeBps: 50e6 + (i % 7) * 1e6, allowedBps: a });
  }
  return { json: tl.toJSON(), phases: phases.map(([p]) => p), samples: 101, held, allowed };
}

type Parsed = { root: string; w: number; h: number; texts: string[]; polylines: { points: [number, number][]; dashed: boolean }[]; tags: Record<string, number> };

/** Python's ElementTree reads the SVG: what it finds, or its parse error. */
function pythonParse(svg: string): Parsed {
  const prog = `
import sys, json, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
ns = "{http://www.w3.org/2000/svg}"
tags = {}
for e in root.iter():
    k = e.tag.replace(ns, "")
    tags[k] = tags.get(k, 0) + 1
print(json.dumps({
    "root": root.tag, "w": float(root.get("width")), "h": float(root.get("height")),
    "texts": ["".join(t.itertext()) for t in root.iter(ns + "text")],
    "polylines": [{"points": [[float(v) for v in p.split(",")] for p in l.get("points").split()], "dashed": l.get("stroke-dasharray") is not None}
                  for l in root.iter(ns + "polyline")],
    "tags": tags,
}))
`;
  return JSON.parse(execFileSync("/usr/bin/python3", ["-c", prog], { input: svg, encoding: "utf8" }));
}


test("timelineSvg: well-formed SVG with every phase labelled, every sample plotted inside its box, the title escaped", () => {
  const r = recovery();
  const title = `recover <vm1> & "friends" 'x'`;
  const svg = timelineSvg(r.json as never, title);
  assert.ok(!svg.includes("<vm1>") && svg.includes("&lt;vm1&gt; &amp; &quot;friends&quot;"));
  const x = pythonParse(svg);
  assert.equal(x.root, "{http://www.w3.org/2000/svg}svg");
  assert.equal(x.texts[0], title, "the title reads back as given");
  for (const p of r.phases) assert.ok(x.texts.some((t) => t.startsWith(`${p} +`)), `phase ${p} labelled`);
  assert.ok(x.texts.includes("replacement-ready +3.5 s"));
  assert.ok(x.texts.includes("seconds since the panic"));
  assert.equal(x.tags.line, r.phases.length, "one line per phase");
  // Held memory, write rate, and the allowed rate (dashed), one point per sample that has the value.
  assert.deepEqual(x.polylines.map((l) => [l.points.length, l.dashed]), [[r.held, false], [r.samples, false], [r.allowed, true]]);
  for (const l of x.polylines) {
    for (const [px, py] of l.points) {
      assert.ok(px >= 70 && px <= x.w - 20, `x ${px} inside the plot`);
      assert.ok(py >= 0 && py <= x.h, `y ${py} inside the picture`);
    }
  }
  // The held-memory curve starts at its highest (the top of its box) and falls.
  const held = x.polylines[0].points;
  assert.ok(held[0][1] < held[held.length - 1][1]);
  assert.ok(held[0][0] < held[held.length - 1][0]);
});

test("timelineSvg: no samples and no panic is still a well-formed picture", () => {
  const tl = new Timeline();
  tl.mark("attach", 1000);
  const x = pythonParse(timelineSvg(tl.toJSON() as never));
  assert.equal(x.texts[0], "guestcore recover");
  assert.ok(x.texts.includes("attach +0.0 s"));
  assert.ok(x.texts.includes("seconds since attach"));
  assert.equal(x.polylines.length, 0);
  assert.ok(x.texts.every((t) => !/NaN|Infinity|undefined/.test(t)), x.texts.join(" | "));
});

test("hostRoom: positive, at most the host's memory and the cgroup's limit", () => {
  const total = Number(/^MemTotal:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"))![1]) * 1024;
  const room = hostRoom();
  assert.ok(room > 0, `room ${room}`);
  assert.ok(room <= total, `room ${room} <= MemTotal ${total}`);
  const cg = cgroupLimit();
  if (cg) {
    assert.ok(cg.limit > 0 && cg.usage >= 0 && cg.path.startsWith("/sys/fs/cgroup"));
    assert.ok(room <= cg.limit, `room ${room} <= the cgroup's limit ${cg.limit}`);
  }
});
