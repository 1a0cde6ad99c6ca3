// guestcore dump killed with SIGKILL at seeded random moments of the
// whole run (start-up, classification, the page writes, the fsync, just
// before the rename, between the rename and the directory's fsync), into
// kdump-compressed (zstd) and ELF files of the real q35-256m capture:
// the final name is absent or holds the complete dump, and the
// temporaries the dead writers leave are removed by a later dump into the
// directory and by `guestcore clean`.
//
// Two ways to kill: a timer drawn over an undisturbed run's duration, and
// strace's fault injection (SIGKILL on entering the Nth pwrite64, the
// rename, the directory's fsync), which hits points no timer can.
// Judges: the undisturbed outputs are checked once against makedumpfile's
// bitmap 2 and libkdumpfile reading every page (kdump) and against the
// capture's bytes (ELF); a file left under the final name must equal them
// byte for byte (the kdump header's timestamp aside).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { openRaw } from "../../src/sources/raw.js";
import { firstDifference, makedumpfileOracle, readKdumpBitmaps, realFixture } from "../helpers/real.js";
import { libkdumpfile } from "../helpers/oracles.js";
import { assertElfHoldsExactly } from "../helpers/elf-check.js";
import { tempDir } from "../helpers/synthetic.js";
import { rng, trialSeed } from "../helpers/seeded.js";
import { temporaries } from "../helpers/temporaries.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const TRIALS = Number(process.env.GUESTCORE_KILL_TRIALS ?? 50);
/** disk_dump_header.timestamp (struct timeval after the 390-byte utsname at 12, 8-aligned). */
const KDUMP_TIMESTAMP: [number, number] = [408, 424];

type Format = "kdump" | "elf";
type Kill = { how: "timer"; ms: number } | { how: "inject"; syscall: "pwrite64" | "rename" | "fsync"; when: number };

interface Run { code: number | null; signal: string | null; stderr: string; pid: number }

function dumpArgs(input: string, out: string, format: Format): string[] {
  return [CLI, "dump", input, "-o", out, "-d", "31", ...(format === "elf" ? ["-E"] : [])];
}

/**
 * Run `args` with node, under strace when the kill is injected; the pid
 * is the dump's own (under strace, a shell that says its pid and execs node).
 */
