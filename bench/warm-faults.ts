// Fault injection for the warm cache, on a real crashed guest: does a
// reused page ever differ from the disk?
//
// One warmcrash guest (ext4 on `guestcore disk serve`, in this process)
// reads its files, rewrites some without sync and panics. Its memory file
// and the tracker's table are then the starting point of every trial: a
// trial copies the memory, injects faults of one class into it (and, for
// some classes, into the image and the tracker), and decides reuse twice:
//  - mechanism off: reuse by the guest's own page flags and mapping, as a
//    VMM without content checks would: a page that is up to date, not
//    dirty, not under write-back and file-mapped is reused for the block
//    its mapping and index name (page->mapping->host->i_ino, page->index,
//    and the file's block list from debugfs);
//  - mechanism on: recover --warm-cache's path: the disk server hashes the
//    pages, keeps those equal to consistent blocks, and serves them; its
//    --verify-warm oracle reads each served block from the image.
// A reuse is inconsistent when the page's bytes differ from the image's
// block at that moment. Classes (faults on distinct random pages):
//  - wild: bytes flipped in a clean file-cache page (the seed's ALLOC,
//    PTR and COPY faults);
//  - lost: a dirty page whose PG_dirty the fault clears in its struct page
//    (written by the guest, never on the disk, flags say clean);
//  - torn: a write in flight at the crash: the block's disk content is
//    half new, half old, the page holds the new data and its flags say
//    the write-back is done; the tracker has the write in flight;
//  - ordered: ext4 ordered mode's two halves: data-only write-back (the
//    new data reached the disk through the server; page = disk) or
//    metadata-only (the page's new data never reached the disk; flags
//    clean), half each.
//
//   node dist/bench/warm-faults.js [--faults N] [--per-trial K] [--json]
import { copyFileSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync, writeSync, closeSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestImage } from "../src/image.js";
import { fileCachePages, pageFlagBits } from "../src/filter/file-cache.js";
import { DiskService } from "../src/warmcache/disk-service.js";
import { controlRequest } from "../src/warmcache/control.js";
import { buildWarmDisk, launchWarmGuest } from "../test/helpers/warm-guest.js";

const B = 4096;
type ClassName = "wild" | "lost" | "torn" | "ordered";
const CLASSES: ClassName[] = ["wild", "lost", "torn", "ordered"];

interface PageInfo {
  pfn: number;
  flags: bigint;
  /** File offset of its struct page in the memory file. */
  structOff: number;
  ino?: number;
  index?: number;
}

interface Fault {
  pfn: number;
  block: number;
  kind: string;
}

interface ModeResult {
  reused: number;
  inconsistent: number;
  /** Bytes of reused pages that differ from the disk. */
  badBytes: number;
}

interface ClassResult {
  faults: number;
  trials: number;
  off: ModeResult;
  on: ModeResult & { servedBlocks: number; verifyMismatches: number };
  notes: string[];
}

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

function u64(b: Uint8Array, off = 0): bigint {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).readBigUInt64LE(off);
}

