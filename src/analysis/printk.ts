// The kernel log from a dump alone: the printk ring buffer, located and
// laid out by VMCOREINFO (no vmlinux), in either of its two shapes:
//
// - the lockless ring buffer of Linux 5.10+ (kernel/printk/printk_ringbuffer.c):
//   a descriptor ring (state_var and the text block's logical positions per
//   record, a printk_info beside each) over a text data ring whose blocks
//   start with their descriptor's id;
// - the variable-length records in log_buf of Linux 3.5 to 5.9 (struct
//   printk_log, "struct log" before 3.11), where a zero length marks the wrap.
//
// What is kept and skipped, and the rendering, follow makedumpfile 1.7.2's
// --dump-dmesg (printk.c dump_record, makedumpfile.c dump_log_entry), so
// that text() equals its output byte for byte. The guest wrote every byte:
// sizes are checked against the kernel's own limits before anything is
// read, walks are bounded by the ring's size, and records that point
// outside the ring are clipped to it where makedumpfile would read past
// its buffer.
import { GuestcoreError } from "../core/errors.js";
import type { VmcoreInfo } from "../introspect/vmcoreinfo.js";

/** What the reader needs of a kernel: its VMCOREINFO and virtual reads. */
export interface KernelMemory {
  readonly info: VmcoreInfo;
  readonly as: { read(vaddr: bigint, len: number, what: string): Uint8Array };
}

export interface PrintkRecord {
  /** printk_info.seq; the order of the log for the variable-length buffer. */
  seq: number;
  /** local_clock() at printk time, in nanoseconds. */
  tsNsec: bigint;
  /** Syslog level 0-7 and facility, where the layout says where they are. */
  level?: number;
  facility?: number;
  /** printk's record flags (LOG_NEWLINE 2, LOG_CONT 8). */
  flags?: number;
  /** CONFIG_PRINTK_CALLER: "T<pid>" from a task, "C<cpu>" from an interrupt. */
  caller?: string;
  /** The text, decoded as UTF-8; `raw` has the bytes as the guest stored them. */
  text: string;
  raw: Uint8Array;
  /** dev_printk()'s device info (dev_printk_info, or the old dict's SUBSYSTEM= and DEVICE=). */
  subsystem?: string;
  device?: string;
}

export interface KernelLog {
  /** "prb": the 5.10+ lockless ring buffer; "log_buf": 3.5-5.9 variable-length records. */
  form: "prb" | "log_buf";
  records: PrintkRecord[];
  /** Records clipped or skipped because they contradict the ring (never on a sane kernel). */
  warnings: string[];
}

// The kernel's limits (kernel/printk/printk.c): LOG_BUF_LEN_MAX is 2^31,
// and the descriptor ring has one descriptor per 2^PRB_AVGBITS (32) bytes
// of text, so count_bits <= size_bits. 30 is a margin above the 26 that
// implies.
const MAX_SIZE_BITS = 31;
const MAX_COUNT_BITS = 30;
// A data block holds at least its 8-byte id.
const MIN_SIZE_BITS = 4;
// Structures VMCOREINFO sizes: all of them are well under a page.
const MAX_STRUCT = 4096;
const MAX_WARNINGS = 20;
// Budgets on what a log holds in memory, whatever size the guest declares
// (LOG_BUF_LEN_MAX is 2 GiB): 2^16 records and 2 MiB of text, 32 and 16
// times what Debian's 128 KiB ring holds. Rendering can make ten bytes of
// one (\xffffffNN), so the text is what bounds the output too.
const MAX_RECORDS = 1 << 16;
const MAX_TEXT = 2 << 20;
// Ring reads go through a window of cached chunks, so a ring of any
// declared size costs memory only for what records refer to.
const CHUNK = 256 << 10;
const MAX_CHUNKS = 16;

// kernel/printk/printk_ringbuffer.h: state_var's top two bits are the
// state, the rest the id.
const ID_MASK = (1n << 62n) - 1n;
const DESC_COMMITTED = 1n;
const DESC_FINALIZED = 2n;
// include/linux/dev_printk.h sizes, for kernels whose VMCOREINFO lacks the LENGTHs.
const SUBSYSTEM_LEN = 16;
const DEVICE_LEN = 48;

