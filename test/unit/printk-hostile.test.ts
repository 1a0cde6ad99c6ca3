// The kernel log reader on crafted rings: what makedumpfile --dump-dmesg
// prints for the same bytes (a synthetic guest with the ring planted in its
// kernel image, as an ELF makedumpfile reads), and corrupt rings that must
// end in one GuestcoreError line or a bounded, clipped log, never a hang,
// a huge allocation or a read outside the ring.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { buildSynthetic, syntheticElf } from "../../fixtures/synthetic.js";
import { IMAGE_PAGES, IMAGE_PHYS, PAGE, imageVaddr } from "../../fixtures/guest-layout.js";
import { GuestcoreError } from "../../src/core/errors.js";
import { GuestImage } from "../../src/image.js";
import { VmcoreInfo } from "../../src/introspect/vmcoreinfo.js";
import { formatKernelLog, readKernelLog, recordsUpTo, type KernelMemory } from "../../src/analysis/printk.js";
import { oneLineError } from "../helpers/errors.js";
import { tempDir, writeTemp, type Cleanup } from "../helpers/synthetic.js";

// Where the crafted structures sit, as offsets in the kernel image (mapped
// at imageVaddr(offset), physically at IMAGE_PHYS + offset), clear of the
// page tables and init_uts_ns the synthetic guest keeps at 0x10000-0x20fff.
const AT = { ptr: 0x100000, vars: 0x100040, rb: 0x100100, descs: 0x101000, infos: 0x140000, text: 0x200000 };
const IMAGE_BYTES = IMAGE_PAGES * PAGE;
const hexva = (off: number) => imageVaddr(off).toString(16);

// Linux 6.1's VMCOREINFO for the ring, as the fixtures' kernels print it.
const PRB_INFO = [
  `SYMBOL(prb)=${hexva(AT.ptr)}`,
  "SIZE(printk_ringbuffer)=88", "OFFSET(printk_ringbuffer.desc_ring)=0", "OFFSET(printk_ringbuffer.text_data_ring)=48", "OFFSET(printk_ringbuffer.fail)=80",
  "SIZE(prb_desc_ring)=48", "OFFSET(prb_desc_ring.count_bits)=0", "OFFSET(prb_desc_ring.descs)=8", "OFFSET(prb_desc_ring.infos)=16",
  "OFFSET(prb_desc_ring.head_id)=24", "OFFSET(prb_desc_ring.tail_id)=32",
  "SIZE(prb_desc)=24", "OFFSET(prb_desc.state_var)=0", "OFFSET(prb_desc.text_blk_lpos)=8",
  "SIZE(prb_data_blk_lpos)=16", "OFFSET(prb_data_blk_lpos.begin)=0", "OFFSET(prb_data_blk_lpos.next)=8",
  "SIZE(printk_info)=88", "OFFSET(printk_info.seq)=0", "OFFSET(printk_info.ts_nsec)=8", "OFFSET(printk_info.text_len)=16",
  "OFFSET(printk_info.caller_id)=20", "OFFSET(printk_info.dev_info)=24",
  "SIZE(dev_printk_info)=64", "OFFSET(dev_printk_info.subsystem)=0", "LENGTH(printk_info_subsystem)=16",
  "OFFSET(dev_printk_info.device)=16", "LENGTH(printk_info_device)=48",
  "SIZE(prb_data_ring)=32", "OFFSET(prb_data_ring.size_bits)=0", "OFFSET(prb_data_ring.data)=8",
  "OFFSET(prb_data_ring.head_lpos)=16", "OFFSET(prb_data_ring.tail_lpos)=24",
  "SIZE(atomic_long_t)=8", "OFFSET(atomic_long_t.counter)=0",
];

interface Rec {
  text: string | Uint8Array;
  ts?: bigint;
  level?: number;
  facility?: number;
  caller?: number;
  subsystem?: string;
  device?: string;
  /** desc state: 0 reserved, 1 committed, 2 finalized (default), 3 reusable */
  state?: number;
  /** text_len to store instead of the text's length */
  textLen?: number;
}

interface PrbSpec {
  countBits?: number;
  sizeBits?: number;
  /** id of the first (tail) record: ids past the ring's count wrap its slots */
  firstId?: number;
  /** logical position of the first block: near the ring's end, blocks wrap */
  startLpos?: number;
  records: Rec[];
}

