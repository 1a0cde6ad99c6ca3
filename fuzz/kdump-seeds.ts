// Small kdump-compressed files cut from real captures, for the kdump,
// flattened and codec targets: the real disk_dump_header, sub-header,
// notes and VMCOREINFO, bitmap 1, and a few dozen of the real dumped pages
// with their page_descs and compressed data (QEMU's zlib pages from its
// kdump-zlib stream, makedumpfile 1.7.2's LZO pages). max_mapnr is cut to
// just past the last page kept, so the bitmaps stay a few KiB.
//
// Cutting a capture reads megabytes; the results are kept in a cache
// directory keyed by the capture's size and mtime, since every worker
// process asks for its seeds.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inflateSync } from "node:zlib";
import { lzo1xDecompress } from "../src/codecs/lzo1x.js";
import { FileBytes, type ByteSource } from "../src/sources/kdump.js";
import { FlatIndex } from "../src/sources/flattened.js";
import { compressPage, type PageCodecName, CODEC_FLAG } from "../test/helpers/kdump-build.js";
import type { Field } from "./target.js";
import { fixtureFile } from "./seed-util.js";

const DESC = 24;
/** Bump when the cutting changes: cached seeds of an older cut are not reused. */
const SEED_FORMAT = 2;
const COMP_MASK = 0x1 | 0x2 | 0x4 | 0x20;

export interface CutKdump {
  bytes: Uint8Array;
  blockSize: number;
  bitmapOffset: number;
  bitmapHalf: number;
  descOffset: number;
  /** pfn of each descriptor, in order. */
  pfns: number[];
  /** Each page's compressed bytes as stored, and its desc flags. */
  pages: { data: Uint8Array; flags: number }[];
}

function cacheFile(name: string, sources: string[]): string {
  const h = createHash("sha1").update(`${SEED_FORMAT}\n`);
  for (const s of sources) {
    const st = statSync(s);
    h.update(`${s}:${st.size}:${st.mtimeMs}\n`);
  }
  const dir = join(process.env.GUESTCORE_FUZZ_SEEDS ?? join(tmpdir(), "guestcore-fuzz-seeds"));
  mkdirSync(dir, { recursive: true });
  return join(dir, `${name}-${h.digest("hex").slice(0, 12)}.bin`);
}

/** `build()`'s bytes, cached on disk under `name` for these source files. */
export function cached(name: string, sources: string[], build: () => Uint8Array): Uint8Array {
  const f = cacheFile(name, sources);
  if (existsSync(f)) return new Uint8Array(readFileSync(f));
  const b = build();
  const tmp = `${f}.${process.pid}.tmp`;
  writeFileSync(tmp, b);
  renameSync(tmp, f);
  return b;
}

function pick(bitmap2: Uint8Array, maxMapnr: number, want: number): number[] {
  // A spread of the dumped pages: the first ones, then some from 16 MiB
  // (the kernel's text and data) and from 128 MiB up (but not QEMU's BIOS
  // ROM at 4 GiB - 256 KiB, which would make the bitmaps 128 KiB each).
  const out: number[] = [];
  for (const [from, n] of [[0, want / 2], [0x1000, want / 4], [Math.min(0x8000, maxMapnr >> 1), want / 4]] as const) {
    let got = 0;
    for (let p = from; p < maxMapnr && got < n; p++) {
      if (bitmap2[p >> 3] & (1 << (p & 7)) && !out.includes(p)) {
        out.push(p);
        got++;
      }
    }
  }
  return out.sort((a, b) => a - b);
}

