// kdump-compressed and flattened inputs, on files assembled by hand:
// every codec reads back byte for byte, the header's optional parts, and
// hostile files (truncated, absurd sizes, corrupt pages, bad records), each
// of which must fail fast with one GuestcoreError naming the problem.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { deflateSync } from "node:zlib";
import { GuestcoreError } from "../../src/core/errors.js";
import { encodeFlatEnd, encodeFlatHeader, encodeFlatRecord, PAGE_DESC_SIZE } from "../../src/format/kdump.js";
import { FLAT_INDEX_MAX_RECORDS, FlatIndex, openFlattened } from "../../src/sources/flattened.js";
import { rearrange } from "../../src/writers/rearrange.js";
import { lzo1xDecompress } from "../../src/codecs/lzo1x.js";
import { GuestImage } from "../../src/image.js";
import { isKdumpSource, type KdumpSource } from "../../src/sources/kdump.js";
import { openSource } from "../../src/sources/open.js";
import type { MemorySource } from "../../src/sources/source.js";
import { buildSynthetic } from "../../fixtures/synthetic.js";
import { buildKdump, compressPage, flatten, lzo1xCompress, type BuiltKdump, type PageCodecName } from "../helpers/kdump-build.js";
import { tempDir, writeTemp } from "../helpers/synthetic.js";

const PS = 4096;
const MAX_MAPNR = 700;

/** Pages of every flavour: zero, repetitive text, runs, noise. */
function samplePages(seed = 1): Map<number, Uint8Array> {
  const pages = new Map<number, Uint8Array>();
  let x = seed;
  const rnd = () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  const dumped = [0, 1, 2, 3, 10, 11, 12, 64, 65, 100, 255, 256, 257, 300, 301, 302, 303, 511, 512, 600, 698, 699];
  dumped.forEach((pfn, i) => {
    const p = new Uint8Array(PS);
    switch (i % 4) {
      case 0: break; // zero
      case 1: for (let j = 0; j < PS; j++) p[j] = "GUESTCORE kdump page "[j % 21].charCodeAt(0) ^ (pfn & 7); break;
      case 2: for (let j = 0; j < PS; j++) p[j] = (j >> 6) + pfn; break;
      case 3: for (let j = 0; j < PS; j++) p[j] = rnd(); break;
    }
    p[0] = i % 4 === 0 ? 0 : pfn & 0xff;
    pages.set(pfn, p);
  });
  return pages;
}

const VMCOREINFO = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\n";

function build(o: Partial<Parameters<typeof buildKdump>[0]> = {}): BuiltKdump {
  return buildKdump({ maxMapnr: MAX_MAPNR, pages: samplePages(), vmcoreinfo: VMCOREINFO, ...o });
}

function runsOf(pfns: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const p of [...pfns].sort((a, b) => a - b)) {
    const last = out[out.length - 1];
    if (last && last[1] === p) last[1]++;
    else out.push([p, p + 1]);
  }
  return out;
}

function assertReadsPages(src: MemorySource, pages: Map<number, Uint8Array>, label: string) {
  assert.deepEqual(src.segments.map((s) => [s.start / PS, s.end / PS]), runsOf([...pages.keys()]), `${label}: segments are bitmap 2's runs`);
  const buf = new Uint8Array(PS);
  for (const [pfn, want] of pages) {
    src.readBatch([{ paddr: pfn * PS, dst: buf }]);
    assert.ok(Buffer.compare(buf, want) === 0, `${label}: pfn ${pfn} reads back`);
  }
}

function expectError(fn: () => unknown, pattern: RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof GuestcoreError, `a GuestcoreError, got ${(e as Error)?.stack ?? e}`);
    assert.match(e.message, pattern);
    assert.doesNotMatch(e.message, /\n/, "one line");
    return true;
  });
}

// A hostile input that makes a reader loop fails its test at this bound, with the test's name, instead of hanging the suite.
const HANG = { timeout: 60_000 };

