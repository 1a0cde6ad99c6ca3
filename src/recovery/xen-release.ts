// Handing a dumped Xen domain's memory back to the hypervisor: from dom0,
// XENMEM_decrease_reservation on the domain's behalf (what a balloon
// driver does from inside a guest), through libxenctrl's
// xc_domain_decrease_reservation_exact.
//
// Extents: each is a base gpfn and an order; Xen removes the 2^order pages
// from the base one by one (xen/common/memory.c decrease_reservation,
// guest_remove_page per page, after p2m_pod_decrease_reservation for PoD
// entries). A 2 MiB-aligned whole 512-page stretch goes as one order-9
// extent: 8 bytes in the hypercall buffer instead of 4 KiB. Xen accepts
// orders up to max_order() of the caller; for dom0, the control domain,
// CONFIG_CTLDOM_MAX_ORDER defaults to the page allocator's highest order,
// well above 9. Only memop-max-order= can lower it, and then Xen refuses
// the whole call (decrease_reservation returns before its loop), so an
// order-9 batch that fails is tried again page by page and order 9 is
// given up for this domain.
//
// Retrying cannot free the wrong page: an HVM domain's gfns are its own,
// and a gfn already removed has no p2m entry, so removing it again fails
// instead. PV domains are refused (their extents would be machine frames),
// and so is a running domain (its memory would vanish under it) and dom0.
//
// Failures: the _exact variant returns 0 or -1. When Xen frees fewer
// extents than asked (a hole, a page it cannot remove, an unknown domain,
// too high an order: all "0 done" to libxenctrl) it sets EINVAL, logs
// "Failed deallocation…" at debug level, and how many it did free is lost.
// So the error names what earlier calls released, stats.bytes keeps it,
// and held() (tot_pages) is the truth afterwards.
//
// tot_pages falls when a page's last reference goes: a page dom0 still
// maps (QEMU's mapcache, an open reader) leaves the p2m at once but goes
// back to Xen only when unmapped, so held() can lag release().
import { GuestcoreError, hex } from "../core/errors.js";
import { errnoName, lastErrno, lastXenError, takeXenMessages, type XenctrlApi, type XenLibPaths } from "../sources/xen-ffi.js";
import { checkXenDomid, openXenctrl, pfnRangesMinus, queryXenDomain, xenDomainInfo } from "../sources/xen-live.js";
import type { PfnRun } from "../core/bitmap.js";
import { coalesce, type MemoryReleaser } from "./release.js";

const PAGE = 4096;
const SUPER_ORDER = 9;
const SUPER_PAGES = 1 << SUPER_ORDER;
/** As many as Xen's own tools map per batch: an 8 KiB hypercall buffer, 4 MiB (order 0) or 2 GiB (order 9) per call. */
export const DEFAULT_BATCH_EXTENTS = 1024;
/** libxenctrl returns the extents done as an int, and Xen caps nr_extents at UINT_MAX >> 6; stay far below both. */
const MAX_BATCH_EXTENTS = 1 << 16;

export interface XenReleaserOptions extends XenLibPaths {
  /** Extents per xc_domain_decrease_reservation_exact call (default 1024). */
  batchExtents?: number;
  /**
   * Sorted, disjoint gpfn ranges [start, end) an earlier run released
   * already (XenDomainSource.released, on a rerun): Xen fails a whole call
   * that names a gfn gone from the p2m, so release() leaves them out.
   */
  releasedBefore?: readonly [number, number][];
}

export interface XenReleaserStats {
  /** xc_domain_decrease_reservation_exact calls, failed ones included. */
  calls: number;
  /** Bytes in the calls that succeeded (what release() returned, summed). */
  bytes: number;
}

/** Extents of one order waiting for their call. */
interface Pending {
  order: number;
  gpfns: BigUint64Array;
  n: number;
}

export class XenReleaser implements MemoryReleaser {
  readonly kind = "xen";
  readonly stats: XenReleaserStats = { calls: 0, bytes: 0 };
  readonly warnings: string[] = [];
  /** Highest gpfn when opened: no run may go past it. */
  readonly maxGpfn: number;
  readonly batchExtents: number;
  private readonly xc: XenctrlApi;
  private readonly xch: unknown;
  private readonly small: Pending;
  private readonly large: Pending;
  private useLarge = true;
  /** Why order 9 was given up, for the message of a later failure. */
  private largeRefused: string | undefined;
  private readonly releasedBefore: readonly [number, number][];
  private closed = false;

