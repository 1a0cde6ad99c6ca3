// Which files the warm blocks belong to, for the replacement's preload:
// debugfs maps filesystem blocks to inodes (icheck) and inodes to paths
// (ncheck), read-only on the image (-c: no journal replay, the guest's
// filesystem may be mid-transaction). ext2/3/4 only, with 4 KiB blocks
// starting at byte 0 of the disk (an unpartitioned image), so a disk
// block number is a filesystem block number.
import { execFile } from "node:child_process";
import { closeSync, openSync, readSync, writeFileSync, rmSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const EXT_MAGIC = 0xef53;
/** Blocks per debugfs run; debugfs reads command-file lines into a small buffer, so 256 per line. */
const BATCH = 16384;
const PER_LINE = 256;
const MAX_FILES = 100_000;

/** The filesystem block size of an ext2/3/4 image at offset 0, or undefined. */
export function extBlockSize(image: string): number | undefined {
  const fd = openSync(image, "r");
  try {
    const sb = Buffer.alloc(1024);
    if (readSync(fd, sb, 0, 1024, 1024) !== 1024 || sb.readUInt16LE(56) !== EXT_MAGIC) return undefined;
    const log = sb.readUInt32LE(24);
    return log <= 6 ? 1024 << log : undefined;
  } finally {
    closeSync(fd);
  }
}

/** Paths of the files owning these 4 KiB disk blocks (directories and metadata owners included). */
export async function filesOfBlocks(image: string, blocks: readonly number[]): Promise<string[]> {
  if (blocks.length === 0 || extBlockSize(image) !== 4096) return [];
  const dir = mkdtempSync(join(tmpdir(), "guestcore-debugfs-"));
  try {
    const inodes = new Set<number>();
    for (let i = 0; i < blocks.length; i += BATCH) {
      const cmd = join(dir, "icheck");
      const part = blocks.slice(i, i + BATCH);
      const cmdLines: string[] = [];
      for (let j = 0; j < part.length; j += PER_LINE) cmdLines.push(`icheck ${part.slice(j, j + PER_LINE).join(" ")}\n`);
      writeFileSync(cmd, cmdLines.join(""));
      const { stdout } = await run("debugfs", ["-c", "-f", cmd, image], { maxBuffer: 64 << 20 });
      for (const m of stdout.matchAll(/^(\d+)\s+(\d+)\s*$/gm)) inodes.add(Number(m[2]));
    }
    if (inodes.size === 0) return [];
    const cmd = join(dir, "ncheck");
    const ino = [...inodes].slice(0, MAX_FILES);
    const cmdLines: string[] = [];
    for (let j = 0; j < ino.length; j += PER_LINE) cmdLines.push(`ncheck ${ino.slice(j, j + PER_LINE).join(" ")}\n`);
    writeFileSync(cmd, cmdLines.join(""));
    const { stdout } = await run("debugfs", ["-c", "-f", cmd, image], { maxBuffer: 64 << 20 });
    const paths = new Set<string>();
    for (const m of stdout.matchAll(/^(\d+)\s+(\/.*)$/gm)) paths.add(m[2]);
    return [...paths].sort();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
