// Reading a crashed guest's memory after a recover died half-way: pages
// it had released (punched: they read as zeros now) are in the partial
// dumps it left, which were durable before each release. A page a
// partial holds is read from it; every other page is still in the memory
// file. Any partial's copy is right (the guest was stopped the whole
// time), so the newest that has the page is used.
import { existsSync, unlinkSync } from "node:fs";
import { openKdump, type KdumpSource } from "../sources/kdump.js";
import type { Codecs } from "../codecs/codec.js";
import { findSegment, type MemorySource, type PhysSegment, type ReadRequest } from "../sources/source.js";
import type { ElfNote } from "../format/elf64.js";
import { GuestcoreError } from "../core/errors.js";

const PAGE = 4096;

export class LayeredSource implements MemorySource {
  readonly format: string;
  constructor(readonly base: MemorySource, private readonly layers: readonly KdumpSource[]) {
    this.format = base.format;
  }
  get path(): string {
    return this.base.path;
  }
  get segments(): readonly PhysSegment[] {
    return this.base.segments;
  }
  get notes(): readonly ElfNote[] {
    return this.base.notes;
  }
  /** Pages the partials hold. */
  get heldPages(): number {
    return this.layers.reduce((n, l) => n + l.segments.reduce((m, s) => m + (s.end - s.start) / PAGE, 0), 0);
  }

  private layerOf(paddr: number): KdumpSource | undefined {
    for (let i = this.layers.length - 1; i >= 0; i--) if (findSegment(this.layers[i].segments, paddr) >= 0) return this.layers[i];
    return undefined;
  }

  readBatch(reqs: readonly ReadRequest[]): void {
    const fromBase: ReadRequest[] = [];
    for (const { paddr, dst } of reqs) {
      let done = 0;
      while (done < dst.length) {
        const at = paddr + done;
        const n = Math.min(dst.length - done, PAGE - (at % PAGE));
        const layer = this.layerOf(at - (at % PAGE));
        const piece = dst.subarray(done, done + n);
        if (layer) layer.readBatch([{ paddr: at, dst: piece }]);
        else {
          const last = fromBase[fromBase.length - 1];
          // Consecutive base pages stay one request.
          if (last && last.paddr + last.dst.length === at && last.dst.buffer === piece.buffer && last.dst.byteOffset + last.dst.length === piece.byteOffset) {
            fromBase[fromBase.length - 1] = { paddr: last.paddr, dst: new Uint8Array(piece.buffer, last.dst.byteOffset, last.dst.length + n) };
          } else fromBase.push({ paddr: at, dst: piece });
        }
        done += n;
      }
    }
    if (fromBase.length) this.base.readBatch(fromBase);
  }

  close(): void {
    for (const l of this.layers) l.close();
    this.base.close();
  }
}

/**
 * Open the partial dumps a journal names. A partial that is missing or
 * too short to have headers held no released page: only pages with a
 * written descriptor were ever released, and those come after the
 * headers. Returns the readable ones, oldest first.
 */
export function openPartials(paths: readonly string[], warn: (m: string) => void, codecs?: Codecs): KdumpSource[] {
  const out: KdumpSource[] = [];
  for (const p of paths) {
    if (!existsSync(p)) continue;
    try {
      out.push(openKdump(p, { partial: true, codecs }));
    } catch (e) {
      if (!(e instanceof GuestcoreError)) throw e;
      warn(`ignoring ${p}: ${e.message}`);
    }
  }
  return out;
}

export function removeFiles(paths: readonly string[]): void {
  for (const p of paths) {
    try {
      unlinkSync(p);
    } catch {
      // gone already
    }
  }
}
