// ELF vmcores through the source opener the CLI uses (sniffing included):
// the header, program headers (PN_XNUM's count in section 0 too), the
// notes, then reads at the edges of every segment.
import type { MemorySource } from "../../src/sources/source.js";
import type { Field, FuzzTarget, Seed } from "../target.js";
import { fixtureFile, inputFile, openInput, readAt } from "../seed-util.js";

const EHDR = 64;
const PHDR = 56;
const SHDR = 64;
/** Pages of each PT_LOAD kept in a seed: enough to read, small enough to run fast. */
const KEEP_PAGES = 2;

function u64(b: Uint8Array, o: number): number {
  return Number(new DataView(b.buffer, b.byteOffset).getBigUint64(o, true));
}

function headerFields(phoff: number, phnum: number, notesAt: number, notes: Uint8Array): Field[] {
  const f: Field[] = [
    { offset: 0, width: 4, kind: "magic", name: "EI_MAG" },
    { offset: 4, width: 1, kind: "flags", name: "EI_CLASS" },
    { offset: 5, width: 1, kind: "flags", name: "EI_DATA" },
    { offset: 16, width: 2, kind: "magic", name: "e_type" },
    { offset: 18, width: 2, kind: "magic", name: "e_machine" },
    { offset: 32, width: 8, kind: "offset", name: "e_phoff" },
    { offset: 40, width: 8, kind: "offset", name: "e_shoff" },
    { offset: 54, width: 2, kind: "size", name: "e_phentsize" },
    { offset: 56, width: 2, kind: "count", name: "e_phnum" },
    { offset: 58, width: 2, kind: "size", name: "e_shentsize" },
    { offset: 60, width: 2, kind: "count", name: "e_shnum" },
  ];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * PHDR;
    f.push(
      { offset: o, width: 4, kind: "flags", name: `p_type[${i}]` },
      { offset: o + 8, width: 8, kind: "offset", name: `p_offset[${i}]` },
      { offset: o + 16, width: 8, kind: "pointer", name: `p_vaddr[${i}]` },
      { offset: o + 24, width: 8, kind: "pointer", name: `p_paddr[${i}]` },
      { offset: o + 32, width: 8, kind: "size", name: `p_filesz[${i}]` },
      { offset: o + 40, width: 8, kind: "size", name: `p_memsz[${i}]` },
    );
  }
  // Every note header in the PT_NOTE.
  const v = new DataView(notes.buffer, notes.byteOffset, notes.byteLength);
  for (let o = 0, k = 0; o + 12 <= notes.length && k < 64; k++) {
    const namesz = v.getUint32(o, true);
    const descsz = v.getUint32(o + 4, true);
    f.push(
      { offset: notesAt + o, width: 4, kind: "size", name: `n_namesz[${k}]` },
      { offset: notesAt + o + 4, width: 4, kind: "size", name: `n_descsz[${k}]` },
      { offset: notesAt + o + 8, width: 4, kind: "flags", name: `n_type[${k}]` },
    );
    if (namesz === 0 && descsz === 0) break;
    o += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3);
  }
  return f;
}

/**
 * A QEMU ELF cut down: header, section headers, program headers and notes
 * as QEMU wrote them, the first KEEP_PAGES pages of each PT_LOAD, offsets
 * and p_filesz rewritten to match. `xnum` stores the count as PN_XNUM
 * does (e_phnum 0xffff, section 0's sh_info).
 */
function compactElf(path: string, xnum: boolean): Seed {
  const h = readAt(path, 0, EHDR);
  const dv = new DataView(h.buffer, h.byteOffset);
  const phoff = u64(h, 32);
  const phnum = dv.getUint16(56, true);
  const phdrs = readAt(path, phoff, phnum * PHDR);
  // Everything before the first PT_LOAD's data: headers and notes.
  let dataStart = Infinity;
  let noteAt = 0;
  let noteLen = 0;
  for (let i = 0; i < phnum; i++) {
    const type = new DataView(phdrs.buffer).getUint32(i * PHDR, true);
    const off = u64(phdrs, i * PHDR + 8);
    if (type === 1) dataStart = Math.min(dataStart, off);
    if (type === 4) {
      noteAt = off;
      noteLen = u64(phdrs, i * PHDR + 32);
    }
  }
  const head = readAt(path, 0, dataStart);
  const chunks: Uint8Array[] = [head];
  let at = head.length;
  const out = head.slice();
  const ov = new DataView(out.buffer);
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * PHDR;
    if (ov.getUint32(o, true) !== 1) continue;
    const off = Number(ov.getBigUint64(o + 8, true));
    const filesz = Number(ov.getBigUint64(o + 32, true));
    const keep = Math.min(filesz, KEEP_PAGES * 4096);
    chunks.push(readAt(path, off, keep));
    ov.setBigUint64(o + 8, BigInt(at), true);
    ov.setBigUint64(o + 32, BigInt(keep), true);
    at += keep;
  }
  if (xnum) {
    // Section 0 (QEMU puts its section headers right after the ELF header).
    const shoff = Number(ov.getBigUint64(40, true)) || EHDR;
    if (Number(ov.getBigUint64(40, true)) === 0) throw new Error(`${path}: no section headers to carry PN_XNUM`);
    ov.setUint16(56, 0xffff, true);
    ov.setUint32(shoff + 44, phnum, true);
  }
  chunks[0] = out;
  const bytes = new Uint8Array(at);
  let p = 0;
  for (const c of chunks) {
    bytes.set(c, p);
    p += c.length;
  }
  const fields = headerFields(phoff, phnum, noteAt, head.subarray(noteAt, noteAt + noteLen));
  if (xnum) fields.push({ offset: (Number(ov.getBigUint64(40, true)) || EHDR) + 44, width: 4, kind: "count", name: "sh_info[0] (phnum)" });
  void SHDR;
  return { label: `${path} ${xnum ? "PN_XNUM " : ""}head + ${KEEP_PAGES} pages per PT_LOAD`, bytes, fields };
}

/** What a command does first with a source: reads at the start and end of every segment. */
export function readEdges(src: MemorySource, maxSegments = 16): void {
  const page = new Uint8Array(4096);
  for (const s of src.segments.slice(0, maxSegments)) {
    src.readBatch([{ paddr: s.start, dst: page.subarray(0, Math.min(4096, s.end - s.start)) }]);
    src.readBatch([{ paddr: s.end - 1, dst: page.subarray(0, 1) }]);
  }
  for (const z of (src.zeroFill ?? []).slice(0, maxSegments)) src.readBatch([{ paddr: z.start, dst: page.subarray(0, Math.min(64, z.end - z.start)) }]);
}

const target: FuzzTarget = {
  name: "elf",
  describes: "ELF vmcores: header, program headers (PN_XNUM), notes, segment reads, through openSource",
  async seeds(ctx) {
    const elf = fixtureFile(ctx.cacheDir, "vmcore.elf");
    const mdf = fixtureFile(ctx.cacheDir, "vmcore.mdf.elf");
    return [compactElf(elf, false), compactElf(elf, true), compactElf(mdf, false)].filter((s, i) => i !== 2 || s.bytes.length > 0);
  },
  run(input, ctx) {
    const src = openInput(inputFile(input, ctx));
    try {
      readEdges(src);
    } finally {
      src.close();
    }
  },
};
export default target;