/** Cut a kdump file (any ByteSource: a plain file, a flattened index) down to `want` of its pages. */
export function cutKdump(src: ByteSource, want = 32): CutKdump {
  const read = (pos: number, len: number) => {
    const b = new Uint8Array(len);
    src.read(b, 0, len, pos);
    return b;
  };
  const h = read(0, 464);
  const hv = new DataView(h.buffer);
  const bs = hv.getInt32(428, true);
  const subHdr = hv.getInt32(432, true);
  const bitmapBlocks = hv.getUint32(436, true);
  const version = hv.getInt32(8, true);
  const sub = read(bs, 104);
  const sv = new DataView(sub.buffer);
  const maxMapnr = version >= 6 && sv.getBigUint64(96, true) > 0n ? Number(sv.getBigUint64(96, true)) : hv.getUint32(440, true);
  const bitmapOffset = (1 + subHdr) * bs;
  const half = (bitmapBlocks * bs) / 2;
  const bm1 = read(bitmapOffset, half);
  const bm2 = read(bitmapOffset + half, half);
  const oldDesc = bitmapOffset + 2 * half;
  const pfns = pick(bm2, maxMapnr, want);
  // Rank of each kept pfn in the original bitmap 2: its descriptor index.
  const rank = new Map<number, number>();
  let r = 0;
  for (let p = 0, k = 0; p <= pfns[pfns.length - 1]; p++) {
    if (!(bm2[p >> 3] & (1 << (p & 7)))) continue;
    if (p === pfns[k]) {
      rank.set(p, r);
      k++;
    }
    r++;
  }
  const newMapnr = Math.ceil((pfns[pfns.length - 1] + 1) / (bs * 8)) * bs * 8;
  const newHalf = newMapnr / 8;
  const descOffset = bitmapOffset + 2 * newHalf;
  const pages: { data: Uint8Array; flags: number }[] = [];
  const descs = new Uint8Array(pfns.length * DESC);
  for (let i = 0; i < pfns.length; i++) {
    const d = read(oldDesc + rank.get(pfns[i])! * DESC, DESC);
    const v = new DataView(d.buffer);
    const off = Number(v.getBigInt64(0, true));
    const size = v.getUint32(8, true);
    pages.push({ data: read(off, size), flags: v.getUint32(12, true) });
    descs.set(d, i * DESC);
  }
  const head = read(0, bitmapOffset);
  const out = assemble(head, bs, newMapnr, bm1.subarray(0, newHalf), pfns, descs, pages);
  return { bytes: out, blockSize: bs, bitmapOffset, bitmapHalf: newHalf, descOffset, pfns, pages };
}

/** Header blocks, the two bitmaps, descriptors and page data; offsets rewritten, shared pages stored once. */
function assemble(head: Uint8Array, bs: number, maxMapnr: number, bm1: Uint8Array, pfns: number[], descs: Uint8Array, pages: { data: Uint8Array; flags: number }[]): Uint8Array {
  const half = maxMapnr / 8;
  const bitmapOffset = head.length;
  const descOffset = bitmapOffset + 2 * half;
  let dataAt = descOffset + pfns.length * DESC;
  const stored = new Map<string, number>();
  const chunks: Uint8Array[] = [];
  const d = descs.slice();
  const dv = new DataView(d.buffer);
  for (let i = 0; i < pages.length; i++) {
    const key = Buffer.from(pages[i].data).toString("latin1") + pages[i].flags;
    let off = stored.get(key);
    if (off === undefined) {
      off = dataAt;
      stored.set(key, off);
      chunks.push(pages[i].data);
      dataAt += pages[i].data.length;
    }
    dv.setBigInt64(i * DESC, BigInt(off), true);
    dv.setUint32(i * DESC + 8, pages[i].data.length, true);
    dv.setUint32(i * DESC + 12, pages[i].flags, true);
  }
  const out = new Uint8Array(dataAt);
  out.set(head);
  const ov = new DataView(out.buffer);
  ov.setUint32(436, (2 * half) / bs, true);
  ov.setUint32(440, Math.min(maxMapnr, 0xffffffff), true);
  if (ov.getInt32(8, true) >= 6) ov.setBigUint64(bs + 96, BigInt(maxMapnr), true);
  out.set(bm1, bitmapOffset);
  for (const p of pfns) out[bitmapOffset + half + (p >> 3)] |= 1 << (p & 7);
  out.set(d, descOffset);
  let p = descOffset + d.length;
  for (const c of chunks) {
    out.set(c, p);
    p += c.length;
  }
  return out;
}

