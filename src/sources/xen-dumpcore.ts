// Xen dump-core files: what `xl dump-core` (libxenctrl's xc_core.c)
// writes, as described in Xen's docs/misc/dump-core-format.txt.
//
// An ELF64 ET_CORE file with no program headers, only sections:
//
//   .note.Xen          SHT_NOTE: notes named "Xen": DUMPCORE_NONE (0x2000000),
//                      DUMPCORE_HEADER (0x2000001: magic, nr_vcpus, nr_pages,
//                      page_size), DUMPCORE_XEN_VERSION (0x2000002) and
//                      DUMPCORE_FORMAT_VERSION (0x2000003: major << 32 | minor)
//   .xen_prstatus      vcpu_guest_context_t per vcpu
//   .xen_shared_info   the shared info page (optional)
//   .xen_p2m           PV (magic 0xF00FEBED): {u64 pfn, u64 gmfn} per page
//   .xen_pfn           HVM/auto-translated (magic 0xF00FEBEE): u64 pfn per page
//   .xen_pages         nr_pages pages; the i-th belongs to the i-th entry of
//                      .xen_p2m or .xen_pfn, in no particular order
//   .xen_ia64_mapped_regs (ia64 only; ignored)
//
// Guest physical address of page i = pfn_i * page_size. Entries whose pfn
// is ~0 (XC_CORE_INVALID_PFN: pages that went away while xc_core dumped,
// written as zero pages) hold nothing. The file is as hostile as any dump:
// every count and offset is checked against the file size and fixed
// limits before anything is allocated, and each failure is one
// GuestcoreError line. The pfn table is read in chunks and folded into
// runs (consecutive pfns stored in consecutive pages), so memory grows
// with the number of runs, not pages.
//
// There is no VMCOREINFO note: GuestImage finds it by scanning memory.
import { closeSync } from "node:fs";
import { GuestcoreError, hex } from "../core/errors.js";
import { preadExact } from "../core/file.js";
import {
  EHDR_SIZE, SHT_NOBITS, SHT_NOTE, SHT_STRTAB, isElf, parseElfHeader, parseNotes, parseSectionHeaders, sectionName, sectionTable,
  type ElfHeader, type ElfNote,
} from "../format/elf64.js";
import { openReadOnly } from "./file-backed.js";
import type { MemorySource, PhysSegment, ReadRequest } from "./source.js";
import { rangeHolding } from "../core/search.js";

export const XEN_ELFNOTE_DUMPCORE_HEADER = 0x2000001;
export const XEN_ELFNOTE_DUMPCORE_XEN_VERSION = 0x2000002;
export const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION = 0x2000003;
export const XC_CORE_MAGIC = 0xf00febed;
export const XC_CORE_MAGIC_HVM = 0xf00febee;
export const XC_CORE_INVALID_PFN = 0xffffffffffffffffn;

/** Limits no real dump-core reaches; a hostile header must not cost memory or time. */
export const XEN_DUMPCORE_LIMITS = {
  /** xc_core writes 7 or 8 sections. */
  maxSections: 256,
  shstrtabBytes: 64 << 10,
  noteBytes: 1 << 20,
  /** Xen's HVM limit is 128 vcpus, PV 8192; leave room. */
  maxVcpus: 1 << 14,
  /** 2^36 pages of 4 KiB = 256 TiB; the file size bounds it further. */
  maxPages: 2 ** 36,
  /** Highest pfn accepted: 2^40 pages = 4 PiB of guest physical space (exact in a double). */
  maxPfn: 2 ** 40,
  /** pfn table entries read per chunk. */
  tableChunk: 1 << 16,
};

const PAGE = 4096;

export interface XenSection {
  name: string;
  type: number;
  offset: number;
  size: number;
  entsize: number;
}

export interface XenDumpCoreHeader {
  magic: number;
  /** "pv" (.xen_p2m) or "hvm" (auto-translated physmap, .xen_pfn). */
  kind: "pv" | "hvm";
  nrVcpus: number;
  nrPages: number;
  pageSize: number;
  /** Format version: major << 32 | minor; only major 0 exists. */
  formatVersion: { major: number; minor: number };
  /** "4.17.7" from DUMPCORE_XEN_VERSION, when present. */
  xenVersion?: string;
  xenCapabilities?: string;
}

