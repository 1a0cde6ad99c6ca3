// The kernel log of a real capture, overwritten by the input, in both of
// the shapes guestcore reads (src/analysis/printk.ts):
//
// - byte 0 even: the 5.10+ lockless ring as the 6.1 guest left it: the
//   prb pointer, struct printk_ringbuffer (count_bits, descs, infos,
//   head_id, tail_id, size_bits, data), the descriptors and infos of the
//   records in use (state_var, lpos, seq, text_len, caller_id, dev_info)
//   and the text data ring;
// - byte 0 odd: the 3.5-5.9 log_buf. No capture has one, so the seed is
//   the same guest's records re-laid as struct printk_log records (with
//   their dictionaries) in the text ring's memory, log_buf, log_buf_len,
//   log_first_idx and log_next_idx where printk_ringbuffer was, and the
//   VMCOREINFO a 5.9 kernel prints for them.
import { formatKernelLog, readKernelLog, recordsUpTo } from "../../src/analysis/printk.js";
import { VmcoreInfo } from "../../src/introspect/vmcoreinfo.js";
import type { Field, Seed, SeedContext } from "../target.js";
import { kernelOver, layOver, materialTarget, OverlaySource, readPieces, requireCapture, tolerate, type Capture, type Piece } from "../guest-memory.js";

/** Descriptors and infos with fields, at each end of the records in use. */
const FIELD_RECORDS = 48;
// struct printk_log of 5.1-5.9: ts_nsec, len, text_len, dict_len, facility, flags:5 level:3, caller_id.
const LOG_HDR = 16;
const LOG_ALIGN = 8;
const RENDERED = 512;

interface Form {
  pieces: Piece[];
  info: VmcoreInfo;
  seed: Seed;
}

interface Material {
  cap: Capture;
  forms: Form[];
  seeds: Seed[];
}

