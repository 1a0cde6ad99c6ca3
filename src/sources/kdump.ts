// kdump-compressed (diskdump) inputs: what makedumpfile writes by default,
// what `makedumpfile -R` and our flattened reader turn a flattened stream
// into. Layout (makedumpfile's IMPLEMENTATION, diskdump_mod.h), in blocks
// of block_size bytes:
//
//   block 0                      disk_dump_header
//   block 1 ..                   kdump_sub_header (sub_hdr_size blocks; notes
//                                and VMCOREINFO usually sit in it too)
//   then bitmap_blocks blocks    bitmap 1 (pages that exist), bitmap 2 (pages
//                                dumped), each half of them
//   then                         one 24-byte page_desc per bit set in bitmap 2,
//                                in pfn order, then the page data they point at
//
// A page's descriptor is found by its rank among the set bits of bitmap 2.
// We keep the bitmaps (one bit per page) and a rank table (the number of
// set bits before every 4096-bit block, as makedumpfile's valid_pages[]),
// never a per-page array; descriptors are read in batches through a small
// cache. Every field of the header is hostile: offsets and sizes are checked
// against the file and against sane limits before anything is allocated.
import { closeSync } from "node:fs";
import { GuestcoreError, hex } from "../core/errors.js";
import { preadExact } from "../core/file.js";
import { BitRank, clearBitRange, eachRun, testBit } from "../core/bitmap.js";
import { parseNotes, type ElfNote } from "../format/elf64.js";
import {
  DISK_DUMP_HEADER_SIZE, DUMP_DH_COMPRESSED_INCOMPLETE, DUMP_DH_COMPRESSED_LZO, DUMP_DH_COMPRESSED_SNAPPY,
  DUMP_DH_COMPRESSED_ZLIB, DUMP_DH_COMPRESSED_ZSTD, KDUMP_SUB_HEADER_SIZE, PAGE_DESC_SIZE, parseDiskDumpHeader,
  type DiskDumpHeader,
} from "../format/kdump.js";
import { Codecs } from "../codecs/codec.js";
import { openReadOnly } from "./file-backed.js";
import type { MemorySource, PhysSegment, ReadRequest } from "./source.js";

/** Random-access bytes of a kdump file: a plain file or a flattened stream's index. */
export interface ByteSource {
  readonly path: string;
  /** Logical size in bytes. */
  readonly size: number;
  /**
   * Bytes really there: a sparse file's allocated blocks, a flattened
   * stream's record data. What a header may make the reader allocate or
   * scan is bounded by it, not by the logical size.
   */
  readonly held: number;
  /** Read exactly `len` bytes at `pos` into `dst[off..]`; GuestcoreError if they are not all there. */
  read(dst: Uint8Array, off: number, len: number, pos: number): void;
  close(): void;
}

export class FileBytes implements ByteSource {
  private closed = false;
  private constructor(readonly path: string, private readonly fd: number, readonly size: number, readonly held: number) {}

  /** `name` is what errors call the file (default: its path). */
  static open(path: string, name = path): FileBytes {
    const { fd, size, held } = openReadOnly(path);
    return new FileBytes(name, fd, size, held);
  }

