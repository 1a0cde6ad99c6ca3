// ELF vmcores: QEMU dump-guest-memory, kdump's /proc/vmcore copies and
// makedumpfile -E output. PT_LOADs give the physical ranges; bytes past
// p_filesz (up to p_memsz) were not saved and count as absent.
import { GuestcoreError } from "../core/errors.js";
import { preadExact } from "../core/file.js";
import {
  EHDR_SIZE, MAX_NOTE_BYTES, MAX_PHDRS, PHDR_SIZE, PT_LOAD, PT_NOTE, extendedPhnum, parseElfHeader, parseNotes, parseProgramHeaders,
  type ElfNote, type ProgramHeader,
} from "../format/elf64.js";
import { checkSegments, FileBackedSource, openReadOnly, type FileSegment } from "./file-backed.js";

export function openElf(path: string): FileBackedSource {
  const { fd, size, held } = openReadOnly(path);
  try {
    const head = new Uint8Array(Math.min(EHDR_SIZE, size));
    preadExact(fd, head, 0, head.length, 0, path);
    if (size < EHDR_SIZE) throw new GuestcoreError(`truncated ELF: ${path} has only ${size} bytes`);
    const h = parseElfHeader(head, size);
    let section0: Uint8Array | undefined;
    if (h.phnum === 0xffff && h.shoff + 64 <= size) {
      section0 = new Uint8Array(64);
      preadExact(fd, section0, 0, 64, h.shoff, path);
    }
    const phnum = extendedPhnum(h, section0);
    if (phnum > MAX_PHDRS) throw new GuestcoreError(`ELF: ${phnum} program headers is more than any vmcore has`);
    const phBytes = phnum * PHDR_SIZE;
    if (h.phoff + phBytes > size) throw new GuestcoreError(`truncated ELF: ${phnum} program headers at ${h.phoff} run past the end of the file (${size} bytes)`);
    // st_size vouches for nothing in a sparse file: what is read whole must be held.
    if (phBytes > held) throw new GuestcoreError(`${path}: ${phnum} program headers need ${phBytes} bytes, the file holds only ${held} (truncated or sparse?)`);
    const phBuf = new Uint8Array(phBytes);
    preadExact(fd, phBuf, 0, phBytes, h.phoff, path);
    const phdrs = parseProgramHeaders(phBuf, phnum, size);
    const notes = readNotes(fd, path, phdrs, held);
    const segs: FileSegment[] = phdrs
      .filter((p) => p.type === PT_LOAD && p.filesz > 0)
      .map((p) => ({ start: p.paddr, end: p.paddr + p.filesz, vaddr: p.vaddr, fileOffset: p.offset }));
    if (segs.length === 0) throw new GuestcoreError(`${path}: ELF core without any PT_LOAD with data`);
    const zeroFill = phdrs
      .filter((p) => p.type === PT_LOAD && p.memsz > p.filesz)
      .map((p) => ({ start: p.paddr + p.filesz, end: p.paddr + p.memsz, vaddr: 0n }))
      .sort((a, b) => a.start - b.start);
    return new FileBackedSource("elf", path, fd, checkSegments(dedupeAliases(segs), size, path), notes, mergeRanges(zeroFill));
  } catch (e) {
    new FileBackedSource("elf", path, fd, [], []).close();
    throw e;
  }
}

function readNotes(fd: number, path: string, phdrs: ProgramHeader[], held: number): ElfNote[] {
  const notes: ElfNote[] = [];
  let total = 0;
  for (const p of phdrs) {
    if (p.type !== PT_NOTE || p.filesz === 0) continue;
    total += p.filesz;
    if (total > MAX_NOTE_BYTES) throw new GuestcoreError(`ELF: note segments of ${total} bytes are implausibly large`);
    if (total > held) throw new GuestcoreError(`${path}: note segments of ${total} bytes, the file holds only ${held} (truncated or sparse?)`);
    const buf = new Uint8Array(p.filesz);
    preadExact(fd, buf, 0, p.filesz, p.offset, path);
    notes.push(...parseNotes(buf));
  }
  return notes;
}

/**
 * kdump's /proc/vmcore maps the kernel text twice: once in the direct map
 * and once at __START_KERNEL_map. Both describe the same physical pages,
 * so keep only the first PT_LOAD that covers a physical range.
 */
function dedupeAliases(segs: FileSegment[]): FileSegment[] {
  const sorted = [...segs].sort((a, b) => a.start - b.start || b.end - a.end);
  const out: FileSegment[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.start < last.end) {
      if (s.end <= last.end) continue;
      const cut = last.end - s.start;
      out.push({ start: last.end, end: s.end, vaddr: s.vaddr === 0n ? 0n : s.vaddr + BigInt(cut), fileOffset: s.fileOffset + cut });
      continue;
    }
    out.push(s);
  }
  return out;
}

function mergeRanges<T extends { start: number; end: number }>(rs: T[]): T[] {
  const out: T[] = [];
  for (const r of rs) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else out.push({ ...r });
  }
  return out;
}
