// recover killed with SIGKILL at random moments of every phase (attach,
// classify, first release, streaming with releases, commit, cleanup):
// the final name is absent or holds a complete and right dump, and a
// rerun with the same -o finishes it, reading the pages the dead run had
// released back from its partial dump.
//
// The crashed guest is the real q35-256m capture, copied to /dev/shm for
// each trial as a QEMU memory-backend file would be (recover --mem-path:
// the crashed QEMU is gone, which is what --quit-crashed early leaves).
// Judges: makedumpfile's bitmap 2 and zero pages on the fixture's ELF,
// and libkdumpfile reading every page against the untouched fixture.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readdirSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { allocatedBytes } from "../../src/recovery/hole-punch.js";
import { journalPath } from "../../src/recovery/journal.js";
import { openRaw } from "../../src/sources/raw.js";
import { firstDifference, makedumpfileOracle, readKdumpBitmaps, realFixture } from "../helpers/real.js";
import { libkdumpfile } from "../helpers/oracles.js";
import { assertElfHoldsExactly } from "../helpers/elf-check.js";
import { tempDir } from "../helpers/synthetic.js";
import { rng, trialSeed } from "../helpers/seeded.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const TRIALS = Number(process.env.GUESTCORE_KILL_TRIALS ?? 20);
const ELF_TRIALS = 4;

function recoverArgs(mem: string, out: string, elf: boolean): string[] {
  // 16 MB/s stretches the ~17 MB dump over about a second, so kills land in every phase.
  return [CLI, "recover", "--mem-path", mem, "-o", out, "-d", "31", "--rate", "fixed:16M", ...(elf ? ["-E"] : [])];
}

/** Run recover, SIGKILL it after `ms` (never when ms is Infinity); resolves with the phases it reported. */
function runKilled(args: string[], ms: number): Promise<{ code: number | null; signal: string | null; phases: string[]; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    p.stderr.on("data", (d) => (stderr += d));
    const timer = Number.isFinite(ms) ? setTimeout(() => p.kill("SIGKILL"), ms) : undefined;
    p.on("exit", (code, signal) => {
      clearTimeout(timer);
      const phases = [...stderr.matchAll(/^recover: \+[\d.]+ s ([\w-]+)/gm)].map((m) => m[1]);
      resolve({ code, signal, phases, stderr });
    });
  });
}

test(`recover killed with SIGKILL at ${TRIALS + ELF_TRIALS} random moments never leaves a wrong dump, and a rerun completes it`, { timeout: 900_000 }, async (t) => {
  const fx = realFixture("q35-256m");
  const want = makedumpfileOracle(fx, 31);
  const maxPfn = want.maxMapnr;
  const zeroPages = want.bitmap2.map((b, i) => b & ~want.nonZero[i]);
  const dir = tempDir(t);
  const mem = `/dev/shm/guestcore-test-kill.${process.pid}.ram`;
  const seed = trialSeed();
  const rand = rng(seed);
  t.diagnostic(`seed ${seed} (GUESTCORE_KILL_SEED replays it)`);
  const raw = openRaw(fx.raw);
  const check = (out: string, elf: boolean, what: string) => {
    if (elf) {
      assertElfHoldsExactly(out, raw, want.nonZero, zeroPages, maxPfn);
      return;
    }
    const got = readKdumpBitmaps(out);
    assert.equal(got.maxMapnr, maxPfn, what);
    assert.equal(firstDifference(got.bitmap2, want.bitmap2, maxPfn), -1, `${what}: bitmap 2 equals makedumpfile's`);
    assert.equal(firstDifference(got.nonZero, want.nonZero, maxPfn), -1, `${what}: zero pages equal makedumpfile's`);
    assert.match(libkdumpfile(out, fx.raw), /^ok libkdumpfile \d+ pages/m, what);
  };
  try {
    // How long one undisturbed run takes: kills are drawn over all of it.
    copyFileSync(fx.raw, mem);
    const calib = join(dir, "calibration.kdump");
    const t0 = performance.now();
    const c = spawnSync(process.execPath, recoverArgs(mem, calib, false), { encoding: "utf8" });
    const total = performance.now() - t0;
    assert.equal(c.status, 0, c.stderr);
    check(calib, false, "undisturbed run");
    t.diagnostic(`an undisturbed recover takes ${total.toFixed(0)} ms`);

    const reached = new Map<string, number>();
    let finalAfterKill = 0;
    let resumedWithPages = 0;
    for (let i = 0; i < TRIALS + ELF_TRIALS; i++) {
      const elf = i >= TRIALS;
      const out = join(dir, `trial${i}.${elf ? "elf" : "kdump"}`);
      copyFileSync(fx.raw, mem);
      const at = 20 + rand() * total * 1.05;
      const k = await runKilled(recoverArgs(mem, out, elf), at);
      const last = k.phases[k.phases.length - 1] ?? "(before attach)";
      reached.set(last, (reached.get(last) ?? 0) + 1);
      const what = `trial ${i} (${elf ? "ELF" : "kdump"}, killed at ${at.toFixed(0)} ms after ${last})`;
      // The final name: absent, or a complete and right dump.
      if (existsSync(out)) {
        finalAfterKill++;
        check(out, elf, `${what}: the file left under the final name`);
      }
      // A rerun finishes the job, whatever the dead run had released; a
      // run that had finished everything (its journal gone) needs none.
      if (!existsSync(out) || existsSync(journalPath(out))) {
        const again = await runKilled(recoverArgs(mem, out, elf), Infinity);
        assert.equal(again.code, 0, `${what}: rerun: ${again.stderr}`);
        const held = /resuming: \d+ partial dump\(s\) hold (\d+) released pages/.exec(again.stderr);
        if (held && Number(held[1]) > 0) resumedWithPages++;
        check(out, elf, `${what}: after the rerun`);
      }
      assert.deepEqual(readdirSync(dirname(out)).filter((f) => f.startsWith(`.${basename(out)}`)), [], `${what}: no journal or partial left`);
      assert.equal(allocatedBytes(mem), 0, `${what}: all memory released at the end`);
      rmSync(out);
    }
    t.diagnostic(`last phase reached before the kill: ${[...reached].map(([p, n]) => `${p} ${n}`).join(", ")}; ${finalAfterKill} kills came after the dump was final`);
    t.diagnostic(`${resumedWithPages} reruns read pages the killed run had released back from its partial dump`);
    assert.ok(resumedWithPages >= 1, "some rerun had to read released pages from a partial dump");
    // The kills spread over the phases, the streaming phase included.
    assert.ok(reached.size >= 3, `kills landed in only ${[...reached.keys()].join(", ")}`);
  } finally {
    raw.close();
    rmSync(mem, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
