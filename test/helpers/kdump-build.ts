// Assembles small kdump-compressed files (and flattened streams of them)
// by hand, for the reader's tests: makedumpfile's layout, with page
// compressors of our own for LZO1X and snappy (test-only encoders: greedy,
// but they emit the instruction forms a decoder must handle).
import { createRequire } from "node:module";
import { closeSync, openSync, writeSync } from "node:fs";
import { deflateSync } from "node:zlib";
import { encodeNote, type ElfNote } from "../../src/format/elf64.js";
import {
  DISK_DUMP_HEADER_SIZE, DUMP_DH_COMPRESSED_INCOMPLETE, DUMP_DH_COMPRESSED_LZO, DUMP_DH_COMPRESSED_SNAPPY,
  DUMP_DH_COMPRESSED_ZLIB, DUMP_DH_COMPRESSED_ZSTD, KDUMP_SIGNATURE, PAGE_DESC_SIZE,
  encodeFlatEnd, encodeFlatHeader, encodeFlatRecord,
} from "../../src/format/kdump.js";
import type { KdumpSource } from "../../src/sources/kdump.js";

export type PageCodecName = "raw" | "zlib" | "lzo" | "zstd" | "snappy";

export const CODEC_FLAG: Record<PageCodecName, number> = {
  raw: 0, zlib: DUMP_DH_COMPRESSED_ZLIB, lzo: DUMP_DH_COMPRESSED_LZO, snappy: DUMP_DH_COMPRESSED_SNAPPY, zstd: DUMP_DH_COMPRESSED_ZSTD,
};

const require = createRequire(import.meta.url);
let zstdCompress: (b: Uint8Array) => Uint8Array;
try {
  const z = require("zstd-napi") as { compress(b: Uint8Array, p?: Record<string, number>): Buffer };
  zstdCompress = (b) => z.compress(b, { compressionLevel: 1 });
} catch {
  const { ZstdCodec } = require("zstd-codec") as { ZstdCodec: { run(cb: (z: { Simple: new () => { compress(b: Uint8Array, l: number): Uint8Array } }) => void): void } };
  const simple = await new Promise<{ compress(b: Uint8Array, l: number): Uint8Array }>((r) => ZstdCodec.run((z) => r(new z.Simple())));
  zstdCompress = (b) => simple.compress(b, 1);
}

// ---- LZO1X encoder (see src/format/lzo1x.ts for the instruction set) ----