/**
 * Lay records out as the kernel does (printk_ringbuffer.c data_alloc and
 * get_next_lpos): blocks of ALIGN(8 + len, 8) bytes starting with the
 * id, a block that would cross the end of the ring placed at its start.
 */
function plantPrb(mem: Buffer, spec: PrbSpec): void {
  const countBits = spec.countBits ?? 5;
  const sizeBits = spec.sizeBits ?? 12;
  const count = 1 << countBits;
  const size = 1 << sizeBits;
  const wraps = (lpos: number) => Math.floor(lpos / size);
  const u64 = (off: number, v: bigint | number) => mem.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), off);
  u64(AT.ptr, imageVaddr(AT.rb));
  const firstId = spec.firstId ?? count; // the kernel starts at -count: slot 0 holds id `count` after one lap
  let lpos = spec.startLpos ?? 0;
  spec.records.forEach((r, i) => {
    const id = firstId + i;
    const slot = id % count;
    const bytes = typeof r.text === "string" ? Buffer.from(r.text, "latin1") : Buffer.from(r.text);
    const blk = Math.ceil((8 + bytes.length) / 8) * 8;
    const begin = lpos;
    let next = begin + blk;
    if (wraps(begin) !== wraps(next)) next = wraps(next) * size + blk;
    const dataAt = wraps(begin) === wraps(begin + blk) ? begin % size : 0;
    u64(AT.text + (begin % size), id);
    u64(AT.text + dataAt, id);
    bytes.copy(mem, AT.text + dataAt + 8);
    lpos = next;
    const d = AT.descs + slot * 24;
    u64(d, (BigInt(r.state ?? 2) << 62n) | BigInt(id));
    u64(d + 8, begin);
    u64(d + 16, next);
    const inf = AT.infos + slot * 88;
    mem.fill(0, inf, inf + 88);
    u64(inf, id - firstId);
    u64(inf + 8, r.ts ?? BigInt(i) * 1_234_567n);
    mem.writeUInt16LE(r.textLen ?? bytes.length, inf + 16);
    mem[inf + 18] = r.facility ?? 0;
    mem[inf + 19] = 2 | ((r.level ?? 6) << 5);
    mem.writeUInt32LE(r.caller ?? 1, inf + 20);
    if (r.subsystem) mem.write(r.subsystem, inf + 24, "latin1");
    if (r.device) mem.write(r.device, inf + 40, "latin1");
  });
  const rb = AT.rb;
  mem.writeUInt32LE(countBits, rb);
  u64(rb + 8, imageVaddr(AT.descs));
  u64(rb + 16, imageVaddr(AT.infos));
  u64(rb + 24, firstId + spec.records.length - 1);
  u64(rb + 32, firstId);
  mem.writeUInt32LE(sizeBits, rb + 48);
  u64(rb + 56, imageVaddr(AT.text));
  u64(rb + 64, lpos);
  u64(rb + 72, spec.startLpos ?? 0);
}

// Linux 5.1-5.9 (CONFIG_PRINTK_CALLER, x86: __packed __aligned(4)):
// struct printk_log of 20 bytes, records aligned to 4.
const LOG_HDR = 20;
const LOG_INFO = [
  `SYMBOL(log_buf)=${hexva(AT.ptr)}`, `SYMBOL(log_buf_len)=${hexva(AT.vars)}`,
  `SYMBOL(log_first_idx)=${hexva(AT.vars + 4)}`, `SYMBOL(log_next_idx)=${hexva(AT.vars + 8)}`,
  `SIZE(printk_log)=${LOG_HDR}`, "OFFSET(printk_log.ts_nsec)=0", "OFFSET(printk_log.len)=8",
  "OFFSET(printk_log.text_len)=10", "OFFSET(printk_log.dict_len)=12",
];

interface LogRec { text: string; dict?: string; ts?: bigint; level?: number }

