// kdump-compressed (diskdump) structures, per makedumpfile's
// diskdump_mod.h and IMPLEMENTATION. Offsets are x86-64's.
import { GuestcoreError } from "../core/errors.js";

export const KDUMP_SIGNATURE = "KDUMP   ";
export const DUMP_DH_COMPRESSED_ZLIB = 0x1;
export const DUMP_DH_COMPRESSED_LZO = 0x2;
export const DUMP_DH_COMPRESSED_SNAPPY = 0x4;
export const DUMP_DH_COMPRESSED_INCOMPLETE = 0x8;
export const DUMP_DH_COMPRESSED_ZSTD = 0x20;
export const PAGE_DESC_SIZE = 24;

export interface DiskDumpHeader {
  headerVersion: number;
  release: string;
  status: number;
  blockSize: number;
  subHdrSize: number;
  bitmapBlocks: number;
  maxMapnr32: number;
  nrCpus: number;
}

export interface KdumpSubHeader {
  physBase: bigint;
  dumpLevel: number;
  offsetVmcoreinfo: number;
  sizeVmcoreinfo: number;
  offsetNote: number;
  sizeNote: number;
  maxMapnr64: number;
}

export interface PageDesc {
  offset: number;
  size: number;
  flags: number;
  pageFlags: bigint;
}

const cstr = (b: Uint8Array, off: number, len: number) => {
  const s = Buffer.from(b.buffer, b.byteOffset + off, len).toString("latin1");
  const nul = s.indexOf("\0");
  return nul < 0 ? s : s.slice(0, nul);
};

export function parseDiskDumpHeader(b: Uint8Array): DiskDumpHeader {
  if (b.length < 464 || Buffer.from(b.buffer, b.byteOffset, 8).toString("latin1") !== KDUMP_SIGNATURE) {
    throw new GuestcoreError("not a kdump-compressed file (no KDUMP signature)");
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const h: DiskDumpHeader = {
    headerVersion: v.getInt32(8, true),
    release: cstr(b, 12 + 65 * 2, 65),
    status: v.getUint32(424, true),
    blockSize: v.getInt32(428, true),
    subHdrSize: v.getInt32(432, true),
    bitmapBlocks: v.getUint32(436, true),
    maxMapnr32: v.getUint32(440, true),
    nrCpus: v.getInt32(460, true),
  };
  if (h.blockSize < 512 || h.blockSize > 1 << 16 || (h.blockSize & (h.blockSize - 1)) !== 0) {
    throw new GuestcoreError(`kdump header: block size ${h.blockSize} is not a power of two between 512 and 64K`);
  }
  if (h.subHdrSize < 0 || h.subHdrSize > 1 << 20) throw new GuestcoreError(`kdump header: sub-header size ${h.subHdrSize} is implausible`);
  return h;
}

export function parseKdumpSubHeader(b: Uint8Array): KdumpSubHeader {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = (off: number) => Number(v.getBigUint64(off, true));
  return {
    physBase: v.getBigUint64(0, true),
    dumpLevel: v.getInt32(8, true),
    offsetVmcoreinfo: n(32),
    sizeVmcoreinfo: n(40),
    offsetNote: n(48),
    sizeNote: n(56),
    maxMapnr64: b.length >= 104 ? n(96) : 0,
  };
}

export function parsePageDesc(b: Uint8Array, off: number): PageDesc {
  const v = new DataView(b.buffer, b.byteOffset + off, PAGE_DESC_SIZE);
  return {
    offset: Number(v.getBigInt64(0, true)),
    size: v.getUint32(8, true),
    flags: v.getUint32(12, true),
    pageFlags: v.getBigUint64(16, true),
  };
}

// ---- the flattened form (makedumpfile -F), for writing to a pipe ----
// A 4096-byte header ("makedumpfile", type 1, version 1; big-endian
// int64s), then records of {offset, size} (big-endian int64s) each
// followed by `size` bytes that belong at `offset` of the real file, and
// an end record whose two fields are -1.
export const FLAT_SIGNATURE = "makedumpfile";
export const FLAT_HEADER_SIZE = 4096;
export const FLAT_TYPE = 1n;
export const FLAT_VERSION = 1n;
export const FLAT_RECORD_HEADER = 16;

export function encodeFlatHeader(): Buffer {
  const b = Buffer.alloc(FLAT_HEADER_SIZE);
  b.write(FLAT_SIGNATURE, 0, "latin1");
  b.writeBigInt64BE(FLAT_TYPE, 16);
  b.writeBigInt64BE(FLAT_VERSION, 24);
  return b;
}

export function encodeFlatRecord(offset: number, size: number): Buffer {
  const b = Buffer.alloc(FLAT_RECORD_HEADER);
  b.writeBigInt64BE(BigInt(offset), 0);
  b.writeBigInt64BE(BigInt(size), 8);
  return b;
}

export function encodeFlatEnd(): Buffer {
  return Buffer.alloc(FLAT_RECORD_HEADER, 0xff);
}

export function isFlatHeader(b: Uint8Array): boolean {
  return b.length >= 32 && Buffer.from(b.buffer, b.byteOffset, 12).toString("latin1") === FLAT_SIGNATURE
    && new DataView(b.buffer, b.byteOffset).getBigInt64(16, false) === FLAT_TYPE;
}

export const DISK_DUMP_HEADER_SIZE = 464;
export const KDUMP_SUB_HEADER_SIZE = 104;
