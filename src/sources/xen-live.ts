// A live (or paused, or crashed-and-preserved) Xen domain's memory, read
// from dom0 through libxenforeignmemory, the way `xl dump-core` reads it,
// but without writing the whole guest to disk first.
//
//   const src = openXenDomain(7);                 // HVM or PVH domain 7
//   const img = GuestImage.open("xen:7", { source: src });
//
// Pages are addressed by guest pfn (HVM and PVH domains are
// auto-translated: the foreign map takes gfns). PV domains are refused:
// their foreign map takes machine frames, and their page tables hold
// machine frames too.
//
// Present memory: libxenctrl gives the highest gpfn in use
// (xc_domain_maximum_gpfn); every pfn up to it, or up to what the
// domain's max_pages and the MMIO hole can reach when the guest planted a
// higher one, is probed once, in batches
// (one xenforeignmemory_map of up to batchPages pages, with the per-page
// error array: a page whose error is non-zero is a hole, as xc_core skips
// pages it cannot map), and the present pfns become the segments. Reads
// map the pages they need in batches too, copy out, and unmap: one map
// call per batch, never one per page. A page that was present at open
// but fails to map later (ballooned or paged out) fails the read with
// its pfn and errno.
//
// The domain's state (paused, shutdown and why, dying, running) comes
// from xc_domain_getinfolist. A dying domain is refused; a running one is
// read, with a warning that its memory changes under the reader.
import { GuestcoreError, hex } from "../core/errors.js";
import {
  errnoName, foreignMemoryApi, lastErrno, lastXenError, nativeBytes, PRIVCMD, PROT_READ, quietLogger, takeXenMessages,
  xenctrlApi, type ForeignMemoryApi, type XenctrlApi, type XenLibPaths,
} from "./xen-ffi.js";
import { findSegment, type MemorySource, type PhysSegment, type ReadRequest } from "./source.js";

const PAGE = 4096;
/** Xen's own tools map at most 1024 pages (4 MiB) per batch. */
export const DEFAULT_BATCH_PAGES = 1024;
const MAX_BATCH_PAGES = 1 << 16;
/** DOMID_FIRST_RESERVED: ids from 0x7ff0 up are special (DOMID_SELF, DOMID_IO…). */
const DOMID_FIRST_RESERVED = 0x7ff0;
/** Highest gpfn accepted: 2^40 pages = 4 PiB (exact as a double). */
const MAX_GPFN = 2 ** 40;
/**
 * The span of gpfns a domain's RAM can cover beyond its page count: the
 * 32-bit MMIO hole below 4 GiB that hvmloader (or libxl for PVH) leaves
 * and relocates RAM above, at most 4 GiB of pfns; Xen's special pages
 * (ioreq, xenstore, console) sit just below 4 GiB as well.
 */
const HOLE_PFNS = (4 * 2 ** 30) / PAGE;
/** struct xen_domctl_getdomaininfo is 112 bytes in Xen 4.17; room for later growth. */
const DOMAININFO_BYTES = 1024;

// XEN_DOMINF_* (public/domctl.h)
const DOMINF_DYING = 1 << 0;
const DOMINF_HVM = 1 << 1;
const DOMINF_SHUTDOWN = 1 << 2;
const DOMINF_PAUSED = 1 << 3;
const DOMINF_BLOCKED = 1 << 4;
const DOMINF_RUNNING = 1 << 5;
const DOMINF_HAP = 1 << 8;
const SHUTDOWN_REASONS = ["poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset"];

