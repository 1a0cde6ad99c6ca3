// Writes a filtered ELF64 core: the source's notes, then one PT_LOAD per
// run of kept pages, and a data-less one per run of zero pages. Layout follows kdump's /proc/vmcore (program headers
// right after the ELF header, the notes next, page-aligned data), which
// is what makedumpfile, crash and drgn expect.
import { EHDR_SIZE, EM_X86_64, ET_CORE, PHDR_SIZE, PT_LOAD, PT_NOTE, encodeNote, type ElfNote } from "../format/elf64.js";
import type { MemorySource } from "../sources/source.js";
import { findSegment, presentPfnRanges } from "../sources/source.js";
import { AtomicFile } from "./atomic-file.js";
import { eachLoad } from "./load-plan.js";
import type { PfnBitmap } from "../core/pfn-bitmap.js";

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
  out: string, src: MemorySource, notes: readonly ElfNote[], kept: PfnBitmap, zero: PfnBitmap, maxPfn: number,
  opts: ElfWriteOptions = {},
): Promise<ElfWriteResult> {
  const mappings = opts.mappings ?? [];
  const cuts = mappings.flatMap((m) => [Math.floor(m.paddr / PAGE), Math.ceil((m.paddr + m.size) / PAGE)]);
  const present = presentPfnRanges(src, maxPfn);
  const plan = () => eachLoad(kept, zero, maxPfn, present, cuts);
  // First walk: how many loads and how much data, which place everything.
  let loads = 0;
  let total = 0;
  for (const r of plan()) {
    loads++;
    if (r.data) total += r.pages * PAGE;
  }
  const phnum = loads + 1;
  const extended = phnum >= PN_XNUM;
  const noteBytes = Buffer.concat(notes.map(encodeNote));
  const phoff = EHDR_SIZE;
  const shoff = extended ? phoff + phnum * PHDR_SIZE : 0;
  const noteOff = phoff + phnum * PHDR_SIZE + (extended ? 64 : 0);
  const dataStart = Math.ceil((noteOff + noteBytes.length) / PAGE) * PAGE;
  // Zero-fill segments point at the end of the data: makedumpfile treats
  // [p_offset, p_offset + p_memsz) as the segment's own file range (its
  // mmap window and page cache assume it), so that range must not hold
  // another segment's data.
  const endOfData = dataStart + total;

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

  const file = new AtomicFile(out);
  try {
    file.writeAt(ehdr, 0);
    if (extended) {
      const sh = Buffer.alloc(64);
      sh.writeUInt32LE(phnum, 44); // sh_info holds the real e_phnum
      file.writeAt(sh, shoff);
    }
    file.writeAt(noteBytes, noteOff);
    // Program headers go out a buffer at a time as the second walk places
    // each load, between the copies of its data.
    const phdrs = new PhdrWriter(file, phoff);
    phdrs.add(PT_NOTE, noteOff, 0n, 0, noteBytes.length, noteBytes.length);
    const buf = new Uint8Array(Math.min(COPY_CHUNK, Math.max(total, PAGE)));
    let dataOff = dataStart;
    let done = 0;
    let kicked = 0;
    let kickedAt = 0;
    for (const r of plan()) {
      const paddr = r.pfn * PAGE;
      const bytes = r.data ? r.pages * PAGE : 0;
      phdrs.add(PT_LOAD, r.data ? dataOff : endOfData, virtualAddress(paddr, mappings, src), paddr, bytes, r.pages * PAGE);
      for (let o = 0; o < bytes; o += buf.length) {
        const n = Math.min(buf.length, bytes - o);
        const view = buf.subarray(0, n);
        src.readBatch([{ paddr: paddr + o, dst: view }]);
        file.writeAt(view, dataOff + o);
        done += n;
        // Writeback as it goes, not all at the final fsync (AtomicFile.startWriteback).
        if (done - kicked >= WRITEBACK_EVERY) {
          file.startWriteback(kickedAt, dataOff + o + n - kickedAt);
          kicked = done;
          kickedAt = dataOff + o + n;
        }
        opts.onProgress?.(done, total);
      }
      dataOff += bytes;
    }
    phdrs.flush();
    if (phdrs.count !== phnum) throw new Error(`internal: ${phdrs.count} program headers written, ${phnum} planned`);
    await opts.beforeCommit?.();
    file.commit();
    return { path: out, loads, pages: total / PAGE, bytes: dataOff };
  } catch (e) {
    file.abort();
    throw e;
  }
}

/** Program headers, buffered and written in order from `at`. */
class PhdrWriter {
  private readonly buf = Buffer.alloc(PHDR_SIZE * 8192);
  private used = 0;
  count = 0;
  constructor(private readonly file: AtomicFile, private at: number) {}

  add(type: number, offset: number, vaddr: bigint, paddr: number, size: number, memsz: number): void {
    if (this.used === this.buf.length) this.flush();
    const b = this.buf;
    const o = this.used;
    b.writeUInt32LE(type, o);
    b.writeUInt32LE(type === PT_LOAD ? 7 : 0, o + 4); // RWX, as kdump writes
    b.writeBigUInt64LE(BigInt(offset), o + 8);
    b.writeBigUInt64LE(vaddr, o + 16);
    b.writeBigUInt64LE(BigInt(paddr), o + 24);
    b.writeBigUInt64LE(BigInt(size), o + 32);
    b.writeBigUInt64LE(BigInt(memsz), o + 40);
    b.writeBigUInt64LE(0n, o + 48);
    this.used += PHDR_SIZE;
    this.count++;
  }

  flush(): void {
    if (!this.used) return;
    this.file.writeAt(this.buf.subarray(0, this.used), this.at);
    this.at += this.used;
    this.used = 0;
  }
}

function virtualAddress(paddr: number, mappings: VirtualMapping[], src: MemorySource): bigint {
  const m = mappings.find((x) => paddr >= x.paddr && paddr < x.paddr + x.size);
  if (m) return m.vaddr + BigInt(paddr - m.paddr);
  const seg = src.segments[findSegment(src.segments, paddr)];
  return seg && seg.vaddr !== 0n ? seg.vaddr + BigInt(paddr - seg.start) : 0n;
}