  read(dst: Uint8Array, off: number, len: number, pos: number): void {
    if (pos < 0 || pos + len > this.size) {
      throw new GuestcoreError(`${this.path}: needs bytes ${pos}..${pos + len}, the file has ${this.size} (truncated?)`);
    }
    preadExact(this.fd, dst, off, len, pos, this.path);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/** Limits no real dump reaches; they keep hostile headers from costing memory. */
export const KDUMP_LIMITS = {
  /** 2^32 pages of 4 KiB: 16 TiB of guest physical address space (512 MiB per bitmap). */
  maxMapnr: 2 ** 32,
  /** Runs of dumped pages, i.e. segments. */
  maxRuns: 1 << 22,
  noteBytes: 64 << 20,
  vmcoreinfoBytes: 16 << 20,
  /**
   * Bitmap bytes allowed beyond what the file holds: a sparse copy
   * (cp --sparse=always) turns the bitmaps' zero blocks into holes. 16 MiB
   * is 2^26 pages, 256 GiB of address space.
   */
  bitmapHoleBytes: 16 << 20,
};

const COMPRESSION_MASK = DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY | DUMP_DH_COMPRESSED_ZSTD;
const DESC_BATCH = 512; // descriptors per read (12 KiB)
const DESC_CACHE_BATCHES = 4;
const READ_AHEAD = 256 << 10;
const PAGE_CACHE = 16; // decoded pages kept for reads smaller than a page (crash keeps 16 too)

export function compressionName(flags: number): string {
  const names: string[] = [];
  if (flags & DUMP_DH_COMPRESSED_ZLIB) names.push("zlib");
  if (flags & DUMP_DH_COMPRESSED_LZO) names.push("lzo");
  if (flags & DUMP_DH_COMPRESSED_SNAPPY) names.push("snappy");
  if (flags & DUMP_DH_COMPRESSED_ZSTD) names.push("zstd");
  return names.join("+") || "none";
}

export interface KdumpSubHeaderFields {
  physBase: bigint;
  dumpLevel: number;
  split: number;
  offsetVmcoreinfo: number;
  sizeVmcoreinfo: number;
  offsetNote: number;
  sizeNote: number;
  offsetEraseinfo: number;
  sizeEraseinfo: number;
  /** makedumpfile --split: this file holds the dumped pages in [startPfn, endPfn). */
  startPfn: number;
  endPfn: number;
  maxMapnr64: number;
}

/** The sub header's fields that exist at this header_version (others read as 0). */
export function parseSubHeaderForVersion(b: Uint8Array, version: number): KdumpSubHeaderFields {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  // Offsets are off_t (signed); a negative one is as bad as a huge one.
  const n = (off: number) => {
    const x = v.getBigInt64(off, true);
    return x < 0n || x > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(x);
  };
  return {
    physBase: v.getBigInt64(0, true),
    dumpLevel: version >= 1 ? v.getInt32(8, true) : 0,
    split: version >= 2 ? v.getInt32(12, true) : 0,
    offsetVmcoreinfo: version >= 3 ? n(32) : 0,
    sizeVmcoreinfo: version >= 3 ? n(40) : 0,
    offsetNote: version >= 4 ? n(48) : 0,
    sizeNote: version >= 4 ? n(56) : 0,
    offsetEraseinfo: version >= 5 ? n(64) : 0,
    sizeEraseinfo: version >= 5 ? n(72) : 0,
    startPfn: version >= 6 ? n(80) : version >= 2 ? n(16) : 0,
    endPfn: version >= 6 ? n(88) : version >= 2 ? n(24) : 0,
    maxMapnr64: version >= 6 ? n(96) : 0,
  };
}

interface Desc {
  offset: number;
  size: number;
  flags: number;
}

/** A kdump-compressed dump as a memory source. */
export class KdumpSource implements MemorySource {
  readonly segments: readonly PhysSegment[];
  readonly notes: readonly ElfNote[];
  /** disk_dump_header as read. */
  readonly header: DiskDumpHeader;
  readonly sub: KdumpSubHeaderFields;
  /** makedumpfile's -d level of the dump. */
  readonly dumpLevel: number;
  /** status & DUMP_DH_COMPRESSED_INCOMPLETE: makedumpfile ran out of space. */
  readonly incomplete: boolean;
  /**
   * Bits for pfns below maxMapnr: pages that exist (1) and pages dumped (2),
   * zero pages included; for a --split part, bitmap 2 only has its own range.
   */
  readonly bitmap1: Uint8Array;
  readonly bitmap2: Uint8Array;
  readonly maxMapnr: number;
  /** block_size: makedumpfile and QEMU write one page per block. */
  readonly pageSize: number;
  /**
   * phys_base from the sub header (signed: negative under KASLR). Do not
   * trust it in QEMU's dumps: QEMU 7.2 parses VMCOREINFO's decimal
   * NUMBER(phys_base) as hexadecimal (-316669952 becomes -0x316669952).
   */
  readonly physBase: bigint;
  /** utsname.release from the header; QEMU leaves it empty. */
  readonly release: string;
  /** Compression named by the header's status ("zlib", "lzo", "zstd", "snappy", "none"). */
  readonly compression: string;
  /** One part of a makedumpfile --split dump (see sub.startPfn, sub.endPfn). */
  readonly split: boolean;
  /** Pages set in bitmap 2 (each has a descriptor). */
  readonly dumpedPages: number;
  /** Incomplete dumps: pages set in bitmap 2 whose data was never written (not in `segments`). */
  readonly lostPages: number;

  private readonly descOffset: number;
  private readonly rank: BitRank;
  private readonly present: Uint8Array;
  private readonly descCache: { batch: number; bytes: Uint8Array; view: DataView }[] = [];
  private descEvict = 0;
  private readonly ra = new Uint8Array(READ_AHEAD);
  private raStart = -1;
  private raLen = 0;
  private nextInOrder = -1;
  private single: { off: number; bytes: Uint8Array } = { off: -1, bytes: new Uint8Array(0) };
  private readonly scratch: Uint8Array;
  private readonly pageCache = new Map<number, Uint8Array>();
  private cursorPfn = -1;
  private cursorIdx = 0;
  private readonly codecs: Codecs;

  constructor(readonly format: string, private readonly bytes: ByteSource, opts: KdumpOpenOptions = {}) {
    this.codecs = opts.codecs ?? Codecs.loadSync();
    const path = bytes.path;
    const size = bytes.size;
    const fail = (m: string): never => {
      throw new GuestcoreError(`${path}: ${m}`);
    };
    if (size < DISK_DUMP_HEADER_SIZE) fail(`truncated kdump file: ${size} bytes, the header alone needs ${DISK_DUMP_HEADER_SIZE}`);
    const head = new Uint8Array(DISK_DUMP_HEADER_SIZE);
    bytes.read(head, 0, head.length, 0);
    let h: DiskDumpHeader;
    try {
      h = parseDiskDumpHeader(head);
    } catch (e) {
      throw e instanceof GuestcoreError ? new GuestcoreError(`${path}: ${e.message}`) : e;
    }
    this.header = h;
    const bs = h.blockSize;
    this.pageSize = bs;
    if (h.headerVersion < 1 || h.headerVersion > 1000) fail(`kdump header version ${h.headerVersion} is not one makedumpfile writes`);
    if (h.subHdrSize < 1) fail(`kdump header: sub-header size ${h.subHdrSize} blocks (there must be one)`);
    if (h.bitmapBlocks === 0 || h.bitmapBlocks % 2 !== 0) fail(`kdump header: ${h.bitmapBlocks} bitmap blocks (must be a non-zero even number: two bitmaps)`);
    const bitmapOffset = (1 + h.subHdrSize) * bs;
    const bitmapBytes = h.bitmapBlocks * bs;
    this.descOffset = bitmapOffset + bitmapBytes;
    if (this.descOffset > size) {
      fail(`truncated kdump file: header, sub-header and bitmaps (${h.bitmapBlocks} blocks of ${bs}) need ${this.descOffset} bytes, the file has ${size}`);
    }
    const subBuf = new Uint8Array(KDUMP_SUB_HEADER_SIZE);
    bytes.read(subBuf, 0, subBuf.length, bs);
    const sub = parseSubHeaderForVersion(subBuf, h.headerVersion);
    this.sub = sub;
    this.dumpLevel = sub.dumpLevel;
    this.physBase = sub.physBase;
    this.release = h.release;
    this.incomplete = opts.partial === true || (h.status & DUMP_DH_COMPRESSED_INCOMPLETE) !== 0;
    this.compression = compressionName(h.status);
    const maxMapnr = sub.maxMapnr64 > 0 ? sub.maxMapnr64 : h.maxMapnr32;
    if (sub.maxMapnr64 < 0) fail("kdump sub-header: max_mapnr_64 is out of range");
    const half = bitmapBytes / 2;
    if (maxMapnr === 0) fail("kdump header: max_mapnr is 0 (no pages)");
    if (maxMapnr > half * 8) fail(`kdump header: max_mapnr ${maxMapnr} exceeds the ${half * 8} bits of each bitmap`);
    if (maxMapnr > KDUMP_LIMITS.maxMapnr) fail(`kdump header: max_mapnr ${maxMapnr} is beyond the ${KDUMP_LIMITS.maxMapnr} pages guestcore reads`);
    this.maxMapnr = maxMapnr;

    // Bitmaps: only the bytes for pfns below max_mapnr, trailing bits cleared.
    const nb = Math.ceil(maxMapnr / 8);
    // The bitmaps are read whole: the file must hold them (less what a
    // sparse copy may have left as holes) before they are allocated. Its
    // logical size is no bound: a flattened stream's records and a sparse
    // file's st_size can claim any length.
    if (2 * nb > bytes.held + KDUMP_LIMITS.bitmapHoleBytes) {
      fail(`kdump header: max_mapnr ${maxMapnr} needs two bitmaps of ${nb} bytes, but the file holds only ${bytes.held} bytes (truncated or sparse?)`);
    }
    this.bitmap1 = new Uint8Array(nb);
    this.bitmap2 = new Uint8Array(nb);
    bytes.read(this.bitmap1, 0, nb, bitmapOffset);
    bytes.read(this.bitmap2, 0, nb, bitmapOffset + half);
    if (maxMapnr % 8) {
      const mask = (1 << (maxMapnr % 8)) - 1;
      this.bitmap1[nb - 1] &= mask;
      this.bitmap2[nb - 1] &= mask;
    }
    // One file of a makedumpfile --split set: descriptors exist only for
    // the dumped pages in [start_pfn, end_pfn), so bitmap 2 is cut to them.
    this.split = sub.split !== 0;
    if (this.split) {
      const { startPfn, endPfn } = sub;
      if (startPfn < 0 || endPfn < 0 || startPfn > endPfn || endPfn > maxMapnr) {
        fail(`kdump sub-header: split range of pfns ${startPfn}..${endPfn} is not within max_mapnr ${maxMapnr}`);
      }
      clearBitRange(this.bitmap2, 0, startPfn);
      clearBitRange(this.bitmap2, endPfn, maxMapnr);
    }

    // Descriptors are found by rank in bitmap 2 (makedumpfile's valid_pages[], 4096-bit blocks).
    this.rank = new BitRank(this.bitmap2, maxMapnr);
    const count = this.rank.total;
    this.dumpedPages = count;
    const descEnd = this.descOffset + count * PAGE_DESC_SIZE;
    if (descEnd > size && !this.incomplete) {
      fail(`truncated kdump file: ${count} page descriptors at ${this.descOffset} need ${descEnd} bytes, the file has ${size}`);
    }
    // Descriptors are never all zeros (their data offset is not 0), so no
    // sparse copy has holes there: each one dumped page needs is held.
    if (count * PAGE_DESC_SIZE > bytes.held && !this.incomplete) {
      fail(`kdump bitmap 2 lists ${count} pages, but the file holds only ${bytes.held} bytes, not their ${count * PAGE_DESC_SIZE} bytes of page descriptors (truncated or sparse?)`);
    }

    this.notes = this.readNotes(sub, size, fail);
    this.scratch = new Uint8Array(bs);

    // Incomplete dumps: a descriptor whose offset is 0, that lies beyond the
    // end of the file or whose data does, belongs to a page never written. Only
    // the descriptors in the file are read (the scan is bounded by its size).
    this.present = this.bitmap2;
    let lost = 0;
    if (this.incomplete) {
      this.present = this.bitmap2.slice();
      const inFile = Math.min(count, Math.max(0, Math.floor((size - this.descOffset) / PAGE_DESC_SIZE)), Math.floor(bytes.held / PAGE_DESC_SIZE));
      let pfn = 0;
      for (let idx = 0; idx < inFile; pfn++) {
        if (!testBit(this.bitmap2, pfn)) {
          if (this.bitmap2[pfn >> 3] === 0) pfn |= 7;
          continue;
        }
        const d = this.desc(idx++);
        if (d.offset === 0 || d.offset + d.size > size) {
          this.present[pfn >> 3] &= ~(1 << (pfn & 7));
          lost++;
        }
      }
      if (inFile < count) {
        clearBitRange(this.present, pfn, maxMapnr);
        lost += count - inFile;
      }
    }
    this.lostPages = lost;
    this.segments = runs(this.present, maxMapnr, bs, fail);
  }

  private readNotes(sub: KdumpSubHeaderFields, size: number, fail: (m: string) => never): ElfNote[] {
    const region = (what: string, off: number, len: number, limit: number): Uint8Array | undefined => {
      if (len === 0) return undefined;
      if (off < 0 || len < 0) fail(`kdump sub-header: ${what} offset or size is out of range`);
      if (len > limit) fail(`kdump sub-header: ${what} of ${len} bytes is implausibly large`);
      if (len > this.bytes.held) fail(`kdump sub-header: ${what} of ${len} bytes, but the file holds only ${this.bytes.held} bytes`);
      if (off + len > size) fail(`truncated kdump file: ${what} at ${off} (${len} bytes) runs past the end of the file (${size} bytes)`);
      const b = new Uint8Array(len);
      this.bytes.read(b, 0, len, off);
      return b;
    };
    const noteBuf = region("ELF notes", sub.offsetNote, sub.sizeNote, KDUMP_LIMITS.noteBytes);
    let notes: ElfNote[] = [];
    if (noteBuf) {
      try {
        notes = parseNotes(noteBuf);
      } catch (e) {
        if (e instanceof GuestcoreError) fail(`kdump notes: ${e.message}`);
        throw e;
      }
    }
    if (!notes.some((n) => n.name === "VMCOREINFO")) {
      const vi = region("VMCOREINFO", sub.offsetVmcoreinfo, sub.sizeVmcoreinfo, KDUMP_LIMITS.vmcoreinfoBytes);
      if (vi) notes.push({ name: "VMCOREINFO", type: 0, desc: vi });
    }
    return notes;
  }

  get path(): string {
    return this.bytes.path;
  }

  /** Is the page dumped (set in bitmap 2)? */
  isDumped(pfn: number): boolean {
    return pfn >= 0 && pfn < this.maxMapnr && testBit(this.bitmap2, pfn);
  }

  /** The descriptor index of a dumped pfn: set bits of bitmap 2 before it. */
  private indexOf(pfn: number): number {
    if (pfn === this.cursorPfn + 1 && this.cursorPfn >= 0 && this.isDumped(this.cursorPfn)) {
      this.cursorPfn = pfn;
      return ++this.cursorIdx;
    }
    const idx = this.rank.rank(pfn);
    this.cursorPfn = pfn;
    this.cursorIdx = idx;
    return idx;
  }

  private desc(idx: number): Desc {
    const batch = Math.floor(idx / DESC_BATCH);
    let c = this.descCache.find((e) => e.batch === batch);
    if (!c) {
      const first = batch * DESC_BATCH;
      const n = Math.min(DESC_BATCH, this.dumpedPages - first);
      const bytes = new Uint8Array(n * PAGE_DESC_SIZE);
      const pos = this.descOffset + first * PAGE_DESC_SIZE;
      // An incomplete dump may end inside its descriptor table: the rest reads as zeros.
      const avail = Math.max(0, Math.min(bytes.length, this.bytes.size - pos));
      if (avail < bytes.length && !this.incomplete) {
        throw new GuestcoreError(`${this.bytes.path}: truncated kdump file: page descriptors end at ${this.bytes.size}`);
      }
      if (avail > 0) this.bytes.read(bytes, 0, avail, pos);
      c = { batch, bytes, view: new DataView(bytes.buffer) };
      if (this.descCache.length < DESC_CACHE_BATCHES) this.descCache.push(c);
      else {
        this.descCache[this.descEvict] = c;
        this.descEvict = (this.descEvict + 1) % DESC_CACHE_BATCHES;
      }
    }
    const o = (idx - batch * DESC_BATCH) * PAGE_DESC_SIZE;
    const off = c.view.getBigInt64(o, true);
    return {
      offset: off < 0n || off > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(off),
      size: c.view.getUint32(o + 8, true),
      flags: c.view.getUint32(o + 12, true),
    };
  }

  /**
   * Page data bytes at [off, off+len). Reading in file order (pages follow
   * each other, or nearly) fills a read-ahead window; other reads (makedumpfile's
   * shared zero page, random access) read just the page, and the last one
   * is kept, so a run of zero pages costs one read.
   */
  private data(off: number, len: number): Uint8Array {
    if (off >= this.raStart && off + len <= this.raStart + this.raLen) {
      this.nextInOrder = off + len;
      return this.ra.subarray(off - this.raStart, off - this.raStart + len);
    }
    if (off === this.single.off && len === this.single.bytes.length) return this.single.bytes;
    if (near(off, this.nextInOrder) || near(off, this.single.off + this.single.bytes.length)) {
      const n = Math.max(len, Math.min(READ_AHEAD, this.bytes.size - off));
      this.bytes.read(this.ra, 0, n, off);
      this.raStart = off;
      this.raLen = n;
      this.nextInOrder = off + len;
      return this.ra.subarray(0, len);
    }
    const b = new Uint8Array(len);
    this.bytes.read(b, 0, len, off);
    this.single = { off, bytes: b };
    return b;
  }

  /** Decode page `pfn` into `dst` (exactly one page). */
  private readPage(pfn: number, dst: Uint8Array): void {
    const path = this.bytes.path;
    const ps = this.pageSize;
    if (!this.isDumped(pfn)) {
      throw new GuestcoreError(`${path}: physical address ${hex(pfn * ps)} (pfn ${hex(pfn)}) is excluded from the dump`);
    }
    const d = this.desc(this.indexOf(pfn));
    const where = `${path}: pfn ${hex(pfn)}`;
    if (this.incomplete && (d.offset === 0 || d.offset + d.size > this.bytes.size)) {
      throw new GuestcoreError(`${where} was never written: the dump is incomplete`);
    }
    if (d.offset <= 0) throw new GuestcoreError(`${where}: page descriptor has an invalid data offset`);
    if (d.size === 0 || d.size > ps) throw new GuestcoreError(`${where}: page descriptor size ${d.size} is not between 1 and the ${ps}-byte page`);
    if (d.offset + d.size > this.bytes.size) {
      throw new GuestcoreError(`${where}: page data at ${d.offset} (${d.size} bytes) lies past the end of the file (${this.bytes.size} bytes; truncated?)`);
    }
    const comp = d.flags & COMPRESSION_MASK;
    if (comp & (comp - 1)) throw new GuestcoreError(`${where}: page flags ${hex(d.flags)} name more than one compression`);
    const src = this.data(d.offset, d.size);
    if (comp === 0) {
      if (d.size !== ps) throw new GuestcoreError(`${where}: uncompressed page of ${d.size} bytes, not ${ps}`);
      dst.set(src);
      return;
    }
    let n: number;
    try {
      n = this.codecs.decoder(comp).decompressInto(src, dst);
    } catch (e) {
      if (e instanceof GuestcoreError) throw new GuestcoreError(`${where}: ${e.message}`);
      throw new GuestcoreError(`${where}: ${compressionName(comp)} page is corrupt (${(e as Error).message ?? e})`);
    }
    if (n !== ps) throw new GuestcoreError(`${where}: ${compressionName(comp)} page decompresses to ${n} bytes, not ${ps}`);
  }

  private cachedPage(pfn: number): Uint8Array {
    let p = this.pageCache.get(pfn);
    if (p) return p;
    p = new Uint8Array(this.pageSize);
    this.readPage(pfn, p);
    if (this.pageCache.size >= PAGE_CACHE) this.pageCache.delete(this.pageCache.keys().next().value!);
    this.pageCache.set(pfn, p);
    return p;
  }

  readBatch(reqs: readonly ReadRequest[]): void {
    const ps = this.pageSize;
    for (const { paddr, dst } of reqs) {
      let done = 0;
      while (done < dst.length) {
        const at = paddr + done;
        const pfn = Math.floor(at / ps);
        const inPage = at - pfn * ps;
        const n = Math.min(ps - inPage, dst.length - done);
        if (n === ps) {
          this.readPage(pfn, dst.subarray(done, done + ps));
        } else {
          if (!this.isDumped(pfn)) this.readPage(pfn, this.scratch); // throws the excluded error
          dst.set(this.cachedPage(pfn).subarray(inPage, inPage + n), done);
        }
        done += n;
      }
    }
  }

  close(): void {
    this.bytes.close();
  }
}

/** A read at `off` continues one that ended at `end` (skipping less than 64 KiB of pages not asked for). */
function near(off: number, end: number): boolean {
  return end >= 0 && off >= end && off - end < 64 << 10;
}

/** Runs of set bits below maxMapnr as physical byte ranges. */
function runs(bm: Uint8Array, maxMapnr: number, ps: number, fail: (m: string) => never): PhysSegment[] {
  const out: PhysSegment[] = [];
  for (const r of eachRun(bm, maxMapnr)) {
    if (out.length === KDUMP_LIMITS.maxRuns) fail(`bitmap 2 has more than ${KDUMP_LIMITS.maxRuns} runs of pages`);
    out.push({ start: r.pfn * ps, end: (r.pfn + r.count) * ps, vaddr: 0n });
  }
  return out;
}

export interface KdumpOpenOptions {
  /**
   * The file is one guestcore is still writing, or was writing when it
   * died (recover reads such files to resume): it is read as an incomplete
   * dump, whatever its header says.
   */
  partial?: boolean;
  /** Decoders for the pages; without them only what loads synchronously (no zstd-codec). */
  codecs?: Codecs;
}

/** Open a kdump-compressed file (makedumpfile's default output). */
export function openKdump(path: string, opts: KdumpOpenOptions = {}): KdumpSource {
  return openKdumpBytes(FileBytes.open(path), "kdump", opts);
}

/** A kdump source over any byte source; closes it on failure. */
export function openKdumpBytes(bytes: ByteSource, format: string, opts: KdumpOpenOptions = {}): KdumpSource {
  try {
    return new KdumpSource(format, bytes, opts);
  } catch (e) {
    bytes.close();
    throw e;
  }
}

export function isKdumpSource(src: MemorySource): src is KdumpSource {
  return src instanceof KdumpSource;
}
