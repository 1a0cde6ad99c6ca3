// Raw RAM images: `virsh dump --memory-only --format=raw`-style files and
// QEMU memory-backend files. A file is identity-mapped unless a layout
// says where each stretch of it sits in physical memory.
import { GuestcoreError } from "../core/errors.js";
import { checkSegments, FileBackedSource, openReadOnly, type FileSegment } from "./file-backed.js";

/**
 * A layout lists `PADDR:SIZE@FILEOFFSET` stretches, comma-separated, with
 * sizes taking K/M/G/T suffixes: `0:2G@0,0x100000000:2G@2G` is a 4 GiB q35
 * memory-backend file, whose RAM above 2 GiB sits at 4 GiB.
 */
export function parseLayout(spec: string): FileSegment[] {
  const parts = spec.split(",").map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0 || parts.length > 4096) throw new GuestcoreError(`--layout: expected PADDR:SIZE@FILEOFFSET[,...], got "${spec}"`);
  return parts.map((p) => {
    const m = /^([^:@]+):([^:@]+)@([^:@]+)$/.exec(p);
    if (!m) throw new GuestcoreError(`--layout: "${p}" is not PADDR:SIZE@FILEOFFSET`);
    const start = parseSize(m[1]);
    const size = parseSize(m[2]);
    return { start, end: start + size, vaddr: 0n, fileOffset: parseSize(m[3]) };
  });
}

export function parseSize(s: string): number {
  const m = /^(0x[0-9a-f]+|\d+)([kmgt]?)$/i.exec(s.trim());
  if (!m) throw new GuestcoreError(`"${s}" is not a size or address`);
  const shift = { "": 0, k: 10, m: 20, g: 30, t: 40 }[m[2].toLowerCase() as "" | "k" | "m" | "g" | "t"];
  const v = Number(BigInt(m[1]) << BigInt(shift));
  if (!Number.isSafeInteger(v)) throw new GuestcoreError(`"${s}" is too large`);
  return v;
}

export function openRaw(path: string, layout?: string): FileBackedSource {
  const { fd, size } = openReadOnly(path);
  try {
    if (size === 0) throw new GuestcoreError(`${path} is empty`);
    if (!layout && size % 4096 !== 0) {
      throw new GuestcoreError(`${path} is neither a vmcore nor a RAM image (its size, ${size} bytes, is not a whole number of pages)`);
    }
    const segs = layout ? parseLayout(layout) : [{ start: 0, end: size, vaddr: 0n, fileOffset: 0 }];
    const src = new FileBackedSource("raw", path, fd, checkSegments(segs, size, path), []);
    return Object.assign(src, { layout: layout ?? undefined });
  } catch (e) {
    (new FileBackedSource("raw", path, fd, [], [])).close();
    throw e;
  }
}
