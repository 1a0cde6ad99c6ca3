// The input shrinks under a dump: a copy of the real q35-256m capture cut
// to half while `guestcore dump` reads it, and raw, ELF and kdump inputs
// cut between their open and the reads of the dump. Each is one line
// naming the input and where it ends, exit 2 from the CLI, and no final
// file or temporary beside the output. And an input on a disk that fails
// its reads with EIO: one line naming the file and the errno.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Codecs } from "../../src/codecs/codec.js";
import { GuestImage } from "../../src/image.js";
import { dump } from "../../src/pipeline/dump.js";
import { realFixture } from "../helpers/real.js";
import { assertOneLineExit, oneLineError } from "../helpers/errors.js";
import { scratchDir, tempDir } from "../helpers/synthetic.js";
import { waitForTemporary } from "../helpers/temporaries.js";
import { shrinkableDisk } from "../helpers/failing-disk.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
// What was being read when the file ended may come first ("mem_section root 0 at ...: ").
const TRUNCATED = (path: string) => new RegExp(`${path.replace(/[.]/g, "\\.")}: file ends at \\d+, \\d+ bytes short \\(truncated\\?\\)$`);

test("the input cut to half while guestcore dump reads it: one line, exit 2, no output", async (t) => {
  const fx = realFixture("q35-256m");
  const shm = mkdtempSync("/dev/shm/guestcore-input-");
  const dir = tempDir(t);
  try {
    const input = join(shm, "vmcore.elf");
    copyFileSync(fx.elf, input);
    const out = join(dir, "vmcore");
    // 8 MB/s stretches the 17 MB dump over about two seconds of reads and writes.
    const child = spawn(process.execPath, [CLI, "dump", input, "-o", out, "-d", "31", "--rate-limit", "8M"], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    await waitForTemporary(dir, 1 << 20, 60_000);
    const size = statSync(input).size;
    truncateSync(input, Math.floor(size / 2));
    assertOneLineExit(await exited, stderr, TRUNCATED(input), "cut while read");
    assert.deepEqual(readdirSync(dir), [], "neither the dump nor its temporary");
  } finally {
    rmSync(shm, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test("raw, ELF and kdump inputs that shrink between their open and the dump's reads: one line, no output", async (t) => {
  const fx = realFixture("q35-256m");
  const codecs = await Codecs.load();
  const shm = mkdtempSync("/dev/shm/guestcore-input-");
  const dir = tempDir(t);
  try {
    const kdump = join(shm, "made.kdump");
    await dump(fx.elf, kdump, { level: 31, codecs });
    for (const [what, from] of [["raw", fx.raw], ["ELF", fx.elf], ["kdump", kdump]] as const) {
      const input = join(shm, `input.${what}`);
      copyFileSync(from, input);
      const img = GuestImage.open(input, { codecs });
      try {
        truncateSync(input, Math.floor(statSync(input).size / 4));
        await assert.rejects(dump(img, join(dir, `out.${what}`), { level: 31, codecs, workers: 0 }), oneLineError(TRUNCATED(input)), what);
      } finally {
        img.close();
      }
      assert.deepEqual(readdirSync(dir), [], `${what}: neither the dump nor its temporary`);
      rmSync(input);
    }
  } finally {
    rmSync(shm, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an input on a disk that fails reads with EIO (a loop device shrunk under ext4): one line naming the file, no output", () => {
  const fx = realFixture("q35-256m");
  const disk = shrinkableDisk(512);
  const dir = scratchDir();
  try {
    const input = join(disk.mnt, "vmcore.elf");
    copyFileSync(fx.elf, input);
    disk.remount();
    // The 268 MB file lies after the inode tables: cut to 150 MiB, the
    // device still holds its inode and headers, not its second half.
    disk.cut(150);
    const r = spawnSync(process.execPath, [CLI, "dump", input, "-o", join(dir, "vmcore"), "-d", "31"], { encoding: "utf8", timeout: 120_000 });
    assertOneLineExit(r.status, r.stderr, new RegExp(`${input.replace(/[.]/g, "\\.")}: cannot read \\d+ bytes at \\d+: EIO \\(i/o error\\)$`), "EIO reading the input");
    assert.deepEqual(readdirSync(dir), [], "neither the dump nor its temporary");
  } finally {
    disk.remove();
    rmSync(dir, { recursive: true, force: true });
  }
});