export interface XenDomainOptions extends XenLibPaths {
  /** Pages per xenforeignmemory_map call (default 1024). */
  batchPages?: number;
  /**
   * Guest pfn ranges [start, end) to treat as present instead of probing
   * every pfn up to the highest one (reads of a missing page then fail).
   */
  pfnRanges?: [number, number][];
  /**
   * The pfn ranges [start, end) that were present when an earlier reader
   * that gives pages back (recover) first opened the domain. Xen keeps no
   * trace of a released gfn: it is a hole like one never populated, so
   * only that reader's record tells the two apart. The domain is probed
   * as usual; pages of these ranges that no longer map were released and
   * stay present, reading as zeros, as a punched memory file reads (their
   * data, when a dump needs it, is in that reader's partial dump). A page
   * present now outside these ranges is refused: not the same domain.
   */
  presentBefore?: [number, number][];
  onProgress?: (what: string, done: number, total: number) => void;
}

export interface XenDomainInfo {
  domid: number;
  /** XEN_DOMINF_* flags as Xen reported them. */
  flags: number;
  hvm: boolean;
  hap: boolean;
  dying: boolean;
  paused: boolean;
  shutdown: boolean;
  /** poweroff, reboot, suspend, crash, watchdog, soft_reset (when shut down). */
  shutdownReason?: string;
  running: boolean;
  blocked: boolean;
  totPages: number;
  maxPages: number;
  /** Highest guest pfn in use (xc_domain_maximum_gpfn). */
  maxGpfn: number;
  onlineVcpus: number;
  /** One word for humans: "shutdown (crash)", "paused", "running", "blocked". */
  state: string;
}

export interface XenMapStats {
  /** xenforeignmemory_map calls while probing which pfns are present. */
  probeMapCalls: number;
  /** xenforeignmemory_map calls for reads. */
  readMapCalls: number;
  /** Pages requested in all map calls. */
  pagesMapped: number;
  unmapCalls: number;
}

interface Fragment {
  pfn: number;
  pageOff: number;
  len: number;
  dst: Uint8Array;
  dstOff: number;
}

export class XenDomainSource implements MemorySource {
  readonly format = "xen-domain";
  readonly notes = [];
  readonly zeroFill: readonly PhysSegment[] = [];
  readonly stats: XenMapStats = { probeMapCalls: 0, readMapCalls: 0, pagesMapped: 0, unmapCalls: 0 };
  readonly warnings: string[] = [];
  segments: readonly PhysSegment[] = [];
  /** Present pages no longer in the domain (released: see XenDomainOptions.presentBefore); they read as zeros. */
  released: readonly PhysSegment[] = [];
  private closed = false;
  private readonly arr: BigUint64Array;
  private readonly errs: Int32Array;

  constructor(
    readonly domid: number,
    readonly info: XenDomainInfo,
    private readonly fm: ForeignMemoryApi,
    private readonly fmem: unknown,
    private readonly xc: XenctrlApi,
    private readonly xch: unknown,
    readonly batchPages: number,
  ) {
    this.arr = new BigUint64Array(batchPages);
    this.errs = new Int32Array(batchPages);
  }

  get path(): string {
    return `xen:${this.domid}`;
  }

  /** Present pages (in the segments). */
  get presentPages(): number {
    return this.segments.reduce((n, s) => n + (s.end - s.start) / PAGE, 0);
  }

  /**
   * Take `before`'s ranges as the present ones, the pages of them the
   * probe no longer found as released; any page found outside them is a
   * different domain.
   */
  adoptPresentBefore(before: [number, number][]): void {
    const pfns = (segs: readonly PhysSegment[]) => segs.map((s) => [s.start / PAGE, s.end / PAGE] as [number, number]);
    const seg = ([a, b]: [number, number]): PhysSegment => ({ start: a * PAGE, end: b * PAGE, vaddr: 0n });
    const now = pfns(this.segments);
    const extra = pfnRangesMinus(now, before);
    if (extra.length) {
      throw new GuestcoreError(`Xen domain ${this.domid} has page ${hex(extra[0][0])}, which was not present when its recovery began: not the same domain`);
    }
    // Adjacent ranges joined, as the probe joins them.
    const segs: PhysSegment[] = [];
    for (const r of before) {
      const last = segs[segs.length - 1];
      if (last && last.end === r[0] * PAGE) last.end = r[1] * PAGE;
      else segs.push(seg(r));
    }
    this.segments = segs;
    this.released = pfnRangesMinus(before, now).map(seg);
  }