  constructor(readonly domid: number, opts: XenReleaserOptions = {}) {
    checkXenDomid(domid);
    if (domid === 0) throw new GuestcoreError("Xen domain 0 is the control domain, not a crashed guest: its memory is not released");
    const batch = opts.batchExtents ?? DEFAULT_BATCH_EXTENTS;
    if (!Number.isInteger(batch) || batch < 1 || batch > MAX_BATCH_EXTENTS) {
      throw new GuestcoreError(`Xen release batch of ${batch} extents: expected 1 to ${MAX_BATCH_EXTENTS}`);
    }
    this.batchExtents = batch;
    this.releasedBefore = opts.releasedBefore ?? [];
    for (let i = 0; i < this.releasedBefore.length; i++) {
      const [a, b] = this.releasedBefore[i];
      if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < 0 || b <= a || (i > 0 && a < this.releasedBefore[i - 1][1])) {
        throw new GuestcoreError(`Xen domain ${domid}: released gpfn ranges must be sorted and disjoint, got [${a}, ${b}) at ${i}`);
      }
    }
    takeXenMessages();
    const { xc, xch } = openXenctrl(opts);
    try {
      const info = queryXenDomain(xc, xch, domid);
      if (info.dying) throw new GuestcoreError(`Xen domain ${domid} is dying: Xen is freeing its memory already`);
      if (!info.hvm) throw new GuestcoreError(`Xen domain ${domid} is a PV guest: its memory is addressed by machine frames, and guestcore releases HVM and PVH domains only`);
      if (!info.paused && !info.shutdown) {
        throw new GuestcoreError(`Xen domain ${domid} is ${info.state}: releasing its memory would pull pages from under it (xl pause ${domid} first)`);
      }
      this.maxGpfn = info.maxGpfn;
    } catch (e) {
      xc.close(xch);
      throw e;
    }
    this.xc = xc;
    this.xch = xch;
    this.small = { order: 0, gpfns: new BigUint64Array(batch), n: 0 };
    this.large = { order: SUPER_ORDER, gpfns: new BigUint64Array(batch), n: 0 };
  }

  release(runs: readonly PfnRun[]): number {
    if (this.closed) throw new GuestcoreError(`Xen domain ${this.domid}: releaser is closed`);
    // Every run is checked before the first page goes: a bad list releases nothing.
    for (const r of runs) {
      if (!Number.isSafeInteger(r.pfn) || !Number.isSafeInteger(r.count) || r.pfn < 0 || r.count < 0 || r.pfn + r.count > this.maxGpfn + 1) {
        throw new GuestcoreError(`Xen domain ${this.domid}: pfn run ${r.pfn}+${r.count} is not within its pfns [0, ${hex(this.maxGpfn + 1)})`);
      }
    }
    let freed = 0;
    // Coalesced runs are disjoint and below maxGpfn + 1, which bounds the walk.
    const fresh = pfnRangesMinus(coalesce(runs).map((r) => [r.pfn, r.pfn + r.count] as const), this.releasedBefore);
    for (const [start, end] of fresh) {
      let pfn = start;
      while (pfn < end) {
        if (this.useLarge && pfn % SUPER_PAGES === 0 && end - pfn >= SUPER_PAGES) {
          freed += this.add(this.large, pfn);
          pfn += SUPER_PAGES;
        } else {
          // Up to the next point where an order-9 extent could start, or the run's end.
          const stop = this.useLarge ? Math.min(end, Math.ceil((pfn + 1) / SUPER_PAGES) * SUPER_PAGES) : end;
          for (; pfn < stop; pfn++) freed += this.add(this.small, pfn);
        }
      }
    }
    freed += this.flush(this.large);
    freed += this.flush(this.small);
    return freed;
  }

  /** Queue one extent; a full batch goes at once. Returns the bytes that call released. */
  private add(p: Pending, gpfn: number): number {
    p.gpfns[p.n++] = BigInt(gpfn);
    return p.n === this.batchExtents ? this.flush(p) : 0;
  }

  private flush(p: Pending): number {
    if (p.n === 0) return 0;
    const n = p.n;
    p.n = 0;
    const pages = n << p.order;
    takeXenMessages();
    this.stats.calls++;
    if (this.xc.decreaseReservationExact(this.xch, this.domid, n, p.order, p.gpfns) === 0) {
      this.stats.bytes += pages * PAGE;
      return pages * PAGE;
    }
    const why = `${errnoName(lastErrno())}${(() => { const l = lastXenError(takeXenMessages()); return l ? `: ${l}` : ""; })()}`;
    const what = `${n} ${p.order ? `order-${p.order} extents (${pages} pages)` : "pages"} from gpfn ${hex(p.gpfns[0])}`;
    if (p.order === SUPER_ORDER && this.useLarge) {
      // Perhaps memop-max-order= is below 9 for dom0: try the same pages one by one.
      this.useLarge = false;
      this.largeRefused = `${what} refused (${why})`;
      this.warnings.push(`Xen domain ${this.domid}: ${this.largeRefused}; releasing page by page`);
      const bases = Array.from(p.gpfns.subarray(0, n), Number);
      let freed = 0;
      for (const base of bases) for (let i = 0; i < SUPER_PAGES; i++) freed += this.add(this.small, base + i);
      return freed + this.flush(this.small);
    }
    const before = this.stats.bytes / PAGE;
    throw new GuestcoreError(`Xen domain ${this.domid}: releasing ${what} failed (${why})` +
      `${this.largeRefused ? `, after ${this.largeRefused}` : ""}; ${before} pages released before it, and Xen does not say how many of these`);
  }

  /** The domain's tot_pages in bytes; 0 once it is gone. */
  held(): number | undefined {
    if (this.closed) return undefined;
    const d = xenDomainInfo(this.xc, this.xch, this.domid);
    return d ? d.totPages * PAGE : 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.xc.close(this.xch);
  }
}

