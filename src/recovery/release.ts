// Handing a crashed guest's memory back to the host (Vicover): every
// releaser takes pfn runs and returns what it freed. Runs that are not
// released stay readable, so a rerun can still dump them.
import type { PfnRun } from "../writers/runs.js";

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
