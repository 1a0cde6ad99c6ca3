// ELF64 core file structures: just what vmcores use (header, program
// headers, notes, and section headers for Xen's dump-core). Every count and offset is checked against the file
// size, because a dump's header is as untrusted as its memory.
import { GuestcoreError, hex } from "../core/errors.js";

export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const ET_CORE = 4;
export const EM_X86_64 = 62;
const PN_XNUM = 0xffff;
export const SHT_PROGBITS = 1;
export const SHT_STRTAB = 3;
export const SHT_NOTE = 7;
export const SHT_NOBITS = 8;
export const EHDR_SIZE = 64;
export const PHDR_SIZE = 56;
export const SHDR_SIZE = 64;
// Section indexes from SHN_LORESERVE (0xff00) up are special, so a count
// at or above it needs extended numbering, which no core file uses.
const MAX_SHDRS = 0xff00;
// No real vmcore has more; it keeps a hostile e_phnum from costing memory.
export const MAX_PHDRS = 1 << 20;
export const MAX_NOTE_BYTES = 64 << 20;

export interface ElfHeader {
  type: number;
  machine: number;
  phoff: number;
  phnum: number;
  shoff: number;
  shnum: number;
  shentsize: number;
  shstrndx: number;
}

export interface ProgramHeader {
  type: number;
  flags: number;
  offset: number;
  vaddr: bigint;
  paddr: number;
  filesz: number;
  memsz: number;
  align: number;
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

export function isElf(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
}

function u64(v: DataView, off: number, what: string): number {
  const x = v.getBigUint64(off, true);
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new GuestcoreError(`ELF: ${what} ${hex(x)} is out of range`);
  return Number(x);
}

export function parseElfHeader(buf: Uint8Array, fileSize: number): ElfHeader {
  if (!isElf(buf)) throw new GuestcoreError("not an ELF file");
  if (buf.length < EHDR_SIZE) throw new GuestcoreError("ELF: header truncated");
  if (buf[4] !== 2) throw new GuestcoreError("ELF: only 64-bit cores are supported (EI_CLASS is not ELFCLASS64)");
  if (buf[5] !== 1) throw new GuestcoreError("ELF: only little-endian cores are supported");
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  // e_ehsize is not checked: QEMU 7.2's dump-guest-memory writes a bogus one.
  const h: ElfHeader = {
    type: v.getUint16(16, true),
    machine: v.getUint16(18, true),
    phoff: u64(v, 32, "e_phoff"),
    shoff: u64(v, 40, "e_shoff"),
    phnum: v.getUint16(56, true),
    shentsize: v.getUint16(58, true),
    shnum: v.getUint16(60, true),
    shstrndx: v.getUint16(62, true),
  };
  const phentsize = v.getUint16(54, true);
  if (h.type !== ET_CORE) throw new GuestcoreError(`ELF: not a core file (e_type ${h.type})`);
  if (h.machine !== EM_X86_64) throw new GuestcoreError(`ELF: machine ${h.machine} is not x86-64`);
  if (h.phnum !== 0 && phentsize !== PHDR_SIZE) throw new GuestcoreError(`ELF: e_phentsize ${phentsize} is not ${PHDR_SIZE}`);
  if (h.phoff > fileSize) throw new GuestcoreError(`ELF: program headers at ${h.phoff} lie beyond the end of the file (${fileSize} bytes)`);
  return h;
}

/** With more than 65534 segments, the real count sits in section 0's sh_info. */
export function extendedPhnum(h: ElfHeader, section0: Uint8Array | undefined): number {
  if (h.phnum !== PN_XNUM) return h.phnum;
  if (!section0 || section0.length < 64) throw new GuestcoreError("ELF: e_phnum is PN_XNUM but section 0 is missing");
  return new DataView(section0.buffer, section0.byteOffset, 64).getUint32(44, true);
}

export function parseProgramHeaders(buf: Uint8Array, count: number, fileSize: number): ProgramHeader[] {
  if (count > MAX_PHDRS) throw new GuestcoreError(`ELF: ${count} program headers is more than any vmcore has`);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: ProgramHeader[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * PHDR_SIZE;
    const p: ProgramHeader = {
      type: v.getUint32(o, true),
      flags: v.getUint32(o + 4, true),
      offset: u64(v, o + 8, "p_offset"),
      vaddr: v.getBigUint64(o + 16, true),
      paddr: u64(v, o + 24, "p_paddr"),
      filesz: u64(v, o + 32, "p_filesz"),
      memsz: u64(v, o + 40, "p_memsz"),
      align: u64(v, o + 48, "p_align"),
    };
    if (p.type === PT_LOAD || p.type === PT_NOTE) {
      if (p.offset + p.filesz > fileSize) {
        throw new GuestcoreError(
          `truncated ELF: segment ${i} needs bytes up to ${p.offset + p.filesz} but the file has ${fileSize}`);
      }
    }
    out.push(p);
  }
  return out;
}

export interface SectionHeader {
  /** Offset of the name in the section name table (e_shstrndx). */
  nameOff: number;
  type: number;
  offset: number;
  size: number;
  entsize: number;
}

/**
 * Where the section header table lies, checked against the header and
 * the file: an error for no table, a bad entry size, a table past the
 * end of the file or a name table index outside it.
 */
export function sectionTable(h: ElfHeader, fileSize: number): { offset: number; length: number } {
  if (h.shnum === 0) throw new GuestcoreError("ELF: no section headers (e_shnum is 0)");
  if (h.shnum >= MAX_SHDRS) throw new GuestcoreError(`ELF: ${h.shnum} section headers need extended numbering, which no core file uses`);
  if (h.shentsize !== SHDR_SIZE) throw new GuestcoreError(`ELF: e_shentsize ${h.shentsize} is not ${SHDR_SIZE}`);
  if (h.shoff + h.shnum * SHDR_SIZE > fileSize) {
    throw new GuestcoreError(`ELF: ${h.shnum} section headers at ${h.shoff} run past the end of the file (${fileSize} bytes; truncated?)`);
  }
  if (h.shstrndx >= h.shnum) throw new GuestcoreError(`ELF: e_shstrndx ${h.shstrndx} is not below e_shnum ${h.shnum}`);
  return { offset: h.shoff, length: h.shnum * SHDR_SIZE };
}

/** The section headers in `buf` (the table sectionTable() locates); every section but SHT_NOBITS must lie in the file. */
export function parseSectionHeaders(buf: Uint8Array, count: number, fileSize: number): SectionHeader[] {
  if (count >= MAX_SHDRS) throw new GuestcoreError(`ELF: ${count} section headers need extended numbering, which no core file uses`);
  if (buf.length < count * SHDR_SIZE) throw new GuestcoreError(`ELF: section header table truncated: ${buf.length} bytes for ${count} entries`);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: SectionHeader[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * SHDR_SIZE;
    const s: SectionHeader = {
      nameOff: v.getUint32(o, true),
      type: v.getUint32(o + 4, true),
      offset: u64(v, o + 24, `section ${i} sh_offset`),
      size: u64(v, o + 32, `section ${i} sh_size`),
      entsize: u64(v, o + 56, `section ${i} sh_entsize`),
    };
    if (s.type !== SHT_NOBITS && s.offset + s.size > fileSize) {
      throw new GuestcoreError(`ELF: section ${i} needs bytes up to ${s.offset + s.size}, the file has ${fileSize} (truncated?)`);
    }
    out.push(s);
  }
  return out;
}

/** The NUL-terminated name at `off` of a section name table, or undefined if it is not wholly inside. */
export function sectionName(names: Uint8Array, off: number): string | undefined {
  if (off >= names.length) return undefined;
  const end = names.indexOf(0, off);
  if (end < 0) return undefined;
  return Buffer.from(names.subarray(off, end)).toString("latin1");
}

export function parseNotes(buf: Uint8Array): ElfNote[] {
  if (buf.length > MAX_NOTE_BYTES) throw new GuestcoreError(`ELF: note segment of ${buf.length} bytes is implausibly large`);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const notes: ElfNote[] = [];
  let o = 0;
  while (o + 12 <= buf.length) {
    const namesz = v.getUint32(o, true);
    const descsz = v.getUint32(o + 4, true);
    const type = v.getUint32(o + 8, true);
    // kdump pads PT_NOTE with zeroed space after the last note.
    if (namesz === 0 && descsz === 0 && type === 0) break;
    const nameOff = o + 12;
    // namesz and descsz are 32-bit and hostile: compare before adding padding.
    if (namesz > buf.length - nameOff) throw new GuestcoreError(`ELF: note at ${o} has a name of ${namesz} bytes, past its segment`);
    const descOff = nameOff + align4(namesz);
    if (descOff > buf.length || descsz > buf.length - descOff) throw new GuestcoreError(`ELF: note at ${o} runs past its segment`);
    const end = descOff + align4(descsz);
    let name = Buffer.from(buf.subarray(nameOff, nameOff + namesz)).toString("latin1");
    name = name.replace(/\0+$/, "");
    notes.push({ name, type, desc: buf.slice(descOff, descOff + descsz) });
    o = end;
  }
  return notes;
}

/** n rounded up to a multiple of 4; arithmetic, not bit operations, so counts past 2^31 stay right. */
export function align4(n: number): number {
  return n + ((4 - (n % 4)) % 4);
}

export function encodeNote(note: ElfNote): Buffer {
  const name = Buffer.from(note.name + "\0", "latin1");
  const out = Buffer.alloc(12 + align4(name.length) + align4(note.desc.length));
  out.writeUInt32LE(name.length, 0);
  out.writeUInt32LE(note.desc.length, 4);
  out.writeUInt32LE(note.type, 8);
  name.copy(out, 12);
  Buffer.from(note.desc).copy(out, 12 + align4(name.length));
  return out;
}
