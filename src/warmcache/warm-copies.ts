// The preserved copies: pages of a crashed guest's memory file that equal
// consistent disk blocks (the tracker's cache-mapping table holds block ->
// copy; here copy = the page's pfn). A READ of such a block is served from
// the page after the page is hashed again and found equal to the block's
// hash: a page that changed since the match (a release, a stray write) is
// never served. A copy is let go of once served, or when the block is
// written; the page goes back to the host when no block holds it any more,
// and all of them when the budget's time is up.
import { closeSync, openSync, readSync } from "node:fs";
import type { WasmCore } from "../core/wasm.js";
import type { FileSegment } from "../sources/file-backed.js";
import { FileReleaser } from "../recovery/hole-punch.js";
import type { WarmSource } from "./block-backend.js";
import { BLOCK_BYTES, type BlockTracker } from "./tracker.js";

export interface WarmCounters {
  /** Blocks served from copies. */
  servedBlocks: number;
  /** Copies found changed when served (never served). */
  rejectedBlocks: number;
  /** With verification: served blocks that differed from the disk (must stay 0). */
  verifyMismatches: number;
  verifiedBlocks: number;
  releasedPages: number;
  /** Copies dropped because the block was written or evicted. */
  droppedCopies: number;
}

export interface WarmCopiesOptions {
  /** Read every served block from this image too and compare (tests, benchmarks). */
  verifyImage?: string;
  onMismatch?: (block: number) => void;
}

export class WarmCopies implements WarmSource {
  readonly counters: WarmCounters = { servedBlocks: 0, rejectedBlocks: 0, verifyMismatches: 0, verifiedBlocks: 0, releasedPages: 0, droppedCopies: 0 };
  private readonly fd: number;
  private readonly releaser: FileReleaser;
  private readonly verifyFd: number | undefined;
  private pendingRelease: number[] = [];
  private releaseQueued = false;
  private closed = false;

  /**
   * `refs`: how many blocks hold each kept page (from the matcher);
   * `memPath` is opened here and kept open, so a memfd outlives its QEMU.
   */
  constructor(
    private readonly core: WasmCore,
    private readonly tracker: BlockTracker,
    memPath: string,
    private readonly segments: readonly FileSegment[],
    private readonly refs: Map<number, number>,
    private readonly opts: WarmCopiesOptions = {},
  ) {
    this.fd = openSync(memPath, "r+");
    // Through our own descriptor: /proc/PID/fd/N of a memfd vanishes with its QEMU.
    this.releaser = new FileReleaser(`/proc/self/fd/${this.fd}`, segments);
    this.verifyFd = opts.verifyImage ? openSync(opts.verifyImage, "r") : undefined;
  }

  get keptPages(): number {
    return this.refs.size;
  }

  private fileOffset(pfn: number): number | undefined {
    const pa = pfn * BLOCK_BYTES;
    for (const s of this.segments) if (pa >= s.start && pa + BLOCK_BYTES <= s.end) return s.fileOffset + (pa - s.start);
    return undefined;
  }

  serve(first: number, n: number, dst: number): Uint8Array {
    const served = new Uint8Array(n);
    if (this.closed || this.refs.size === 0) return served;
    for (let i = 0; i < n; i++) {
      const block = first + i;
      const t = this.tracker.lookup(block);
      if (!t || t.copy === undefined) continue;
      const pfn = t.copy;
      const ptr = dst + i * BLOCK_BYTES;
      const off = this.fileOffset(pfn);
      let ok = false;
      if (off !== undefined && readSync(this.fd, this.core.buffer(ptr, BLOCK_BYTES), 0, BLOCK_BYTES, off) === BLOCK_BYTES) {
        const h = this.tracker.hash(ptr, BLOCK_BYTES);
        ok = h.h0 === t.h0 && h.h1 === t.h1;
      }
      // Served or not, the copy leaves the block: the replacement now caches
      // the data itself, and a changed page is never tried again.
      if (this.tracker.detachCopy(block, pfn) !== undefined) this.unref(pfn);
      if (!ok) {
        this.counters.rejectedBlocks++;
        continue;
      }
      if (this.verifyFd !== undefined) this.verify(block, ptr);
      served[i] = 1;
      this.counters.servedBlocks++;
    }
    return served;
  }

  private verify(block: number, ptr: number): void {
    const disk = Buffer.allocUnsafe(BLOCK_BYTES);
    const n = readSync(this.verifyFd!, disk, 0, BLOCK_BYTES, block * BLOCK_BYTES);
    this.counters.verifiedBlocks++;
    if (n !== BLOCK_BYTES || !disk.equals(this.core.buffer(ptr, BLOCK_BYTES))) {
      this.counters.verifyMismatches++;
      this.opts.onMismatch?.(block);
    }
  }

  /** The tracker let go of a copy (a write to its block, an eviction). */
  dropped(pfn: number): void {
    this.counters.droppedCopies++;
    this.unref(pfn);
  }

  private unref(pfn: number): void {
    const r = this.refs.get(pfn);
    if (r === undefined) return;
    if (r > 1) {
      this.refs.set(pfn, r - 1);
      return;
    }
    this.refs.delete(pfn);
    this.pendingRelease.push(pfn);
    // Coalesced: one fallocate per run of pages freed in the same turn.
    if (!this.releaseQueued) {
      this.releaseQueued = true;
      setImmediate(() => this.flushReleases());
    }
  }

  private flushReleases(): void {
    this.releaseQueued = false;
    if (this.closed) return;
    const pfns = this.pendingRelease.sort((a, b) => a - b);
    this.pendingRelease = [];
    this.releaser.release(pfns.map((pfn) => ({ pfn, count: 1 })));
    this.counters.releasedPages += pfns.length;
  }

  /** Every remaining copy goes back to the host (TTL, budget, shutdown). */
  releaseAll(): number {
    if (this.closed) return 0;
    this.flushReleases();
    const pfns = [...this.refs.keys()].sort((a, b) => a - b);
    // Blocks may still name these pages; serve() refuses once closed.
    this.closed = true;
    this.refs.clear();
    this.releaser.release(pfns.map((pfn) => ({ pfn, count: 1 })));
    this.counters.releasedPages += pfns.length;
    this.releaser.close();
    closeSync(this.fd);
    if (this.verifyFd !== undefined) closeSync(this.verifyFd);
    return pfns.length;
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
