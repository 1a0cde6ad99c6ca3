// The fixed part of a kdump-compressed file: disk_dump_header, the
// kdump_sub_header (version 6) with the ELF notes after it, and where the
// bitmaps, the page_desc table and the page data go. Byte layout per
// makedumpfile's diskdump_mod.h (x86-64).
import { KDUMP_SIGNATURE, KDUMP_SUB_HEADER_SIZE, PAGE_DESC_SIZE } from "../format/kdump.js";
import { encodeNote, type ElfNote } from "../format/elf64.js";

export const BLOCK = 4096;
const UTS_FIELD = 65;
const NT_PRSTATUS = 1;

export interface KdumpLayout {
  subHdrBlocks: number;
  bitmapBytes: number; // each of the two bitmaps
  bitmapOff: number;
  descOff: number;
  dataOff: number;
  numDumpable: number;
}

export function kdumpLayout(notesLength: number, maxPfn: number, numDumpable: number): KdumpLayout {
  const subHdrBlocks = Math.ceil((KDUMP_SUB_HEADER_SIZE + notesLength) / BLOCK);
  // Each bitmap is padded to whole blocks: crash needs them block-aligned.
  const bitmapBytes = Math.ceil(Math.ceil(maxPfn / 8) / BLOCK) * BLOCK;
  const bitmapOff = (1 + subHdrBlocks) * BLOCK;
  const descOff = bitmapOff + 2 * bitmapBytes;
  return { subHdrBlocks, bitmapBytes, bitmapOff, descOff, dataOff: descOff + numDumpable * PAGE_DESC_SIZE, numDumpable };
}

export interface KdumpHeaderInput {
  layout: KdumpLayout;
  /** new_utsname: sysname, nodename, release, version, machine, domainname. */
  utsname: Uint8Array;
  status: number;
  maxPfn: number;
  dumpLevel: number;
  physBase: bigint;
  notes: readonly ElfNote[];
  now?: Date;
}

/** disk_dump_header + sub header + notes: everything before the bitmaps. */
export function encodeKdumpHeaders(h: KdumpHeaderInput): Buffer {
  const out = Buffer.alloc(h.layout.bitmapOff);
  out.write(KDUMP_SIGNATURE, 0, "latin1");
  out.writeInt32LE(6, 8);
  Buffer.from(h.utsname.subarray(0, 6 * UTS_FIELD)).copy(out, 12);
  const t = h.now ?? new Date();
  out.writeBigInt64LE(BigInt(Math.floor(t.getTime() / 1000)), 408);
  out.writeBigInt64LE(BigInt((t.getTime() % 1000) * 1000), 416);
  out.writeUInt32LE(h.status, 424);
  out.writeInt32LE(BLOCK, 428);
  out.writeInt32LE(h.layout.subHdrBlocks, 432);
  out.writeUInt32LE((2 * h.layout.bitmapBytes) / BLOCK, 436);
  out.writeUInt32LE(Math.min(h.maxPfn, 0xffffffff), 440);
  const cpus = h.notes.filter((n) => n.type === NT_PRSTATUS && n.name === "CORE").length;
  out.writeInt32LE(Math.max(cpus, 1), 460);

  const sub = BLOCK;
  const notes = h.notes.map(encodeNote);
  const noteOff = sub + KDUMP_SUB_HEADER_SIZE;
  let at = noteOff;
  let vmcoreinfo = { off: 0, size: 0 };
  h.notes.forEach((n, i) => {
    notes[i].copy(out, at);
    if (n.name === "VMCOREINFO") {
      const descAt = at + 12 + ((n.name.length + 1 + 3) & ~3);
      vmcoreinfo = { off: descAt, size: n.desc.length };
    }
    at += notes[i].length;
  });
  out.writeBigUInt64LE(BigInt.asUintN(64, h.physBase), sub + 0);
  out.writeInt32LE(h.dumpLevel, sub + 8);
  out.writeBigUInt64LE(BigInt(vmcoreinfo.off), sub + 32);
  out.writeBigUInt64LE(BigInt(vmcoreinfo.size), sub + 40);
  out.writeBigUInt64LE(BigInt(noteOff), sub + 48);
  out.writeBigUInt64LE(BigInt(at - noteOff), sub + 56);
  out.writeBigUInt64LE(BigInt(h.maxPfn), sub + 96);
  return out.subarray(0, at);
}

/** One page_desc: offset, size, flags, page_flags. */
export function writePageDesc(buf: Buffer, at: number, offset: number, size: number, flags: number): void {
  buf.writeBigInt64LE(BigInt(offset), at);
  buf.writeUInt32LE(size, at + 8);
  buf.writeUInt32LE(flags, at + 12);
  buf.writeBigUInt64LE(0n, at + 16);
}
