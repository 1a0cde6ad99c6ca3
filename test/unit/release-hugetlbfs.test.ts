// Hole punching in a hugetlbfs memory-backend file (hugepage-backed
// guests): the kernel frees whole huge pages only, so the releaser rounds
// each run inward to 2 MiB and never frees a huge page that still holds a
// page the dump needs. Judged by the kernel's own counts: the file's
// allocated blocks and HugePages_Free.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, rmdirSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadLibc } from "../../src/core/libc.js";
import { FileReleaser } from "../../src/recovery/hole-punch.js";

const HUGE = 2 << 20;
const PAGES_PER_HUGE = HUGE / 4096;
const freeHuge = () => Number(/^HugePages_Free:\s+(\d+)/m.exec(readFileSync("/proc/meminfo", "utf8"))![1]);

test("hugetlbfs: only whole huge pages are released, runs rounded inward", (t) => {
  const nrPath = "/proc/sys/vm/nr_hugepages";
  const before = Number(readFileSync(nrPath, "utf8"));
  const dir = mkdtempSync(join(tmpdir(), "gc-hugetlbfs-"));
  let mounted = false;
  try {
    writeFileSync(nrPath, String(before + 8));
    assert.ok(Number(readFileSync(nrPath, "utf8")) >= before + 8, "the kernel gave 8 more huge pages");
    execFileSync("mount", ["-t", "hugetlbfs", "-o", "pagesize=2M", "none", dir]);
    mounted = true;
    const file = join(dir, "guest.ram");
    const fd = openSync(file, "w+");
    const libc = loadLibc();
    // A hugetlbfs file cannot be written with write(2); fallocate gives it its huge pages, as QEMU's prealloc does.
    assert.equal(libc.fallocate(fd, 0, 0, 8 * HUGE), 0);
    closeSync(fd);
    const held = () => { const f = openSync(file, "r"); try { return fstatSync(f).blocks * 512; } finally { closeSync(f); } };
    assert.equal(held(), 8 * HUGE);
    const free0 = freeHuge();

    const r = new FileReleaser(file, [{ start: 0, end: 8 * HUGE, vaddr: 0n, fileOffset: 0 }]);
    try {
      assert.equal(r.hugetlbfs, true);
      assert.equal(r.granule, HUGE);
      // Inside one huge page: nothing can go.
      assert.equal(r.release([{ pfn: 10, count: 100 }]), 0);
      assert.equal(held(), 8 * HUGE);
      // Huge page 1 whole plus parts of 0 and 2: only huge page 1 goes.
      assert.equal(r.release([{ pfn: PAGES_PER_HUGE - 5, count: PAGES_PER_HUGE + 10 }]), HUGE);
      assert.equal(held(), 7 * HUGE);
      assert.equal(freeHuge(), free0 + 1, "the huge page is back in the kernel's pool");
      // Two adjacent runs that only together cover huge pages 3 and 4 are merged first.
      assert.equal(r.release([{ pfn: 3 * PAGES_PER_HUGE, count: 700 }, { pfn: 3 * PAGES_PER_HUGE + 700, count: 2 * PAGES_PER_HUGE - 700 }]), 2 * HUGE);
      assert.equal(held(), 5 * HUGE);
      assert.equal(r.releaseAll(), 8 * HUGE);
      assert.equal(held(), 0);
      assert.equal(freeHuge(), free0 + 8);
      t.diagnostic(`granule ${r.granule}, ${r.stats.calls} fallocate calls`);
    } finally {
      r.close();
    }
    rmSync(file);
  } finally {
    if (mounted) execFileSync("umount", [dir]);
    rmdirSync(dir);
    writeFileSync(nrPath, String(before));
  }
});
