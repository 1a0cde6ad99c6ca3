// Real failing disks for fault tests (root): ext4 on a loop device over a
// file in /dev/shm, which is later cut short and the device shrunk with it
// (LOOP_SET_CAPACITY). The block layer then fails every I/O past the new
// end with EIO ("attempt to access beyond end of device"), as a disk whose
// tail went bad would. This kernel has no device-mapper (dm-error,
// dm-flakey) and no fail_make_request; a loop device over a full tmpfs
// reports ENOSPC, not EIO, here.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

export interface ShrinkableDisk {
  /** The mounted filesystem. */
  mnt: string;
  loop: string;
  /** Unmount and mount again: nothing of its files stays in the page cache. */
  remount(): void;
  /** Cut the device to `mib` MiB; I/O past it fails with EIO from now on. */
  cut(mib: number): void;
  /** Unmount, detach and remove everything. */
  remove(): void;
}

/**
 * A `mib` MiB ext4 without a journal (a journal write past the end would
 * turn the filesystem read-only, and the test could not see the temporary
 * go), 4 KiB blocks: flex_bg keeps the metadata at the start, so a cut
 * device still holds the inodes and fails the data.
 */
export function shrinkableDisk(mib: number): ShrinkableDisk {
  const work = mkdtempSync("/dev/shm/guestcore-disk-");
  const img = join(work, "disk.img");
  const mnt = join(work, "mnt");
  mkdirSync(mnt);
  let loop = "";
  let mounted = false;
  const remove = () => {
    if (mounted) execFileSync("umount", [mnt]);
    mounted = false;
    if (loop) execFileSync("losetup", ["-d", loop]);
    loop = "";
    rmSync(work, { recursive: true, force: true });
  };
  try {
    execFileSync("truncate", ["-s", `${mib}M`, img]);
    execFileSync("mkfs.ext4", ["-q", "-F", "-b", "4096", "-O", "^has_journal", "-E", "nodiscard,lazy_itable_init=0", img]);
    loop = execFileSync("losetup", ["-f", "--show", img], { encoding: "utf8" }).trim();
    execFileSync("mount", [loop, mnt]);
    mounted = true;
    readdirSync(mnt);
  } catch (e) {
    remove();
    throw e;
  }
  return {
    mnt, loop, remove,
    remount: () => {
      execFileSync("umount", [mnt]);
      execFileSync("mount", [loop, mnt]);
    },
    cut: (to: number) => {
      execFileSync("truncate", ["-s", `${to}M`, img]);
      execFileSync("losetup", ["-c", loop]);
      const now = Number(execFileSync("blockdev", ["--getsize64", loop], { encoding: "utf8" }).trim());
      if (now !== to * 1024 * 1024) throw new Error(`${loop} is ${now} bytes after the cut to ${to} MiB`);
    },
  };
}