  /**
   * Map pfns[0..n) (already in this.arr), call use(bytes, errs) and unmap.
   * A NULL return is a complete failure (the call could not even be tried).
   */
  private withMapping(n: number, probe: boolean, use: (bytes: Uint8Array, errs: Int32Array) => void): void {
    if (this.closed) throw new GuestcoreError(`Xen domain ${this.domid}: source is closed`);
    this.errs.fill(0, 0, n);
    if (probe) this.stats.probeMapCalls++;
    else this.stats.readMapCalls++;
    this.stats.pagesMapped += n;
    const addr = this.fm.map(this.fmem, this.domid, PROT_READ, n, this.arr, this.errs);
    if (!addr) {
      const e = lastErrno();
      const lib = lastXenError(takeXenMessages());
      const what = `xenforeignmemory_map of ${n} pages from pfn ${hex(this.arr[0])} failed (${errnoName(e)}${lib ? `: ${lib}` : ""})`;
      throw this.destroyed(what) ?? new GuestcoreError(`Xen domain ${this.domid}: ${what}`);
    }
    try {
      use(nativeBytes(addr, n * PAGE), this.errs);
    } finally {
      this.stats.unmapCalls++;
      if (this.fm.unmap(this.fmem, addr, n) !== 0) {
        const e = lastErrno();
        // A mapping we cannot drop is a leak, not a wrong answer: go on, but say so once.
        if (!this.warnings.some((w) => w.startsWith("xenforeignmemory_unmap"))) this.warnings.push(`xenforeignmemory_unmap failed (${errnoName(e)})`);
      }
    }
  }

  /**
   * After a map failed: the error to give if the domain is no more (Xen
   * no longer lists it, or lists it dying: xl destroy, or its shutdown
   * completing), else undefined.
   */
  private destroyed(what: string): GuestcoreError | undefined {
    let d: ReturnType<typeof xenDomainInfo>;
    try {
      d = xenDomainInfo(this.xc, this.xch, this.domid);
    } catch {
      return undefined;
    }
    if (d && !d.dying) return undefined;
    return new GuestcoreError(`Xen domain ${this.domid} was ${d ? "being destroyed (dying)" : "destroyed"} while its memory was being read (${what}): the dump cannot be completed`);
  }

  /** Probe pfns [0, end) and make the present ones the segments. */
  probe(ranges: [number, number][], onProgress?: (what: string, done: number, total: number) => void): void {
    const segs: PhysSegment[] = [];
    const total = ranges.reduce((n, [a, b]) => n + (b - a), 0);
    let done = 0;
    const add = (pfn: number) => {
      const last = segs[segs.length - 1];
      if (last && last.end === pfn * PAGE) last.end += PAGE;
      else segs.push({ start: pfn * PAGE, end: (pfn + 1) * PAGE, vaddr: 0n });
    };
    for (const [a, b] of ranges) {
      for (let first = a; first < b; first += this.batchPages) {
        const n = Math.min(this.batchPages, b - first);
        for (let i = 0; i < n; i++) this.arr[i] = BigInt(first + i);
        this.withMapping(n, true, (_bytes, errs) => {
          for (let i = 0; i < n; i++) if (errs[i] === 0) add(first + i);
        });
        done += n;
        onProgress?.("probing Xen domain memory", done, total);
      }
    }
    this.segments = segs;
  }

