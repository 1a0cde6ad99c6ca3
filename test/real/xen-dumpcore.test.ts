// Xen dump-cores of a real guest: the 256 MiB guest's mem.raw repacked
// into xl dump-core's format (fixtures/xen-dumpcore.ts), once as an HVM
// dump (.xen_pfn, pages in order) and once as a PV-style dump (.xen_p2m,
// pages stored in reverse, gmfn != pfn). From either, guestcore must find
// the kernel by scanning and keep exactly the pages it keeps from mem.raw,
// which the oracle tests prove equal to makedumpfile's; and crash 8.0.2,
// an independent reader of the format, must open both and find the
// guest's marker in its log (it is told the KASLR offset and phys_base,
// as a dump-core carries no VMCOREINFO).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GuestImage } from "../../src/image.js";
import { dump } from "../../src/pipeline/dump.js";
import { hex } from "../../src/core/errors.js";
import { XenDumpCoreSource } from "../../src/sources/xen-dumpcore.js";
import { CACHE, firstDifference, makedumpfileOracle, readKdumpBitmaps, REAL_PROFILES, realFixture } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";
import { xenCores } from "../helpers/xen.js";

const PROFILE = REAL_PROFILES[0];

for (const kind of ["hvm", "pv"] as const) {
  test(`${PROFILE} as a Xen ${kind} dump-core: kernel found, levels 1 and 31 keep what mem.raw and makedumpfile keep`, () => {
    const fx = realFixture(PROFILE);
    const core = xenCores(fx)[kind];
    const raw = GuestImage.open(fx.raw);
    const img = GuestImage.open(core);
    try {
      assert.ok(img.source instanceof XenDumpCoreSource);
      assert.equal(img.source.format, "xen-dumpcore");
      assert.equal((img.source as XenDumpCoreSource).kind, kind);
      assert.equal(img.kernel.origin, "scan");
      assert.equal(img.vmcoreinfo.osrelease, fx.release);
      assert.equal(img.kernel.kaslrOffset, raw.kernel.kaslrOffset);
      assert.equal(img.kernel.physBase, raw.kernel.physBase);
      assert.deepEqual(img.source.segments.map((s) => [s.start, s.end]), raw.source.segments.map((s) => [s.start, s.end]));
      for (const level of [1, 31]) {
        const want = raw.pageStats(level);
        const got = img.pageStats(level);
        assert.equal(got.maxPfn, want.maxPfn, `level ${level}: max pfn`);
        assert.equal(got.present, want.present, `level ${level}: present pages`);
        assert.deepEqual(got.counts, want.counts, `level ${level}: exclusion counts`);
        assert.equal(got.keptCount, want.keptCount, `level ${level}: kept pages`);
        assert.equal(firstDifference(got.kept, want.kept, got.maxPfn), -1, `level ${level}: kept set`);
        assert.equal(firstDifference(got.dumpable, want.dumpable, got.maxPfn), -1, `level ${level}: dumpable set`);
        const mdf = makedumpfileOracle(fx, level);
        assert.deepEqual(got.counts, mdf.counts, `level ${level}: makedumpfile's table`);
        assert.equal(firstDifference(got.dumpable, mdf.bitmap2, got.maxPfn), -1, `level ${level}: makedumpfile's bitmap 2`);
      }
    } finally {
      img.close();
      raw.close();
    }
  });
}

test(`${PROFILE} Xen HVM dump-core -> kdump -d 31: bitmap 2 equals makedumpfile's`, async (t) => {
  const fx = realFixture(PROFILE);
  const core = xenCores(fx).hvm;
  const dir = tempDir(t);
  try {
    const out = join(dir, "xen.kdump");
    await dump(core, out, { level: 31, workers: 0 });
    const got = readKdumpBitmaps(out);
    const want = makedumpfileOracle(fx, 31);
    assert.equal(got.maxMapnr, want.maxMapnr);
    assert.equal(firstDifference(got.bitmap2, want.bitmap2, got.maxMapnr), -1);
    assert.equal(firstDifference(got.nonZero, want.nonZero, got.maxMapnr), -1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`crash opens ${PROFILE}'s Xen dump-cores (HVM and PV) and finds the marker`, (t) => {
  const fx = realFixture(PROFILE);
  const cores = xenCores(fx);
  const vmlinux = join(CACHE, "vmlinux", `vmlinux-${fx.release}`);
  assert.ok(existsSync(vmlinux), `missing ${vmlinux}: run 'bash fixtures/check-tools.sh ${fx.elf} "${fx.marker}"' once to extract it`);
  const dir = tempDir(t);
  try {
    const cmds = join(dir, "cmds");
    writeFileSync(cmds, "sys\nlog\nquit\n");
    for (const kind of ["hvm", "pv"] as const) {
      const img = GuestImage.open(cores[kind]);
      const kaslr = hex(img.kernel.kaslrOffset);
      const physBase = hex(img.kernel.physBase);
      img.close();
      const r = spawnSync("crash", ["-s", "--kaslr", kaslr, "--machdep", `phys_base=${physBase}`, vmlinux, cores[kind], "-i", cmds],
        { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 300_000 });
      const outText = `${r.stdout}\n${r.stderr}`;
      assert.equal(r.status, 0, `crash on the ${kind} core failed:\n${outText.slice(-3000)}`);
      assert.match(r.stdout, new RegExp(`RELEASE: ${fx.release.replace(/\./g, "\\.")}`), `${kind}: ${outText.slice(-3000)}`);
      assert.ok(r.stdout.includes(fx.marker), `${kind}: marker not in crash's log:\n${outText.slice(-3000)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
