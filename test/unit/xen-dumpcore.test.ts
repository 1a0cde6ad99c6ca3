// Xen dump-core files (docs/misc/dump-core-format.txt) built from
// synthetic guests: sniffed as such, the pfn table honoured (HVM .xen_pfn
// in order, PV .xen_p2m reversed with gmfn != pfn), invalid entries
// skipped, holes absent, the kernel found by scanning and the same pages
// kept as from the raw image; and every malformed header one clear error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { existsSync, rmSync } from "node:fs";
import { buildSynthetic, type Synthetic } from "../../fixtures/synthetic.js";
import { buildXenDumpCore, type XenCoreLayout, type XenCoreOptions } from "../../fixtures/xen-dumpcore.js";
import { GuestImage } from "../../src/image.js";
import { openSource, sniffFormat } from "../../src/sources/open.js";
import { XenDumpCoreSource } from "../../src/sources/xen-dumpcore.js";
import { GuestcoreError } from "../../src/core/errors.js";
import { tempDir, writeTemp, assertMatchesKinds, type Cleanup } from "../helpers/synthetic.js";

const PAGE = 4096;
const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
let synth: Synthetic | undefined;
const guest = () => (synth ??= buildSynthetic({ memMiB: 16 }));

function core(t: Cleanup, opts: XenCoreOptions): { path: string; buf: Buffer; layout: XenCoreLayout; dir: string } {
  const { buf, layout } = buildXenDumpCore(guest().image, opts);
  const dir = tempDir(t);
  return { path: writeTemp(dir, "guest.core", buf), buf, layout, dir };
}