/** The same cut dump with every page decoded and stored again with `codec`. */
export function recompress(cut: CutKdump, codec: PageCodecName): Uint8Array {
  const bs = cut.blockSize;
  const pages = cut.pages.map((pg) => {
    const raw = decodePage(pg.data, pg.flags, bs);
    const c = compressPage(codec, raw);
    return c.length < bs ? { data: c, flags: CODEC_FLAG[codec] } : { data: raw, flags: 0 };
  });
  const head = cut.bytes.slice(0, cut.bitmapOffset);
  const hv = new DataView(head.buffer);
  hv.setUint32(424, (hv.getUint32(424, true) & ~COMP_MASK) | CODEC_FLAG[codec], true);
  const descs = cut.bytes.slice(cut.descOffset, cut.descOffset + cut.pfns.length * DESC);
  const bm1 = cut.bytes.subarray(cut.bitmapOffset, cut.bitmapOffset + cut.bitmapHalf);
  return assemble(head, bs, cut.bitmapHalf * 8, bm1, cut.pfns, descs, pages);
}

function decodePage(data: Uint8Array, flags: number, bs: number): Uint8Array {
  if (flags & 0x1) return inflateSync(data);
  if (flags & 0x2) {
    const out = new Uint8Array(bs);
    lzo1xDecompress(data, out);
    return out;
  }
  return data;
}

/** Parse the layout of a (cut) kdump file's bytes. */
export function kdumpLayoutOf(b: Uint8Array): { bs: number; bitmapOffset: number; half: number; descOffset: number; count: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const bs = v.getInt32(428, true);
  const bitmapOffset = (1 + v.getInt32(432, true)) * bs;
  const half = (v.getUint32(436, true) * bs) / 2;
  let count = 0;
  for (let i = 0; i < half; i++) {
    let x = b[bitmapOffset + half + i];
    while (x) {
      count += x & 1;
      x >>= 1;
    }
  }
  return { bs, bitmapOffset, half, descOffset: bitmapOffset + 2 * half, count };
}