/** Read the kernel log. Throws a GuestcoreError when VMCOREINFO describes no log or the ring is corrupt. */
export function readKernelLog(k: KernelMemory): KernelLog {
  const info = k.info;
  if (info.symbol("prb") !== undefined) return readPrb(k);
  if (info.symbol("log_buf") !== undefined) return readLogBuf(k);
  throw new GuestcoreError("VMCOREINFO describes no kernel log (neither SYMBOL(prb) nor SYMBOL(log_buf))");
}

/** The log as `makedumpfile --dump-dmesg` writes it (1.7.2: no caller ids, no device lines). */
export function formatKernelLog(records: readonly PrintkRecord[]): string {
  const out: string[] = [];
  for (const r of records) out.push(formatRecord(r));
  return out.join("");
}

// makedumpfile passes a (signed) char to %02x: bytes from 0x80 print sign-extended.
const ESCAPES = Array.from({ length: 256 }, (_, c) => Buffer.from(c < 0x80 ? `\\x${c.toString(16).padStart(2, "0")}` : `\\xffffff${c.toString(16)}`, "latin1"));
const ESCAPE_LEN = 10;

/** One record: "[%5lld.%06ld] " and the text, continuation lines indented, unprintable bytes as \xNN. */
export function formatRecord(r: PrintkRecord): string {
  const sec = r.tsNsec / 1_000_000_000n;
  const usec = (r.tsNsec % 1_000_000_000n) / 1000n;
  const prefix = `[${sec.toString().padStart(5)}.${usec.toString().padStart(6, "0")}] `;
  const indent = prefix.length;
  const raw = r.raw;
  // Written bytewise into one buffer: a record of garbage renders ten bytes
  // for each of its own, and string concatenation per byte costs seconds.
  const out = Buffer.allocUnsafe(prefix.length + raw.length * Math.max(ESCAPE_LEN, 1 + indent) + 1);
  let o = out.write(prefix, 0, "latin1");
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === 0x0a) {
      out[o++] = 0x0a;
      out.fill(0x20, o, o + indent);
      o += indent;
    } else if ((c >= 0x20 && c < 0x7f) || (c >= 0x09 && c <= 0x0d)) {
      // C locale isprint() || isspace(): 0x20-0x7e and \t\n\v\f\r.
      out[o++] = c;
    } else {
      o += ESCAPES[c].copy(out, o);
    }
  }
  out[o++] = 0x0a;
  return out.toString("latin1", 0, o);
}

/** Records at or above a syslog priority (level <= max), as `dmesg --level` keeps them. */
export function recordsUpTo(records: readonly PrintkRecord[], maxLevel: number): PrintkRecord[] {
  if (records.some((r) => r.level === undefined)) throw new GuestcoreError("this kernel's log records carry no level that VMCOREINFO locates");
  return records.filter((r) => r.level! <= maxLevel);
}

// --- VMCOREINFO layout -------------------------------------------------

class Layout {
  constructor(private readonly info: VmcoreInfo, private readonly what: string) {}

  size(name: string, min = 1): number {
    const v = this.info.size(name);
    if (v === undefined) throw new GuestcoreError(`VMCOREINFO lacks SIZE(${name}), needed for the ${this.what}`);
    if (v < min || v > MAX_STRUCT) throw new GuestcoreError(`VMCOREINFO SIZE(${name}) is ${v}: not a plausible size`);
    return v;
  }

  /** OFFSET(field), checked to leave `width` bytes inside a structure of `within` bytes. */
  offset(field: string, width: number, within: number): number {
    const v = this.optional(field, width, within);
    if (v === undefined) throw new GuestcoreError(`VMCOREINFO lacks OFFSET(${field}), needed for the ${this.what}`);
    return v;
  }

  optional(field: string, width: number, within: number): number | undefined {
    const v = this.info.offset(field);
    if (v === undefined) return undefined;
    if (v + width > within) throw new GuestcoreError(`VMCOREINFO OFFSET(${field}) is ${v}: past the end of its ${within}-byte structure`);
    return v;
  }

  symbol(name: string): bigint {
    const v = this.info.symbol(name);
    if (v === undefined) throw new GuestcoreError(`VMCOREINFO lacks SYMBOL(${name}), needed for the ${this.what}`);
    return v;
  }
}

