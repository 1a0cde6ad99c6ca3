// Failure behaviour, as documented: an interrupted or failed dump to a
// file leaves no file behind (the temporary file is removed), and
// "-d A,B" retries at the next level when the disk is full.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { realFixture, REAL_PROFILES, readKdumpBitmaps } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  test(`${sig} in the middle of a dump removes the partial output`, async () => {
    const fx = realFixture(REAL_PROFILES[0]);
    const dir = tempDir();
    const out = join(dir, "vmcore");
    // Level 0 and no compression, limited to 16 MB/s: about 16 s of writing.
    const child = spawn(process.execPath, [CLI, "dump", fx.raw, "-o", out, "-d", "0", "--codec", "none", "--rate-limit", "16M"], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    // Wait until the temporary file exists and has grown.
    const t0 = Date.now();
    while (Date.now() - t0 < 20_000 && !readdirSync(dir).some((f) => f.includes("partial"))) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(readdirSync(dir).some((f) => f.includes("partial")), "dump was running");
    child.kill(sig);
    const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    assert.equal(code, sig === "SIGINT" ? 130 : 143, stderr);
    assert.match(stderr, /interrupted, partial output removed/);
    assert.deepEqual(readdirSync(dir), [], "neither the dump nor a temporary file remains");
    rmSync(dir, { recursive: true, force: true });
  });
}

test("a full disk fails cleanly, and -d 1,31 retries at 31", () => {
  const fx = realFixture(REAL_PROFILES[0]);
  const mnt = join(tempDir(), "small");
  mkdirSync(mnt);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt]);
  try {
    const out = join(mnt, "vmcore");
    const full = spawnSync(process.execPath, [CLI, "dump", fx.raw, "-o", out, "-d", "1"], { encoding: "utf8", timeout: 120_000 });
    assert.equal(full.status, 2, full.stderr);
    assert.match(full.stderr.trim(), /^guestcore: writing .*: no space left on device$/);
    assert.deepEqual(readdirSync(mnt), [], "nothing left on the full disk");

    const retry = spawnSync(process.execPath, [CLI, "dump", fx.raw, "-o", out, "-d", "1,31", "--json"], { encoding: "utf8", timeout: 120_000 });
    assert.equal(retry.status, 0, retry.stderr);
    assert.match(retry.stderr, /no space left at dump level 1; retrying at 31/);
    const report = JSON.parse(retry.stdout);
    assert.deepEqual(report.levelsTried, [1, 31]);
    assert.equal(report.level, 31);
    assert.ok(existsSync(out));
    assert.equal(readKdumpBitmaps(out).maxMapnr, report.table.total);
  } finally {
    execFileSync("umount", [mnt]);
  }
});
