// Handing a crashed guest's memory back to the host (Vicover): every
// releaser takes pfn runs and returns what it freed. Runs that are not
// released stay readable, so a rerun can still dump them.
import type { PfnRun } from "../core/bitmap.js";
import { PfnBitmap } from "../core/pfn-bitmap.js";

export interface MemoryReleaser {
  /** "file" (hole punch in a memory-backend file), "xen" (decrease_reservation)… */
  readonly kind: string;
  /**
   * Give these pfn runs back to the host. Callers pass runs in any order;
   * a releaser coalesces adjacent ones and may round inward to its
   * granularity (a hugetlbfs file frees whole huge pages only). Returns
   * the bytes actually released by this call.
   */
  release(runs: readonly PfnRun[]): number;
  /** Bytes of host memory the crashed guest still holds, when the releaser can tell. */
  held(): number | undefined;
  close(): void;
}

/** Sorted, merged copy of `runs` (adjacent and overlapping runs joined). */
export function coalesce(runs: readonly PfnRun[]): PfnRun[] {
  const sorted = runs.filter((r) => r.count > 0).sort((a, b) => a.pfn - b.pfn);
  const out: PfnRun[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.pfn <= last.pfn + last.count) {
      last.count = Math.max(last.count, r.pfn + r.count - last.pfn);
    } else {
      out.push({ pfn: r.pfn, count: r.count });
    }
  }
  return out;
}

/**
 * Which pages are released already, one bit per page: a page goes back
 * once (Xen refuses a second decrease_reservation of it), and at the end
 * the rest of the guest goes in one call.
 */
export class ReleaseLedger {
  private readonly done: PfnBitmap;
  releasedPages = 0;

  constructor(private readonly releaser: MemoryReleaser, readonly maxPfn: number) {
    this.done = new PfnBitmap(maxPfn);
  }

  /** Release the pages of `runs` not released before; returns bytes released. */
  release(runs: readonly PfnRun[]): number {
    const fresh: PfnRun[] = [];
    for (const r of coalesce(runs)) {
      const end = Math.min(r.pfn + r.count, this.maxPfn);
      for (const p of this.done.pieces(r.pfn, end)) if (!p.set) fresh.push({ pfn: p.pfn, count: p.count });
    }
    if (fresh.length === 0) return 0;
    const bytes = this.releaser.release(fresh);
    for (const f of fresh) {
      this.done.setRange(f.pfn, f.pfn + f.count);
      this.releasedPages += f.count;
    }
    return bytes;
  }

  /**
   * Never release these pages (bit per pfn): someone else owns them now,
   * such as the warm cache's preserved copies, which go back to the host
   * when they are served or expire.
   */
  withhold(bitmap: Uint8Array): number {
    const fresh: PfnRun[] = [];
    for (const r of PfnBitmap.fromBytes(bitmap, Math.min(bitmap.length * 8, this.maxPfn)).runs()) {
      for (const p of this.done.pieces(r.pfn, r.pfn + r.count)) if (!p.set) fresh.push(p);
    }
    let n = 0;
    for (const f of fresh) {
      this.done.setRange(f.pfn, f.pfn + f.count);
      n += f.count;
    }
    return n;
  }

  /** Release every page of these [start, end) pfn ranges not released yet. */
  releaseRest(ranges: readonly [number, number][]): number {
    return this.release(ranges.map(([a, b]) => ({ pfn: a, count: b - a })));
  }
}