export class XenDumpCoreSource implements MemorySource {
  readonly format = "xen-dumpcore";
  /** No ELF notes worth carrying into an output dump (the Xen notes are the file's own). */
  readonly notes: readonly ElfNote[] = [];
  readonly zeroFill: readonly PhysSegment[] = [];
  private closed = false;

  constructor(
    readonly path: string,
    private readonly fd: number,
    readonly header: XenDumpCoreHeader,
    readonly sections: readonly XenSection[],
    readonly segments: readonly PhysSegment[],
    /** The .note.Xen notes, decoded. */
    readonly xenNotes: readonly ElfNote[],
    /** Valid (pfn != ~0) entries, i.e. pages that are present. */
    readonly validPages: number,
    private readonly pagesOffset: number,
    // Runs sorted by pfn: pfns runPfn..runPfn+runLen-1 sit in pages runIdx.. of .xen_pages.
    private readonly runPfn: Float64Array,
    private readonly runIdx: Float64Array,
    private readonly runLen: Float64Array,
    readonly runCount: number,
  ) {}

  get kind(): "pv" | "hvm" {
    return this.header.kind;
  }

  /** The run holding pfn, by binary search, or -1. */
  private findRun(pfn: number): number {
    return rangeHolding(this.runCount, (i) => this.runPfn[i], (i) => this.runPfn[i] + this.runLen[i], pfn);
  }

  readBatch(reqs: readonly ReadRequest[]): void {
    for (const r of reqs) {
      let done = 0;
      while (done < r.dst.length) {
        const at = r.paddr + done;
        const pfn = Math.floor(at / PAGE);
        const k = this.findRun(pfn);
        if (k < 0) throw new GuestcoreError(`physical address ${hex(at)} is not in the Xen dump-core ${this.path}`);
        const runStart = this.runPfn[k] * PAGE;
        const runEnd = runStart + this.runLen[k] * PAGE;
        const n = Math.min(r.dst.length - done, runEnd - at);
        preadExact(this.fd, r.dst, done, n, this.pagesOffset + this.runIdx[k] * PAGE + (at - runStart), this.path);
        done += n;
      }
    }
  }

  /** The raw vcpu_guest_context_t of one vcpu from .xen_prstatus, if the file has it. */
  vcpuContext(vcpu: number): Uint8Array | undefined {
    const s = this.sections.find((x) => x.name === ".xen_prstatus");
    if (!s || !Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.header.nrVcpus) return undefined;
    const size = s.entsize || Math.floor(s.size / Math.max(1, this.header.nrVcpus));
    if (size <= 0 || (vcpu + 1) * size > s.size) return undefined;
    const buf = new Uint8Array(size);
    preadExact(this.fd, buf, 0, size, s.offset + vcpu * size, this.path);
    return buf;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/** An ELF parse error as this file's one line. */
function named<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof GuestcoreError) throw new GuestcoreError(`${what}: ${e.message}`);
    throw e;
  }
}

/** Read and check the section table (format/elf64 parses it); names resolved through .shstrtab. */
function readSections(fd: number, path: string, size: number, h: ElfHeader): XenSection[] {
  const what = `Xen dump-core ${path}`;
  if (h.shnum > XEN_DUMPCORE_LIMITS.maxSections) throw new GuestcoreError(`${what}: ${h.shnum} sections is more than any dump-core has`);
  const table = named(what, () => sectionTable(h, size));
  const tab = new Uint8Array(table.length);
  preadExact(fd, tab, 0, tab.length, table.offset, path);
  const raw = named(what, () => parseSectionHeaders(tab, h.shnum, size));
  const strs = raw[h.shstrndx];
  if (strs.type !== SHT_STRTAB) throw new GuestcoreError(`${what}: section ${h.shstrndx} (e_shstrndx) is not a string table`);
  if (strs.size > XEN_DUMPCORE_LIMITS.shstrtabBytes) throw new GuestcoreError(`${what}: section name table of ${strs.size} bytes is implausibly large`);
  const names = new Uint8Array(strs.size);
  preadExact(fd, names, 0, names.length, strs.offset, path);
  const out: XenSection[] = [];
  const seen = new Set<string>();
  for (let i = 1; i < raw.length; i++) {
    const s = raw[i];
    const name = sectionName(names, s.nameOff);
    if (name === undefined) throw new GuestcoreError(`${what}: section ${i}'s name (offset ${s.nameOff}) is not in the section name table`);
    if (name.startsWith(".xen_") || name === ".note.Xen") {
      if (seen.has(name)) throw new GuestcoreError(`${what}: section ${name} appears twice`);
      seen.add(name);
    }
    out.push({ name, type: s.type, offset: s.offset, size: s.size, entsize: s.entsize });
  }
  return out;
}

