// One page decoder as a fuzz target: the input is one compressed page,
// read back through the kdump reader (one page_desc pointing at it), so
// what is fuzzed is the decoder as guestcore runs it, with the reader's
// checks around it. Seeds are real compressed pages of the captures.
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { KDUMP_SIGNATURE } from "../src/format/kdump.js";
import type { FuzzTarget, Seed } from "./target.js";
import { openInput } from "./seed-util.js";
import { makedumpfileLzoCut, qemuZlibCut, recompress, recut, type CutKdump } from "./kdump-seeds.js";
import { CODEC_FLAG, type PageCodecName } from "../test/helpers/kdump-build.js";

const BS = 4096;
const MAPNR = BS * 8; // one block of bitmap each
const BITMAP_OFFSET = 2 * BS;
const DESC_OFFSET = BITMAP_OFFSET + 2 * (MAPNR / 8);
const DATA_OFFSET = DESC_OFFSET + 24;

/** disk_dump_header, sub-header, bitmaps (pfn 0 only) and one page_desc: the file around one page. */
function frame(flag: number, size: number): Uint8Array {
  const b = Buffer.alloc(DATA_OFFSET);
  b.write(KDUMP_SIGNATURE, 0, "latin1");
  b.writeInt32LE(6, 8);
  b.writeUInt32LE(flag, 424);
  b.writeInt32LE(BS, 428);
  b.writeInt32LE(1, 432);
  b.writeUInt32LE((2 * (MAPNR / 8)) / BS, 436);
  b.writeUInt32LE(MAPNR, 440);
  b.writeInt32LE(1, 460);
  b.writeInt32LE(31, BS + 8);
  b.writeBigUInt64LE(BigInt(MAPNR), BS + 96);
  b[BITMAP_OFFSET] = 1;
  b[BITMAP_OFFSET + MAPNR / 8] = 1;
  b.writeBigInt64LE(BigInt(DATA_OFFSET), DESC_OFFSET);
  b.writeUInt32LE(size, DESC_OFFSET + 8);
  b.writeUInt32LE(flag, DESC_OFFSET + 12);
  return b;
}

function distinctPages(cut: CutKdump, flag: number, max: number): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  for (const p of cut.pages) {
    if (!(p.flags & flag)) continue;
    const k = Buffer.from(p.data).toString("latin1");
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(p.data);
    if (out.length >= max) break;
  }
  return out;
}

export function codecTarget(codec: Exclude<PageCodecName, "raw">, origin: string): FuzzTarget {
  const flag = CODEC_FLAG[codec];
  return {
    name: `codec-${codec}`,
    describes: `${codec} page decoder (${origin}), through the kdump reader`,
    async seeds(ctx) {
      const zlib = qemuZlibCut(ctx.cacheDir);
      const cut = codec === "zlib" ? zlib : codec === "lzo" ? makedumpfileLzoCut(ctx.cacheDir) : recut(recompress(zlib, codec));
      return distinctPages(cut, flag, 8).map((bytes, i): Seed => ({ label: `${origin} page ${i}`, bytes, fields: [] }));
    },
    run(input, ctx) {
      const path = join(ctx.scratchDir, `page.${codec}.kdump`);
      const fd = openSync(path, "w");
      try {
        writeSync(fd, frame(flag, input.length));
        writeSync(fd, input);
      } finally {
        closeSync(fd);
      }
      const src = openInput(path, { format: "kdump" });
      try {
        src.readBatch([{ paddr: 0, dst: new Uint8Array(BS) }]);
      } finally {
        src.close();
      }
    },
  };
}
