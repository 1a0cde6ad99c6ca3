// Every file format in a sparse file: the input's bytes, then a hole up to
// 1 TiB. st_size then vouches for any offset and length, so only bounds by
// the bytes the file really holds (its allocated blocks) keep a hostile
// header from costing memory and time. Seeds: the elf, kdump and
// xen-dumpcore targets' seeds.
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { FuzzTarget } from "../target.js";
import { openAndReadAll } from "../seed-util.js";
import elf from "./elf.js";
import kdump from "./kdump.js";
import xen from "./xen-dumpcore.js";

const LOGICAL_SIZE = 2 ** 40;

const target: FuzzTarget = {
  name: "sparse",
  describes: "ELF, kdump and Xen dump-core in a sparse file (1 TiB st_size, the input's blocks allocated), through openSource",
  async seeds(ctx) {
    return [...(await elf.seeds(ctx)), ...(await kdump.seeds(ctx)), ...(await xen.seeds(ctx))];
  },
  run(input, ctx) {
    const path = join(ctx.scratchDir, "sparse.bin");
    const fd = openSync(path, "w");
    try {
      writeSync(fd, input, 0, input.length, 0);
      ftruncateSync(fd, LOGICAL_SIZE);
    } finally {
      closeSync(fd);
    }
    openAndReadAll(path);
  },
};
export default target;
