// Real-kernel fixtures and the makedumpfile oracle.
//
// Fixtures are built by fixtures/build-real.sh into a cache outside the
// repo. A missing fixture fails the test (never a skip): CI builds them
// first, and a developer is told the command that builds them.
import { createHash } from "node:crypto";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, openSync, readSync, closeSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseDiskDumpHeader, parseKdumpSubHeader, parsePageDesc, PAGE_DESC_SIZE } from "../../src/format/kdump.js";
import type { ExclusionCounts } from "../../src/filter/classes.js";
import { PfnBitmap } from "../../src/core/pfn-bitmap.js";

export const CACHE = process.env.GUESTCORE_CACHE ?? "/var/cache/guestcore";

export interface RealFixture {
  profile: string;
  dir: string;
  elf: string;
  mdfElf: string;
  raw: string;
  marker: string;
  release: string;
  memMiB: number;
}

export function realFixture(profile: string): RealFixture {
  const dir = join(CACHE, "fixtures", profile);
  const meta = join(dir, "meta.json");
  for (const f of [meta, join(dir, "vmcore.elf"), join(dir, "vmcore.mdf.elf"), join(dir, "mem.raw")]) {
    if (!existsSync(f)) throw new Error(`missing real-kernel fixture ${f}: run 'bash fixtures/build-real.sh ${profile}'`);
  }
  const m = JSON.parse(readFileSync(meta, "utf8"));
  return {
    profile, dir, elf: join(dir, "vmcore.elf"), mdfElf: join(dir, "vmcore.mdf.elf"), raw: join(dir, "mem.raw"),
    marker: m.marker, release: m.kernelRelease, memMiB: m.memMiB,
  };
}

export interface OracleResult {
  counts: ExclusionCounts;
  original: number;
  remaining: number;
  total: number;
  /** makedumpfile's bitmap 2 (dumpable pages, zero pages included). */
  bitmap2: Uint8Array;
  /** bitmap 2 minus the pages that point at the shared zero page. */
  nonZero: Uint8Array;
  maxMapnr: number;
}

const LABELS: [keyof ExclusionCounts, string][] = [
  ["zero", "Pages filled with zero"], ["cache", "Non-private cache pages"], ["cachePrivate", "Private cache pages"],
  ["user", "User process data pages"], ["free", "Free pages"], ["hwpoison", "Hwpoison pages"], ["offline", "Offline pages"],
];

function field(log: string, label: string): number {
  const m = new RegExp(`${label.replace(/[()]/g, "\\$&")}\\s*:\\s*0x([0-9a-f]+)`).exec(log);
  if (!m) throw new Error(`makedumpfile report lacks "${label}"`);
  return parseInt(m[1], 16);
}

/** The programs whose answers are cached, and how each tells its version. */
const VERSION_OF = {
  makedumpfile: ["makedumpfile", ["-v"]],
  crash: ["crash", ["--version"]],
  drgn: ["/usr/bin/python3", ["-c", "import drgn; print(drgn.__version__)"]],
} as const;
export type OracleTool = keyof typeof VERSION_OF;

/**
 * The tool's version output as a path component ("makedumpfile-1.7.2-1a2b3c4d":
 * the version, and a hash of all it printed, which for makedumpfile names its
 * codecs too): an upgraded tool gets new cached answers, never an old one's.
 */
export function toolKey(tool: OracleTool): string {
  const [cmd, args] = VERSION_OF[tool];
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 60_000 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  const version = /\d+\.\d+[\w.]*/.exec(out)?.[0];
  if (r.status !== 0 || !version) throw new Error(`${tool} tells no version (${r.error?.message ?? `exit ${r.status}`}): ${out.trim().slice(0, 200)}`);
  return `${tool}-${version}-${createHash("sha256").update(out).digest("hex").slice(0, 8)}`;
}

/** The capture itself: its size and modification time (the build's random marker names the build). */
function inputKey(path: string): string {
  const st = statSync(path);
  return createHash("sha256").update(`${st.size} ${st.mtimeMs}`).digest("hex").slice(0, 8);
}

/**
 * Where `tool`'s answers on a capture are kept: keyed by the build's random
 * marker and the capture's identity (a rebuilt fixture gets new ones) and by
 * the tool's version (an upgraded tool too).
 */