async function expectRejects(p: Promise<unknown>, pattern: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GuestcoreError, `a GuestcoreError, got ${(e as Error)?.stack ?? e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

function readPfn(src: MemorySource, pfn: number): Uint8Array {
  const b = new Uint8Array(PS);
  src.readBatch([{ paddr: pfn * PS, dst: b }]);
  return b;
}

/** Overwrite page_desc fields of a dumped pfn in a built file. */
function patchDesc(k: BuiltKdump, pfn: number, f: { offset?: bigint; size?: number; flags?: number }) {
  const at = k.descOffset + k.placed.get(pfn)!.index * PAGE_DESC_SIZE;
  if (f.offset !== undefined) k.bytes.writeBigInt64LE(f.offset, at);
  if (f.size !== undefined) k.bytes.writeUInt32LE(f.size, at + 8);
  if (f.flags !== undefined) k.bytes.writeUInt32LE(f.flags, at + 12);
}

/** A non-zero page that the codec did compress. */
function compressedPfn(k: BuiltKdump): number {
  for (const [pfn, p] of k.placed) if (p.flags !== 0) return pfn;
  throw new Error("no compressed page");
}

// ---------------------------------------------------------------- reading

for (const codec of ["raw", "zlib", "lzo", "snappy", "zstd"] as PageCodecName[]) {
  test(`kdump with ${codec} pages: segments are bitmap 2, every page reads back, zero pages read as zeros`, (t) => {
    const dir = tempDir(t);
    try {
      const pages = samplePages();
      const k = build({ codec, pages });
      if (codec !== "raw") assert.ok([...k.placed.values()].some((p) => p.flags !== 0), "some pages compressed");
      const path = writeTemp(dir, "d.kdump", k.bytes);
      const src = openSource(path);
      try {
        assert.equal(src.format, "kdump");
        assert.ok(isKdumpSource(src));
        assert.equal(src.dumpLevel, 31);
        assert.equal(src.maxMapnr, MAX_MAPNR);
        assert.equal(src.incomplete, false);
        assert.equal(src.pageSize, PS);
        assert.equal(src.physBase, -0x24000000n);
        assert.equal(src.dumpedPages, pages.size);
        assert.equal(src.compression, codec === "raw" ? "none" : codec);
        assert.deepEqual(src.bitmap2, Uint8Array.from(k.bytes.subarray(k.bitmapOffset + k.bitmapHalf, k.bitmapOffset + k.bitmapHalf + Math.ceil(MAX_MAPNR / 8))));
        assert.equal(src.bitmap1.length, Math.ceil(MAX_MAPNR / 8));
        const vi = src.notes.find((n) => n.name === "VMCOREINFO");
        assert.equal(Buffer.from(vi!.desc).toString("latin1"), VMCOREINFO);
        assertReadsPages(src, pages, codec);
        // And again backwards (no reliance on sequential order), then a read across pages.
        for (const pfn of [...pages.keys()].reverse()) assert.ok(Buffer.compare(readPfn(src, pfn), pages.get(pfn)!) === 0);
        const span = new Uint8Array(3 * PS);
        src.readBatch([{ paddr: 300 * PS + 100, dst: span }]);
        const want = Buffer.concat([300, 301, 302, 303].map((p) => pages.get(p)!)).subarray(100, 100 + 3 * PS);
        assert.ok(Buffer.compare(span, want) === 0, "unaligned multi-page read");
        const small = new Uint8Array(8);
        src.readBatch([{ paddr: 11 * PS + 40, dst: small }]);
        assert.deepEqual(small, pages.get(11)!.subarray(40, 48));
        expectError(() => readPfn(src, 4), /pfn 0x4\) is excluded from the dump/);
        expectError(() => readPfn(src, MAX_MAPNR + 5), /excluded from the dump/);
        expectError(() => src.readBatch([{ paddr: 3 * PS + 4000, dst: new Uint8Array(200) }]), /pfn 0x4\) is excluded/);
      } finally {
        src.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("older header versions: 32-bit max_mapnr, no notes before v4, VMCOREINFO from offset_vmcoreinfo", (t) => {
  const dir = tempDir(t);
  try {
    for (const version of [1, 2, 3, 4, 5, 6]) {
      const k = build({ headerVersion: version, vmcoreinfoNote: false, notes: [{ name: "CORE", type: 1, desc: new Uint8Array(16) }] });
      // Pre-v6 writers left max_mapnr_64 zero.
      if (version < 6) k.bytes.writeBigUInt64LE(0n, PS + 96);
      const src = openSource(writeTemp(dir, `v${version}.kdump`, k.bytes)) as KdumpSource;
      try {
        assert.equal(src.maxMapnr, MAX_MAPNR, `v${version} max_mapnr`);
        const names = src.notes.map((n) => n.name);
        assert.deepEqual(names, version >= 4 ? ["CORE", "VMCOREINFO"] : version >= 3 ? ["VMCOREINFO"] : [], `v${version} notes`);
        if (version >= 3) assert.equal(Buffer.from(src.notes.find((n) => n.name === "VMCOREINFO")!.desc).toString(), VMCOREINFO);
        assertReadsPages(src, samplePages(), `v${version}`);
      } finally {
        src.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a makedumpfile --split part: bitmap 2 is cut to its pfn range, the pages in it read back", (t) => {
  const dir = tempDir(t);
  try {
    const pages = samplePages();
    for (const [a, b] of [[0, 100], [100, 302], [302, MAX_MAPNR]]) {
      const k = build({ codec: "lzo", split: [a, b] });
      const src = openSource(writeTemp(dir, `s${a}.kdump`, k.bytes)) as KdumpSource;
      try {
        assert.equal(src.split, true);
        assert.equal(src.sub.startPfn, a);
        assert.equal(src.sub.endPfn, b);
        assertReadsPages(src, new Map([...pages].filter(([p]) => p >= a && p < b)), `split ${a}-${b}`);
        expectError(() => readPfn(src, a === 0 ? 100 : 0), /excluded from the dump/);
      } finally {
        src.close();
      }
    }
    const bad = build({ split: [10, MAX_MAPNR + 1] });
    expectError(() => openSource(writeTemp(dir, "bad.kdump", bad.bytes)), /split range of pfns 10\.\.701 is not within max_mapnr 700/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an incomplete dump: lost pages (descriptor offset 0, or past the end) leave the segments and fail clearly", (t) => {
  const dir = tempDir(t);
  try {
    const pages = samplePages();
    const k = build({ codec: "zlib", incomplete: true, level: 0 });
    // makedumpfile ran out of space after pfn 300's data: later descriptors are zero.
    const cut = k.placed.get(301)!;
    const bytes = Buffer.from(k.bytes.subarray(0, cut.offset));
    for (const [, p] of k.placed) if (p.index >= cut.index) bytes.fill(0, k.descOffset + p.index * PAGE_DESC_SIZE, k.descOffset + (p.index + 1) * PAGE_DESC_SIZE);
    const src = openSource(writeTemp(dir, "inc.kdump", bytes)) as KdumpSource;
    try {
      assert.equal(src.incomplete, true);
      const kept = new Map([...pages].filter(([pfn]) => k.placed.get(pfn)!.index < cut.index));
      assert.equal(src.lostPages, pages.size - kept.size);
      assertReadsPages(src, kept, "incomplete");
      expectError(() => readPfn(src, 600), /pfn 0x258 was never written: the dump is incomplete/);
    } finally {
      src.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an incomplete dump cut inside its descriptor table or its page data: only the written pages are present", (t) => {
  const dir = tempDir(t);
  try {
    const pages = samplePages();
    const k = build({ codec: "zlib", incomplete: true, level: 0 });
    const byIndex = [...k.placed].sort((a, b) => a[1].index - b[1].index).map(([pfn]) => pfn);
    // Cut in the middle of pfn 257's data: pages before it are whole.
    const p257 = k.placed.get(257)!;
    const src = openSource(writeTemp(dir, "cut-data.kdump", k.bytes.subarray(0, p257.offset + 3))) as KdumpSource;
    try {
      const kept = new Map(byIndex.slice(0, p257.index).map((p) => [p, pages.get(p)!]));
      assert.equal(src.lostPages, pages.size - kept.size);
      assertReadsPages(src, kept, "cut in data");
      expectError(() => readPfn(src, 257), /pfn 0x101 was never written: the dump is incomplete/);
    } finally {
      src.close();
    }
    // Cut after 5 descriptors (and so before any data).
    const src2 = openSource(writeTemp(dir, "cut-desc.kdump", k.bytes.subarray(0, k.descOffset + 5 * PAGE_DESC_SIZE + 7))) as KdumpSource;
    try {
      assert.equal(src2.lostPages, pages.size);
      assert.deepEqual(src2.segments, []);
      expectError(() => readPfn(src2, 0), /pfn 0x0 was never written/);
      expectError(() => readPfn(src2, 699), /pfn 0x2bb was never written/);
    } finally {
      src2.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a kdump file of a whole synthetic guest: the kernel is found and page classes equal the raw image's", (t) => {
  const dir = tempDir(t);
  try {
    const s = buildSynthetic({ memMiB: 32 });
    const pages = new Map<number, Uint8Array>();
    for (let pfn = 0; pfn < s.image.length / PS; pfn++) pages.set(pfn, s.image.subarray(pfn * PS, (pfn + 1) * PS));
    const k = buildKdump({ maxMapnr: pages.size, pages, codec: "lzo", level: 0, vmcoreinfo: s.vmcoreinfo });
    const kd = GuestImage.open(writeTemp(dir, "g.kdump", k.bytes));
    const raw = GuestImage.open(writeTemp(dir, "g.raw", s.image));
    try {
      assert.equal(kd.source.format, "kdump");
      assert.equal(kd.vmcoreinfo.osrelease, s.release);
      assert.equal(kd.kernel.origin, "note");
      assert.equal(kd.kernel.physBase, raw.kernel.physBase);
      for (const level of [0, 1, 31]) {
        const a = kd.pageStats(level);
        const b = raw.pageStats(level);
        assert.deepEqual(a.counts, b.counts, `level ${level}`);
        assert.deepEqual(a.kept, b.kept, `level ${level} kept`);
      }
    } finally {
      kd.close();
      raw.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------- hostile kdump files

interface Hostile {
  name: string;
  make: () => Buffer;
  /** Fails at open (default) or when reading this pfn. */
  readPfn?: number;
  error: RegExp;
}

const base = () => build({ codec: "zlib" });
const hostile: Hostile[] = [
  { name: "a file shorter than the header", make: () => base().bytes.subarray(0, 300), error: /truncated kdump file: 300 bytes, the header alone needs 464/ },
  { name: "a file cut inside its bitmaps", make: () => { const k = base(); return k.bytes.subarray(0, k.bitmapOffset + 10); }, error: /truncated kdump file: header, sub-header and bitmaps .* need \d+ bytes, the file has/ },
  { name: "a file cut inside its page descriptors", make: () => { const k = base(); return k.bytes.subarray(0, k.descOffset + 30); }, error: /truncated kdump file: 22 page descriptors at \d+ need \d+ bytes/ },
  { name: "a file cut inside its page data", make: () => { const k = base(); return k.bytes.subarray(0, k.bytes.length - 10); }, readPfn: 699, error: /pfn 0x2bb: page data at \d+ \(\d+ bytes\) lies past the end of the file/ },
  { name: "block size not a power of two", make: () => { const k = base(); k.bytes.writeInt32LE(3000, 428); return k.bytes; }, error: /block size 3000 is not a power of two between 512 and 64K/ },
  { name: "block size 128K", make: () => { const k = base(); k.bytes.writeInt32LE(1 << 17, 428); return k.bytes; }, error: /block size 131072 is not a power of two/ },
  { name: "block size 256", make: () => { const k = base(); k.bytes.writeInt32LE(256, 428); return k.bytes; }, error: /block size 256 is not/ },
  { name: "bitmaps larger than the file", make: () => { const k = base(); k.bytes.writeUInt32LE(0x7ffffffe, 436); return k.bytes; }, error: /truncated kdump file: header, sub-header and bitmaps \(2147483646 blocks of 4096\) need \d+ bytes/ },
  { name: "an odd number of bitmap blocks", make: () => { const k = base(); k.bytes.writeUInt32LE(3, 436); return k.bytes; }, error: /3 bitmap blocks \(must be a non-zero even number/ },
  { name: "a huge sub-header", make: () => { const k = base(); k.bytes.writeInt32LE(1 << 19, 432); return k.bytes; }, error: /truncated kdump file: header, sub-header and bitmaps/ },
  { name: "max_mapnr beyond the bitmaps", make: () => { const k = base(); k.bytes.writeBigUInt64LE(40000n, PS + 96); return k.bytes; }, error: /max_mapnr 40000 exceeds the 32768 bits of each bitmap/ },
  { name: "max_mapnr of zero", make: () => { const k = base(); k.bytes.writeBigUInt64LE(0n, PS + 96); k.bytes.writeUInt32LE(0, 440); return k.bytes; }, error: /max_mapnr is 0/ },
  { name: "notes beyond the end of the file", make: () => { const k = base(); k.bytes.writeBigInt64LE(1n << 40n, PS + 48); return k.bytes; }, error: /ELF notes at 1099511627776 .* runs past the end of the file/ },
  { name: "a negative note offset", make: () => { const k = base(); k.bytes.writeBigInt64LE(-5n, PS + 48); return k.bytes; }, error: /ELF notes offset or size is out of range/ },
  { name: "an absurd note size", make: () => { const k = base(); k.bytes.writeBigUInt64LE(1n << 33n, PS + 56); return k.bytes; }, error: /ELF notes of 8589934592 bytes is implausibly large/ },
  { name: "a header version of 0", make: () => { const k = base(); k.bytes.writeInt32LE(0, 8); return k.bytes; }, error: /kdump header version 0/ },
  { name: "a page descriptor pointing outside the file", make: () => { const k = base(); patchDesc(k, 11, { offset: BigInt(k.bytes.length + 4096) }); return k.bytes; }, readPfn: 11, error: /pfn 0xb: page data at \d+ \(\d+ bytes\) lies past the end of the file/ },
  { name: "a negative page offset", make: () => { const k = base(); patchDesc(k, 11, { offset: -4096n }); return k.bytes; }, readPfn: 11, error: /pfn 0xb: page descriptor has an invalid data offset/ },
  { name: "a zero page offset in a complete dump", make: () => { const k = base(); patchDesc(k, 11, { offset: 0n }); return k.bytes; }, readPfn: 11, error: /pfn 0xb: page descriptor has an invalid data offset/ },
  { name: "a page size larger than a page", make: () => { const k = base(); patchDesc(k, 11, { size: 8193 }); return k.bytes; }, readPfn: 11, error: /pfn 0xb: page descriptor size 8193 is not between 1 and the 4096-byte page/ },
  { name: "a page size of 4 GiB - 1", make: () => { const k = base(); patchDesc(k, 11, { size: 0xffffffff }); return k.bytes; }, readPfn: 11, error: /page descriptor size 4294967295/ },
  { name: "a short uncompressed page", make: () => { const k = base(); patchDesc(k, 11, { size: 100, flags: 0 }); return k.bytes; }, readPfn: 11, error: /pfn 0xb: uncompressed page of 100 bytes, not 4096/ },
  { name: "two compressions at once", make: () => { const k = base(); patchDesc(k, 11, { flags: 3 }); return k.bytes; }, readPfn: 11, error: /page flags 0x3 name more than one compression/ },
  { name: "a corrupted zlib page", make: () => { const k = base(); const pfn = compressedPfn(k); const p = k.placed.get(pfn)!; k.bytes.fill(0x5a, p.offset + 2, p.offset + p.size); return k.bytes; }, readPfn: -1, error: /zlib page is corrupt/ },
  { name: "a zlib page of 100 bytes", make: () => { const k = base(); const z = deflateSync(new Uint8Array(100)); const p = k.placed.get(11)!; k.bytes.set(z, p.offset); patchDesc(k, 11, { size: z.length, flags: 1 }); return k.bytes; }, readPfn: 11, error: /pfn 0xb: zlib page decompresses to 100 bytes, not 4096/ },
  { name: "a zlib page of two pages", make: () => { const k = base(); const z = deflateSync(new Uint8Array(8192)); const p = k.placed.get(11)!; k.bytes.set(z, p.offset); patchDesc(k, 11, { size: z.length, flags: 1 }); return k.bytes; }, readPfn: 11, error: /pfn 0xb: zlib page decompresses to more than 4096 bytes/ },
  ...lzoCorruptions(),
  { name: "a zstd page declaring 1 GiB", make: () => { const k = base(); const p = k.placed.get(11)!; const z = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0, 0, 0, 0x40, 1, 0, 0]); k.bytes.set(z, p.offset); patchDesc(k, 11, { size: z.length, flags: 0x20 }); return k.bytes; }, readPfn: 11, error: /pfn 0xb: zstd page/ },
  { name: "a corrupted zstd page", make: () => { const k = build({ codec: "zstd" }); const pfn = 11; const p = k.placed.get(pfn)!; k.bytes.fill(0xa5, p.offset + 6, p.offset + p.size); return k.bytes; }, readPfn: 11, error: /pfn 0xb: zstd page/ },
  { name: "a snappy page declaring the wrong length", make: () => { const k = base(); const p = k.placed.get(11)!; const s = Buffer.from([0x80, 0x40, 0x00, 0x41]); k.bytes.set(s, p.offset); patchDesc(k, 11, { size: s.length, flags: 4 }); return k.bytes; }, readPfn: 11, error: /pfn 0xb: snappy page is corrupt \(stream declares 8192 bytes, expected 4096\)/ },
];

function lzoCorruptions(): Hostile[] {
  const withLzo = (stream: number[]) => () => {
    const k = base();
    const p = k.placed.get(11)!;
    k.bytes.set(stream, p.offset);
    patchDesc(k, 11, { size: stream.length, flags: 2 });
    return k.bytes;
  };
  const zeros = (n: number) => new Array(n).fill(0);
  return [
    // A literal run whose extended length (15 zero bytes: 3825 + 15 + 3 + 3) is longer than the input.
    { name: "an LZO literal run longer than its input", make: withLzo([0x00, ...zeros(15), 0x03, ...zeros(40)]), readPfn: 11, error: /pfn 0xb: lzo page is corrupt \(literal run of 3846 bytes at input byte 17 runs past the input\)/ },
    { name: "an LZO length of endless zero bytes", make: withLzo([0x00, ...zeros(3000)]), readPfn: 11, error: /lzo page is corrupt \(length at input byte \d+ exceeds the output size\)/ },
    // 4 literals then a 2 KiB-distance match at output byte 4.
    { name: "an LZO match reaching before the start", make: withLzo([21, 1, 2, 3, 4, 0x7c, 0xff, 0x11, 0, 0]), readPfn: 11, error: /lzo page is corrupt \(match distance 2048 at output byte 4 reaches before the start\)/ },
    // 238 literals, then a match of 15 * 255 + 31 + 1 + 2 bytes at distance 1: one byte past the page.
    { name: "an LZO match longer than the page", make: withLzo([255, ...new Array(238).fill(7), 0x20, ...zeros(15), 1, 0, 0, 0x11, 0, 0]), readPfn: 11, error: /lzo page is corrupt \(match of 3859 bytes at output byte 238 overruns the 4096-byte output\)/ },
    { name: "an LZO stream without its end marker", make: withLzo([21, 1, 2, 3, 4]), readPfn: 11, error: /lzo page is corrupt \(input overrun/ },
    { name: "an LZO stream ending short of a page", make: withLzo([21, 1, 2, 3, 4, 0x11, 0, 0]), readPfn: 11, error: /pfn 0xb: lzo page decompresses to 4 bytes, not 4096/ },
    { name: "an LZO stream with bytes after its end", make: () => { const page = new Uint8Array(PS).fill(9); return withLzo([...lzo1xCompress(page), 1, 2])(); }, readPfn: 11, error: /lzo page is corrupt \(2 bytes of input follow the end-of-stream marker\)/ },
  ];
}

for (const h of hostile) {
  test(`hostile kdump: ${h.name}`, HANG, (t) => {
    const dir = tempDir(t);
    try {
      const bytes = h.make();
      const path = writeTemp(dir, "bad.kdump", bytes);
      if (h.readPfn === undefined) {
        expectError(() => openSource(path).close(), h.error);
        return;
      }
      const src = openSource(path) as KdumpSource;
      try {
        const pfn = h.readPfn >= 0 ? h.readPfn : [...samplePages().keys()].find((p) => {
          try {
            readPfn(src, p);
            return false;
          } catch {
            return true;
          }
        })!;
        expectError(() => readPfn(src, pfn), h.error);
        expectError(() => src.readBatch([{ paddr: pfn * PS + 10, dst: new Uint8Array(10) }]), h.error);
      } finally {
        src.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("the LZO decoder never reads or writes out of bounds on random input", () => {
  let x = 7;
  const rnd = () => ((x = (x * 1664525 + 1013904223) >>> 0) >>> 24);
  const page = new Uint8Array(PS);
  for (let i = 0; i < PS; i++) page[i] = (i * 7) % 13 === 0 ? rnd() : (i >> 4) & 0xff;
  const good = lzo1xCompress(page);
  const out = new Uint8Array(PS);
  assert.equal(lzo1xDecompress(good, out), PS);
  assert.deepEqual(out, page);
  for (let trial = 0; trial < 3000; trial++) {
    const bad = Uint8Array.from(good);
    for (let k = 0; k < 1 + (trial % 8); k++) bad[rnd() % bad.length] = rnd();
    const cut = trial % 5 === 0 ? bad.subarray(0, rnd() % bad.length) : bad;
    try {
      const n = lzo1xDecompress(cut, out);
      assert.ok(n <= PS);
    } catch (e) {
      assert.equal((e as Error).name, "Error");
      assert.ok((e as Error).constructor.name === "LzoError", String(e));
    }
  }
});

// ---------------------------------------------------------------- flattened

function interleave(recs: { offset: number; size: number }[]) {
  // Headers first, then descriptors and data alternating, as makedumpfile -F writes.
  const [first, ...rest] = recs;
  const half = Math.ceil(rest.length / 2);
  const a = rest.slice(0, half);
  const b = rest.slice(half);
  const out = [first];
  for (let i = 0; i < half; i++) out.push(...[a[i], b[i]].filter(Boolean));
  return out;
}

test("flattened: read in place through the record index, equal to the kdump file; rearrange() rebuilds it byte for byte", async (t) => {
  const dir = tempDir(t);
  try {
    const pages = samplePages();
    const k = build({ codec: "lzo" });
    const kdPath = writeTemp(dir, "d.kdump", k.bytes);
    const flat = flatten(k.bytes, { recordSize: 5000, order: interleave });
    const flatPath = writeTemp(dir, "d.flat", flat);
    const src = openSource(flatPath) as KdumpSource;
    try {
      assert.equal(src.format, "kdump-flattened");
      assert.ok(isKdumpSource(src));
      assert.equal(src.path, flatPath);
      assertReadsPages(src, pages, "flattened");
    } finally {
      src.close();
    }
    const out = join(dir, "re.kdump");
    const r = await rearrange(flatPath, out);
    assert.equal(r.size, k.bytes.length);
    assert.ok(Buffer.compare(readFileSync(out), readFileSync(kdPath)) === 0, "rearranged file equals the original");
    const out2 = join(dir, "re2.kdump");
    await rearrange(Readable.from(chunks(flat, 777)), out2);
    assert.ok(Buffer.compare(readFileSync(out2), k.bytes) === 0, "from a stream too");
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes("partial")), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function* chunks(b: Uint8Array, n: number) {
  for (let i = 0; i < b.length; i += n) yield b.subarray(i, i + n);
}

test("flattened: holes between records read as zeros, like the sparse file makedumpfile -R leaves", async (t) => {
  const dir = tempDir(t);
  try {
    const k = build({ codec: "raw", level: 0 });
    // Leave out every record that is all zeros (a writer that seeks over holes).
    let left = 0;
    const flat = flatten(k.bytes, {
      recordSize: 512,
      order: (rs) => {
        const kept = rs.filter((r) => k.bytes.subarray(r.offset, r.offset + r.size).some((b) => b !== 0));
        left = rs.length - kept.length;
        return kept;
      },
    });
    assert.ok(left >= 5, `holes left out (${left})`);
    const path = writeTemp(dir, "h.flat", flat);
    const src = openSource(path);
    try {
      assertReadsPages(src, samplePages(), "holes");
    } finally {
      src.close();
    }
    const out = join(dir, "h.kdump");
    await rearrange(path, out);
    assert.ok(Buffer.compare(readFileSync(out), k.bytes) === 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("flattened: overlapping records (later ones win) are read through a rearranged temporary file", async (t) => {
  const dir = tempDir(t);
  try {
    // Raw pages at level 0: two dumps of the same pfns have the same layout.
    const a = build({ codec: "raw", level: 0, pages: samplePages(1) });
    const bPages = samplePages(99);
    for (const p of bPages.values()) p[17] ^= 0x5a;
    const b = build({ codec: "raw", level: 0, pages: bPages });
    assert.equal(a.bytes.length, b.bytes.length);
    const flat = flatten(a.bytes, { recordSize: 3000, extra: [{ offset: a.dataOffset, data: b.bytes.subarray(a.dataOffset) }] });
    const path = writeTemp(dir, "o.flat", flat);
    assert.equal(FlatIndex.build(path), undefined, "overlapping records cannot be indexed");
    // A temporary directory of its own for the rearranged file: what is in it is this test's alone.
    const tmp = tempDir(t);
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      const src = openFlattened(path);
      try {
        // The rearranged temporary is unlinked as soon as it is open: nothing to leave behind even on a crash.
        assert.deepEqual(readdirSync(tmp), [], "the temporary is unlinked while in use");
        assert.equal(src.format, "kdump-flattened");
        assertReadsPages(src, bPages, "overlap");
      } finally {
        src.close();
      }
      assert.deepEqual(readdirSync(tmp), [], "the temporary file is gone");
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
    const out = join(dir, "o.kdump");
    await rearrange(path, out);
    assert.ok(Buffer.compare(readFileSync(out), b.bytes) === 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const flatHostile: { name: string; make: () => Buffer; error: RegExp }[] = [
  { name: "a negative record size", make: () => withRecord(100, -5), error: /flattened record at byte \d+ has a negative size \(-5\)/ },
  { name: "a negative record offset", make: () => withRecord(-100, 5), error: /flattened record at byte \d+ has a negative offset \(-100\)/ },
  { name: "a record beyond 1 TiB", make: () => withRecord(2 ** 41, 16), error: /claims bytes up to 2199023255568, beyond any dump \(1 TiB\)/ },
  { name: "a record of 2^62 bytes", make: () => withRecord(0, 2 ** 62), error: /beyond any dump/ },
  { name: "a record claiming more bytes than remain", make: () => withRecord(4096, 1 << 20), error: /claims 1048576 bytes but only \d+ remain \(truncated\?\)/ },
  { name: "no end record", make: () => flatten(build().bytes, { noEnd: true }), error: /truncated flattened dump: it ends without its end record/ },
  { name: "a cut header", make: () => encodeFlatHeader().subarray(0, 2000), error: /truncated flattened dump/ },
];

function withRecord(offset: number, size: number): Buffer {
  const k = build();
  const good = flatten(k.bytes).subarray(0, -16);
  const rec = Buffer.alloc(16);
  rec.writeBigInt64BE(BigInt(offset), 0);
  rec.writeBigInt64BE(BigInt(size), 8);
  return Buffer.concat([good, rec, Buffer.alloc(64), encodeFlatEnd()]);
}

for (const h of flatHostile) {
  test(`hostile flattened: ${h.name}`, HANG, async (t) => {
    const dir = tempDir(t);
    try {
      const bytes = h.make();
      const path = writeTemp(dir, "bad.flat", bytes);
      expectError(() => openFlattened(path).close(), h.error);
      if (bytes.length >= 4096) expectError(() => openSource(path).close(), h.error);
      const out = join(dir, "out.kdump");
      await expectRejects(rearrange(path, out), h.error);
      assert.ok(!existsSync(out), "no output");
      assert.deepEqual(readdirSync(dir).filter((f) => f.includes("partial")), [], "no partial file");
      // A stream is checked the same way, except for "more than remains", which a stream cannot know.
      const streamError = /remain/.test(h.name) ? /truncated flattened dump: it ends \d+ bytes into a record/ : h.error;
      await expectRejects(rearrange(Readable.from(chunks(bytes, 1000)), out), streamError);
      assert.ok(!existsSync(out));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("flattened: a file of many tiny records is indexed (or rearranged) without trouble", (t) => {
  const dir = tempDir(t);
  try {
    const k = build({ codec: "zlib" });
    assert.ok(FLAT_INDEX_MAX_RECORDS > 1000);
    const flat = flatten(k.bytes, { recordSize: 7, order: (rs) => rs.reverse() });
    const path = writeTemp(dir, "tiny.flat", flat);
    const idx = FlatIndex.build(path)!;
    assert.equal(idx.records, Math.ceil(k.bytes.length / 7));
    idx.close();
    const src = openSource(path);
    try {
      assertReadsPages(src, samplePages(), "tiny records");
    } finally {
      src.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("sniffing: KDUMP and makedumpfile signatures; DISKDUMP and unknown flat types refused", (t) => {
  const dir = tempDir(t);
  try {
    const disk = Buffer.alloc(8192);
    disk.write("DISKDUMP", 0, "latin1");
    expectError(() => openSource(writeTemp(dir, "a", disk)), /old diskdump format is not supported/);
    const flat = Buffer.concat([encodeFlatHeader(), encodeFlatRecord(0, 1), Buffer.alloc(1), encodeFlatEnd()]);
    flat.writeBigInt64BE(2n, 16);
    expectError(() => openSource(writeTemp(dir, "b", flat)), /makedumpfile header, but not of the flattened type/);
    const k = build();
    truncateSync(writeTemp(dir, "c", k.bytes), 100);
    expectError(() => openSource(join(dir, "c")), /truncated kdump file: 100 bytes/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("test helper: every codec's page compressor round-trips through the reader's decoders", () => {
  for (const codec of ["zlib", "lzo", "snappy", "zstd"] as PageCodecName[]) {
    const page = samplePages().get(11)!;
    assert.ok(compressPage(codec, page).length < PS, codec);
  }
});