/** Greedy LZO1X compressor: first-byte literals, literal runs, M2/M3/M4 matches, S-literals, extended lengths. */
export function lzo1xCompress(src: Uint8Array): Uint8Array {
  const out: number[] = [];
  const n = src.length;
  const table = new Int32Array(1 << 14).fill(-1);
  const hash = (i: number) => (((src[i] | (src[i + 1] << 8) | (src[i + 2] << 16) | (src[i + 3] << 24)) * 0x9e3779b1) >>> 18);
  let litStart = 0;
  let ssPos = -1; // where the last match's S bits live
  const extended = (v: number) => {
    // value = zeros * 255 + b, b in 1..255
    const zeros = Math.floor((v - 1) / 255);
    for (let z = 0; z < zeros; z++) out.push(0);
    out.push(v - zeros * 255);
  };
  const emitLiterals = (from: number, to: number) => {
    const k = to - from;
    if (k === 0) return;
    if (ssPos < 0 && out.length === 0 && k <= 238) {
      out.push(17 + k);
    } else if (ssPos >= 0 && k <= 3) {
      out[ssPos] |= k;
    } else if (k - 3 <= 15) {
      out.push(k - 3);
    } else {
      out.push(0);
      extended(k - 3 - 15);
    }
    for (let i = from; i < to; i++) out.push(src[i]);
  };
  const emitMatch = (dist: number, len: number) => {
    if (len <= 8 && dist <= 2048) {
      out.push(((len - 1) << 5) | (((dist - 1) & 7) << 2));
      ssPos = out.length - 1;
      out.push((dist - 1) >> 3);
    } else if (dist <= 16384) {
      if (len - 2 <= 31) out.push(32 | (len - 2));
      else {
        out.push(32);
        extended(len - 2 - 31);
      }
      out.push(((dist - 1) << 2) & 0xff, (dist - 1) >> 6);
      ssPos = out.length - 2;
    } else {
      const d = dist - 16384;
      const h = d >> 14;
      if (len - 2 <= 7) out.push(16 | (h << 3) | (len - 2));
      else {
        out.push(16 | (h << 3));
        extended(len - 2 - 7);
      }
      out.push(((d & 0x3fff) << 2) & 0xff, (d & 0x3fff) >> 6);
      ssPos = out.length - 2;
    }
  };
  let i = 0;
  while (i + 4 <= n) {
    const hsh = hash(i);
    const m = table[hsh];
    table[hsh] = i;
    const dist = i - m;
    if (m >= 0 && dist <= 49151 && src[m] === src[i] && src[m + 1] === src[i + 1] && src[m + 2] === src[i + 2] && src[m + 3] === src[i + 3]) {
      let len = 4;
      while (i + len < n && src[m + len] === src[i + len]) len++;
      emitLiterals(litStart, i);
      emitMatch(dist, len);
      i += len;
      litStart = i;
      continue;
    }
    i++;
  }
  emitLiterals(litStart, n);
  out.push(0x11, 0, 0);
  return Uint8Array.from(out);
}

// ---- snappy encoder: literals and 2-byte-offset copies ----

export function snappyCompress(src: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let v = src.length; ; v = Math.floor(v / 128)) {
    if (v < 128) {
      out.push(v);
      break;
    }
    out.push((v & 0x7f) | 0x80);
  }
  const table = new Int32Array(1 << 12).fill(-1);
  const lit = (from: number, to: number) => {
    while (from < to) {
      const k = Math.min(to - from, 256);
      if (k <= 60) out.push((k - 1) << 2);
      else out.push(60 << 2, k - 1);
      for (let j = from; j < from + k; j++) out.push(src[j]);
      from += k;
    }
  };
  let i = 0;
  let litStart = 0;
  while (i + 4 <= src.length) {
    const h = ((src[i] | (src[i + 1] << 8) | (src[i + 2] << 16) | (src[i + 3] << 24)) * 0x1e35a7bd) >>> 20;
    const m = table[h];
    table[h] = i;
    if (m >= 0 && i - m <= 65535 && src[m] === src[i] && src[m + 1] === src[i + 1] && src[m + 2] === src[i + 2] && src[m + 3] === src[i + 3]) {
      let len = 4;
      while (i + len < src.length && len < 64 && src[m + len] === src[i + len]) len++;
      lit(litStart, i);
      const off = i - m;
      out.push(((len - 1) << 2) | 2, off & 0xff, off >> 8);
      i += len;
      litStart = i;
      continue;
    }
    i++;
  }
  lit(litStart, src.length);
  return Uint8Array.from(out);
}

export function compressPage(codec: PageCodecName, page: Uint8Array): Uint8Array {
  switch (codec) {
    case "raw": return page;
    case "zlib": return deflateSync(page, { level: 1 });
    case "lzo": return lzo1xCompress(page);
    case "snappy": return snappyCompress(page);
    case "zstd": return zstdCompress(page);
  }
}

// ---- kdump-compressed files ----

