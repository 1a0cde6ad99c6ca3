// Which zstd level for kdump pages: the pages a real guest keeps at -d 31,
// compressed one by one (as the kdump format does) at levels 1, -1, -2
// and -3, and by the policy the writer uses (level -1, then level 1 for a
// page it left above a threshold, unless it could not shrink it and the
// bytes look uniform; the smaller frame kept), in this process with
// zstd-napi. Sizes are of the page data alone (no
// descriptors), with a page that does not shrink counted whole, as the
// format stores it.
//
//   node dist/bench/zstd-policy.js [GUEST] [--runs N] [--pages N]
//
// GUEST: a real fixture (fixtures/build-real.sh; default q35-4g) or a
// synthetic one under $GUESTCORE_CACHE/fixtures (synthetic-32g: its ELF).
// At most --pages kept pages (default 60000), evenly spread, are compressed.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { deflateSync } from "node:zlib";
import { join } from "node:path";
import { CACHE, realFixture } from "../test/helpers/real.js";
import { GuestImage } from "../src/image.js";
import { skewed } from "../src/codecs/zstd.js";
import { median, parseArgs } from "./measure.js";

const PAGE = 4096;
const { names, runs, values } = parseArgs(process.argv.slice(2), ["--pages"]);
const maxPages = Number(values["--pages"] ?? 60000);
const profile = names[0] ?? "q35-4g";
const synthetic = join(CACHE, "fixtures", profile, "vmcore.mdf.elf");
const input = profile.startsWith("synthetic-") && existsSync(synthetic) ? synthetic : realFixture(profile).mdfElf;
const img = GuestImage.open(input);
const pages: Uint8Array[] = [];
try {
  const r = img.pageStats(31);
  // Every stride-th kept page, so that a sample spans the whole guest.
  const stride = Math.max(1, Math.ceil(r.keptCount / maxPages));
  let seen = 0;
  for (const run of r.kept.runs()) {
    for (let p = run.pfn; p < run.pfn + run.count && pages.length < maxPages; p++) {
      if (seen++ % stride) continue;
      const b = new Uint8Array(PAGE);
      img.source.readBatch([{ paddr: p * PAGE, dst: b }]);
      pages.push(b);
    }
    if (pages.length >= maxPages) break;
  }
} finally {
  img.close();
}

const require = createRequire(import.meta.url);
const z = require("zstd-napi/binding") as { CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number } };
const cctx = new z.CCtx();
const dst = new Uint8Array(2 * PAGE);

function pass(level: number): { us: number; sizes: Int32Array } {
  const sizes = new Int32Array(pages.length);
  const t = process.hrtime.bigint();
  for (let i = 0; i < pages.length; i++) sizes[i] = Math.min(PAGE, cctx.compress(dst, pages[i], level));
  return { us: Number(process.hrtime.bigint() - t) / 1e3 / pages.length, sizes };
}

const LEVELS = [1, -1, -2, -3];
const times = new Map<number, number[]>(LEVELS.map((l) => [l, []]));
let sizes = new Map<number, Int32Array>();
for (let r = 0; r < runs; r++) {
  sizes = new Map();
  for (const l of LEVELS) {
    const p = pass(l);
    times.get(l)!.push(p.us);
    sizes.set(l, p.sizes);
  }
}
const total = (s: Int32Array) => s.reduce((a, x) => a + x, 0);
const zlibBytes = pages.reduce((n, p) => n + Math.min(PAGE, deflateSync(p, { level: 1 }).length), 0);

console.log(`${profile}: ${pages.length} kept pages at -d 31, median of ${runs} alternating passes; zlib level 1 (makedumpfile -c): ${(zlibBytes / 1e6).toFixed(2)} MB`);
console.log("| what | µs per page | page data MB | against level 1 (time, size) |");
console.log("|---|---:|---:|---:|");
const us1 = median(times.get(1)!);
const mb1 = total(sizes.get(1)!) / 1e6;
for (const l of LEVELS) {
  const us = median(times.get(l)!);
  const mb = total(sizes.get(l)!) / 1e6;
  console.log(`| level ${l} | ${us.toFixed(2)} | ${mb.toFixed(2)} | ${(us / us1).toFixed(2)}, ${(mb / mb1).toFixed(2)} |`);
}
for (const fast of [-1, -2]) {
  for (const above of [0.25, 0.5, 0.75]) {
    let bytes = 0;
    let again = 0;
    const f = sizes.get(fast)!;
    const one = sizes.get(1)!;
    for (let i = 0; i < pages.length; i++) {
      if (f[i] > PAGE * above && (f[i] < PAGE || skewed(pages[i]))) {
        again++;
        bytes += Math.min(f[i], one[i]);
      } else bytes += f[i];
    }
    // The time of the fast pass plus level 1 for the pages tried again.
    const us = median(times.get(fast)!) + (us1 * again) / pages.length;
    console.log(`| level ${fast}, then 1 above ${above * 100} % of a page (${((100 * again) / pages.length).toFixed(0)} % again) | ${us.toFixed(2)} | ${(bytes / 1e6).toFixed(2)} | ${(us / us1).toFixed(2)}, ${(bytes / 1e6 / mb1).toFixed(2)} |`);
  }
}
