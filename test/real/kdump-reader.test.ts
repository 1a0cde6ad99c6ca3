// kdump-compressed and flattened inputs from real tools on real guests:
// makedumpfile 1.7.2's LZO (-l) and zlib (-c) output at every dump level,
// its flattened form (-F) and QEMU 7.2's dump-guest-memory "kdump-zlib".
// Every page the dump holds (bitmap 2, zero pages included) must read back
// byte for byte equal to the same pfn of the guest's QEMU ELF vmcore, and
// the segments must be exactly bitmap 2's runs. zstd pages come from
// re-encoding makedumpfile's output (Debian's makedumpfile has no zstd).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { rearrange } from "../../src/writers/rearrange.js";
import { isKdumpSource, type KdumpSource } from "../../src/sources/kdump.js";
import { openSource } from "../../src/sources/open.js";
import type { MemorySource } from "../../src/sources/source.js";
import { recompressKdump } from "../helpers/kdump-build.js";
import { LEVELS, makedumpfileOracle, oracleDir, readKdumpBitmaps, REAL_PROFILES, realFixture, type RealFixture } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";

const PS = 4096;

function run(cmd: string, args: string[], stdin: number | "ignore", stdout: number | "pipe"): void {
  const r = spawnSync(cmd, args, { stdio: [stdin, stdout, "pipe"], encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr}`);
}

/** A cached makedumpfile output: built under a temporary name, renamed when complete. */
function cached(path: string, make: (tmp: string) => void): string {
  if (existsSync(path)) return path;
  const tmp = `${path}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  make(tmp);
  renameSync(tmp, path);
  return path;
}

/** makedumpfile -c -d LEVEL (zlib), cached beside the LZO oracle. */
function zlibDump(fx: RealFixture, level: number): string {
  return cached(join(oracleDir(fx, "makedumpfile"), `d${level}-zlib.kdump`), (tmp) => run("makedumpfile", ["-c", "-d", String(level), fx.mdfElf, tmp], "ignore", "pipe"));
}

/** makedumpfile -F -c -d 31 > FILE: the flattened form. */
function flatDump(fx: RealFixture): string {
  return cached(join(oracleDir(fx, "makedumpfile"), "d31-zlib.flat"), (tmp) => {
    const fd = openSync(tmp, "w");
    try {
      run("makedumpfile", ["-F", "-c", "-d", "31", fx.mdfElf], "ignore", fd);
    } finally {
      closeSync(fd);
    }
  });
}

/** makedumpfile -R OUT < FLAT. */
function makedumpfileRearrange(flat: string, out: string): void {
  const fd = openSync(flat, "r");
  try {
    run("makedumpfile", ["-R", out], fd, "pipe");
  } finally {
    closeSync(fd);
  }
}

function runsOf(bm: Uint8Array, maxMapnr: number): [number, number][] {
  const out: [number, number][] = [];
  let start = -1;
  for (let p = 0; p <= maxMapnr; p++) {
    const set = p < maxMapnr && (bm[p >> 3] & (1 << (p & 7))) !== 0;
    if (set && start < 0) start = p;
    if (!set && start >= 0) {
      out.push([start, p]);
      start = -1;
    }
  }
  return out;
}

/**
 * Segments are bitmap 2's runs, and every page in them equals the ELF's.
 * Reads 256 pages at a time from both sides. Returns the pages compared.
 */
function assertHoldsElfPages(src: KdumpSource, elf: MemorySource, label: string): number {
  const want = runsOf(src.bitmap2, src.maxMapnr);
  assert.deepEqual(src.segments.map((s) => [s.start / PS, s.end / PS]), want, `${label}: segments are bitmap 2's runs`);
  const CH = 256;
  const a = new Uint8Array(CH * PS);
  const b = new Uint8Array(CH * PS);
  let pages = 0;
  for (const [s, e] of want) {
    for (let p = s; p < e; p += CH) {
      const n = Math.min(CH, e - p);
      src.readBatch([{ paddr: p * PS, dst: a.subarray(0, n * PS) }]);
      elf.readBatch([{ paddr: p * PS, dst: b.subarray(0, n * PS) }]);
      if (Buffer.compare(a.subarray(0, n * PS), b.subarray(0, n * PS)) !== 0) {
        for (let i = 0; i < n; i++) {
          const x = a.subarray(i * PS, (i + 1) * PS);
          const y = b.subarray(i * PS, (i + 1) * PS);
          assert.ok(Buffer.compare(x, y) === 0, `${label}: pfn 0x${(p + i).toString(16)} differs from the ELF vmcore`);
        }
      }
      pages += n;
    }
  }
  return pages;
}

function openKd(path: string, format: string): KdumpSource {
  const src = openSource(path);
  assert.equal(src.format, format);
  assert.ok(isKdumpSource(src));
  return src;
}

function assertSameDump(a: KdumpSource, b: KdumpSource, label: string) {
  assert.deepEqual(a.segments, b.segments, `${label}: segments`);
  assert.deepEqual(a.bitmap2, b.bitmap2, `${label}: bitmap 2`);
  assert.equal(a.maxMapnr, b.maxMapnr);
  assert.equal(a.dumpLevel, b.dumpLevel);
  assert.deepEqual(a.notes.map((n) => [n.name, n.type, Buffer.from(n.desc).toString("hex")]), b.notes.map((n) => [n.name, n.type, Buffer.from(n.desc).toString("hex")]), `${label}: notes`);
}

for (const profile of REAL_PROFILES) {
  test(`${profile}: makedumpfile -l (LZO) at levels ${LEVELS.join(",")}: bitmap 2 and every dumped page equal the ELF vmcore`, () => {
    const fx = realFixture(profile);
    const elf = openSource(fx.elf);
    try {
      for (const level of LEVELS) {
        const oracle = makedumpfileOracle(fx, level);
        const path = join(oracleDir(fx, "makedumpfile"), `d${level}.kdump`);
        const src = openKd(path, "kdump");
        try {
          assert.equal(src.compression, "lzo");
          assert.equal(src.dumpLevel, level);
          assert.equal(src.incomplete, false);
          assert.equal(src.maxMapnr, oracle.maxMapnr);
          assert.deepEqual(src.bitmap2, oracle.bitmap2.subarray(0, src.bitmap2.length), `d${level}: bitmap 2`);
          assert.equal(src.release, fx.release);
          const vi = src.notes.find((n) => n.name === "VMCOREINFO");
          assert.ok(vi && Buffer.from(vi.desc).toString("latin1").includes(`OSRELEASE=${fx.release}`), "VMCOREINFO note");
          const pages = assertHoldsElfPages(src, elf, `${profile} lzo d${level}`);
          assert.equal(pages, src.dumpedPages);
          // Pages makedumpfile found zero (shared zero page) read as zeros.
          const z = new Uint8Array(PS);
          let zeros = 0;
          for (let p = 0; p < src.maxMapnr && zeros < 64; p++) {
            if (src.isDumped(p) && !(oracle.nonZero[p >> 3] & (1 << (p & 7)))) {
              src.readBatch([{ paddr: p * PS, dst: z }]);
              assert.ok(z.every((x) => x === 0), `pfn ${p} is a zero page`);
              zeros++;
            }
          }
          if (level & 1) assert.ok(zeros > 0, "zero pages were checked");
        } finally {
          src.close();
        }
      }
    } finally {
      elf.close();
    }
  });

  test(`${profile}: makedumpfile -c (zlib) at levels 1 and 31: every dumped page equals the ELF vmcore`, () => {
    const fx = realFixture(profile);
    const elf = openSource(fx.elf);
    try {
      for (const level of [1, 31]) {
        const path = zlibDump(fx, level);
        const src = openKd(path, "kdump");
        try {
          assert.equal(src.compression, "zlib");
          assert.deepEqual(src.bitmap2, readKdumpBitmaps(path).bitmap2.subarray(0, src.bitmap2.length));
          assert.equal(assertHoldsElfPages(src, elf, `${profile} zlib d${level}`), src.dumpedPages);
        } finally {
          src.close();
        }
      }
    } finally {
      elf.close();
    }
  });

  test(`${profile}: makedumpfile --split into 3 files: each part reads its own pages, together they are the whole -d 31 dump`, () => {
    const fx = realFixture(profile);
    makedumpfileOracle(fx, 31);
    const dir = oracleDir(fx, "makedumpfile");
    const parts = [0, 1, 2].map((i) => join(dir, `d31-split${i}.kdump`));
    if (!parts.every((p) => existsSync(p))) {
      // Small split blocks (4 MiB) so that every part gets pages.
      for (const p of parts) rmSync(`${p}.tmp`, { force: true });
      run("makedumpfile", ["--split", "--splitblock-size", "4", "-l", "-d", "31", fx.mdfElf, ...parts.map((p) => `${p}.tmp`)], "ignore", "pipe");
      for (const p of parts) renameSync(`${p}.tmp`, p);
    }
    const whole = openKd(join(dir, "d31.kdump"), "kdump");
    const elf = openSource(fx.elf);
    try {
      const union = new Uint8Array(whole.bitmap2.length);
      let pages = 0;
      let prevEnd = 0;
      for (const p of parts) {
        const src = openKd(p, "kdump");
        try {
          assert.equal(src.split, true);
          assert.equal(src.sub.startPfn, prevEnd, "parts are consecutive");
          prevEnd = src.sub.endPfn;
          assert.ok(src.dumpedPages > 0, `${p} has pages`);
          pages += assertHoldsElfPages(src, elf, `${profile} ${p}`);
          for (let i = 0; i < union.length; i++) union[i] |= src.bitmap2[i];
        } finally {
          src.close();
        }
      }
      assert.equal(prevEnd, whole.maxMapnr);
      assert.equal(pages, whole.dumpedPages);
      assert.deepEqual(union, whole.bitmap2, "the parts' bitmaps make up the whole dump's");
    } finally {
      whole.close();
      elf.close();
    }
  });

  test(`${profile}: zstd pages (makedumpfile's -d 31 re-encoded): every dumped page equals the ELF vmcore`, (t) => {
    const fx = realFixture(profile);
    makedumpfileOracle(fx, 31);
    const dir = tempDir(t);
    const elf = openSource(fx.elf);
    try {
      const lzo = openKd(join(oracleDir(fx, "makedumpfile"), "d31.kdump"), "kdump");
      const out = join(dir, "d31.zstd.kdump");
      try {
        recompressKdump(lzo, out, "zstd");
      } finally {
        lzo.close();
      }
      const src = openKd(out, "kdump");
      try {
        assert.equal(src.compression, "zstd");
        assert.equal(assertHoldsElfPages(src, elf, `${profile} zstd d31`), src.dumpedPages);
      } finally {
        src.close();
      }
    } finally {
      elf.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test(`${profile}: makedumpfile -F -c -d 31 (flattened) reads as its kdump file does; rearrange() equals makedumpfile -R`, async (t) => {
    const fx = realFixture(profile);
    const flat = flatDump(fx);
    const dir = tempDir(t);
    const elf = openSource(fx.elf);
    try {
      const fsrc = openKd(flat, "kdump-flattened");
      const ksrc = openKd(zlibDump(fx, 31), "kdump");
      try {
        assertSameDump(fsrc, ksrc, `${profile} flattened`);
        assert.equal(assertHoldsElfPages(fsrc, elf, `${profile} flattened d31`), fsrc.dumpedPages);
      } finally {
        fsrc.close();
        ksrc.close();
      }
      const ours = join(dir, "ours.kdump");
      const theirs = join(dir, "theirs.kdump");
      await rearrange(flat, ours);
      makedumpfileRearrange(flat, theirs);
      assert.ok(Buffer.compare(readFileSync(ours), readFileSync(theirs)) === 0, "rearrange() output is byte-identical to makedumpfile -R's");
    } finally {
      elf.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // QEMU 7.2's dump-guest-memory with "format": "kdump-zlib" writes the
  // flattened form. The fixture recipe saves it beside vmcore.elf from the
  // same paused guest: QMP
  //   {"execute": "dump-guest-memory",
  //    "arguments": {"paging": false, "protocol": "file:<dir>/vmcore.kdump-zlib", "format": "kdump-zlib"}}
  test(`${profile}: QEMU dump-guest-memory kdump-zlib: every page equals the ELF vmcore; rearrange() equals makedumpfile -R`, async (t) => {
    const fx = realFixture(profile);
    const qemu = join(fx.dir, "vmcore.kdump-zlib");
    if (!existsSync(qemu)) {
      throw new Error(`missing real-kernel fixture ${qemu}: the fixture recipe must also save QMP dump-guest-memory {"paging": false, "format": "kdump-zlib"} of the paused guest (run 'bash fixtures/build-real.sh --force ${profile}' once the recipe does)`);
    }
    const dir = tempDir(t);
    const elf = openSource(fx.elf);
    try {
      const src = openKd(qemu, "kdump-flattened");
      try {
        assert.equal(src.compression, "zlib");
        assert.ok(src.notes.some((n) => n.name === "VMCOREINFO"), "VMCOREINFO note");
        const pages = assertHoldsElfPages(src, elf, `${profile} QEMU kdump-zlib`);
        assert.equal(pages, src.dumpedPages);
        assert.ok(pages >= (fx.memMiB << 8) * 0.9, `QEMU dumps all of RAM (${pages} pages)`);
      } finally {
        src.close();
      }
      const ours = join(dir, "ours.kdump");
      const theirs = join(dir, "theirs.kdump");
      await rearrange(qemu, ours);
      makedumpfileRearrange(qemu, theirs);
      assert.ok(Buffer.compare(readFileSync(ours), readFileSync(theirs)) === 0, "rearrange() output is byte-identical to makedumpfile -R's");
      const re = openKd(ours, "kdump");
      try {
        assert.equal(assertHoldsElfPages(re, elf, `${profile} QEMU kdump-zlib rearranged`), re.dumpedPages);
      } finally {
        re.close();
      }
    } finally {
      elf.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