for (const kind of ["hvm", "pv"] as const) {
  test(`xen dump-core ${kind}: sniffed, pages where the pfn table says, same kernel and kept pages as the raw image`, (t) => {
    const s = guest();
    const { path, layout, dir } = core(t, { kind });
    try {
      assert.equal(sniffFormat(path), "xen-dumpcore");
      const src = openSource(path) as XenDumpCoreSource;
      assert.ok(src instanceof XenDumpCoreSource);
      assert.equal(src.kind, kind);
      assert.equal(src.header.nrPages, s.kinds.length + 3);
      assert.equal(src.validPages, s.kinds.length, "the three ~0 entries hold nothing");
      assert.equal(src.header.xenVersion, "4.17.7-guestcore");
      assert.deepEqual(src.header.formatVersion, { major: 0, minor: 1 });
      assert.deepEqual(src.segments.map((x) => [x.start, x.end]), [[0, s.image.length]]);
      assert.equal(src.runCount, kind === "hvm" ? 1 : s.kinds.length, "pv pages are stored in reverse: one run per page");
      // Page p of the guest reads as page p of the image (and not the slot's neighbour).
      for (const pfn of [0, 1, 0x120, 0x121, 1234, s.kinds.length - 1]) {
        const got = new Uint8Array(PAGE);
        src.readBatch([{ paddr: pfn * PAGE, dst: got }]);
        assert.deepEqual(Buffer.from(got), s.image.subarray(pfn * PAGE, (pfn + 1) * PAGE), `pfn ${pfn}`);
      }
      // A read across pages (and runs) is stitched.
      const span = new Uint8Array(3 * PAGE);
      src.readBatch([{ paddr: 0x120 * PAGE + 100, dst: span }]);
      assert.deepEqual(Buffer.from(span), s.image.subarray(0x120 * PAGE + 100, 0x120 * PAGE + 100 + span.length));
      assert.equal(layout.kind, kind);
      assert.equal(src.vcpuContext(0)?.length, 5168);
      assert.equal(src.vcpuContext(1), undefined);
      src.close();

      const img = GuestImage.open(path);
      try {
        assert.equal(img.source.format, "xen-dumpcore");
        assert.equal(img.kernel.origin, "scan");
        assert.equal(img.vmcoreinfo.osrelease, s.release);
        assert.equal(img.kernel.physBase, s.physBase);
        assertMatchesKinds(img, s);
      } finally {
        img.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("xen dump-core: pfns left out of the dump are absent, reads of them fail clearly", (t) => {
  const s = guest();
  const holeStart = 3000;
  const holeEnd = 3100;
  const { path, dir } = core(t, { kind: "pv", order: "ascending", omit: (p) => p >= holeStart && p < holeEnd });
  try {
    const src = openSource(path);
    assert.deepEqual(src.segments.map((x) => [x.start, x.end]), [[0, holeStart * PAGE], [holeEnd * PAGE, s.image.length]]);
    assert.throws(() => src.readBatch([{ paddr: holeStart * PAGE + 8, dst: new Uint8Array(8) }]),
      (e: Error) => e instanceof GuestcoreError && /physical address 0xbb8008 is not in the Xen dump-core/.test(e.message));
    src.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

type Patch = (buf: Buffer, l: XenCoreLayout) => Buffer;
const u64 = (buf: Buffer, off: number, v: bigint) => {
  buf.writeBigUInt64LE(v, off);
  return buf;
};
const shdr = (l: XenCoreLayout, name: string, field: "offset" | "size" | "entsize" | "type" | "name") =>
  l.shdrOffset[name] + { name: 0, type: 4, offset: 24, size: 32, entsize: 56 }[field];

const HOSTILE: [string, XenCoreOptions["kind"], Patch, RegExp][] = [
  ["truncated inside .xen_pages", "hvm", (b, l) => b.subarray(0, l.pagesOffset + 5 * PAGE), /section 5 needs bytes up to \d+, the file has \d+ \(truncated\?\)/],
  ["section headers past the end", "hvm", (b) => u64(b, 40, BigInt(b.length - 10)), /7 section headers at \d+ run past the end of the file/],
  ["absurd section count", "hvm", (b) => (b.writeUInt16LE(60000, 60), b), /60000 sections is more than any dump-core has/],
  ["e_shstrndx out of range", "hvm", (b) => (b.writeUInt16LE(9, 62), b), /e_shstrndx 9 is not below e_shnum 7/],
  ["section name outside the name table", "hvm", (b, l) => (b.writeUInt32LE(0x7fff, shdr(l, ".xen_pages", "name")), b), /section 5's name \(offset 32767\) is not in the section name table/],
  ["huge section offset", "hvm", (b, l) => u64(b, shdr(l, ".xen_pfn", "offset"), 0xffffffffffff0000n), /section 6 sh_offset 0xffffffffffff0000 is out of range/],
  ["no DUMPCORE_HEADER note", "hvm", (b, l) => (b.writeUInt32LE(0x2000009, l.headerDescOffset - 8), b), /lacks the DUMPCORE_HEADER note/],
  ["format version 1.0", "hvm", (b, l) => u64(b, l.formatDescOffset, 1n << 32n), /format version 1\.0 is not supported/],
  ["bad magic", "hvm", (b, l) => u64(b, l.headerDescOffset, 0xdeadbeefn), /magic 0xdeadbeef is neither 0xf00febed \(PV\) nor 0xf00febee \(HVM\)/],
  ["PV magic with .xen_pfn", "hvm", (b, l) => u64(b, l.headerDescOffset, 0xf00febedn), /a PV dump \(magic 0xf00febed\) needs \.xen_p2m, it has \.xen_pfn/],
  ["page size 64 KiB", "hvm", (b, l) => u64(b, l.headerDescOffset + 24, 65536n), /page size 65536 is not 4096/],
  ["nr_pages disagrees with .xen_pages", "hvm", (b, l) => u64(b, l.headerDescOffset + 16, BigInt(l.nrPages + 1)), /\.xen_pages has \d+ bytes, the header's 4100 pages need \d+/],
  ["absurd nr_pages", "hvm", (b, l) => u64(b, l.headerDescOffset + 16, 1n << 50n), /1125899906842624 pages is more than any guest has/],
  ["absurd vcpu count", "hvm", (b, l) => u64(b, l.headerDescOffset + 8, 1n << 40n), /1099511627776 vcpus is more than Xen supports/],
  ["p2m table size disagrees", "pv", (b, l) => u64(b, shdr(l, ".xen_p2m", "size"), BigInt(l.nrPages * 16 - 16)), /\.xen_p2m has \d+ bytes, the header's 4099 pages need 65584/],
  ["pfn listed twice", "pv", (b, l) => u64(b, l.tableOffset + 16, b.readBigUInt64LE(l.tableOffset)), /pfn 0xfff is listed twice in \.xen_p2m/],
  ["pfn beyond any memory", "hvm", (b, l) => u64(b, l.tableOffset + 8 * 7, 1n << 60n), /\.xen_pfn entry 7 has pfn 0x1000000000000000, beyond any guest's physical memory/],
  ["every entry invalid", "hvm", (b, l) => (b.fill(0xff, l.tableOffset, l.tableOffset + l.nrPages * 8), b), /every entry of \.xen_pfn is invalid/],
  ["note runs past its section", "hvm", (b, l) => (b.writeUInt32LE(0x10000, l.headerDescOffset - 12), b), /\.note\.Xen: ELF: note at \d+ runs past its segment/],
];

for (const [name, kind, patch, pattern] of HOSTILE) {
  test(`hostile xen dump-core: ${name}`, (t) => {
    const { buf, layout } = buildXenDumpCore(guest().image, { kind });
    const dir = tempDir(t);
    try {
      const path = writeTemp(dir, "bad.core", patch(Buffer.from(buf), layout));
      assert.throws(() => openSource(path, { format: "xen-dumpcore" }), (e: Error) => {
        assert.ok(e instanceof GuestcoreError, `${e.name}: ${e.message}`);
        assert.match(e.message, pattern);
        assert.doesNotMatch(e.message, /\n/);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("hostile xen dump-core through the CLI: one line, exit 2, no output", (t) => {
  const { buf, layout } = buildXenDumpCore(guest().image, { kind: "pv" });
  const dir = tempDir(t);
  try {
    const bad = Buffer.from(buf);
    bad.writeBigUInt64LE(bad.readBigUInt64LE(layout.tableOffset), layout.tableOffset + 16);
    const path = writeTemp(dir, "bad.core", bad);
    const out = join(dir, "out.kdump");
    const r = spawnSync(process.execPath, [CLI, "dump", path, "-o", out, "-d", "31"], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.deepEqual(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^guestcore: .*pfn 0xfff is listed twice in \.xen_p2m/);
    assert.ok(!existsSync(out), "no output file");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an ordinary ELF vmcore is not taken for a Xen dump-core", async (t) => {
  const { syntheticElf } = await import("../../fixtures/synthetic.js");
  const dir = tempDir(t);
  try {
    const path = writeTemp(dir, "g.elf", syntheticElf(guest()));
    assert.equal(sniffFormat(path), "elf");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
