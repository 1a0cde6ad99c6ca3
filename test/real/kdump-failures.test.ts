// Failures of the output, as documented: an interrupted or failed dump to
// a file leaves no file behind (the temporary is removed), the error is
// one line naming the output and the errno, and "-d A,B" retries at the
// next level when the disk is full.
//
// The failing disks are real (root): ENOSPC from a small tmpfs, EIO from
// a loop device shrunk under ext4 (test/helpers/failing-disk.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { realFixture, REAL_PROFILES, readKdumpBitmaps } from "../helpers/real.js";
import { assertOneLineExit } from "../helpers/errors.js";
import { scratchDir } from "../helpers/synthetic.js";
import { waitForTemporary } from "../helpers/temporaries.js";
import { shrinkableDisk } from "../helpers/failing-disk.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  test(`${sig} in the middle of a dump removes the partial output`, async () => {
    const fx = realFixture(REAL_PROFILES[0]);
    const dir = scratchDir();
    try {
      const out = join(dir, "vmcore");
      // Level 0 and no compression, limited to 16 MB/s: about 16 s of writing.
      const child = spawn(process.execPath, [CLI, "dump", fx.raw, "-o", out, "-d", "0", "--codec", "none", "--rate-limit", "16M"], { stdio: ["ignore", "pipe", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (d) => (stderr += d));
      const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
      await waitForTemporary(dir, 8 << 20, 60_000);
      child.kill(sig);
      const code = await exited;
      assert.equal(code, sig === "SIGINT" ? 130 : 143, stderr);
      assert.match(stderr, /interrupted, partial output removed/);
      assert.deepEqual(readdirSync(dir), [], "neither the dump nor a temporary file remains");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** A tmpfs of `size` mounted on a fresh directory; the function unmounts and removes it. */
function smallTmpfs(size: string): { mnt: string; remove: () => void } {
  const top = scratchDir();
  const mnt = join(top, "small");
  mkdirSync(mnt);
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", mnt]);
  return { mnt, remove: () => { execFileSync("umount", [mnt]); rmSync(top, { recursive: true, force: true }); } };
}

test("a full disk (tmpfs) fails with one line and leaves nothing, kdump and ELF; -d 1,31 retries at 31", () => {
  const fx = realFixture(REAL_PROFILES[0]);
  const { mnt, remove } = smallTmpfs("24m");
  try {
    const out = join(mnt, "vmcore");
    for (const [what, args] of [["kdump -d 1", ["-d", "1"]], ["ELF -d 31", ["-E", "-d", "31"]]] as const) {
      const full = spawnSync(process.execPath, [CLI, "dump", fx.raw, "-o", out, ...args], { encoding: "utf8", timeout: 120_000 });
      assertOneLineExit(full.status, full.stderr, new RegExp(`^guestcore: cannot write ${out}: ENOSPC \\(no space left on device\\)$`), what);
      assert.deepEqual(readdirSync(mnt), [], `${what}: nothing left on the full disk`);
    }

    // The first level's temporary is gone before the second starts: else 24 MB would not hold it.
    const retry = spawnSync(process.execPath, [CLI, "dump", fx.raw, "-o", out, "-d", "1,31", "--json"], { encoding: "utf8", timeout: 120_000 });
    assert.equal(retry.status, 0, retry.stderr);
    assert.match(retry.stderr, /no space left at dump level 1; retrying at 31/);
    const report = JSON.parse(retry.stdout);
    assert.deepEqual(report.levelsTried, [1, 31]);
    assert.equal(report.level, 31);
    assert.ok(existsSync(out));
    assert.equal(readKdumpBitmaps(out).maxMapnr, report.table.total);
    assert.deepEqual(readdirSync(mnt), ["vmcore"]);
  } finally {
    remove();
  }
});

test("a disk that fails writes with EIO (a loop device shrunk under ext4) fails with one line and leaves nothing, kdump and ELF", () => {
  const fx = realFixture(REAL_PROFILES[0]);
  const disk = shrinkableDisk(128);
  try {
    // The metadata is in the first 3 MiB, the data after it.
    disk.cut(8);
    for (const [what, name, args] of [["kdump", "vmcore", ["-d", "31"]], ["ELF", "vmcore.elf", ["-E", "-d", "31"]]] as const) {
      const out = join(disk.mnt, name);
      const r = spawnSync(process.execPath, [CLI, "dump", fx.raw, "-o", out, ...args], { encoding: "utf8", timeout: 120_000 });
      assertOneLineExit(r.status, r.stderr, new RegExp(`^guestcore: cannot write ${out}: EIO \\(i/o error\\)$`), what);
      assert.deepEqual(readdirSync(disk.mnt).filter((f) => f !== "lost+found"), [], `${what}: neither the dump nor its temporary is there`);
    }
  } finally {
    disk.remove();
  }
});