// --- reading -------------------------------------------------------------

/** [base, base + length) of guest virtual memory, read in cached chunks. */
class Window {
  private readonly chunks = new Map<number, Uint8Array>();

  constructor(private readonly k: KernelMemory, readonly base: bigint, readonly length: number, private readonly what: string) {}

  /** `len` bytes at `off`; the caller keeps 0 <= off and off + len <= length. */
  bytes(off: number, len: number): Uint8Array {
    if (len === 0) return new Uint8Array(0);
    const first = Math.floor(off / CHUNK);
    if (Math.floor((off + len - 1) / CHUNK) === first) {
      const c = this.chunk(first);
      return c.subarray(off - first * CHUNK, off - first * CHUNK + len);
    }
    const out = new Uint8Array(len);
    for (let done = 0; done < len;) {
      const at = off + done;
      const c = this.chunk(Math.floor(at / CHUNK));
      const from = at % CHUNK;
      const n = Math.min(len - done, c.length - from);
      out.set(c.subarray(from, from + n), done);
      done += n;
    }
    return out;
  }

  private chunk(i: number): Uint8Array {
    let c = this.chunks.get(i);
    if (c) {
      this.chunks.delete(i);
      this.chunks.set(i, c);
      return c;
    }
    const start = i * CHUNK;
    c = this.k.as.read(this.base + BigInt(start), Math.min(CHUNK, this.length - start), this.what);
    if (this.chunks.size >= MAX_CHUNKS) this.chunks.delete(this.chunks.keys().next().value as number);
    this.chunks.set(i, c);
    return c;
  }
}

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

function readStruct(k: KernelMemory, vaddr: bigint, size: number, what: string): DataView {
  return view(k.as.read(vaddr, size, what));
}

/** A NUL-terminated string in at most `len` bytes. */
function cString(b: Uint8Array, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const nul = s.indexOf(0);
  return Buffer.from(s.subarray(0, nul < 0 ? s.length : nul)).toString("utf8");
}

function callerName(id: number): string {
  return (id & 0x80000000 ? "C" : "T") + (id & 0x7fffffff);
}

class Warnings {
  readonly list: string[] = [];
  private dropped = 0;

  add(msg: string): void {
    if (this.list.length < MAX_WARNINGS) this.list.push(msg);
    else this.dropped++;
  }

  done(): string[] {
    if (this.dropped) this.list.push(`${this.dropped} more warnings`);
    return this.list;
  }
}

function textOf(raw: Uint8Array): string {
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("utf8");
}

// --- the lockless ring buffer (5.10+) ----------------------------------------