/** log_store() of 5.x: a record that would leave no room for a header wraps, leaving a zeroed header. */
function plantLogBuf(mem: Buffer, bufLen: number, start: number, records: LogRec[]): void {
  mem.writeBigUInt64LE(imageVaddr(AT.text), AT.ptr);
  mem.fill(0, AT.text, AT.text + bufLen);
  let idx = start;
  records.forEach((r, i) => {
    const text = Buffer.from(r.text, "latin1");
    const dict = Buffer.from(r.dict ?? "", "latin1");
    const len = Math.ceil((LOG_HDR + text.length + dict.length) / 4) * 4;
    if (idx + len + LOG_HDR > bufLen) {
      mem.fill(0, AT.text + idx, AT.text + idx + LOG_HDR);
      idx = 0;
    }
    const h = AT.text + idx;
    mem.writeBigUInt64LE(r.ts ?? BigInt(i) * 1_000_001n, h);
    mem.writeUInt16LE(len, h + 8);
    mem.writeUInt16LE(text.length, h + 10);
    mem.writeUInt16LE(dict.length, h + 12);
    mem[h + 15] = 2 | ((r.level ?? 6) << 5);
    mem.writeUInt32LE(100 + i, h + 16);
    text.copy(mem, h + LOG_HDR);
    dict.copy(mem, h + LOG_HDR + text.length);
    idx += len;
  });
  mem.writeUInt32LE(bufLen, AT.vars);
  mem.writeUInt32LE(start, AT.vars + 4);
  mem.writeUInt32LE(idx, AT.vars + 8);
}

/** The kernel image alone as a KernelMemory: reads elsewhere are unmapped. */
function fakeKernel(mem: Buffer, lines: string[]): KernelMemory {
  const base = imageVaddr(0);
  return {
    info: new VmcoreInfo(["OSRELEASE=6.1.0-crafted", ...lines, ""].join("\n")),
    as: {
      read(vaddr: bigint, len: number, what: string) {
        const off = vaddr - base;
        if (off < 0n || off + BigInt(len) > BigInt(mem.length)) throw new GuestcoreError(`${what}: virtual address 0x${vaddr.toString(16)} is not mapped`);
        return new Uint8Array(mem.subarray(Number(off), Number(off) + len));
      },
    },
  };
}