export interface KdumpBuildOptions {
  /** block_size = page size; default 4096. */
  pageSize?: number;
  maxMapnr: number;
  /** Dumped pages by pfn (each one page long). */
  pages: Map<number, Uint8Array>;
  codec?: PageCodecName;
  /** Dump level; with bit 1 set, zero pages share one stored zero page (as makedumpfile does). Default 31. */
  level?: number;
  notes?: ElfNote[];
  /** VMCOREINFO text, stored at offset_vmcoreinfo (and, unless vmcoreinfoNote is false, as a note too). */
  vmcoreinfo?: string;
  vmcoreinfoNote?: boolean;
  headerVersion?: number;
  release?: string;
  incomplete?: boolean;
  /** Pages that exist (bitmap 1); default every pfn below maxMapnr. */
  exists?: (pfn: number) => boolean;
  /**
   * One part of a makedumpfile --split set: bitmap 2 has every page (as
   * makedumpfile writes it) but only pages in [start, end) are stored.
   */
  split?: [number, number];
}

export interface BuiltKdump {
  bytes: Buffer;
  bitmapOffset: number;
  /** Bytes of each bitmap in the file (half of bitmap_blocks * block_size). */
  bitmapHalf: number;
  descOffset: number;
  dataOffset: number;
  /** Descriptor index and data placement of each dumped pfn. */
  placed: Map<number, { index: number; offset: number; size: number; flags: number }>;
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]) return false;
  return true;
}

function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export interface KdumpLayout {
  pageSize: number;
  subHdrBlocks: number;
  bitmapBlocks: number;
  bitmapOffset: number;
  bitmapHalf: number;
  descOffset: number;
  noteOffset: number;
  noteBytes: Buffer;
  vmcoreinfoOffset: number;
  vmcoreinfoBytes: Buffer;
}

function layout(pageSize: number, maxMapnr: number, notes: ElfNote[], vmcoreinfo: Buffer): KdumpLayout {
  const noteBytes = Buffer.concat(notes.map(encodeNote));
  const noteOffset = pageSize + 104;
  const vmcoreinfoOffset = noteOffset + noteBytes.length;
  const subEnd = vmcoreinfoOffset + vmcoreinfo.length;
  const subHdrBlocks = Math.max(1, Math.ceil((subEnd - pageSize) / pageSize));
  const bitmapHalf = align(Math.ceil(maxMapnr / 8), pageSize);
  const bitmapBlocks = (2 * bitmapHalf) / pageSize;
  const bitmapOffset = (1 + subHdrBlocks) * pageSize;
  return {
    pageSize, subHdrBlocks, bitmapBlocks, bitmapOffset, bitmapHalf, descOffset: bitmapOffset + 2 * bitmapHalf,
    noteOffset, noteBytes, vmcoreinfoOffset, vmcoreinfoBytes: vmcoreinfo,
  };
}

function headerBlocks(l: KdumpLayout, o: { maxMapnr: number; status: number; level: number; headerVersion: number; release: string }): Buffer {
  const b = Buffer.alloc(l.descOffset);
  b.write(KDUMP_SIGNATURE, 0, "latin1");
  b.writeInt32LE(o.headerVersion, 8);
  b.write("Linux", 12, "latin1");
  b.write("guest", 12 + 65, "latin1");
  b.write(o.release, 12 + 130, "latin1");
  b.write("x86_64", 12 + 260, "latin1");
  b.writeUInt32LE(o.status, 424);
  b.writeInt32LE(l.pageSize, 428);
  b.writeInt32LE(l.subHdrBlocks, 432);
  b.writeUInt32LE(l.bitmapBlocks, 436);
  b.writeUInt32LE(Math.min(o.maxMapnr, 0xffffffff), 440);
  b.writeInt32LE(1, 460);
  const s = l.pageSize;
  b.writeBigInt64LE(-0x24000000n, s); // phys_base, negative as under KASLR
  b.writeInt32LE(o.level, s + 8);
  if (l.vmcoreinfoBytes.length) {
    b.writeBigInt64LE(BigInt(l.vmcoreinfoOffset), s + 32);
    b.writeBigUInt64LE(BigInt(l.vmcoreinfoBytes.length), s + 40);
  }
  if (l.noteBytes.length) {
    b.writeBigInt64LE(BigInt(l.noteOffset), s + 48);
    b.writeBigUInt64LE(BigInt(l.noteBytes.length), s + 56);
  }
  b.writeBigUInt64LE(BigInt(o.maxMapnr), s + 96);
  l.noteBytes.copy(b, l.noteOffset);
  l.vmcoreinfoBytes.copy(b, l.vmcoreinfoOffset);
  return b;
}