function run(args: string[], kill?: Kill): Promise<Run> {
  const [cmd, argv] = kill?.how === "inject"
    ? ["strace", ["-f", "-qq", "-o", "/dev/null", "-e", `trace=${kill.syscall}`, "-e", `inject=${kill.syscall}:signal=SIGKILL:when=${kill.when}`,
      "sh", "-c", 'echo "dump pid $$" >&2; exec "$0" "$@"', process.execPath, ...args]]
    : [process.execPath, args];
  return new Promise((resolve) => {
    const p = spawn(cmd, argv, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr!.on("data", (d) => (stderr += d));
    const timer = kill?.how === "timer" ? setTimeout(() => p.kill("SIGKILL"), kill.ms) : undefined;
    p.on("exit", (code, signal) => {
      clearTimeout(timer);
      const said = /^dump pid (\d+)$/m.exec(stderr);
      resolve({ code, signal, stderr, pid: said ? Number(said[1]) : p.pid! });
    });
  });
}

/**
 * pwrite64 calls that some thread is sure to reach: strace counts an
 * injection's `when` per thread. The ELF writer writes from one thread.
 * The kdump writer's batches are written by the compression threads and,
 * when one comes back deferred, by the main thread, split differently in
 * every run; the total is fixed, so the busiest of those threads makes at
 * least its share of it.
 */
function countWrites(args: string[], dir: string, format: Format): number {
  const total = countAllWrites(args, dir);
  return Math.floor(total / (format === "kdump" ? cpus().length + 1 : 1));
}

function countAllWrites(args: string[], dir: string): number {
  const log = join(dir, "strace-count");
  const r = spawnSync("strace", ["-f", "-qq", "-o", log, "-e", "trace=pwrite64", process.execPath, ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const perThread = new Map<string, number>();
  for (const m of readFileSync(log, "utf8").matchAll(/^(\d+)\s+pwrite64\(/gm)) perThread.set(m[1], (perThread.get(m[1]) ?? 0) + 1);
  assert.ok(perThread.size > 0, `strace saw pwrite64: ${readFileSync(log, "utf8").slice(0, 500)}`);
  rmSync(log);
  return [...perThread.values()].reduce((a, b) => a + b, 0);
}

function sameDump(a: Buffer, b: Buffer, format: Format): boolean {
  if (a.length !== b.length) return false;
  if (format === "elf") return a.equals(b);
  const [s, e] = KDUMP_TIMESTAMP;
  return a.subarray(0, s).equals(b.subarray(0, s)) && a.subarray(e).equals(b.subarray(e));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test(`guestcore dump killed with SIGKILL at ${TRIALS} seeded moments: the final name is absent or complete, and stale temporaries are cleaned`, { timeout: 600_000 }, async (t) => {
  const fx = realFixture("q35-256m");
  const seed = trialSeed();
  const rand = rng(seed);
  t.diagnostic(`seed ${seed} (GUESTCORE_KILL_SEED replays it)`);
  const dir = tempDir(t);
  const refDir = tempDir(t);
  try {
    // ---- the undisturbed runs, judged by other programs.
    const want = makedumpfileOracle(fx, 31);
    const ref = {} as Record<Format, { bytes: Buffer; ms: number; writes: number }>;
    for (const format of ["kdump", "elf"] as Format[]) {
      const out = join(refDir, `ref.${format}`);
      const t0 = performance.now();
      const r = await run(dumpArgs(fx.elf, out, format));
      const ms = performance.now() - t0;
      assert.equal(r.code, 0, r.stderr);
      if (format === "kdump") {
        const got = readKdumpBitmaps(out);
        assert.equal(firstDifference(got.bitmap2, want.bitmap2, want.maxMapnr), -1, "bitmap 2 equals makedumpfile's");
        assert.equal(firstDifference(got.nonZero, want.nonZero, want.maxMapnr), -1, "zero pages equal makedumpfile's");
        assert.match(libkdumpfile(out, fx.raw), /^ok libkdumpfile \d+ pages/m);
      } else {
        const raw = openRaw(fx.raw);
        try {
          assertElfHoldsExactly(out, raw, want.nonZero, want.bitmap2.map((b, i) => b & ~want.nonZero[i]), want.maxMapnr);
        } finally {
          raw.close();
        }
      }
      const writes = countWrites(dumpArgs(fx.elf, join(refDir, `count.${format}`), format), refDir, format);
      ref[format] = { bytes: readFileSync(out), ms, writes };
      t.diagnostic(`${format}: an undisturbed dump takes ${ms.toFixed(0)} ms; its busiest writing thread makes at least ${writes} pwrite64 calls`);
    }

    // ---- the trials: the first four at the points around the rename, then drawn.
    const fixed: [Format, Kill][] = [
      ["kdump", { how: "inject", syscall: "rename", when: 1 }], ["elf", { how: "inject", syscall: "rename", when: 1 }],
      // The file's fsync is the first, the directory's the second.
      ["kdump", { how: "inject", syscall: "fsync", when: 2 }], ["elf", { how: "inject", syscall: "fsync", when: 2 }],
    ];
    const killed = new Set<number>();
    const stats = { finalAfterKill: 0, completedBeforeKill: 0, injected: 0, timed: 0, temporariesLeft: 0, removedByDump: 0, removedByClean: 0 };
    for (let i = 0; i < TRIALS; i++) {
      const [format, kill]: [Format, Kill] = fixed[i] ?? (() => {
        const f: Format = rand() < 0.5 ? "kdump" : "elf";
        return [f, rand() < 0.35
          ? { how: "inject", syscall: "pwrite64", when: 1 + Math.floor(rand() * ref[f].writes) }
          : { how: "timer", ms: rand() * ref[f].ms * 1.1 }];
      })();
      const out = join(dir, `trial${i}.${format}`);
      const before = new Set(temporaries(dir).map((x) => x.name));
      const r = await run(dumpArgs(fx.elf, out, format), kill);
      const what = `trial ${i} (${format}, ${kill.how === "timer" ? `killed after ${kill.ms.toFixed(0)} ms` : `SIGKILL at ${kill.syscall} #${kill.when}`})`;
      if (kill.how === "inject") stats.injected++;
      else stats.timed++;
      if (r.signal === "SIGKILL") {
        killed.add(r.pid);
        // A dump that died before its own sweep leaves the earlier temporaries; one that got past it names each on stderr.
        for (const m of r.stderr.matchAll(/^guestcore: removed .*\/(\.[^/ ]+\.tmp) /gm)) if (before.has(m[1])) stats.removedByDump++;
      } else {
        assert.equal(r.code, 0, `${what}: a run the kill missed succeeds: ${r.stderr}`);
        assert.equal(kill.how, "timer", `${what}: the injected SIGKILL was delivered`);
        stats.completedBeforeKill++;
      }
      // The final name: absent, or the complete dump.
      const final = existsSync(out);
      if (final) {
        if (r.signal === "SIGKILL") stats.finalAfterKill++;
        assert.ok(sameDump(readFileSync(out), ref[format].bytes, format), `${what}: the file under the final name is the complete dump`);
        rmSync(out);
      }
      const mine = temporaries(dir).filter((x) => x.pid === r.pid);
      if (kill.how === "inject" && kill.syscall === "rename") {
        assert.equal(mine.length, 1, `${what}: killed before the rename, the temporary is there`);
        assert.equal(statSync(join(dir, mine[0].name)).size, ref[format].bytes.length, `${what}: and it is complete`);
        assert.equal(final, false, `${what}: nothing under the final name`);
      }
      if (kill.how === "inject" && kill.syscall === "fsync") {
        assert.ok(final, `${what}: killed after the rename, the final name holds the dump`);
        assert.equal(mine.length, 0, `${what}: and no temporary is left`);
      }
      // Every temporary there belongs to a dump killed here, and its writer is dead.
      for (const x of temporaries(dir)) {
        assert.ok(killed.has(x.pid), `${what}: ${x.name} belongs to a killed dump`);
        assert.equal(alive(x.pid), false, `${what}: ${x.name}'s writer is dead`);
      }
      stats.temporariesLeft += mine.length;

      // Housekeeping, now and then: a later dump into the directory, or guestcore clean.
      const left = temporaries(dir).map((x) => x.name).sort();
      if (i % 10 === 4 && left.length) {
        const sweep = join(dir, "sweep.elf");
        const s = spawnSync(process.execPath, [...dumpArgs(fx.elf, sweep, "elf"), "--json"], { encoding: "utf8" });
        assert.equal(s.status, 0, s.stderr);
        const removed = (JSON.parse(s.stdout).removedTemporaries as string[]).map((p) => p.slice(dir.length + 1)).sort();
        assert.deepEqual(removed, left, `${what}: the later dump removed exactly the stale temporaries`);
        for (const name of left) assert.match(s.stderr, new RegExp(`^guestcore: removed .*${name.replace(/\./g, "\\.")} \\(\\d+ bytes\\): its writer, process \\d+, is gone$`, "m"));
        stats.removedByDump += left.length;
        rmSync(sweep);
      } else if (i % 10 === 9 && left.length) {
        const s = spawnSync(process.execPath, [CLI, "clean", dir, "--json"], { encoding: "utf8" });
        assert.equal(s.status, 0, s.stderr);
        const entries = JSON.parse(s.stdout) as { path: string; action: string; pid: number }[];
        assert.deepEqual(entries.map((e) => e.path.slice(dir.length + 1)).sort(), left, `${what}: clean lists the temporaries`);
        assert.ok(entries.every((e) => e.action === "removed"), `${what}: and removes them all`);
        stats.removedByClean += left.length;
      }
      if (i % 10 === 4 || i % 10 === 9) assert.deepEqual(temporaries(dir), [], `${what}: no temporary left after the housekeeping`);
    }
    // The last ones go too, and nothing else was ever in the directory.
    const s = spawnSync(process.execPath, [CLI, "clean", dir], { encoding: "utf8" });
    assert.equal(s.status, 0, s.stderr);
    assert.deepEqual(readdirSync(dir), [], "the directory is empty");
    t.diagnostic(`${stats.timed} timed and ${stats.injected} injected kills; ${stats.completedBeforeKill} runs finished before their timer, ` +
      `${stats.finalAfterKill} kills came after the rename; ${stats.temporariesLeft} temporaries left, ${stats.removedByDump} removed by later dumps, ${stats.removedByClean} by guestcore clean`);
    assert.ok(stats.temporariesLeft >= TRIALS / 4, "many kills came while a temporary was being written");
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(refDir, { recursive: true, force: true });
  }
});
