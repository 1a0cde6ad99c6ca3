// kdump-compressed files through the CLI's source opener: disk_dump_header,
// kdump_sub_header (notes, VMCOREINFO, split range), both bitmaps, the
// page_desc table, and every page it lists decoded (zlib, LZO, zstd,
// snappy and stored pages, from real captures).
import type { FuzzTarget, Seed } from "../target.js";
import { inputFile, openAndReadAll } from "../seed-util.js";
import { kdumpFields, makedumpfileLzoCut, qemuZlibCut, recompress } from "../kdump-seeds.js";

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
    openAndReadAll(inputFile(input, ctx));
  },
};
export default target;