export function buildKdump(o: KdumpBuildOptions): BuiltKdump {
  const ps = o.pageSize ?? 4096;
  const codec = o.codec ?? "zlib";
  const level = o.level ?? 31;
  const vi = Buffer.from(o.vmcoreinfo ?? "", "latin1");
  const notes = [...(o.notes ?? [])];
  if (o.vmcoreinfo && o.vmcoreinfoNote !== false) notes.push({ name: "VMCOREINFO", type: 0, desc: vi });
  const l = layout(ps, o.maxMapnr, notes, vi);
  const status = CODEC_FLAG[codec] | (o.incomplete ? DUMP_DH_COMPRESSED_INCOMPLETE : 0);
  const head = headerBlocks(l, { maxMapnr: o.maxMapnr, status, level, headerVersion: o.headerVersion ?? 6, release: o.release ?? "6.1.0-test" });
  const bm1 = head.subarray(l.bitmapOffset, l.bitmapOffset + l.bitmapHalf);
  const bm2 = head.subarray(l.bitmapOffset + l.bitmapHalf, l.bitmapOffset + 2 * l.bitmapHalf);
  for (let p = 0; p < o.maxMapnr; p++) if (!o.exists || o.exists(p)) bm1[p >> 3] |= 1 << (p & 7);
  let pfns = [...o.pages.keys()].sort((a, b) => a - b);
  for (const p of pfns) bm2[p >> 3] |= 1 << (p & 7);
  if (o.split) {
    const [a, b] = o.split;
    pfns = pfns.filter((p) => p >= a && p < b);
    head.writeInt32LE(1, ps + 12);
    head.writeBigUInt64LE(BigInt(a), ps + 16);
    head.writeBigUInt64LE(BigInt(b), ps + 24);
    head.writeBigUInt64LE(BigInt(a), ps + 80);
    head.writeBigUInt64LE(BigInt(b), ps + 88);
  }
  const descs = Buffer.alloc(pfns.length * PAGE_DESC_SIZE);
  const dataOffset = l.descOffset + descs.length;
  const data: Uint8Array[] = [];
  let pos = dataOffset;
  let zeroAt = -1;
  if (level & 1) {
    zeroAt = pos;
    data.push(new Uint8Array(ps));
    pos += ps;
  }
  const placed = new Map<number, { index: number; offset: number; size: number; flags: number }>();
  pfns.forEach((pfn, index) => {
    const page = o.pages.get(pfn)!;
    let off: number;
    let size: number;
    let flags = 0;
    if (zeroAt >= 0 && isZero(page)) {
      off = zeroAt;
      size = ps;
    } else {
      const c = compressPage(codec, page);
      const use = codec !== "raw" && c.length < ps ? c : page;
      if (use !== page) flags = CODEC_FLAG[codec];
      off = pos;
      size = use.length;
      data.push(use);
      pos += size;
    }
    descs.writeBigInt64LE(BigInt(off), index * PAGE_DESC_SIZE);
    descs.writeUInt32LE(size, index * PAGE_DESC_SIZE + 8);
    descs.writeUInt32LE(flags, index * PAGE_DESC_SIZE + 12);
    placed.set(pfn, { index, offset: off, size, flags });
  });
  return {
    bytes: Buffer.concat([head, descs, ...data]), bitmapOffset: l.bitmapOffset, bitmapHalf: l.bitmapHalf,
    descOffset: l.descOffset, dataOffset, placed,
  };
}

/**
 * Re-encode a kdump source's pages with another codec into a new kdump file,
 * streaming (the same bitmaps, notes and level; one page at a time).
 */