export function oracleDir(fx: RealFixture, tool: OracleTool): string {
  const dir = join(CACHE, "oracle", fx.profile, `${fx.marker.split(" ").pop()!}-${inputKey(fx.elf)}`, toolKey(tool));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Run makedumpfile -l -d LEVEL on the fixture (cached) and read its page set. */
export function makedumpfileOracle(fx: RealFixture, level: number): OracleResult {
  return makedumpfileOracleOf(fx.mdfElf, level, oracleDir(fx, "makedumpfile"));
}

/**
 * makedumpfile -l -d LEVEL on any ELF it accepts (a QEMU ELF goes through
 * fixtures/elf-mdf.mjs first); results are kept in `dir`, and used again
 * only for the same makedumpfile and the same input file.
 */
export function makedumpfileOracleOf(mdfElf: string, level: number, dir: string): OracleResult {
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `d${level}.kdump`);
  const logPath = join(dir, `d${level}.log`);
  const keyPath = join(dir, `d${level}.key`);
  const key = `${toolKey("makedumpfile")} ${mdfElf} ${inputKey(mdfElf)}\n`;
  const fresh = existsSync(out) && existsSync(logPath) && existsSync(keyPath) && readFileSync(keyPath, "utf8") === key;
  let log: string;
  if (fresh) {
    log = readFileSync(logPath, "utf8");
  } else {
    execFileSync("rm", ["-f", out, keyPath]);
    log = execFileSync("makedumpfile", ["-l", "-d", String(level), "--message-level", "31", mdfElf, out], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    writeFileSync(logPath, log);
    // Last: a run cut short leaves no key, so it is run again.
    writeFileSync(keyPath, key);
  }
  const counts = Object.fromEntries(LABELS.map(([k, l]) => [k, field(log, l)])) as ExclusionCounts;
  const kd = readKdumpBitmaps(out);
  return {
    counts, original: field(log, "Original pages"), remaining: field(log, "Remaining pages"), total: field(log, "Total pages"),
    ...kd,
  };
}

/**
 * makedumpfile --dump-dmesg of the fixture's ELF, run once per capture and
 * makedumpfile version (the fixture's own dmesg.txt is the building
 * makedumpfile's, which may not be the one installed now).
 */
export function makedumpfileDmesgOf(fx: RealFixture): Buffer {
  const cached = join(oracleDir(fx, "makedumpfile"), "dmesg-mdf-elf.txt");
  if (!existsSync(cached)) {
    const tmp = `${cached}.tmp-${process.pid}`;
    execFileSync("rm", ["-f", tmp]);
    execFileSync("makedumpfile", ["--dump-dmesg", fx.mdfElf, tmp], { stdio: ["ignore", "ignore", "pipe"] });
    renameSync(tmp, cached);
  }
  return readFileSync(cached);
}

/** bitmap 2 and the zero-page split of a kdump-compressed file. */
export function readKdumpBitmaps(path: string): { bitmap2: Uint8Array; nonZero: Uint8Array; maxMapnr: number } {
  const fd = openSync(path, "r");
  try {
    const read = (pos: number, len: number) => {
      const b = new Uint8Array(len);
      let done = 0;
      while (done < len) {
        const n = readSync(fd, b, done, len - done, pos + done);
        if (n === 0) throw new Error(`${path}: short read at ${pos + done}`);
        done += n;
      }
      return b;
    };
    const h = parseDiskDumpHeader(read(0, 512));
    const bs = h.blockSize;
    const sub = parseKdumpSubHeader(read(bs, 104));
    const maxMapnr = sub.maxMapnr64 || h.maxMapnr32;
    const bitmapOff = (1 + h.subHdrSize) * bs;
    const half = (h.bitmapBlocks * bs) / 2;
    const bitmap2 = read(bitmapOff + half, half);
    let dumpable = 0;
    for (let p = 0; p < maxMapnr; p++) if (bitmap2[p >> 3] & (1 << (p & 7))) dumpable++;
    const descOff = (1 + h.subHdrSize + h.bitmapBlocks) * bs;
    const descs = read(descOff, dumpable * PAGE_DESC_SIZE);
    // makedumpfile stores one zero page first, right after the descriptors,
    // and points every zero page's descriptor at it.
    // That shared page exists only when the dump level excludes zero pages.
    const zeroOffset = sub.dumpLevel & 1 ? descOff + dumpable * PAGE_DESC_SIZE : -1;
    const nonZero = new Uint8Array(bitmap2.length);
    let i = 0;
    for (let p = 0; p < maxMapnr; p++) {
      if (!(bitmap2[p >> 3] & (1 << (p & 7)))) continue;
      const d = parsePageDesc(descs, i++ * PAGE_DESC_SIZE);
      if (d.offset !== zeroOffset) nonZero[p >> 3] |= 1 << (p & 7);
    }
    return { bitmap2, nonZero, maxMapnr };
  } finally {
    closeSync(fd);
  }
}

/** A bitmap as dense bytes, whichever form it has. */
export function denseBits(bm: Uint8Array | PfnBitmap): Uint8Array {
  return bm instanceof PfnBitmap ? bm.toBytes() : bm;
}

/** First pfn where two bitmaps differ below maxPfn, or -1. */
export function firstDifference(pa: Uint8Array | PfnBitmap, pb: Uint8Array | PfnBitmap, maxPfn: number): number {
  const a = denseBits(pa);
  const b = denseBits(pb);
  for (let p = 0; p < maxPfn; p++) {
    const x = (a[p >> 3] ?? 0) & (1 << (p & 7));
    const y = (b[p >> 3] ?? 0) & (1 << (p & 7));
    if (!!x !== !!y) return p;
  }
  return -1;
}

export function popcount(pbm: Uint8Array | PfnBitmap, maxPfn: number): number {
  const bm = denseBits(pbm);
  let n = 0;
  for (let p = 0; p < maxPfn; p++) if (bm[p >> 3] & (1 << (p & 7))) n++;
  return n;
}

export const REAL_PROFILES = (process.env.GUESTCORE_PROFILES ?? "q35-256m,q35-512m").split(",");
export const LEVELS = [1, 2, 4, 8, 16, 31];