/**
 * Is this file a Xen dump-core (an ELF with no program headers and a
 * .note.Xen or .xen_pages section)? Never throws: a malformed file is
 * "no", and the ELF reader then says what is wrong with it.
 */
export function isXenDumpCore(fd: number, size: number, path = "input"): boolean {
  try {
    if (size < EHDR_SIZE) return false;
    const head = new Uint8Array(EHDR_SIZE);
    preadExact(fd, head, 0, EHDR_SIZE, 0, path);
    if (!isElf(head)) return false;
    const h = parseElfHeader(head, size);
    if (h.phnum !== 0 || h.shnum === 0) return false;
    const secs = readSections(fd, path, size, h);
    return secs.some((s) => s.name === ".note.Xen" || s.name === ".xen_pages");
  } catch {
    return false;
  }
}

function u64n(v: DataView, off: number): bigint {
  return v.getBigUint64(off, true);
}

function latin1z(b: Uint8Array): string {
  const end = b.indexOf(0);
  return Buffer.from(end < 0 ? b : b.subarray(0, end)).toString("latin1");
}

function parseXenNotes(notes: ElfNote[], what: string): XenDumpCoreHeader {
  const xen = notes.filter((n) => n.name === "Xen");
  const one = (type: number, label: string) => {
    const found = xen.filter((n) => n.type === type);
    if (found.length > 1) throw new GuestcoreError(`${what}: .note.Xen has ${found.length} ${label} notes`);
    return found[0];
  };
  const hdr = one(XEN_ELFNOTE_DUMPCORE_HEADER, "DUMPCORE_HEADER");
  if (!hdr) throw new GuestcoreError(`${what}: .note.Xen lacks the DUMPCORE_HEADER note (type 0x2000001)`);
  if (hdr.desc.length < 32) throw new GuestcoreError(`${what}: DUMPCORE_HEADER note is ${hdr.desc.length} bytes, expected 32`);
  const fv = one(XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION, "DUMPCORE_FORMAT_VERSION");
  if (!fv) throw new GuestcoreError(`${what}: .note.Xen lacks the DUMPCORE_FORMAT_VERSION note (type 0x2000003)`);
  if (fv.desc.length < 8) throw new GuestcoreError(`${what}: DUMPCORE_FORMAT_VERSION note is ${fv.desc.length} bytes, expected 8`);
  const fvv = new DataView(fv.desc.buffer, fv.desc.byteOffset, fv.desc.byteLength).getBigUint64(0, true);
  const formatVersion = { major: Number(fvv >> 32n), minor: Number(fvv & 0xffffffffn) };
  if (formatVersion.major !== 0) {
    throw new GuestcoreError(`${what}: dump-core format version ${formatVersion.major}.${formatVersion.minor} is not supported (only 0.x exists)`);
  }
  const v = new DataView(hdr.desc.buffer, hdr.desc.byteOffset, hdr.desc.byteLength);
  const magic = u64n(v, 0);
  const nrVcpus = u64n(v, 8);
  const nrPages = u64n(v, 16);
  const pageSize = u64n(v, 24);
  let kind: "pv" | "hvm";
  if (magic === BigInt(XC_CORE_MAGIC)) kind = "pv";
  else if (magic === BigInt(XC_CORE_MAGIC_HVM)) kind = "hvm";
  else throw new GuestcoreError(`${what}: DUMPCORE_HEADER magic ${hex(magic)} is neither ${hex(XC_CORE_MAGIC)} (PV) nor ${hex(XC_CORE_MAGIC_HVM)} (HVM)`);
  if (pageSize !== BigInt(PAGE)) throw new GuestcoreError(`${what}: page size ${pageSize} is not ${PAGE} (only x86 guests are supported)`);
  if (nrVcpus > BigInt(XEN_DUMPCORE_LIMITS.maxVcpus)) throw new GuestcoreError(`${what}: ${nrVcpus} vcpus is more than Xen supports`);
  if (nrPages === 0n) throw new GuestcoreError(`${what}: the header says the dump holds no pages`);
  if (nrPages > BigInt(XEN_DUMPCORE_LIMITS.maxPages)) throw new GuestcoreError(`${what}: ${nrPages} pages is more than any guest has`);
  const header: XenDumpCoreHeader = {
    magic: Number(magic), kind, nrVcpus: Number(nrVcpus), nrPages: Number(nrPages), pageSize: PAGE, formatVersion,
  };
  const ver = one(XEN_ELFNOTE_DUMPCORE_XEN_VERSION, "DUMPCORE_XEN_VERSION");
  if (ver && ver.desc.length >= 32) {
    const vv = new DataView(ver.desc.buffer, ver.desc.byteOffset, ver.desc.byteLength);
    // major, minor (u64 each), then extra_version char[16]: "4" "17" ".7".
    const major = vv.getBigUint64(0, true);
    const minor = vv.getBigUint64(8, true);
    if (major < 1000n && minor < 1000n) header.xenVersion = `${major}.${minor}${latin1z(ver.desc.subarray(16, 32))}`;
    // compile_info is 144 bytes; capabilities char[1024] follows.
    if (ver.desc.length >= 32 + 144 + 1024) header.xenCapabilities = latin1z(ver.desc.subarray(176, 176 + 1024));
  }
  return header;
}

