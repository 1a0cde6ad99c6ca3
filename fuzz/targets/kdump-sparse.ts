// The kdump reader on a sparse file: the input's bytes, then a hole up to
// 1 TiB. st_size then vouches for any offset, so only bounds by the bytes
// the file really holds (its allocated blocks) keep a hostile header from
// costing memory and time.
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { openSource } from "../../src/sources/open.js";
import type { FuzzTarget } from "../target.js";
import { kdumpSeeds, readAllPages } from "./kdump.js";

const LOGICAL_SIZE = 2 ** 40;

const target: FuzzTarget = {
  name: "kdump-sparse",
  describes: "kdump-compressed in a sparse file (1 TiB st_size, the input's blocks allocated), through openSource",
  async seeds(ctx) {
    return kdumpSeeds(ctx.cacheDir);
  },
  run(input, ctx) {
    const path = join(ctx.scratchDir, "sparse.kdump");
    const fd = openSync(path, "w");
    try {
      writeSync(fd, input, 0, input.length, 0);
      ftruncateSync(fd, LOGICAL_SIZE);
    } finally {
      closeSync(fd);
    }
    const src = openSource(path, { format: "kdump" });
    try {
      readAllPages(src);
    } finally {
      src.close();
    }
  },
};
export default target;
