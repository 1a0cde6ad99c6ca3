// kdump-compressed files through the CLI's source opener: disk_dump_header,
// kdump_sub_header (notes, VMCOREINFO, split range), both bitmaps, the
// page_desc table, and every page it lists decoded (zlib, LZO, zstd,
// snappy and stored pages, from real captures).
import type { MemorySource } from "../../src/sources/source.js";
import type { FuzzTarget, Seed } from "../target.js";
import { inputFile, openInput } from "../seed-util.js";
import { kdumpFields, makedumpfileLzoCut, qemuZlibCut, recompress } from "../kdump-seeds.js";

/** Pages decoded per input at most: a mutated bitmap may claim millions. */
const MAX_PAGES = 256;

/** Decode every dumped page (up to a bound), as a dump or `guestcore read` would; also reads the ends of long segments. */
export function readAllPages(src: MemorySource, pageSize = 4096): void {
  const page = new Uint8Array(pageSize);
  let n = 0;
  for (const s of src.segments) {
    for (let a = s.start; a < s.end && n < MAX_PAGES; a += pageSize, n++) src.readBatch([{ paddr: a, dst: page.subarray(0, Math.min(pageSize, s.end - a)) }]);
    if (n >= MAX_PAGES) return;
  }
}

export function kdumpSeeds(cacheDir: string): Seed[] {
  const zlib = qemuZlibCut(cacheDir);
  const lzo = makedumpfileLzoCut(cacheDir);
  const seed = (label: string, bytes: Uint8Array): Seed => ({ label, bytes, fields: kdumpFields(bytes) });
  return [
    seed("QEMU 7.2 kdump-zlib, cut", zlib.bytes),
    seed("makedumpfile -l -d 31, cut", lzo.bytes),
    seed("QEMU's pages as zstd", recompress(zlib, "zstd")),
    seed("QEMU's pages as snappy", recompress(zlib, "snappy")),
    seed("QEMU's pages stored", recompress(zlib, "raw")),
  ];
}

const target: FuzzTarget = {
  name: "kdump",
  describes: "kdump-compressed: headers, sub-header, bitmaps, page_descs, every page decoded, through openSource",
  async seeds(ctx) {
    return kdumpSeeds(ctx.cacheDir);
  },
  run(input, ctx) {
    const src = openInput(inputFile(input, ctx));
    try {
      readAllPages(src);
    } finally {
      src.close();
    }
  },
};
export default target;
