// Sources whose segments are stretches of one local file (raw images,
// ELF vmcores). Reads go straight into the caller's buffer, which may be
// Wasm memory, so page data is copied once.
import { closeSync, openSync, fstatSync } from "node:fs";
import { GuestcoreError, hex } from "../core/errors.js";
import { preadExact } from "../core/file.js";
import type { ElfNote } from "../format/elf64.js";
import { findSegment, type MemorySource, type PhysSegment, type ReadRequest } from "./source.js";

export interface FileSegment extends PhysSegment {
  fileOffset: number;
}

/**
 * An open input: its logical size, and `held`, the bytes it really holds.
 * A sparse file's st_size vouches for nothing: a 4 KiB file can claim
 * 1 TiB. Its allocated blocks (st_blocks) are what is there; parsers bound
 * what they allocate and scan by them (block devices report no blocks:
 * for them it is the size).
 */
export function openReadOnly(path: string): { fd: number; size: number; held: number } {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new GuestcoreError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  const st = fstatSync(fd);
  if (!st.isFile() && !st.isBlockDevice()) {
    closeSync(fd);
    throw new GuestcoreError(`${path} is not a regular file`);
  }
  return { fd, size: st.size, held: st.isFile() ? Math.min(st.size, st.blocks * 512) : st.size };
}

export function checkSegments(segs: FileSegment[], fileSize: number, what: string): FileSegment[] {
  const sorted = [...segs].filter((s) => s.end > s.start).sort((a, b) => a.start - b.start);
  for (let i = 0; i < sorted.length; i++) {
    const s = sorted[i];
    if (s.fileOffset + (s.end - s.start) > fileSize) {
      throw new GuestcoreError(`${what}: memory at ${hex(s.start)}-${hex(s.end)} needs file bytes up to ${s.fileOffset + s.end - s.start}, the file has ${fileSize} (truncated?)`);
    }
    if (i > 0 && s.start < sorted[i - 1].end) {
      throw new GuestcoreError(`${what}: physical ranges overlap at ${hex(s.start)}`);
    }
  }
  return sorted;
}

export class FileBackedSource implements MemorySource {
  constructor(
    readonly format: string,
    readonly path: string,
    private readonly fd: number,
    readonly segments: readonly FileSegment[],
    readonly notes: readonly ElfNote[],
    readonly zeroFill: readonly PhysSegment[] = [],
  ) {}

  readBatch(reqs: readonly ReadRequest[]): void {
    const ext: number[] = [];
    for (const r of reqs) {
      ext.length = 0;
      this.fileExtents(r.paddr, r.dst.length, ext);
      let done = 0;
      for (let i = 0; i < ext.length; i += 3) {
        const n = ext[i + 2];
        if (ext[i + 1] < 0) r.dst.fill(0, done, done + n);
        else preadExact(this.fd, r.dst, done, n, ext[i + 1], this.path);
        done += n;
      }
    }
  }

  fileExtents(paddr: number, len: number, out: number[]): void {
    let done = 0;
    while (done < len) {
      const at = paddr + done;
      const i = findSegment(this.segments, at);
      if (i < 0) {
        const z = findSegment(this.zeroFill, at);
        if (z < 0) throw new GuestcoreError(`physical address ${hex(at)} is not in the ${this.format} image`);
        const n = Math.min(len - done, this.zeroFill[z].end - at, this.nextDataStart(at) - at);
        out.push(this.fd, -1, n);
        done += n;
        continue;
      }
      const s = this.segments[i];
      const n = Math.min(len - done, s.end - at);
      const pos = s.fileOffset + (at - s.start);
      // Adjacent stretches of the file merge into one read.
      const last = out.length - 3;
      if (last >= 0 && out[last] === this.fd && out[last + 1] >= 0 && out[last + 1] + out[last + 2] === pos) out[last + 2] += n;
      else out.push(this.fd, pos, n);
      done += n;
    }
  }

  private nextDataStart(at: number): number {
    const next = this.segments.find((s) => s.start > at);
    return next ? next.start : Infinity;
  }

  close(): void {
    closeSync(this.fd);
  }
}