function readPrb(k: KernelMemory): KernelLog {
  const L = new Layout(k.info, "printk ring buffer");
  const rbSize = L.size("printk_ringbuffer");
  const ringOff = L.offset("printk_ringbuffer.desc_ring", 1, rbSize);
  const ringSize = L.size("prb_desc_ring");
  const dataOff = L.offset("printk_ringbuffer.text_data_ring", 1, rbSize);
  const dataSize = L.size("prb_data_ring");
  if (ringOff + ringSize > rbSize || dataOff + dataSize > rbSize) throw new GuestcoreError("VMCOREINFO places the printk rings outside struct printk_ringbuffer");
  const atomicSize = L.size("atomic_long_t", 8);
  const counter = L.offset("atomic_long_t.counter", 8, atomicSize);
  const countBitsOff = L.offset("prb_desc_ring.count_bits", 4, ringSize);
  const descsOff = L.offset("prb_desc_ring.descs", 8, ringSize);
  const infosOff = L.offset("prb_desc_ring.infos", 8, ringSize);
  const headOff = L.offset("prb_desc_ring.head_id", atomicSize, ringSize) + counter;
  const tailOff = L.offset("prb_desc_ring.tail_id", atomicSize, ringSize) + counter;
  const descSize = L.size("prb_desc");
  const lposSize = L.size("prb_data_blk_lpos");
  const stateOff = L.offset("prb_desc.state_var", atomicSize, descSize) + counter;
  const lposOff = L.offset("prb_desc.text_blk_lpos", lposSize, descSize);
  const beginOff = lposOff + L.offset("prb_data_blk_lpos.begin", 8, lposSize);
  const nextOff = lposOff + L.offset("prb_data_blk_lpos.next", 8, lposSize);
  const infoSize = L.size("printk_info");
  const seqOff = L.offset("printk_info.seq", 8, infoSize);
  const tsOff = L.offset("printk_info.ts_nsec", 8, infoSize);
  const lenOff = L.offset("printk_info.text_len", 2, infoSize);
  const callerOff = L.optional("printk_info.caller_id", 4, infoSize);
  // The 5.10 printk_info (once the dictionary moved to dev_printk_info)
  // puts u8 facility and u8 flags:5, level:3 between text_len and
  // caller_id; VMCOREINFO exports no
  // offsets for them, so they are read only where that layout shows (the
  // 5.10-rc layout with a u16 dict_len there puts caller_id 8 bytes on).
  const levelAt = callerOff === lenOff + 4 ? lenOff + 2 : undefined;
  const dev = devInfoLayout(L, k.info, infoSize);
  const sizeBitsOff = L.offset("prb_data_ring.size_bits", 4, dataSize);
  const textOff = L.offset("prb_data_ring.data", 8, dataSize);

  const prbPtr = view(k.as.read(L.symbol("prb"), 8, "prb")).getBigUint64(0, true);
  const rb = readStruct(k, prbPtr, rbSize, "struct printk_ringbuffer");
  const countBits = rb.getUint32(ringOff + countBitsOff, true);
  const sizeBits = rb.getUint32(dataOff + sizeBitsOff, true);
  if (sizeBits < MIN_SIZE_BITS || sizeBits > MAX_SIZE_BITS) throw new GuestcoreError(`printk text ring size_bits is ${sizeBits}: not ${MIN_SIZE_BITS} to ${MAX_SIZE_BITS}`);
  if (countBits > MAX_COUNT_BITS || countBits > sizeBits) throw new GuestcoreError(`printk descriptor ring count_bits is ${countBits}: more than ${Math.min(MAX_COUNT_BITS, sizeBits)}`);
  const count = 2 ** countBits;
  const size = 2 ** sizeBits;
  const descs = new Window(k, rb.getBigUint64(ringOff + descsOff, true), count * descSize, "printk descriptors");
  const infos = new Window(k, rb.getBigUint64(ringOff + infosOff, true), count * infoSize, "printk infos");
  const text = new Window(k, rb.getBigUint64(dataOff + textOff, true), size, "printk text ring");
  const head = rb.getBigUint64(ringOff + headOff, true) & ID_MASK;
  const tail = rb.getBigUint64(ringOff + tailOff, true) & ID_MASK;
  // makedumpfile walks tail_id to head_id; the kernel keeps that span
  // inside the ring, a corrupt one must not keep us walking.
  const span = Number((head - tail) & ID_MASK) + 1;
  if (span > count) throw new GuestcoreError(`printk descriptor ring runs from id ${tail} to ${head}: ${span} records in ${count} descriptors`);

  const warn = new Warnings();
  const records: PrintkRecord[] = [];
  const ringMask = BigInt(size - 1);
  // Every record's block holds its 8-byte id and text, disjoint from the
  // others: a sane ring never adds up to more than its size.
  let budget = Math.min(size, MAX_TEXT);
  const first = Number(tail % BigInt(count));
  for (let n = 0; n < span; n++) {
    const id = (tail + BigInt(n)) & ID_MASK;
    const slot = (first + n) % count;
    const d = view(descs.bytes(slot * descSize, descSize));
    const sv = d.getBigUint64(stateOff, true);
    if ((sv & ID_MASK) !== id) continue; // desc_miss: overwritten, or reserved by a writer
    const state = sv >> 62n;
    if (state !== DESC_COMMITTED && state !== DESC_FINALIZED) continue;
    let begin = Number(d.getBigUint64(beginOff, true) & ringMask);
    const next = Number(d.getBigUint64(nextOff, true) & ringMask);
    if (begin === next) continue; // data-less record
    const inf = infos.bytes(slot * infoSize, infoSize);
    const iv = view(inf);
    let textLen = iv.getUint16(lenOff, true);
    // A block that wraps keeps its data at the start of the ring.
    if (begin > next) begin = 0;
    begin += 8;
    // makedumpfile trims text_len to the block (a truncated message);
    // where the block itself is inconsistent it would read on past its
    // buffer, and here the ring's end clips it.
    const avail = next >= begin ? next - begin : Math.max(0, size - begin);
    if (textLen > avail) {
      if (next < begin) warn.add(`record ${id}: its text block (${begin - 8}-${next}) is not a block of the ring; text clipped to ${avail} bytes`);
      textLen = avail;
    }
    budget -= 8 + textLen;
    if (budget < 0 || records.length >= MAX_RECORDS) {
      warn.add(budget < 0 ? `record ${id}: the records' text adds up to more than the ${Math.min(size, MAX_TEXT)}-byte ring or budget; the log stops here`
        : `record ${id}: more than ${MAX_RECORDS} records; the log stops here`);
      break;
    }
    const raw = text.bytes(begin, textLen).slice();
    const r: PrintkRecord = { seq: Number(iv.getBigUint64(seqOff, true)), tsNsec: iv.getBigUint64(tsOff, true), text: textOf(raw), raw };
    if (levelAt !== undefined) {
      r.facility = inf[levelAt];
      r.flags = inf[levelAt + 1] & 0x1f;
      r.level = inf[levelAt + 1] >> 5;
    }
    if (callerOff !== undefined) r.caller = callerName(iv.getUint32(callerOff, true));
    if (dev) {
      const sub = cString(inf, dev.subsystem, dev.subsystemLen);
      const device = cString(inf, dev.device, dev.deviceLen);
      if (sub) r.subsystem = sub;
      if (device) r.device = device;
    }
    records.push(r);
  }
  return { form: "prb", records, warnings: warn.done() };
}

