// Headers that claim more than the file holds (issue 10's first example and
// its class): a flattened stream or a sparse file whose logical size vouches
// for a kdump of 2^32 pages, a sparse ELF with 2^32 - 1 program headers or a
// huge PT_NOTE, a sparse Xen dump-core with 2^28 pages. `guestcore info`
// must fail with one line, a non-zero exit and a small peak RSS (the
// bitmaps alone would be 1 GiB).
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { encodeFlatEnd, encodeFlatHeader, encodeFlatRecord, KDUMP_SIGNATURE } from "../../src/format/kdump.js";
import { assertOneLineFailure, runCliMeasured } from "../helpers/peak-rss.js";
import { tempDir, writeTemp } from "../helpers/synthetic.js";

const BS = 4096;
const PAGES = 2 ** 32;
// Two bitmaps of 2^32 bits each.
const BITMAP_BLOCKS = (2 * PAGES) / 8 / BS;


/** disk_dump_header (version 6) and kdump_sub_header claiming `pages` pages. */
function kdumpHead(pages: number): Buffer {
  const b = Buffer.alloc(2 * BS);
  b.write(KDUMP_SIGNATURE, 0, "latin1");
  b.writeInt32LE(6, 8);
  b.writeUInt32LE(1, 424); // zlib
  b.writeInt32LE(BS, 428);
  b.writeInt32LE(1, 432);
  b.writeUInt32LE(BITMAP_BLOCKS, 436);
  b.writeUInt32LE(Math.min(pages, 0xffffffff), 440);
  b.writeInt32LE(1, 460);
  b.writeInt32LE(31, BS + 8);
  b.writeBigUInt64LE(BigInt(pages), BS + 96);
  return b;
}

function sparseFile(dir: string, name: string, head: Uint8Array, size: number): string {
  const p = join(dir, name);
  const fd = openSync(p, "w");
  try {
    writeSync(fd, head);
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
  return p;
}


test("a 4.7 KB flattened file whose kdump header claims 2^32 pages: one line, small RSS", (t) => {
  const dir = tempDir(t);
  const head = kdumpHead(PAGES);
  const descOffset = (2 + BITMAP_BLOCKS) * BS;
  // A record past the bitmaps makes the rearranged file's logical size cover them.
  const stream = Buffer.concat([
    encodeFlatHeader(),
    encodeFlatRecord(0, 464), head.subarray(0, 464),
    encodeFlatRecord(BS, 104), head.subarray(BS, BS + 104),
    encodeFlatRecord(descOffset + 4096, 8), Buffer.alloc(8, 1),
    encodeFlatEnd(),
  ]);
  assert.ok(stream.length < 4800);
  const r = runCliMeasured(["info", writeTemp(dir, "claims.flat", stream)]);
  assertOneLineFailure(r, /max_mapnr 4294967296 needs two bitmaps of 536870912 bytes, but the file holds only \d+ bytes/);
});

test("a sparse plain kdump file claiming 2^32 pages (2 GiB st_size, 8 KiB held): one line, small RSS", (t) => {
  const dir = tempDir(t);
  const p = sparseFile(dir, "claims.kdump", kdumpHead(PAGES), 2 ** 31);
  const r = runCliMeasured(["info", p]);
  assertOneLineFailure(r, /max_mapnr 4294967296 needs two bitmaps .* but the file holds only \d+ bytes \(truncated or sparse\?\)/);
});

test("a sparse ELF with PN_XNUM and 2^32 - 1 program headers: one line, small RSS", (t) => {
  const dir = tempDir(t);
  const h = Buffer.alloc(128);
  h.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  h.writeUInt16LE(4, 16); // ET_CORE
  h.writeUInt16LE(62, 18); // x86-64
  h.writeBigUInt64LE(128n, 32); // e_phoff
  h.writeBigUInt64LE(64n, 40); // e_shoff: section 0 right after the header
  h.writeUInt16LE(56, 54);
  h.writeUInt16LE(0xffff, 56); // PN_XNUM
  h.writeUInt16LE(64, 58);
  h.writeUInt16LE(1, 60);
  h.writeUInt32LE(0xffffffff, 64 + 44); // section 0's sh_info: the real count
  const r = runCliMeasured(["info", sparseFile(dir, "xnum.elf", h, 2 ** 40)]);
  assertOneLineFailure(r, /4294967295 program headers is more than any vmcore has/);
});

test("a sparse ELF whose PT_NOTE claims 60 MiB of a 1 TiB hole: one line, small RSS", (t) => {
  const dir = tempDir(t);
  const h = Buffer.alloc(64 + 56);
  h.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  h.writeUInt16LE(4, 16);
  h.writeUInt16LE(62, 18);
  h.writeBigUInt64LE(64n, 32);
  h.writeUInt16LE(56, 54);
  h.writeUInt16LE(1, 56);
  h.writeUInt32LE(4, 64); // PT_NOTE
  h.writeBigUInt64LE(4096n, 64 + 8);
  h.writeBigUInt64LE(BigInt(60 << 20), 64 + 32);
  const r = runCliMeasured(["info", sparseFile(dir, "note.elf", h, 2 ** 40)]);
  assertOneLineFailure(r, /note segments of 62914560 bytes, the file holds only \d+/);
});