/** Growable float64 column (pfn values need more than 32 bits). */
class Column {
  data = new Float64Array(1024);
  push(i: number, x: number): void {
    if (i >= this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[i] = x;
  }
}

export function openXenDumpCore(path: string): XenDumpCoreSource {
  const { fd, size, held } = openReadOnly(path);
  const what = `Xen dump-core ${path}`;
  try {
    if (size < EHDR_SIZE) throw new GuestcoreError(`${what}: only ${size} bytes, not even an ELF header`);
    const head = new Uint8Array(EHDR_SIZE);
    preadExact(fd, head, 0, EHDR_SIZE, 0, path);
    const h = named(what, () => parseElfHeader(head, size)); // ELFCLASS64, little-endian, ET_CORE, x86-64
    if (h.phnum !== 0) throw new GuestcoreError(`${what}: has ${h.phnum} program headers; a Xen dump-core has none`);
    const sections = readSections(fd, path, size, h);
    const sec = (name: string) => sections.find((s) => s.name === name);

    const noteSec = sec(".note.Xen");
    if (!noteSec) throw new GuestcoreError(`${what}: no .note.Xen section (not a Xen dump-core?)`);
    if (noteSec.type !== SHT_NOTE) throw new GuestcoreError(`${what}: .note.Xen is not SHT_NOTE (type ${noteSec.type})`);
    if (noteSec.size > XEN_DUMPCORE_LIMITS.noteBytes) throw new GuestcoreError(`${what}: .note.Xen of ${noteSec.size} bytes is implausibly large`);
    const noteBuf = new Uint8Array(noteSec.size);
    preadExact(fd, noteBuf, 0, noteBuf.length, noteSec.offset, path);
    let xenNotes: ElfNote[];
    try {
      xenNotes = parseNotes(noteBuf);
    } catch (e) {
      throw new GuestcoreError(`${what}: .note.Xen: ${(e as Error).message}`);
    }
    const header = parseXenNotes(xenNotes, what);

    const pages = sec(".xen_pages");
    if (!pages) throw new GuestcoreError(`${what}: no .xen_pages section`);
    if (pages.type === SHT_NOBITS) throw new GuestcoreError(`${what}: .xen_pages holds no data (SHT_NOBITS)`);
    if (pages.size !== header.nrPages * PAGE) {
      throw new GuestcoreError(`${what}: .xen_pages has ${pages.size} bytes, the header's ${header.nrPages} pages need ${header.nrPages * PAGE}`);
    }
    const p2m = sec(".xen_p2m");
    const pfnSec = sec(".xen_pfn");
    if (p2m && pfnSec) throw new GuestcoreError(`${what}: has both .xen_p2m and .xen_pfn`);
    const table = p2m ?? pfnSec;
    if (!table) throw new GuestcoreError(`${what}: neither .xen_p2m (PV) nor .xen_pfn (HVM) says which pfn each page is`);
    if (header.kind === "pv" && !p2m) throw new GuestcoreError(`${what}: a PV dump (magic ${hex(XC_CORE_MAGIC)}) needs .xen_p2m, it has .xen_pfn`);
    if (header.kind === "hvm" && !pfnSec) throw new GuestcoreError(`${what}: an HVM dump (magic ${hex(XC_CORE_MAGIC_HVM)}) needs .xen_pfn, it has .xen_p2m`);
    const entry = p2m ? 16 : 8;
    if (table.type === SHT_NOBITS) throw new GuestcoreError(`${what}: ${table.name} holds no data (SHT_NOBITS)`);
    if (table.size !== header.nrPages * entry) {
      throw new GuestcoreError(`${what}: ${table.name} has ${table.size} bytes, the header's ${header.nrPages} pages need ${header.nrPages * entry}`);
    }
    // The table is scanned whole: it must be in the file, not in a hole of a
    // sparse one whose st_size vouches for the header's page count (no real
    // table has a 4 KiB stretch of zeros: pfn 0 once at most).
    if (table.size > held) {
      throw new GuestcoreError(`${what}: ${table.name} of ${table.size} bytes, but the file holds only ${held} bytes (truncated or sparse?)`);
    }
    const prs = sec(".xen_prstatus");
    if (prs && prs.entsize > 0 && prs.size !== prs.entsize * header.nrVcpus) {
      throw new GuestcoreError(`${what}: .xen_prstatus has ${prs.size} bytes, ${header.nrVcpus} vcpus of ${prs.entsize} need ${prs.entsize * header.nrVcpus}`);
    }

    // Fold the pfn table into runs, a chunk at a time.
    const runPfn = new Column();
    const runIdx = new Column();
    const runLen = new Column();
    let runs = 0;
    let sorted = true;
    let valid = 0;
    const chunk = new Uint8Array(XEN_DUMPCORE_LIMITS.tableChunk * entry);
    const cv = new DataView(chunk.buffer);
    for (let first = 0; first < header.nrPages; first += XEN_DUMPCORE_LIMITS.tableChunk) {
      const n = Math.min(XEN_DUMPCORE_LIMITS.tableChunk, header.nrPages - first);
      preadExact(fd, chunk, 0, n * entry, table.offset + first * entry, path);
      for (let j = 0; j < n; j++) {
        const raw = cv.getBigUint64(j * entry, true);
        if (raw === XC_CORE_INVALID_PFN) continue;
        const i = first + j;
        if (raw >= BigInt(XEN_DUMPCORE_LIMITS.maxPfn)) {
          throw new GuestcoreError(`${what}: ${table.name} entry ${i} has pfn ${hex(raw)}, beyond any guest's physical memory`);
        }
        const pfn = Number(raw);
        valid++;
        const last = runs - 1;
        if (runs > 0 && runPfn.data[last] + runLen.data[last] === pfn && runIdx.data[last] + runLen.data[last] === i) {
          runLen.data[last]++;
          continue;
        }
        if (runs > 0 && pfn < runPfn.data[last]) sorted = false;
        runPfn.push(runs, pfn);
        runIdx.push(runs, i);
        runLen.push(runs, 1);
        runs++;
      }
    }
    if (valid === 0) throw new GuestcoreError(`${what}: every entry of ${table.name} is invalid (~0): the dump holds no pages`);

    let P = runPfn.data.subarray(0, runs);
    let I = runIdx.data.subarray(0, runs);
    let L = runLen.data.subarray(0, runs);
    if (!sorted) {
      const order = new Uint32Array(runs);
      for (let k = 0; k < runs; k++) order[k] = k;
      order.sort((a, b) => P[a] - P[b]);
      const P2 = new Float64Array(runs);
      const I2 = new Float64Array(runs);
      const L2 = new Float64Array(runs);
      for (let k = 0; k < runs; k++) {
        P2[k] = P[order[k]];
        I2[k] = I[order[k]];
        L2[k] = L[order[k]];
      }
      P = P2;
      I = I2;
      L = L2;
    } else {
      P = P.slice();
      I = I.slice();
      L = L.slice();
    }
    const segments: PhysSegment[] = [];
    for (let k = 0; k < runs; k++) {
      if (k > 0 && P[k] < P[k - 1] + L[k - 1]) {
        throw new GuestcoreError(`${what}: pfn ${hex(P[k])} is listed twice in ${table.name}`);
      }
      const start = P[k] * PAGE;
      const end = (P[k] + L[k]) * PAGE;
      const lastSeg = segments[segments.length - 1];
      if (lastSeg && lastSeg.end === start) lastSeg.end = end;
      else segments.push({ start, end, vaddr: 0n });
    }
    return new XenDumpCoreSource(path, fd, header, sections, segments, xenNotes, valid, pages.offset, P, I, L, runs);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}