function devInfoLayout(L: Layout, info: VmcoreInfo, infoSize: number) {
  const at = info.offset("printk_info.dev_info");
  if (at === undefined) return undefined;
  const size = L.size("dev_printk_info");
  if (at + size > infoSize) throw new GuestcoreError(`VMCOREINFO OFFSET(printk_info.dev_info) is ${at}: past the end of struct printk_info`);
  const subsystemLen = info.length("printk_info_subsystem") ?? SUBSYSTEM_LEN;
  const deviceLen = info.length("printk_info_device") ?? DEVICE_LEN;
  return {
    subsystem: at + L.offset("dev_printk_info.subsystem", subsystemLen, size), subsystemLen,
    device: at + L.offset("dev_printk_info.device", deviceLen, size), deviceLen,
  };
}

// --- the variable-length record buffer (3.5 to 5.9) --------------------------

function readLogBuf(k: KernelMemory): KernelLog {
  const info = k.info;
  const L = new Layout(info, "kernel log buffer");
  if (info.symbol("log_end") !== undefined) throw new GuestcoreError("this kernel keeps its log as plain text (log_end, before Linux 3.5): not supported");
  // Linux 3.11 renamed struct log to struct printk_log.
  const st = info.size("printk_log") !== undefined ? "printk_log" : "log";
  const hdr = L.size(st, 12);
  const tsOff = L.offset(`${st}.ts_nsec`, 8, hdr);
  const lenOff = L.offset(`${st}.len`, 2, hdr);
  const textLenOff = L.offset(`${st}.text_len`, 2, hdr);
  const dictLenOff = L.optional(`${st}.dict_len`, 2, hdr);
  // After dict_len come u8 facility, u8 flags:5, level:3, and with
  // CONFIG_PRINTK_CALLER (5.1+) a u32 caller_id; none has an OFFSET().
  const levelAt = dictLenOff !== undefined && dictLenOff + 4 <= hdr ? dictLenOff + 2 : undefined;
  const callerAt = dictLenOff !== undefined && dictLenOff + 8 <= hdr ? dictLenOff + 4 : undefined;

  const u32 = (name: string) => view(k.as.read(L.symbol(name), 4, name)).getUint32(0, true);
  const bufPtr = view(k.as.read(L.symbol("log_buf"), 8, "log_buf")).getBigUint64(0, true);
  const len = u32("log_buf_len");
  if (len < hdr || len > 2 ** MAX_SIZE_BITS) throw new GuestcoreError(`log_buf_len is ${len}: not a kernel log buffer`);
  const firstIdx = u32("log_first_idx");
  const nextIdx = u32("log_next_idx");
  // Every index names a header that lies in the buffer (the kernel wraps
  // before a header would not fit, leaving a zero-length one behind).
  const lastHeader = len - hdr;
  if (firstIdx > lastHeader || nextIdx > lastHeader) throw new GuestcoreError(`log_first_idx ${firstIdx} or log_next_idx ${nextIdx} lies outside the ${len}-byte log_buf`);
  const buf = new Window(k, bufPtr, len, "log_buf");
  const header = (at: number) => view(buf.bytes(at, hdr));

  const warn = new Warnings();
  const records: PrintkRecord[] = [];
  // Each record advances by at least a header, and the walk wraps once:
  // more steps than that is a cycle.
  const maxSteps = Math.floor(len / hdr) + 2;
  // The walk covers the buffer once and records do not overlap: their
  // text and dictionaries add up to at most its length (a cycle is
  // caught by maxSteps).
  let budget = Math.min(len, MAX_TEXT);
  let seq = 0;
  for (let at = firstIdx, steps = 0; at !== nextIdx; steps++) {
    if (steps > maxSteps) throw new GuestcoreError(`log_buf records form a cycle (after ${records.length} records, at index ${at}): the buffer is corrupt`);
    let h = header(at);
    let recAt = at;
    // A zero length marks the end of the used buffer: the record is at the start.
    if (h.getUint16(lenOff, true) === 0) {
      recAt = 0;
      h = header(0);
    }
    const recLen = h.getUint16(lenOff, true);
    if (recLen < hdr) throw new GuestcoreError(`log_buf record at index ${recAt} has length ${recLen}, less than its ${hdr}-byte header: the buffer is corrupt`);
    let textLen = h.getUint16(textLenOff, true);
    const room = len - recAt - hdr;
    if (textLen > room) {
      warn.add(`log_buf record at index ${recAt}: text_len ${textLen} runs past the buffer; clipped to ${room} bytes`);
      textLen = room;
    }
    const dictLen = dictLenOff === undefined ? 0 : Math.min(h.getUint16(dictLenOff, true), room - textLen);
    budget -= textLen + dictLen;
    if (budget < 0 || records.length >= MAX_RECORDS) {
      warn.add(budget < 0 ? `log_buf record at index ${recAt}: the records' text and dictionaries add up to more than the ${Math.min(len, MAX_TEXT)}-byte buffer or budget; the log stops here`
        : `log_buf record at index ${recAt}: more than ${MAX_RECORDS} records; the log stops here`);
      break;
    }
    const raw = buf.bytes(recAt + hdr, textLen).slice();
    const r: PrintkRecord = { seq: seq++, tsNsec: h.getBigUint64(tsOff, true), text: textOf(raw), raw };
    if (levelAt !== undefined) {
      r.facility = h.getUint8(levelAt);
      r.flags = h.getUint8(levelAt + 1) & 0x1f;
      r.level = h.getUint8(levelAt + 1) >> 5;
    }
    if (callerAt !== undefined) r.caller = callerName(h.getUint32(callerAt, true));
    if (dictLen > 0) Object.assign(r, dictDevice(buf.bytes(recAt + hdr + textLen, dictLen)));
    records.push(r);
    const nextAt = recAt + recLen;
    if (nextAt > lastHeader) throw new GuestcoreError(`log_buf record at index ${recAt} ends at ${nextAt}, outside the ${len}-byte buffer: the buffer is corrupt`);
    at = nextAt;
  }
  return { form: "log_buf", records, warnings: warn.done() };
}

/** SUBSYSTEM= and DEVICE= of a record's dictionary ("KEY=value\0..."). */
function dictDevice(dict: Uint8Array): { subsystem?: string; device?: string } {
  const out: { subsystem?: string; device?: string } = {};
  for (const kv of Buffer.from(dict).toString("utf8").split("\0")) {
    if (kv.startsWith("SUBSYSTEM=")) out.subsystem = kv.slice(10);
    else if (kv.startsWith("DEVICE=")) out.device = kv.slice(7);
  }
  return out;
}