  readBatch(reqs: readonly ReadRequest[]): void {
    const frags: Fragment[] = [];
    for (const r of reqs) {
      let done = 0;
      while (done < r.dst.length) {
        const at = r.paddr + done;
        if (findSegment(this.segments, at) < 0) {
          throw new GuestcoreError(`physical address ${hex(at)} is not in Xen domain ${this.domid}'s memory`);
        }
        const pageOff = at % PAGE;
        const len = Math.min(r.dst.length - done, PAGE - pageOff);
        // A released page: Xen has nothing to map any more.
        if (this.released.length && findSegment(this.released, at) >= 0) r.dst.fill(0, done, done + len);
        else frags.push({ pfn: (at - pageOff) / PAGE, pageOff, len, dst: r.dst, dstOff: done });
        done += len;
      }
    }
    if (frags.length === 0) return;
    let ordered = true;
    for (let i = 1; i < frags.length && ordered; i++) if (frags[i].pfn < frags[i - 1].pfn) ordered = false;
    if (!ordered) frags.sort((x, y) => x.pfn - y.pfn);
    let f = 0;
    while (f < frags.length) {
      // The next batch: up to batchPages distinct pfns, with their fragments.
      let n = 0;
      let g = f;
      while (g < frags.length) {
        const pfn = frags[g].pfn;
        if (n === 0 || this.arr[n - 1] !== BigInt(pfn)) {
          if (n === this.batchPages) break;
          this.arr[n++] = BigInt(pfn);
        }
        g++;
      }
      const from = f;
      this.withMapping(n, false, (bytes, errs) => {
        for (let i = 0; i < n; i++) {
          if (errs[i] !== 0) {
            const what = `page ${hex(this.arr[i])} could not be mapped (${errnoName(errs[i])})`;
            throw this.destroyed(what) ?? new GuestcoreError(`Xen domain ${this.domid}: ${what}, though it was present when the domain was opened (ballooned or paged out since?)`);
          }
        }
        let slot = 0;
        for (let k = from; k < g; k++) {
          const fr = frags[k];
          while (this.arr[slot] !== BigInt(fr.pfn)) slot++;
          const off = slot * PAGE + fr.pageOff;
          fr.dst.set(bytes.subarray(off, off + fr.len), fr.dstOff);
        }
      });
      f = g;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fm.close(this.fmem);
    this.xc.close(this.xch);
  }
}

function describe(flags: number): Pick<XenDomainInfo, "dying" | "hvm" | "hap" | "shutdown" | "shutdownReason" | "paused" | "blocked" | "running" | "state"> {
  const shutdown = (flags & DOMINF_SHUTDOWN) !== 0;
  const code = (flags >>> 16) & 0xff;
  const shutdownReason = shutdown ? SHUTDOWN_REASONS[code] ?? `code ${code}` : undefined;
  const d = {
    dying: (flags & DOMINF_DYING) !== 0,
    hvm: (flags & DOMINF_HVM) !== 0,
    hap: (flags & DOMINF_HAP) !== 0,
    shutdown,
    shutdownReason,
    paused: (flags & DOMINF_PAUSED) !== 0,
    blocked: (flags & DOMINF_BLOCKED) !== 0,
    running: (flags & DOMINF_RUNNING) !== 0,
  };
  const state = d.dying ? "dying" : shutdown ? `shutdown (${shutdownReason})` : d.paused ? "paused" : d.running ? "running" : d.blocked ? "blocked" : "idle";
  return { ...d, state };
}

function openFailure(what: string, errno: number, lib: string | undefined): GuestcoreError {
  if (errno === 2 /* ENOENT */) return new GuestcoreError(`cannot open ${what}: no ${PRIVCMD} — not running in a Xen dom0?`);
  if (errno === 13 /* EACCES */ || errno === 1 /* EPERM */) {
    return new GuestcoreError(`cannot open ${what}: permission denied on ${PRIVCMD} (${errnoName(errno)}): run as root in dom0`);
  }
  return new GuestcoreError(`cannot open ${what}: ${lib ?? "the library returned NULL"} (${errnoName(errno)})`);
}

/** Refuse ids that name no domain (negative, or DOMID_SELF and the other reserved ones). */
export function checkXenDomid(domid: number): void {
  if (!Number.isInteger(domid) || domid < 0 || domid >= DOMID_FIRST_RESERVED) {
    throw new GuestcoreError(`Xen domain id ${domid} is not a domain (expected an integer from 0 to ${DOMID_FIRST_RESERVED - 1})`);
  }
}

/** libxenctrl loaded and opened with the quiet logger; the caller closes the handle. */
export function openXenctrl(paths: XenLibPaths): { xc: XenctrlApi; xch: unknown } {
  const xc = xenctrlApi(paths);
  const logger = quietLogger();
  const xch = xc.open(logger, logger, 0);
  if (!xch) throw openFailure("the Xen control interface (libxenctrl)", lastErrno(), lastXenError(takeXenMessages()));
  return { xc, xch };
}

/**
 * What xc_domain_getinfolist says of `domid` (its highest gpfn not yet
 * asked), or undefined when there is no such domain.
 */
export function xenDomainInfo(xc: XenctrlApi, xch: unknown, domid: number): Omit<XenDomainInfo, "maxGpfn"> | undefined {
  const buf = new Uint8Array(DOMAININFO_BYTES);
  const rc = xc.getinfolist(xch, domid, 1, buf);
  if (rc < 0) {
    const e = lastErrno();
    const lib = lastXenError(takeXenMessages());
    throw new GuestcoreError(`cannot query Xen domain ${domid}: xc_domain_getinfolist failed (${errnoName(e)}${lib ? `: ${lib}` : ""})`);
  }
  const v = new DataView(buf.buffer);
  // xc_domain_getinfolist answers with the first domain whose id is >= domid.
  if (rc === 0 || v.getUint16(0, true) !== domid) return undefined;
  const flags = v.getUint32(4, true);
  return {
    domid, flags, ...describe(flags),
    totPages: Number(v.getBigUint64(8, true)),
    maxPages: Number(v.getBigUint64(16, true)),
    onlineVcpus: v.getUint32(64, true),
  };
}

/** Domain `domid`'s state and highest gpfn (checked against MAX_GPFN). */
export function queryXenDomain(xc: XenctrlApi, xch: unknown, domid: number): XenDomainInfo {
  const d = xenDomainInfo(xc, xch, domid);
  if (!d) throw new GuestcoreError(`there is no Xen domain ${domid}`);
  const gp = new BigUint64Array(1);
  if (xc.maximumGpfn(xch, domid, gp) < 0) {
    const e = lastErrno();
    throw new GuestcoreError(`cannot query Xen domain ${domid}: xc_domain_maximum_gpfn failed (${errnoName(e)})`);
  }
  if (gp[0] >= BigInt(MAX_GPFN)) throw new GuestcoreError(`Xen domain ${domid}: highest gpfn ${hex(gp[0])} is beyond any guest's memory`);
  return { ...d, maxGpfn: Number(gp[0]) };
}

/** Open Xen domain `domid` (HVM or PVH) for reading its memory. */
export function openXenDomain(domid: number, opts: XenDomainOptions = {}): XenDomainSource {
  checkXenDomid(domid);
  const batchPages = opts.batchPages ?? DEFAULT_BATCH_PAGES;
  if (opts.pfnRanges && opts.presentBefore) throw new GuestcoreError("Xen pfn ranges taken as present leave nothing to compare with the pages present before: give one or the other");
  if (!Number.isInteger(batchPages) || batchPages < 1 || batchPages > MAX_BATCH_PAGES) {
    throw new GuestcoreError(`Xen map batch of ${batchPages} pages: expected 1 to ${MAX_BATCH_PAGES}`);
  }
  const fm = foreignMemoryApi(opts);
  const logger = quietLogger();
  takeXenMessages();
  const fmem = fm.open(logger, 0);
  if (!fmem) throw openFailure("Xen foreign memory", lastErrno(), lastXenError(takeXenMessages()));
  let xc: XenctrlApi | undefined;
  let xch: unknown;
  let owned = false; // once the source exists, it closes the handles
  try {
    ({ xc, xch } = openXenctrl(opts));
    const info = queryXenDomain(xc, xch, domid);
    if (info.dying) throw new GuestcoreError(`Xen domain ${domid} is dying: its memory is being freed`);
    if (!info.hvm) {
      throw new GuestcoreError(`Xen domain ${domid} is a PV guest: its memory is addressed by machine frames, and guestcore reads HVM and PVH domains only`);
    }
    const src = new XenDomainSource(domid, info, fm, fmem, xc, xch, batchPages);
    owned = true;
    try {
      if (!info.paused && !info.shutdown) {
        src.warnings.push(`Xen domain ${domid} is ${info.state}: its memory changes while it is read (xl pause ${domid} first for a consistent dump)`);
      }
      const ranges = opts.pfnRanges ? checkRanges(opts.pfnRanges, info.maxGpfn) : [[0, probeEnd(src)] as [number, number]];
      if (opts.pfnRanges) {
        src.segments = ranges.map(([a, b]) => ({ start: a * PAGE, end: b * PAGE, vaddr: 0n }));
      } else {
        src.probe(ranges, opts.onProgress);
      }
      if (opts.presentBefore) src.adoptPresentBefore(checkRanges(opts.presentBefore, info.maxGpfn));
      if (src.segments.length === 0) throw new GuestcoreError(`Xen domain ${domid}: none of its pages up to pfn ${hex(info.maxGpfn)} could be mapped`);
      return src;
    } catch (e) {
      src.close();
      throw e;
    }
  } catch (e) {
    // Until the source owns them, the handles are ours to close.
    if (!owned) {
      if (xch && xc) xc.close(xch);
      fm.close(fmem);
    }
    throw e;
  }
}

/**
 * Where the probe stops: at the highest gpfn, but no further than the
 * domain's size allows. A guest raises its highest gpfn at will (mapping
 * its shared-info or grant frames at any gfn with XENMEM_add_to_physmap),
 * while its page count is bounded by max_pages, which only the toolstack
 * sets: RAM cannot lie beyond max_pages plus the MMIO hole. Probing up to
 * a planted gpfn of 2^39 would be 2^29 map calls.
 */
function probeEnd(src: XenDomainSource): number {
  const { maxGpfn, totPages, maxPages, domid } = src.info;
  const cap = Math.max(totPages, maxPages) + HOLE_PFNS;
  if (maxGpfn + 1 <= cap) return maxGpfn + 1;
  src.warnings.push(`Xen domain ${domid}: highest gpfn ${hex(maxGpfn)} lies past what its ${Math.max(totPages, maxPages)} pages and a 4 GiB hole can reach; pfns from ${hex(cap)} on are not read`);
  return cap;
}

function checkRanges(ranges: [number, number][], maxGpfn: number): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  for (let i = 0; i < sorted.length; i++) {
    const [a, b] = sorted[i];
    if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b <= a || b > maxGpfn + 1) {
      throw new GuestcoreError(`Xen pfn range [${a}, ${b}) is not within the domain's pfns [0, ${maxGpfn + 1})`);
    }
    if (i > 0 && a < sorted[i - 1][1]) throw new GuestcoreError(`Xen pfn ranges overlap at pfn ${hex(a)}`);
  }
  return sorted;
}

/** Sorted, disjoint [start, end) ranges `a` minus sorted, disjoint ranges `b`. */
export function pfnRangesMinus(a: readonly (readonly [number, number])[], b: readonly (readonly [number, number])[]): [number, number][] {
  const out: [number, number][] = [];
  let h = 0;
  for (const [start, end] of a) {
    let at = start;
    while (h < b.length && b[h][1] <= at) h++;
    for (let k = h; k < b.length && b[k][0] < end; k++) {
      if (b[k][0] > at) out.push([at, b[k][0]]);
      at = Math.max(at, b[k][1]);
    }
    if (at < end) out.push([at, end]);
  }
  return out;
}