/** debugfs: inode number and block list of each file under /data. */
function fileBlocks(image: string): Map<number, { path: string; blocks: number[] }> {
  const ls = execFileSync("debugfs", ["-c", "-R", "ls -l /data", image], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const out = new Map<number, { path: string; blocks: number[] }>();
  for (const m of ls.matchAll(/^\s*(\d+)\s+100\d{3}\s.*\s(\S+)\s*$/gm)) {
    const path = `/data/${m[2]}`;
    const blocks = execFileSync("debugfs", ["-c", "-R", `blocks ${path}`, image], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .trim().split(/\s+/).filter(Boolean).map(Number);
    out.set(Number(m[1]), { path, blocks });
  }
  return out;
}

async function main(): Promise<void> {
  const totalFaults = arg("--faults", 1000);
  const perTrial = arg("--per-trial", 100);
  const json = process.argv.includes("--json");
  const outDir = join("bench", "results", "warm-faults");
  mkdirSync(outDir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), "gc-warm-faults-"));
  const log = (s: string) => process.stderr.write(`warm-faults: ${s}\n`);

  // ---- one real crash on the disk server.
  const disk = buildWarmDisk(join(work, "disk.img"), { roFiles: 12, rwFiles: 8, rwKiB: 1024 });
  const pristineImage = join(work, "disk.pristine.img");
  const svc = await DiskService.start({ image: disk.image, socket: join(work, "d.sock"), verifyWarm: true, trackerBytes: 8 << 20 });
  const guest = launchWarmGuest({ role: "warmcrash", disk: { kind: "nbd", socket: join(work, "d.sock") }, memMiB: 256, readBig: true });
  const master = `/dev/shm/guestcore-bench-faults.${process.pid}.master`;
  const trialMem = `/dev/shm/guestcore-bench-faults.${process.pid}.trial`;
  try {
    await guest.waitDone(240_000);
    copyFileSync(guest.shm!, master);
    await guest.stop();
    copyFileSync(disk.image, pristineImage);
    const tracker = svc.tracker!;
    const tableBytes = tracker.stats().tableBytes;
    const tableSnapshot = svc.core.bytes(tracker.table, tableBytes).slice();
    const restoreTracker = () => svc.core.bytes(tracker.table, tableBytes).set(tableSnapshot);
    log(`crash captured: ${tracker.count(2)} consistent blocks tracked`);

    // ---- the guest's pages, as its own metadata describes them.
    const img = GuestImage.open(master);
    const k = img.kernel;
    const bits = pageFlagBits(k);
    const info = k.info;
    const mappingOff = info.offset("page.mapping")!;
    const flagsOff = info.offset("page.flags")!;
    const size = img.filter.layout.sizeofPage;
    // page.index follows page.mapping in every 64-bit struct page since 2.6 (the private word after it).
    const indexOff = mappingOff + 8;
    const files = fileBlocks(disk.image);
    const known = new Set(files.keys());
    const pages = new Map<number, PageInfo>();
    const hosts: bigint[] = [];
    const dirtyMask = 1n << BigInt(bits.dirty);
    for (const r of img.filter.ranges) {
      for (let pfn = r.pfnStart; pfn < Math.min(r.pfnEnd, img.filter.maxPfn); pfn++) {
        const va = r.memMap + BigInt((pfn - r.pfnStart) * size);
        const sp = img.readVirt(va, size);
        const flags = u64(sp, flagsOff);
        const mapping = u64(sp, mappingOff);
        const uptodate = (flags >> BigInt(bits.uptodate)) & 1n;
        if (!uptodate || mapping === 0n || mapping & 3n || (flags >> BigInt(bits.swapbacked)) & 1n) continue;
        const pa = img.translate(va)!;
        pages.set(pfn, { pfn, flags, structOff: pa, index: Number(u64(sp, indexOff)) });
        hosts.push(mapping);
      }
    }
    // struct inode's i_ino: the offset where the most hosts name a /data inode.
    const inoOf = new Map<number, number>();
    let best = { off: -1, hits: 0 };
    for (let off = 40; off <= 160; off += 8) {
      let hits = 0;
      for (const p of pages.values()) {
        if (hits > 50) break;
        const r = img.filter.ranges.find((x) => p.pfn >= x.pfnStart && p.pfn < x.pfnEnd)!;
        const mapping = u64(img.readVirt(r.memMap + BigInt((p.pfn - r.pfnStart) * size) + BigInt(mappingOff), 8));
        try {
          const host = u64(img.readVirt(mapping, 8));
          if (known.has(Number(u64(img.readVirt(host + BigInt(off), 8))))) hits++;
        } catch { /* not mapped */ }
      }
      if (hits > best.hits) best = { off, hits };
    }
    if (best.hits === 0) throw new Error("cannot find i_ino in struct inode");
    for (const p of pages.values()) {
      const r = img.filter.ranges.find((x) => p.pfn >= x.pfnStart && p.pfn < x.pfnEnd)!;
      const mapping = u64(img.readVirt(r.memMap + BigInt((p.pfn - r.pfnStart) * size) + BigInt(mappingOff), 8));
      try {
        const ino = Number(u64(img.readVirt(u64(img.readVirt(mapping, 8)) + BigInt(best.off), 8)));
        if (known.has(ino)) {
          p.ino = ino;
          inoOf.set(p.pfn, ino);
        }
      } catch { /* not mapped */ }
    }
    img.close();
    const blockOf = (p: PageInfo): number | undefined => {
      const f = p.ino !== undefined ? files.get(p.ino) : undefined;
      return f && p.index !== undefined ? f.blocks[p.index] : undefined;
    };
    const clean = [...pages.values()].filter((p) => !(p.flags & dirtyMask) && blockOf(p) !== undefined);
    const dirty = [...pages.values()].filter((p) => p.flags & dirtyMask && blockOf(p) !== undefined);
    log(`i_ino at +${best.off}; ${clean.length} clean and ${dirty.length} dirty /data cache pages with a block`);

    const imageFd = openSync(disk.image, "r+");
    const readBlock = (fd: number, block: number) => {
      const b = Buffer.alloc(B);
      readSync(fd, b, 0, B, block * B);
      return b;
    };
    const pristineFd = openSync(pristineImage, "r");
    const results: Record<string, ClassResult> = {};
    for (const cls of CLASSES) {
      const res: ClassResult = { faults: 0, trials: 0, off: { reused: 0, inconsistent: 0, badBytes: 0 }, on: { reused: 0, inconsistent: 0, badBytes: 0, servedBlocks: 0, verifyMismatches: 0 }, notes: [] };
      const pool = cls === "lost" ? dirty : clean;
      while (res.faults < totalFaults) {
        const k2 = Math.min(perTrial, totalFaults - res.faults, pool.length);
        copyFileSync(master, trialMem);
        const mfd = openSync(trialMem, "r+");
        // Distinct random pages.
        const chosen = new Set<number>();
        while (chosen.size < k2) chosen.add(randomInt(pool.length));
        const faults: Fault[] = [];
        const restoreBlocks: number[] = [];
        const tornTickets: { block: number; tickets: Uint32Array }[] = [];
        for (const i of chosen) {
          const p = pool[i];
          const block = blockOf(p)!;
          const clearDirty = () => {
            const fb = Buffer.alloc(8);
            fb.writeBigUInt64LE(p.flags & ~dirtyMask);
            writeSync(mfd, fb, 0, 8, p.structOff + flagsOff);
          };
          if (cls === "wild") {
            const n = 1 + randomInt(8);
            for (let j = 0; j < n; j++) {
              const off = p.pfn * B + randomInt(B);
              const one = Buffer.alloc(1);
              readSync(mfd, one, 0, 1, off);
              one[0] ^= 1 + randomInt(255);
              writeSync(mfd, one, 0, 1, off);
            }
            faults.push({ pfn: p.pfn, block, kind: "wild" });
          } else if (cls === "lost") {
            clearDirty();
            faults.push({ pfn: p.pfn, block, kind: "lost" });
          } else if (cls === "torn") {
            const fresh = randomBytes(B);
            writeSync(mfd, fresh, 0, B, p.pfn * B);
            const torn = Buffer.concat([fresh.subarray(0, B / 2), readBlock(imageFd, block).subarray(B / 2)]);
            writeSync(imageFd, torn, 0, B, block * B);
            restoreBlocks.push(block);
            tornTickets.push({ block, tickets: tracker.begin(block, 1, true) });
            faults.push({ pfn: p.pfn, block, kind: "torn" });
          } else {
            const fresh = randomBytes(B);
            writeSync(mfd, fresh, 0, B, p.pfn * B);
            if (randomInt(2) === 0) {
              // Data-only write-back: the data reached the disk through the server.
              await svc.backend.write(block * B, fresh, false);
              faults.push({ pfn: p.pfn, block, kind: "data-only" });
            } else faults.push({ pfn: p.pfn, block, kind: "metadata-only" });
            restoreBlocks.push(block);
          }
        }
        closeSync(mfd);
        res.faults += faults.length;
        res.trials++;

        // ---- mechanism off: flags and mapping say clean -> reused for the mapped block.
        const trial = GuestImage.open(trialMem);
        const sel = fileCachePages(trial.kernel, trial.core, trial.filter).bitmap;
        trial.close();
        const tfd = openSync(trialMem, "r");
        for (const f of faults) {
          if (!(sel[f.pfn >> 3] & (1 << (f.pfn & 7)))) continue;
          res.off.reused++;
          const page = readBlock(tfd, f.pfn);
          const diskNow = readBlock(imageFd, f.block);
          if (!page.equals(diskNow)) {
            res.off.inconsistent++;
            for (let j = 0; j < B; j++) if (page[j] !== diskNow[j]) res.off.badBytes++;
          }
        }
        closeSync(tfd);

        // ---- mechanism on: adopt, then serve every block that got a copy.
        const before = { ...(svc.warm?.counters ?? { servedBlocks: 0, verifyMismatches: 0 }) };
        void before;
        const r = await controlRequest(svc.controlPath, {
          op: "adopt", memory: trialMem, layout: `0:${256 << 20}@0`, maxPfn: sel.length * 8, candidates: Buffer.from(sel).toString("base64"),
        });
        const kept = Buffer.from(String(r.kept), "base64");
        const copies = tracker.blocksWithCopies();
        const keptFault = faults.filter((f) => kept[f.pfn >> 3] & (1 << (f.pfn & 7)));
        for (const b of copies) await svc.backend.read(b * B, B);
        const w = svc.warm!.counters;
        res.on.servedBlocks += w.servedBlocks;
        res.on.verifyMismatches += w.verifyMismatches;
        res.on.reused += keptFault.length;
        // A kept faulted page is inconsistent only if what was served differs: the verify oracle counts that.
        res.on.inconsistent += w.verifyMismatches;
        res.on.badBytes += w.verifyMismatches * B;
        if (cls === "ordered") {
          const dataOnlyKept = keptFault.filter((f) => f.kind === "data-only").length;
          res.notes.push(`trial ${res.trials}: ${dataOnlyKept} data-only pages reused (consistent), ${keptFault.length - dataOnlyKept} metadata-only`);
        }
        await controlRequest(svc.controlPath, { op: "release" });

        // ---- restore the disk and the tracker for the next trial.
        for (const t of tornTickets) tracker.end(t.block, 1, t.tickets, undefined);
        for (const b of restoreBlocks) writeSync(imageFd, readBlock(pristineFd, b), 0, B, b * B);
        restoreTracker();
        rmSync(trialMem, { force: true });
        log(`${cls}: ${res.faults}/${totalFaults} faults; off ${res.off.inconsistent} inconsistent of ${res.off.reused} reused; on ${res.on.inconsistent} of ${res.on.reused} (${res.on.servedBlocks} blocks served)`);
      }
      results[cls] = res;
    }
    closeSync(imageFd);
    closeSync(pristineFd);
    const summary = { guestMiB: 256, cleanPages: clean.length, dirtyPages: dirty.length, perTrial, results };
    writeFileSync(join(outDir, "results.json"), JSON.stringify(summary, null, 1) + "\n");
    const md = [
      "| fault class | faults | trials | off: reused | off: inconsistent | on: reused | on: inconsistent | on: blocks served | on: bytes differing from disk |",
      "|---|---|---|---|---|---|---|---|---|",
      ...CLASSES.map((c) => {
        const r = results[c];
        const pct = (a: number, b: number) => (b ? ` (${((100 * a) / b).toFixed(1)} %)` : "");
        return `| ${c} | ${r.faults} | ${r.trials} | ${r.off.reused} | ${r.off.inconsistent}${pct(r.off.inconsistent, r.faults)} | ${r.on.reused} | ${r.on.inconsistent}${pct(r.on.inconsistent, r.faults)} | ${r.on.servedBlocks} | ${r.on.badBytes} |`;
      }),
    ].join("\n");
    writeFileSync(join(outDir, "results.md"), md + "\n");
    if (json) console.log(JSON.stringify(summary, null, 1));
    else console.log(md);
  } finally {
    await guest.stop().catch(() => {});
    await svc.stop().catch(() => {});
    rmSync(master, { force: true });
    rmSync(trialMem, { force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`warm-faults: ${(e as Error).stack}\n`);
  process.exit(1);
});