function prbForm(cap: Capture): Form & { rb: bigint; text: bigint; size: number } {
  const k = cap.kernel;
  const info = k.info;
  const n = (s: string) => info.offset(s)!;
  const prbSym = info.symbol("prb")!;
  const rb = k.as.readU64(prbSym, "prb");
  const rbSize = info.size("printk_ringbuffer")!;
  const rbBytes = k.as.read(rb, rbSize, "printk_ringbuffer");
  const v = new DataView(rbBytes.buffer);
  const ring = n("printk_ringbuffer.desc_ring");
  const data = n("printk_ringbuffer.text_data_ring");
  const countBits = v.getUint32(ring + n("prb_desc_ring.count_bits"), true);
  const descs = v.getBigUint64(ring + n("prb_desc_ring.descs"), true);
  const infos = v.getBigUint64(ring + n("prb_desc_ring.infos"), true);
  const headAt = ring + n("prb_desc_ring.head_id");
  const tailAt = ring + n("prb_desc_ring.tail_id");
  const idMask = (1n << 62n) - 1n;
  const head = v.getBigUint64(headAt, true) & idMask;
  const tail = v.getBigUint64(tailAt, true) & idMask;
  const sizeBits = v.getUint32(data + n("prb_data_ring.size_bits"), true);
  const text = v.getBigUint64(data + n("prb_data_ring.data"), true);
  const count = 2 ** countBits;
  const descSize = info.size("prb_desc")!;
  const infoSize = info.size("printk_info")!;
  // The slots in use, as one or two runs (the ids wrap around the ring).
  const span = Number(head - tail) + 1;
  const first = Number(tail % BigInt(count));
  const runs = first + span <= count ? [[first, span]] : [[first, count - first], [0, first + span - count]];
  const pieces: Piece[] = [
    { vaddr: prbSym, length: 8 },
    { vaddr: rb, length: rbSize },
    ...runs.map(([s, l]) => ({ vaddr: descs + BigInt(s * descSize), length: l * descSize })),
    ...runs.map(([s, l]) => ({ vaddr: infos + BigInt(s * infoSize), length: l * infoSize })),
    { vaddr: text, length: 2 ** sizeBits },
  ];
  const body = readPieces(k, pieces);
  const bytes = new Uint8Array(1 + body.length);
  bytes.set(body, 1);
  const at = (piece: number) => 1 + pieces.slice(0, piece).reduce((s, p) => s + p.length, 0);
  const fields: Field[] = [
    { offset: 0, width: 1, kind: "flags", name: "form (odd: log_buf)" },
    { offset: at(0), width: 8, kind: "pointer", name: "prb" },
    { offset: at(1) + ring + n("prb_desc_ring.count_bits"), width: 4, kind: "count", name: "count_bits" },
    { offset: at(1) + ring + n("prb_desc_ring.descs"), width: 8, kind: "pointer", name: "descs" },
    { offset: at(1) + ring + n("prb_desc_ring.infos"), width: 8, kind: "pointer", name: "infos" },
    { offset: at(1) + headAt, width: 8, kind: "count", name: "head_id" },
    { offset: at(1) + tailAt, width: 8, kind: "count", name: "tail_id" },
    { offset: at(1) + data + n("prb_data_ring.size_bits"), width: 4, kind: "count", name: "size_bits" },
    { offset: at(1) + data + n("prb_data_ring.data"), width: 8, kind: "pointer", name: "text data ring" },
  ];
  const lpos = n("prb_desc.text_blk_lpos");
  const descsAt = at(2);
  const infosAt = at(2 + runs.length);
  for (let r = 0; r < span; r++) {
    if (r >= FIELD_RECORDS && r < span - FIELD_RECORDS) continue;
    const d = descsAt + r * descSize;
    const i = infosAt + r * infoSize;
    fields.push(
      { offset: d + n("prb_desc.state_var"), width: 8, kind: "flags", name: `desc ${r} state_var` },
      { offset: d + lpos + n("prb_data_blk_lpos.begin"), width: 8, kind: "offset", name: `desc ${r} begin` },
      { offset: d + lpos + n("prb_data_blk_lpos.next"), width: 8, kind: "offset", name: `desc ${r} next` },
      { offset: i + n("printk_info.seq"), width: 8, kind: "count", name: `info ${r} seq` },
      { offset: i + n("printk_info.text_len"), width: 2, kind: "size", name: `info ${r} text_len` },
      { offset: i + n("printk_info.caller_id"), width: 4, kind: "flags", name: `info ${r} caller_id` },
    );
  }
  const seed = { label: `${cap.profile} printk ring buffer (${span} records)`, bytes, fields };
  return { pieces, info, seed, rb, text, size: 2 ** sizeBits };
}

