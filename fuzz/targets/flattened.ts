// makedumpfile's flattened form (makedumpfile -F, QEMU's kdump-zlib)
// through the CLI's opener: the stream header, every record header, the
// in-place index (or the rearranging fallback for overlapping records),
// then the kdump inside it as the kdump target reads one.
import { encodeFlatEnd, encodeFlatHeader, encodeFlatRecord } from "../../src/format/kdump.js";
import type { Field, FuzzTarget, Seed } from "../target.js";
import { inputFile, openAndReadAll } from "../seed-util.js";
import { kdumpFields, makedumpfileLzoCut, qemuZlibCut } from "../kdump-seeds.js";

interface Rec { offset: number; size: number }

/**
 * Records as QEMU 7.2 writes them: the header, the sub-header, the notes,
 * then the bitmaps a block of each at a time, then page descriptors and
 * page data alternating (4 KiB records).
 */
function qemuOrder(file: Uint8Array, bitmapOffset: number, half: number, descOffset: number, dataOffset: number): Rec[] {
  const bs = 4096;
  const recs: Rec[] = [{ offset: 0, size: 464 }, { offset: bs, size: 104 }];
  if (bitmapOffset > bs + 104) recs.push({ offset: bs + 104, size: bitmapOffset - bs - 104 });
  for (let o = 0; o < half; o += bs) recs.push({ offset: bitmapOffset + o, size: Math.min(bs, half - o) }, { offset: bitmapOffset + half + o, size: Math.min(bs, half - o) });
  const descs: Rec[] = [];
  const data: Rec[] = [];
  for (let o = descOffset; o < dataOffset; o += bs) descs.push({ offset: o, size: Math.min(bs, dataOffset - o) });
  for (let o = dataOffset; o < file.length; o += bs) data.push({ offset: o, size: Math.min(bs, file.length - o) });
  for (let i = 0; i < Math.max(descs.length, data.length); i++) {
    if (descs[i]) recs.push(descs[i]);
    if (data[i]) recs.push(data[i]);
  }
  return recs;
}

function inOrder(file: Uint8Array, size: number): Rec[] {
  const recs: Rec[] = [];
  for (let o = 0; o < file.length; o += size) recs.push({ offset: o, size: Math.min(size, file.length - o) });
  return recs;
}

/** The stream and its fields: the flat header, each record header, and the kdump's fields where they landed. */
function flatten(label: string, file: Uint8Array, recs: Rec[]): Seed {
  const parts: Uint8Array[] = [encodeFlatHeader()];
  const fields: Field[] = [
    { offset: 0, width: 8, kind: "magic", name: "signature" },
    { offset: 16, width: 8, kind: "flags", bigEndian: true, name: "type" },
    { offset: 24, width: 8, kind: "count", bigEndian: true, name: "version" },
  ];
  let at = parts[0].length;
  const where: { logical: number; size: number; stream: number }[] = [];
  recs.forEach((r, i) => {
    fields.push(
      { offset: at, width: 8, kind: "offset", bigEndian: true, name: `record[${i}].offset` },
      { offset: at + 8, width: 8, kind: "size", bigEndian: true, name: `record[${i}].size` },
    );
    parts.push(encodeFlatRecord(r.offset, r.size), file.subarray(r.offset, r.offset + r.size));
    where.push({ logical: r.offset, size: r.size, stream: at + 16 });
    at += 16 + r.size;
  });
  fields.push({ offset: at, width: 8, kind: "offset", bigEndian: true, name: "end.offset" }, { offset: at + 8, width: 8, kind: "size", bigEndian: true, name: "end.size" });
  parts.push(encodeFlatEnd());
  const toStream = (o: number) => {
    const w = where.find((x) => o >= x.logical && o < x.logical + x.size);
    return w ? w.stream + (o - w.logical) : -1;
  };
  for (const f of kdumpFields(file, 0, toStream)) if (f.offset >= 0) fields.push(f);
  return { label, bytes: Buffer.concat(parts), fields };
}

const target: FuzzTarget = {
  name: "flattened",
  describes: "flattened kdump streams: header, records, in-place index or rearranging, then the kdump inside, through openSource",
  async seeds(ctx) {
    const zlib = qemuZlibCut(ctx.cacheDir);
    const lzo = makedumpfileLzoCut(ctx.cacheDir);
    const dataOf = (c: typeof zlib) => c.descOffset + c.pfns.length * 24;
    return [
      flatten("QEMU 7.2 kdump-zlib, cut, QEMU's record order", zlib.bytes, qemuOrder(zlib.bytes, zlib.bitmapOffset, zlib.bitmapHalf, zlib.descOffset, dataOf(zlib))),
      flatten("makedumpfile -l -d 31, cut, 64 KiB records in order", lzo.bytes, inOrder(lzo.bytes, 64 << 10)),
      flatten("makedumpfile -l -d 31, cut, 4 KiB records in reverse", lzo.bytes, inOrder(lzo.bytes, 4096).reverse()),
    ];
  },
  run(input, ctx) {
    openAndReadAll(inputFile(input, ctx));
  },
};
export default target;
