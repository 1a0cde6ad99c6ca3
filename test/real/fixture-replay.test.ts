// guestcore fixture record/replay on this project's own real-kernel
// captures. What a recorded manifest expects is checked against other
// programs first: the kernel-log digest is that of makedumpfile
// --dump-dmesg's output (cached per makedumpfile version), the page classes are makedumpfile's
// -d 31 table on the original ELF, the marker is what the guest's init
// printed (meta.json). Then replay passes; a hand-edited manifest (other
// release, a task removed) fails with readable differences and exit 1;
// the TAP and JUnit reports say the same, and xmllint accepts the JUnit.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makedumpfileDmesgOf, makedumpfileOracle, REAL_PROFILES, realFixture } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";
import type { Manifest } from "../../src/fixture/manifest.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function xmllint(path: string): void {
  const which = spawnSync("sh", ["-c", "command -v xmllint"], { encoding: "utf8" });
  assert.equal(which.status, 0, "xmllint is missing: apt-get install libxml2-utils");
  const r = spawnSync("xmllint", ["--noout", path], { encoding: "utf8" });
  assert.equal(r.status, 0, `xmllint rejects ${path}: ${r.stderr}`);
}

const attr = (xml: string, el: string, name: string) => Number(new RegExp(`<${el}\\b[^>]*\\b${name}="(\\d+)"`).exec(xml)?.[1]);

test("fixture record and replay of the real captures, and a drifted manifest", { timeout: 600_000 }, async (t) => {
  const dir = tempDir(t);
  const recorded: string[] = [];
  try {
    for (const profile of REAL_PROFILES) {
      const fx = realFixture(profile);
      const out = join(dir, profile);
      const t0 = performance.now();
      const r = cli(["fixture", "record", fx.elf, "-o", out]);
      assert.equal(r.code, 0, r.stderr);
      t.diagnostic(`${profile}: recorded in ${((performance.now() - t0) / 1000).toFixed(2)} s: ${r.stdout.trim().split("\n").join("; ")}`);
      recorded.push(out);

      const m = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")) as Manifest;
      const e = m.expect;
      assert.equal(e.kernelRelease, fx.release);
      assert.equal(e.unavailable, undefined);
      // makedumpfile --dump-dmesg on the original capture, byte for byte.
      const mdfLog = makedumpfileDmesgOf(fx);
      assert.equal(e.kernelLog!.sha256, createHash("sha256").update(mdfLog).digest("hex"));
      assert.ok(e.kernelLog!.markers.some((l) => l.endsWith(`] ${fx.marker}`)), "the guest's marker line is recorded");
      assert.ok(e.kernelLog!.markers.some((l) => l.includes("Kernel panic - not syncing")));
      // From the -d 31 kdump, the classes of every page the guest had: makedumpfile's table.
      const want = makedumpfileOracle(fx, 31);
      const p = e.pages!;
      assert.deepEqual(
        { zero: p.zero, cache: p.cache, cachePrivate: p.cachePrivate, user: p.user, free: p.free, kept: p.kept, total: p.total },
        { zero: want.counts.zero, cache: want.counts.cache, cachePrivate: want.counts.cachePrivate, user: want.counts.user, free: want.counts.free, kept: want.remaining, total: want.total },
      );
      assert.ok(e.tasks!.some((x) => x.pid === 1 && x.comm === "init"));
      assert.ok(e.modules!.some((x) => x.name === "qemu_fw_cfg"), "the guest loads qemu_fw_cfg for VMCOREINFO");
    }

    // All of them at once, as CI replays a library.
    const tap = join(dir, "replay.tap");
    const junit = join(dir, "replay.xml");
    const t1 = performance.now();
    const ok = cli(["fixture", "replay", ...recorded, "--tap", tap, "--junit", junit]);
    t.diagnostic(`replay of ${recorded.length} fixtures: ${((performance.now() - t1) / 1000).toFixed(2)} s`);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, new RegExp(`^${recorded.length} passed, 0 failed$`, "m"));
    const tapText = readFileSync(tap, "utf8");
    assert.match(tapText, /^TAP version 13\n1\.\.\d+\n/);
    assert.doesNotMatch(tapText, /^not ok/m);
    xmllint(junit);
    const x = readFileSync(junit, "utf8");
    assert.equal(attr(x, "testsuites", "failures"), 0);
    assert.equal(attr(x, "testsuites", "tests"), recorded.length * 6);

    // zstd-codec, the fallback where zstd-napi cannot be built, replays the same.
    const codec = cli(["fixture", "replay", recorded[0]], { GUESTCORE_ZSTD: "codec" });
    assert.equal(codec.code, 0, codec.stdout + codec.stderr);

    // A changed expectation: another release, and a task removed.
    const edited = join(dir, "edited");
    cpSync(recorded[0], edited, { recursive: true });
    const mp = join(edited, "manifest.json");
    const m = JSON.parse(readFileSync(mp, "utf8")) as Manifest;
    const realRelease = m.expect.kernelRelease;
    m.expect.kernelRelease = "6.1.0-99-amd64";
    const gone = m.expect.tasks!.find((x) => x.pid > 1 && x.ppid === 1) ?? m.expect.tasks!.find((x) => x.pid === 2)!;
    m.expect.tasks = m.expect.tasks!.filter((x) => x !== gone);
    m.name = "edited";
    writeFileSync(mp, JSON.stringify(m, null, 2));
    const tap2 = join(dir, "drift.tap");
    const junit2 = join(dir, "drift.xml");
    const bad = cli(["fixture", "replay", recorded[0], edited, "--tap", tap2, "--junit", junit2]);
    for (const l of bad.stdout.trimEnd().split("\n")) t.diagnostic(`drift report: ${l}`);
    assert.equal(bad.code, 1);
    assert.ok(bad.stdout.includes(`kernelRelease: expected "6.1.0-99-amd64", got "${realRelease}"`), bad.stdout);
    assert.ok(bad.stdout.includes(`tasks: unexpected pid ${gone.pid} (${gone.comm}, ppid ${gone.ppid})`), bad.stdout);
    assert.match(bad.stdout, /^FAIL edited \(.*\): 3 differences/m);
    assert.match(bad.stdout, /^1 passed, 1 failed$/m);
    const tapBad = readFileSync(tap2, "utf8");
    assert.match(tapBad, /^not ok \d+ - edited: kernelRelease$/m);
    assert.match(tapBad, /^not ok \d+ - edited: tasks$/m);
    assert.match(tapBad, /^ok \d+ - edited: kernelLog$/m);
    assert.equal((tapBad.match(/^not ok/gm) ?? []).length, 2);
    xmllint(junit2);
    const x2 = readFileSync(junit2, "utf8");
    assert.equal(attr(x2, "testsuites", "failures"), 2);
    assert.match(x2, /<testcase classname="fixture.edited" name="kernelRelease"[^>]*>\s*<failure type="drift" message="kernelRelease: expected &quot;6.1.0-99-amd64&quot;, got &quot;/);

    // A directory that is no fixture is a failure too, not a crash.
    const none = cli(["fixture", "replay", join(dir, "no-such-fixture")]);
    assert.equal(none.code, 1);
    assert.match(none.stdout, /^FAIL no-such-fixture .*cannot read .*manifest\.json: ENOENT/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