export function recompressKdump(src: KdumpSource, outPath: string, codec: PageCodecName): void {
  const ps = src.pageSize;
  const l = layout(ps, src.maxMapnr, [...src.notes], Buffer.alloc(0));
  const status = CODEC_FLAG[codec];
  const head = headerBlocks(l, { maxMapnr: src.maxMapnr, status, level: src.dumpLevel, headerVersion: 6, release: src.release });
  head.set(src.bitmap1, l.bitmapOffset);
  head.set(src.bitmap2, l.bitmapOffset + l.bitmapHalf);
  const fd = openSync(outPath, "w");
  try {
    const write = (b: Uint8Array, at: number) => {
      for (let d = 0; d < b.length;) d += writeSync(fd, b, d, b.length - d, at + d);
    };
    write(head, 0);
    const count = src.dumpedPages;
    const dataOffset = l.descOffset + count * PAGE_DESC_SIZE;
    let pos = dataOffset;
    const zeroAt = pos;
    write(new Uint8Array(ps), pos);
    pos += ps;
    const BATCH = 1024;
    const descs = Buffer.alloc(BATCH * PAGE_DESC_SIZE);
    let inBatch = 0;
    let index = 0;
    const page = new Uint8Array(ps);
    const flush = () => {
      write(descs.subarray(0, inBatch * PAGE_DESC_SIZE), l.descOffset + (index - inBatch) * PAGE_DESC_SIZE);
      inBatch = 0;
    };
    for (const s of src.segments) {
      for (let a = s.start; a < s.end; a += ps) {
        src.readBatch([{ paddr: a, dst: page }]);
        let off = zeroAt;
        let size = ps;
        let flags = 0;
        if (!isZero(page)) {
          const c = compressPage(codec, page);
          const use = codec !== "raw" && c.length < ps ? c : page;
          if (use !== page) flags = CODEC_FLAG[codec];
          off = pos;
          size = use.length;
          write(use, pos);
          pos += size;
        }
        const o = inBatch * PAGE_DESC_SIZE;
        descs.writeBigInt64LE(BigInt(off), o);
        descs.writeUInt32LE(size, o + 8);
        descs.writeUInt32LE(flags, o + 12);
        descs.writeBigUInt64LE(0n, o + 16);
        inBatch++;
        index++;
        if (inBatch === BATCH) flush();
      }
    }
    flush();
    if (index !== count) throw new Error(`recompressKdump: wrote ${index} pages, the source has ${count}`);
  } finally {
    closeSync(fd);
  }
}

// ---- flattened streams ----

export interface FlattenOptions {
  /** Largest record; default 64 KiB. */
  recordSize?: number;
  /** Emit records in this order of their indices (default: file order). */
  order?: (records: { offset: number; size: number }[]) => { offset: number; size: number }[];
  /** Extra records appended before the end record. */
  extra?: { offset: number; data: Uint8Array }[];
  /** Leave out the end record. */
  noEnd?: boolean;
}

/** The flattened form of a kdump file: header, records, end record (skipping all-zero stretches, as writers do not write holes). */
export function flatten(file: Uint8Array, o: FlattenOptions = {}): Buffer {
  const rs = o.recordSize ?? 64 << 10;
  let recs: { offset: number; size: number }[] = [];
  for (let off = 0; off < file.length; off += rs) {
    const size = Math.min(rs, file.length - off);
    recs.push({ offset: off, size });
  }
  if (o.order) recs = o.order(recs);
  const parts: Uint8Array[] = [encodeFlatHeader()];
  for (const r of recs) parts.push(encodeFlatRecord(r.offset, r.size), file.subarray(r.offset, r.offset + r.size));
  for (const e of o.extra ?? []) parts.push(encodeFlatRecord(e.offset, e.data.length), e.data);
  if (!o.noEnd) parts.push(encodeFlatEnd());
  return Buffer.concat(parts);
}

export { DISK_DUMP_HEADER_SIZE };