/** The fields of a kdump file at `base` in the input (0 for a plain file). */
export function kdumpFields(b: Uint8Array, base = 0, at: (off: number) => number = (o) => base + o): Field[] {
  const l = kdumpLayoutOf(b);
  const s = l.bs;
  const f: Field[] = [
    { offset: at(0), width: 8, kind: "magic", name: "signature" },
    { offset: at(8), width: 4, kind: "count", name: "header_version" },
    { offset: at(424), width: 4, kind: "flags", name: "status" },
    { offset: at(428), width: 4, kind: "size", name: "block_size" },
    { offset: at(432), width: 4, kind: "count", name: "sub_hdr_size" },
    { offset: at(436), width: 4, kind: "count", name: "bitmap_blocks" },
    { offset: at(440), width: 4, kind: "count", name: "max_mapnr" },
    { offset: at(460), width: 4, kind: "count", name: "nr_cpus" },
    { offset: at(s), width: 8, kind: "pointer", name: "phys_base" },
    { offset: at(s + 8), width: 4, kind: "flags", name: "dump_level" },
    { offset: at(s + 12), width: 4, kind: "flags", name: "split" },
    { offset: at(s + 16), width: 8, kind: "count", name: "start_pfn" },
    { offset: at(s + 24), width: 8, kind: "count", name: "end_pfn" },
    { offset: at(s + 32), width: 8, kind: "offset", name: "offset_vmcoreinfo" },
    { offset: at(s + 40), width: 8, kind: "size", name: "size_vmcoreinfo" },
    { offset: at(s + 48), width: 8, kind: "offset", name: "offset_note" },
    { offset: at(s + 56), width: 8, kind: "size", name: "size_note" },
    { offset: at(s + 64), width: 8, kind: "offset", name: "offset_eraseinfo" },
    { offset: at(s + 72), width: 8, kind: "size", name: "size_eraseinfo" },
    { offset: at(s + 80), width: 8, kind: "count", name: "start_pfn_64" },
    { offset: at(s + 88), width: 8, kind: "count", name: "end_pfn_64" },
    { offset: at(s + 96), width: 8, kind: "count", name: "max_mapnr_64" },
  ];
  // Bitmap bytes holding set bits, and a few around the end of each bitmap.
  for (const base2 of [l.bitmapOffset, l.bitmapOffset + l.half]) {
    let n = 0;
    for (let i = 0; i < l.half && n < 24; i++) {
      if (b[base2 + i]) {
        f.push({ offset: at(base2 + i), width: 1, kind: "flags", name: base2 === l.bitmapOffset ? `bitmap1[${i}]` : `bitmap2[${i}]` });
        n++;
      }
    }
    f.push({ offset: at(base2 + l.half - 8), width: 8, kind: "flags", name: "bitmap tail" });
  }
  for (let i = 0; i < Math.min(l.count, 64); i++) {
    const o = l.descOffset + i * DESC;
    f.push(
      { offset: at(o), width: 8, kind: "offset", name: `page_desc[${i}].offset` },
      { offset: at(o + 8), width: 4, kind: "size", name: `page_desc[${i}].size` },
      { offset: at(o + 12), width: 4, kind: "flags", name: `page_desc[${i}].flags` },
      { offset: at(o + 16), width: 8, kind: "flags", name: `page_desc[${i}].page_flags` },
    );
  }
  return f;
}

/** QEMU's zlib pages: its kdump-zlib (flattened) capture, cut. */
export function qemuZlibCut(cacheDir: string): CutKdump {
  const flat = fixtureFile(cacheDir, "vmcore.kdump-zlib");
  const bytes = cached("qemu-zlib-cut", [flat], () => {
    const idx = FlatIndex.build(flat);
    if (!idx) throw new Error(`${flat}: cannot index the flattened capture`);
    try {
      return cutKdump(idx).bytes;
    } finally {
      idx.close();
    }
  });
  return recut(bytes);
}

/** makedumpfile 1.7.2's LZO pages (-l -d 31 of the capture's ELF), cut. */
export function makedumpfileLzoCut(cacheDir: string): CutKdump {
  const elf = fixtureFile(cacheDir, "vmcore.mdf.elf");
  const bytes = cached("makedumpfile-lzo-cut", [elf], () => {
    const tmp = join(tmpdir(), `guestcore-fuzz-mdf-${process.pid}.kdump`);
    try {
      execFileSync("makedumpfile", ["-l", "-d", "31", elf, tmp], { stdio: ["ignore", "ignore", "pipe"] });
      const f = FileBytes.open(tmp);
      try {
        return cutKdump(f).bytes;
      } finally {
        f.close();
      }
    } finally {
      rmSync(tmp, { force: true });
    }
  });
  return recut(bytes);
}

/** A cut file's layout and pages again (cheap: it is small). */
export function recut(bytes: Uint8Array): CutKdump {
  const l = kdumpLayoutOf(bytes);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const pfns: number[] = [];
  for (let p = 0; p < l.half * 8; p++) if (bytes[l.bitmapOffset + l.half + (p >> 3)] & (1 << (p & 7))) pfns.push(p);
  const pages = pfns.map((_, i) => {
    const o = l.descOffset + i * DESC;
    const off = Number(v.getBigInt64(o, true));
    return { data: bytes.slice(off, off + v.getUint32(o + 8, true)), flags: v.getUint32(o + 12, true) };
  });
  return { bytes, blockSize: l.bs, bitmapOffset: l.bitmapOffset, bitmapHalf: l.half, descOffset: l.descOffset, pfns, pages };
}
