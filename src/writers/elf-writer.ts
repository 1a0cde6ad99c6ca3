// Writes a filtered ELF64 core: the source's notes, then one PT_LOAD per
// run of kept pages, and a data-less one per run of zero pages. Layout follows kdump's /proc/vmcore (program headers
// right after the ELF header, the notes next, page-aligned data), which
// is what makedumpfile, crash and drgn expect.
import { EHDR_SIZE, EM_X86_64, ET_CORE, PHDR_SIZE, PT_LOAD, PT_NOTE, encodeNote, type ElfNote } from "../format/elf64.js";
import type { MemorySource } from "../sources/source.js";
import { findSegment, presentPfnRanges } from "../sources/source.js";
import { AtomicFile } from "./atomic-file.js";
import { planLoads } from "./load-plan.js";

const PAGE = 4096;
const COPY_CHUNK = 4 << 20;
const WRITEBACK_EVERY = 32 << 20;
const PN_XNUM = 0xffff;

export interface ElfWriteResult {
  path: string;
  loads: number;
  pages: number;
  bytes: number;
}

/** A physical range the kernel maps at a known virtual address. */
export interface VirtualMapping {
  paddr: number;
  vaddr: bigint;
  size: number;
}

export interface ElfWriteOptions {
  /**
   * Ranges whose PT_LOADs get these virtual addresses (the kernel image:
   * drgn 0.0.22 reads swapper_pg_dir through p_vaddr, and crash derives
   * phys_base from it). Elsewhere p_vaddr follows the input, or is 0.
   */
  mappings?: VirtualMapping[];
  onProgress?: (done: number, total: number) => void;
  /** Awaited after the last byte and before the rename (see DumpOptions). */
  beforeCommit?: () => Promise<void>;
}

export async function writeElfDump(
  out: string, src: MemorySource, notes: readonly ElfNote[], kept: Uint8Array, zero: Uint8Array, maxPfn: number,
  opts: ElfWriteOptions = {},
): Promise<ElfWriteResult> {
  const mappings = opts.mappings ?? [];
  const cuts = mappings.flatMap((m) => [Math.floor(m.paddr / PAGE), Math.ceil((m.paddr + m.size) / PAGE)]);
  const runs = planLoads(kept, zero, maxPfn, presentPfnRanges(src, maxPfn), cuts);
  const phnum = runs.length + 1;
  const extended = phnum >= PN_XNUM;
  const noteBytes = Buffer.concat(notes.map(encodeNote));
  const phoff = EHDR_SIZE;
  const shoff = extended ? phoff + phnum * PHDR_SIZE : 0;
  const noteOff = phoff + phnum * PHDR_SIZE + (extended ? 64 : 0);
  let dataOff = Math.ceil((noteOff + noteBytes.length) / PAGE) * PAGE;

  const ehdr = Buffer.alloc(EHDR_SIZE);
  ehdr.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  ehdr.writeUInt16LE(ET_CORE, 16);
  ehdr.writeUInt16LE(EM_X86_64, 18);
  ehdr.writeUInt32LE(1, 20);
  ehdr.writeBigUInt64LE(BigInt(phoff), 32);
  ehdr.writeBigUInt64LE(BigInt(shoff), 40);
  ehdr.writeUInt16LE(EHDR_SIZE, 52);
  ehdr.writeUInt16LE(PHDR_SIZE, 54);
  ehdr.writeUInt16LE(extended ? PN_XNUM : phnum, 56);
  ehdr.writeUInt16LE(extended ? 64 : 0, 58);
  ehdr.writeUInt16LE(extended ? 1 : 0, 60);

  const phdrs = Buffer.alloc(phnum * PHDR_SIZE);
  const ph = (i: number, type: number, offset: number, vaddr: bigint, paddr: number, size: number, memsz: number, align: number) => {
    const o = i * PHDR_SIZE;
    phdrs.writeUInt32LE(type, o);
    phdrs.writeUInt32LE(type === PT_LOAD ? 7 : 0, o + 4); // RWX, as kdump writes
    phdrs.writeBigUInt64LE(BigInt(offset), o + 8);
    phdrs.writeBigUInt64LE(vaddr, o + 16);
    phdrs.writeBigUInt64LE(BigInt(paddr), o + 24);
    phdrs.writeBigUInt64LE(BigInt(size), o + 32);
    phdrs.writeBigUInt64LE(BigInt(memsz), o + 40);
    phdrs.writeBigUInt64LE(BigInt(align), o + 48);
  };
  ph(0, PT_NOTE, noteOff, 0n, 0, noteBytes.length, noteBytes.length, 0);
  const dataBytes = runs.reduce((n, r) => n + (r.data ? r.pages * PAGE : 0), 0);
  // Zero-fill segments point at the end of the data: makedumpfile treats
  // [p_offset, p_offset + p_memsz) as the segment's own file range (its
  // mmap window and page cache assume it), so that range must not hold
  // another segment's data.
  const endOfData = dataOff + dataBytes;
  const placed = runs.map((r, i) => {
    const paddr = r.pfn * PAGE;
    const vaddr = virtualAddress(paddr, mappings, src);
    const bytes = r.data ? r.pages * PAGE : 0;
    ph(i + 1, PT_LOAD, r.data ? dataOff : endOfData, vaddr, paddr, bytes, r.pages * PAGE, 0);
    const at = dataOff;
    dataOff += bytes;
    return { paddr, bytes, at };
  });

  const file = new AtomicFile(out);
  try {
    file.writeAt(ehdr, 0);
    file.writeAt(phdrs, phoff);
    if (extended) {
      const sh = Buffer.alloc(64);
      sh.writeUInt32LE(phnum, 44); // sh_info holds the real e_phnum
      file.writeAt(sh, shoff);
    }
    file.writeAt(noteBytes, noteOff);
    const total = placed.reduce((n, p) => n + p.bytes, 0);
    const buf = new Uint8Array(Math.min(COPY_CHUNK, Math.max(total, PAGE)));
    let done = 0;
    let kicked = 0;
    let kickedAt = 0;
    for (const p of placed) {
      for (let o = 0; o < p.bytes; o += buf.length) {
        const n = Math.min(buf.length, p.bytes - o);
        const view = buf.subarray(0, n);
        src.readBatch([{ paddr: p.paddr + o, dst: view }]);
        file.writeAt(view, p.at + o);
        done += n;
        // Writeback as it goes, not all at the final fsync (AtomicFile.startWriteback).
        if (done - kicked >= WRITEBACK_EVERY) {
          file.startWriteback(kickedAt, p.at + o + n - kickedAt);
          kicked = done;
          kickedAt = p.at + o + n;
        }
        opts.onProgress?.(done, total);
      }
    }
    await opts.beforeCommit?.();
    file.commit();
    return { path: out, loads: runs.length, pages: total / PAGE, bytes: dataOff };
  } catch (e) {
    file.abort();
    throw e;
  }
}

function virtualAddress(paddr: number, mappings: VirtualMapping[], src: MemorySource): bigint {
  const m = mappings.find((x) => paddr >= x.paddr && paddr < x.paddr + x.size);
  if (m) return m.vaddr + BigInt(paddr - m.paddr);
  const seg = src.segments[findSegment(src.segments, paddr)];
  return seg && seg.vaddr !== 0n ? seg.vaddr + BigInt(paddr - seg.start) : 0n;
}