/** A synthetic guest carrying the planted image region, as an ELF; makedumpfile's dmesg of it and guestcore's. */
function againstMakedumpfile(t: Cleanup, plant: (mem: Buffer) => void, lines: string[]): { theirs: string; ours: string } {
  const s = buildSynthetic({ memMiB: 16 });
  plant(s.image.subarray(IMAGE_PHYS, IMAGE_PHYS + IMAGE_BYTES));
  s.vmcoreinfo += lines.join("\n") + "\n";
  const dir = tempDir(t);
  const elf = writeTemp(dir, "g.elf", syntheticElf(s));
  const out = join(dir, "dmesg.txt");
  execFileSync("makedumpfile", ["--dump-dmesg", elf, out], { stdio: ["ignore", "ignore", "pipe"] });
  const img = GuestImage.open(elf);
  try {
    return { theirs: readFileSync(out, "latin1"), ours: formatKernelLog(readKernelLog(img.kernel).records) };
  } finally {
    img.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const RICH: Rec[] = [
  { text: "Linux version 6.1.0-crafted", level: 5, ts: 0n },
  { text: "tab\there, cr\r, vt\v, ff\f, nul\0, bell\x07, esc\x1b[0m, del\x7f", ts: 1_500_000_000n },
  { text: Buffer.concat([Buffer.from("utf-8 euro "), Buffer.from([0xe2, 0x82, 0xac]), Buffer.from(" latin1 "), Buffer.from([0xe9, 0xff, 0x80])]), ts: 99_999_999_999_999n },
  { text: "first line\nsecond line\n\nafter an empty one\n", ts: 123_456_789_012n },
  { text: "", ts: 2n }, // empty text: a block with just its id
  { text: "a reserved record (writer in progress)", state: 0 },
  { text: "a reusable record", state: 3 },
  { text: "committed, not finalized", state: 1 },
  { text: "text_len says more than the block holds", textLen: 60000 },
  { text: "pci 0000:00:01.0: device line", subsystem: "pci", device: "+pci:0000:00:01.0", level: 7, caller: 0x80000001 },
  { text: "x".repeat(900), level: 4 },
];

test("makedumpfile prints the crafted ring as guestcore does: escapes, newlines, states, truncation, a wrapping block", (t) => {
  // A 2 KiB ring, the first block 96 bytes before its end: the second block wraps.
  const spec = { countBits: 4, sizeBits: 11, startLpos: 3 * 2048 - 96, firstId: 16 * 7 + 3, records: RICH };
  const { theirs, ours } = againstMakedumpfile(t, (m) => plantPrb(m, spec), PRB_INFO);
  assert.match(theirs, /after an empty one/, "makedumpfile read the crafted ring");
  assert.equal(ours, theirs);
  // The escapes as makedumpfile writes them, signed char and all.
  assert.ok(theirs.includes("nul\\x00, bell\\x07, esc\\x1b[0m, del\\x7f"));
  assert.ok(theirs.includes("euro \\xffffffe2\\xffffff82\\xffffffac latin1 \\xffffffe9"));
});

test("makedumpfile prints the crafted variable-length log_buf (Linux 3.5-5.9) as guestcore does, across the wrap", (t) => {
  const recs: LogRec[] = [
    { text: "Linux version 5.4.0-crafted", level: 5 },
    { text: "with a dictionary", dict: "SUBSYSTEM=pci\0DEVICE=+pci:0000:00:02.0" },
    { text: "line one\nline two\x01" },
    ...Array.from({ length: 6 }, (_, i) => ({ text: `filler record ${i} `.padEnd(40 + i * 7, "-") })),
    { text: "after the wrap, at the start of the buffer" },
  ];
  const bufLen = 1024;
  const { theirs, ours } = againstMakedumpfile(t, (m) => plantLogBuf(m, bufLen, 400, recs), LOG_INFO);
  assert.match(theirs, /after the wrap/);
  assert.equal(ours, theirs);
  const mem = Buffer.alloc(IMAGE_BYTES);
  plantLogBuf(mem, bufLen, 400, recs);
  const log = readKernelLog(fakeKernel(mem, LOG_INFO));
  assert.equal(log.form, "log_buf");
  assert.equal(log.records.length, recs.length);
  assert.deepEqual([log.records[1].subsystem, log.records[1].device], ["pci", "+pci:0000:00:02.0"]);
  assert.equal(log.records[0].level, 5);
  assert.equal(log.records[2].caller, "T102");
});

test("records carry level, facility, caller and device info from where the layout puts them", () => {
  const mem = Buffer.alloc(IMAGE_BYTES);
  plantPrb(mem, { records: RICH });
  const log = readKernelLog(fakeKernel(mem, PRB_INFO));
  assert.deepEqual(log.warnings, []);
  // reserved and reusable skipped; committed kept, as makedumpfile does.
  assert.equal(log.records.length, RICH.length - 2);
  const dev = log.records.find((r) => r.subsystem)!;
  assert.deepEqual([dev.subsystem, dev.device, dev.level, dev.caller], ["pci", "+pci:0000:00:01.0", 7, "C1"]);
  assert.equal(log.records[0].level, 5);
  assert.equal(log.records[0].caller, "T1");
  assert.equal(log.records[2].text, "utf-8 euro \u20ac latin1 \ufffd\ufffd\ufffd");
  assert.equal(recordsUpTo(log.records, 5).length, 2);
  // Without caller_id right after text_len + 4, the level is nowhere to be found.
  const noCaller = readKernelLog(fakeKernel(mem, PRB_INFO.filter((l) => !l.includes("caller_id"))));
  assert.equal(noCaller.records[0].level, undefined);
  assert.throws(() => recordsUpTo(noCaller.records, 4), oneLineError(/no level/));
});

// --- hostile rings ----------------------------------------------------------

function validRing(spec: Partial<PrbSpec> = {}): Buffer {
  const mem = Buffer.alloc(IMAGE_BYTES);
  plantPrb(mem, { records: RICH, ...spec });
  return mem;
}

const read = (mem: Buffer, lines = PRB_INFO) => readKernelLog(fakeKernel(mem, lines));

test("count_bits and size_bits beyond the kernel's limits are refused before anything is read", () => {
  for (const bits of [63, 31, 0xffffffff]) {
    const mem = validRing();
    mem.writeUInt32LE(bits, AT.rb);
    assert.throws(() => read(mem), oneLineError(/count_bits is \d+/));
  }
  for (const bits of [40, 32, 3, 0]) {
    const mem = validRing();
    mem.writeUInt32LE(bits, AT.rb + 48);
    assert.throws(() => read(mem), oneLineError(/size_bits is \d+/));
  }
  const mem = validRing({ countBits: 5, sizeBits: 12 });
  mem.writeUInt32LE(13, AT.rb); // more descriptors than text bytes / 1
  assert.throws(() => read(mem), oneLineError(/count_bits is 13/));
});

test("a tail-to-head span longer than the descriptor ring is refused", () => {
  const mem = validRing();
  mem.writeBigUInt64LE(1n << 40n, AT.rb + 24);
  assert.throws(() => read(mem), oneLineError(/records in 32 descriptors/));
  mem.writeBigUInt64LE(5n, AT.rb + 24); // head before tail: the span wraps the id space
  assert.throws(() => read(mem), oneLineError(/records in 32 descriptors/));
});

test("corrupted state_var: a wrong id or state skips the record, as makedumpfile does", () => {
  const mem = validRing();
  const good = read(mem).records.length;
  // The first id is the ring's count (32): slot 0 holds the first record.
  mem.writeBigUInt64LE(0xdeadbeefn, AT.descs + 0 * 24);
  assert.equal(read(mem).records.length, good - 1);
  mem.writeBigUInt64LE(0xffffffffffffffffn, AT.descs + 1 * 24);
  assert.equal(read(mem).records.length, good - 2);
});

test("lpos beyond the ring: positions are taken modulo its size and text never leaves it", () => {
  const mem = validRing({ sizeBits: 12 });
  // begin far past the ring and next just below begin (mod size): makedumpfile
  // would read on past its buffer; here the ring's end clips the text.
  const d = AT.descs + 0 * 24;
  mem.writeBigUInt64LE((1n << 60n) + 4096n - 16n, d + 8);
  mem.writeBigUInt64LE((1n << 60n) + 4n, d + 16);
  mem.writeUInt16LE(65535, AT.infos + 0 * 88 + 16);
  const log = read(mem);
  assert.match(log.warnings.join("\n"), /not a block of the ring; text clipped/);
  assert.ok(log.records.every((r) => r.raw.length <= 4096));
  // begin + 8 past the end of the ring: an empty text, not an out-of-range read.
  mem.writeBigUInt64LE(4096n - 4n, d + 8);
  mem.writeBigUInt64LE(4096n + 4096n - 2n, d + 16);
  const again = read(mem);
  assert.equal(again.records[0].raw.length, 0);
});

test("wrap-around: ids past the ring's count and blocks past its end read back in order", () => {
  const records: Rec[] = Array.from({ length: 32 }, (_, i) => ({ text: `message ${i} `.padEnd(20 + ((i * 37) % 90), "=") }));
  // 4 KiB ring, 32 descriptors, ids in their 1000th lap, the first block 50 bytes before a wrap.
  const mem = Buffer.alloc(IMAGE_BYTES);
  plantPrb(mem, { countBits: 5, sizeBits: 12, firstId: 32 * 1000 + 17, startLpos: 4096 * 9 - 48, records });
  const log = read(mem);
  assert.deepEqual(log.warnings, []);
  assert.deepEqual(log.records.map((r) => r.text), records.map((r) => r.text));
});

test("huge text_len is trimmed to its block", () => {
  const mem = validRing();
  for (let slot = 0; slot < RICH.length; slot++) mem.writeUInt16LE(0xffff, AT.infos + slot * 88 + 16);
  const log = read(mem);
  assert.deepEqual(log.warnings, []);
  // Each text is its block's data: the text, then the alignment padding.
  for (const r of log.records) assert.ok(r.raw.length < 908, `${r.raw.length} bytes`);
});

test("records that add up to more than the ring stop the log with a warning", () => {
  const mem = validRing({ countBits: 5, sizeBits: 12 });
  // Every descriptor points at the same 900-byte block (the last record's).
  const first = AT.descs + (RICH.length - 1) * 24;
  for (let slot = 0; slot < RICH.length; slot++) {
    const d = AT.descs + slot * 24;
    mem.copy(mem, d + 8, first + 8, first + 24);
    mem.writeUInt16LE(900, AT.infos + slot * 88 + 16);
  }
  const big = read(mem);
  assert.match(big.warnings.join("\n"), /adds up to more than the 4096-byte ring/);
  assert.ok(big.records.length < RICH.length);
});

test("pointers to unmapped memory and VMCOREINFO that does not fit are one-line errors", () => {
  const mem = validRing();
  mem.writeBigUInt64LE(0xffff888000000000n, AT.rb + 8);
  assert.throws(() => read(mem), oneLineError(/printk descriptors: virtual address .* not mapped/));
  const ok = validRing();
  assert.throws(() => read(ok, PRB_INFO.map((l) => l.replace("SIZE(printk_info)=88", "SIZE(printk_info)=16"))), oneLineError(/OFFSET\(printk_info\.text_len\) is 16: past the end/));
  assert.throws(() => read(ok, PRB_INFO.map((l) => l.replace("SIZE(prb_desc)=24", "SIZE(prb_desc)=99999999"))), oneLineError(/SIZE\(prb_desc\) is 99999999/));
  assert.throws(() => read(ok, PRB_INFO.filter((l) => !l.startsWith("OFFSET(prb_desc.state_var)"))), oneLineError(/lacks OFFSET\(prb_desc\.state_var\)/));
  assert.throws(() => read(ok, []), oneLineError(/describes no kernel log/));
});

test("random corruption of the ring's metadata ends in a log or one error line", { timeout: 120_000 }, () => {
  // A seeded xorshift: the same bytes every run.
  let x = 0x9e3779b9;
  const rnd = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 2 ** 32);
  const regions = [[AT.ptr, 8], [AT.rb, 88], [AT.descs, 32 * 24], [AT.infos, 32 * 88]];
  let logs = 0;
  for (let round = 0; round < 400; round++) {
    const mem = validRing();
    for (let n = 1 + Math.floor(rnd() * 8); n > 0; n--) {
      const [at, len] = regions[Math.floor(rnd() * regions.length)];
      const off = at + Math.floor(rnd() * len);
      if (rnd() < 0.5) mem[off] = Math.floor(rnd() * 256);
      else mem.writeUInt32LE(Math.floor(rnd() * 2 ** 32), off - (off % 4));
    }
    try {
      const log = read(mem);
      for (const r of log.records) assert.ok(r.raw.length <= 4096);
      logs++;
    } catch (e) {
      oneLineError(/./)(e);
    }
  }
  // Both outcomes occur (91 logs with this seed): the corruption is neither all fatal nor all harmless.
  assert.ok(logs > 0 && logs < 400, `${logs} of 400 still gave a log`);
});

// --- hostile log_buf -----------------------------------------------------------

function validLogBuf(): Buffer {
  const mem = Buffer.alloc(IMAGE_BYTES);
  plantLogBuf(mem, 1024, 0, [{ text: "one" }, { text: "two" }, { text: "three" }]);
  return mem;
}
const readOld = (mem: Buffer, lines = LOG_INFO) => readKernelLog(fakeKernel(mem, lines));

test("log_buf: a cycle, a short record, an index outside and a huge length are one-line errors", () => {
  const cyc = validLogBuf();
  cyc.writeUInt32LE(1000, AT.vars + 8); // next_idx never reached
  cyc.writeUInt16LE(0, AT.text + 0); // record 0 at a wrap marker: the walk would restart at 0 forever
  cyc.writeUInt16LE(0, AT.text + 8);
  assert.throws(() => readOld(cyc), oneLineError(/length 0, less than its 20-byte header/));
  const loop = validLogBuf();
  loop.writeUInt32LE(1000, AT.vars + 8);
  // Record 0 leads to the last header slot, a wrap marker back to record 0.
  loop.writeUInt16LE(1024 - 20, AT.text + 8);
  assert.throws(() => readOld(loop), oneLineError(/cycle \(after \d+ records/));
  const outside = validLogBuf();
  outside.writeUInt32LE(5000, AT.vars + 4);
  assert.throws(() => readOld(outside), oneLineError(/outside the 1024-byte log_buf/));
  const huge = validLogBuf();
  huge.writeUInt32LE(0xfffffff0, AT.vars);
  assert.throws(() => readOld(huge), oneLineError(/log_buf_len is 4294967280/));
  const old = validLogBuf();
  assert.throws(() => readOld(old, [...LOG_INFO, `SYMBOL(log_end)=${hexva(AT.vars + 12)}`]), oneLineError(/before Linux 3\.5/));
});

test("log_buf: a record whose text runs past the buffer is clipped to it", () => {
  const mem = validLogBuf();
  mem.writeUInt16LE(60000, AT.text + 10);
  const log = readOld(mem);
  assert.match(log.warnings[0], /text_len 60000 runs past the buffer/);
  assert.equal(log.records[0].raw.length, 1024 - 20);
});

test("log_buf: a record that ends past the last header slot is an error", () => {
  const mem = validLogBuf();
  mem.writeUInt16LE(1010, AT.text + 8);
  assert.throws(() => readOld(mem), oneLineError(/record at index 0 ends at 1010, outside the 1024-byte buffer/));
});