/** The same records as a 5.9 kernel's log_buf, in the text ring's memory. */
function logBufForm(cap: Capture, prb: { rb: bigint; text: bigint; size: number }): Form {
  const records = readKernelLog(cap.kernel).records;
  const buf = Buffer.alloc(prb.size);
  const fields: Field[] = [{ offset: 0, width: 1, kind: "flags", name: "form (odd: log_buf)" }];
  const VARS = 24;
  let at = 0;
  for (const r of records) {
    const dict = Buffer.from([r.subsystem && `SUBSYSTEM=${r.subsystem}`, r.device && `DEVICE=${r.device}`].filter(Boolean).join("\0"), "utf8");
    const len = Math.ceil((LOG_HDR + r.raw.length + dict.length) / LOG_ALIGN) * LOG_ALIGN;
    // The kernel wraps before a record that does not fit, leaving room for a zero length.
    if (at + len + LOG_HDR > buf.length) break;
    buf.writeBigUInt64LE(r.tsNsec, at);
    buf.writeUInt16LE(len, at + 8);
    buf.writeUInt16LE(r.raw.length, at + 10);
    buf.writeUInt16LE(dict.length, at + 12);
    buf[at + 14] = r.facility ?? 0;
    buf[at + 15] = ((r.level ?? 6) << 5) | ((r.flags ?? 0) & 0x1f);
    buf.set(r.raw, at + LOG_HDR);
    dict.copy(buf, at + LOG_HDR + r.raw.length);
    if (fields.length < 4 * FIELD_RECORDS) {
      const o = 1 + VARS + at;
      fields.push({ offset: o + 8, width: 2, kind: "size", name: `record at ${at} len` }, { offset: o + 10, width: 2, kind: "size", name: `record at ${at} text_len` },
        { offset: o + 12, width: 2, kind: "size", name: `record at ${at} dict_len` });
    }
    at += len;
  }
  // log_buf, log_buf_len, log_first_idx, log_next_idx where printk_ringbuffer was.
  const vars = Buffer.alloc(VARS);
  vars.writeBigUInt64LE(prb.text, 0);
  vars.writeUInt32LE(buf.length, 8);
  vars.writeUInt32LE(0, 12);
  vars.writeUInt32LE(at, 16);
  fields.push({ offset: 1, width: 8, kind: "pointer", name: "log_buf" }, { offset: 9, width: 4, kind: "size", name: "log_buf_len" },
    { offset: 13, width: 4, kind: "offset", name: "log_first_idx" }, { offset: 17, width: 4, kind: "offset", name: "log_next_idx" });
  const h = (v: bigint) => v.toString(16);
  const text = cap.kernel.info.text.split("\n").filter((l) => !/^(SYMBOL\(prb\)|SYMBOL\(printk_rb_static\))=/.test(l)).concat([
    `SYMBOL(log_buf)=${h(prb.rb)}`, `SYMBOL(log_buf_len)=${h(prb.rb + 8n)}`, `SYMBOL(log_first_idx)=${h(prb.rb + 12n)}`, `SYMBOL(log_next_idx)=${h(prb.rb + 16n)}`,
    `SIZE(printk_log)=${LOG_HDR}`, "OFFSET(printk_log.ts_nsec)=0", "OFFSET(printk_log.len)=8", "OFFSET(printk_log.text_len)=10", "OFFSET(printk_log.dict_len)=12", "",
  ]).join("\n");
  const bytes = new Uint8Array(1 + VARS + buf.length);
  bytes[0] = 1;
  bytes.set(vars, 1);
  bytes.set(buf, 1 + VARS);
  return {
    pieces: [{ vaddr: prb.rb, length: VARS }, { vaddr: prb.text, length: buf.length }],
    info: new VmcoreInfo(text),
    seed: { label: `${cap.profile} records as a 5.9 log_buf (${records.length} records)`, bytes, fields },
  };
}

function build(ctx: SeedContext): Material {
  const cap = requireCapture(ctx.cacheDir, ["q35-256m", "q35-512m"]);
  const prb = prbForm(cap);
  const forms = [prb, logBufForm(cap, prb)];
  return { cap, forms, seeds: forms.map((f) => f.seed) };
}

export default materialTarget({
  name: "printk",
  describes: "the kernel log of a real capture: the 5.10+ lockless ring (prb, descriptors, infos, text ring) and a 5.9 log_buf of the same records",
  build,
  run(m, input) {
    const form = m.forms[(input[0] ?? 0) & 1];
    const body = input.subarray(1);
    const src = new OverlaySource(m.cap.image.source, layOver(m.cap.kernel, form.pieces, body, form.seed.bytes.subarray(1)));
    const k = { ...kernelOver(m.cap, src), info: form.info };
    const log = tolerate(() => readKernelLog(k));
    if (log) {
      // Rendering is per record and linear; the first records cover it (a
      // log of 8 MiB of garbage renders in 0.3 s, many times that under coverage).
      formatKernelLog(log.records.slice(0, RENDERED));
      tolerate(() => recordsUpTo(log.records, 3));
    }
  },
});
