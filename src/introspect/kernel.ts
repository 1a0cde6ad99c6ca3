// Finds and checks the kernel in a memory source: which VMCOREINFO to
// trust, where the top-level page table is (phys_base), and the address
// space built on it. Each step is a fallback chain, not a constant.
import { GuestcoreError, hex } from "../core/errors.js";
import type { WasmCore } from "../core/wasm.js";
import { findSegment, type MemorySource } from "../sources/source.js";
import { AddressSpace } from "./address-space.js";
import { fromFile, fromNotes, scanForVmcoreinfo, type ScanCandidate, type VmcoreInfo } from "./vmcoreinfo.js";
import { SearchBudget, SearchBudgetExhausted } from "./search-budget.js";
import { START_KERNEL_MAP, pagingFormFor } from "./x86-64.js";

export type VmcoreinfoOrigin = "note" | "file" | "scan";

export interface Kernel {
  info: VmcoreInfo;
  origin: VmcoreinfoOrigin;
  /** Physical address of the VMCOREINFO text when found by scanning. */
  foundAt?: number;
  physBase: bigint;
  /** How phys_base was decided: "vmcoreinfo" or "search". */
  physBaseFrom: string;
  kaslrOffset: bigint;
  as: AddressSpace;
}

export interface KernelOptions {
  vmcoreinfoFile?: string;
  onProgress?: (what: string, done: number, total: number) => void;
  /** Counts the search's steps against its limits; share one across retries on the same image. */
  budget?: SearchBudget;
  /** More places to scan for VMCOREINFO from first (scanForVmcoreinfo's `starts`). */
  scanStarts?: readonly number[];
  /**
   * VMCOREINFO that fit another layout of the same memory, at `paddr` of
   * the first view: checked before anything else.
   */
  known?: { info: VmcoreInfo; origin: VmcoreinfoOrigin; paddr?: number };
}

/**
 * One way of reading the memory being searched. Views of one search are
 * the same bytes under different physical layouts (a raw file 1:1 and
 * with QEMU's splits); the scan reads the first, and `at` says where its
 * address lies in this one. `src` may be opened only when first asked for.
 */
export interface LayoutView {
  readonly src: MemorySource;
  at(scanned: number): number;
}

/** What findKernelAmong found: the kernel, in which view, and (a scanned or known text) where in the first. */
export interface KernelAmong {
  kernel: Kernel;
  view: number;
  scanned?: number;
}

const PHYS_BASE_ALIGN = 2 << 20;

export function findKernel(src: MemorySource, core: WasmCore, opts: KernelOptions = {}): Kernel {
  return findKernelAmong([{ src, at: (p) => p }], core, opts).kernel;
}

/**
 * The kernel in the first of `views` each VMCOREINFO candidate fits, the
 * candidates in findKernel's order (known, file, note, scan); each is
 * tried under every view before the next, so the memory is scanned once
 * however many layouts are possible. Failures read as the first view's.
 */
export function findKernelAmong(views: readonly LayoutView[], core: WasmCore, opts: KernelOptions = {}): KernelAmong {
  const budget = opts.budget ?? new SearchBudget();
  const first = views[0].src;
  /** The kernel under the first view `info` fits, or why the first view rejects it. */
  const fit = (info: VmcoreInfo, origin: VmcoreinfoOrigin, paddr?: number): KernelAmong | string => {
    let reason: string | undefined;
    for (let v = 0; v < views.length; v++) {
      const k = validate(views[v].src, core, info, origin, budget);
      if (typeof k !== "string") return paddr === undefined ? { kernel: k, view: v } : { kernel: { ...k, foundAt: views[v].at(paddr) }, view: v, scanned: paddr };
      reason ??= k;
    }
    return reason!;
  };
  if (opts.known) {
    const found = fit(opts.known.info, opts.known.origin, opts.known.paddr);
    if (typeof found !== "string") return found;
  }
  if (opts.vmcoreinfoFile) {
    const found = fit(fromFile(opts.vmcoreinfoFile), "file");
    if (typeof found === "string") throw new GuestcoreError(`VMCOREINFO from ${opts.vmcoreinfoFile} does not fit this image: ${found}`);
    return found;
  }
  const noted = fromNotes(first.notes);
  if (noted) {
    const found = fit(noted, "note");
    if (typeof found !== "string") return found;
    // A note can be stale or forged; fall through to scanning memory.
  }
  // At most the validation budget's worth. Failures name the rejected text
  // at the lowest address, the one a scan in address order met first.
  const rejected: { c: ScanCandidate; reason: string }[] = [];
  const firstReason = () => {
    const r = rejected.reduce((a, b) => (b.c.lowest < a.c.lowest ? b : a));
    return `${hex(r.c.lowest)}: ${r.reason}`;
  };
  try {
    for (const c of scanForVmcoreinfo(first, (d, t) => opts.onProgress?.("scanning for VMCOREINFO", d, t), budget, opts.scanStarts)) {
      const found = fit(c.info, "scan", c.paddr);
      if (typeof found !== "string") return found;
      rejected.push({ c, reason: found });
    }
  } catch (e) {
    if (!(e instanceof SearchBudgetExhausted)) throw e;
    throw new GuestcoreError(`no usable VMCOREINFO in ${first.path}${rejected.length > 0 ? ` (first rejected: ${firstReason()})` : ""}: ${e.message}`);
  }
  if (rejected.length === 0) {
    throw new GuestcoreError(`no VMCOREINFO found in ${first.path}: not a Linux memory image, or give it with --vmcoreinfo FILE`);
  }
  throw new GuestcoreError(`no usable VMCOREINFO in ${first.path} (${rejected.length} candidates rejected; first: ${firstReason()})`);
}

/**
 * Returns a Kernel when `info` describes the memory in `src`, else why
 * not. Each candidate root translated is a probe taken from `budget`.
 */
export function validate(src: MemorySource, core: WasmCore, info: VmcoreInfo, origin: VmcoreinfoOrigin,
  budget: SearchBudget = new SearchBudget()): Kernel | string {
  if (info.pageSize !== 4096) return `page size ${info.pageSize} is not supported (x86-64 uses 4096)`;
  const form = pagingFormFor(info);
  const top = info.symbol("init_top_pgt");
  if (top === undefined) return "SYMBOL(init_top_pgt) is missing";
  if (top < START_KERNEL_MAP) return `SYMBOL(init_top_pgt) ${hex(top)} is not in the kernel image`;
  const imageOffset = Number(top - START_KERNEL_MAP);

  const tried = new Set<number>();
  // phys_base is unsigned in the kernel but printed with %ld, so it reads
  // negative when KASLR slides the virtual image further than the
  // physical one; all arithmetic is modulo 2^64.
  const attempt = (physBase: bigint, from: string): Kernel | undefined => {
    const rootBig = BigInt.asUintN(64, top - START_KERNEL_MAP + physBase);
    if (rootBig > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    const root = Number(rootBig);
    if (tried.has(root) || findSegment(src.segments, root) < 0) return undefined;
    tried.add(root);
    budget.take("probes");
    const as = new AddressSpace(src, core, form, root);
    // The kernel maps its own top-level table: translating its virtual
    // address through itself must land on itself.
    let self;
    try {
      self = as.translate(top);
    } catch {
      return undefined;
    }
    if (!self || self.paddr !== root) return undefined;
    return { info, origin, physBase: BigInt.asIntN(64, physBase), physBaseFrom: from, kaslrOffset: info.kernelOffset ?? 0n, as };
  };

  const declared = info.number("phys_base");
  let k = declared !== undefined ? attempt(declared, "vmcoreinfo") : undefined;
  // Fallback for kernels without NUMBER(phys_base) (before 2.6.22's
  // relocatable kernels exported it): phys_base is 2 MiB aligned, so the
  // table can only sit at addresses congruent to its image offset; try
  // each one in memory. A declared phys_base that fails is not searched
  // around: that VMCOREINFO belongs to another boot, or the layout is wrong.
  // The probes come from the search's budget, so forged texts without
  // phys_base cannot make the search quadratic in the image's size.
  const phase = imageOffset % PHYS_BASE_ALIGN;
  for (const seg of declared === undefined ? src.segments : []) {
    if (k) break;
    const first = Math.ceil((seg.start - phase) / PHYS_BASE_ALIGN) * PHYS_BASE_ALIGN + phase;
    for (let root = first; root < seg.end && !k; root += PHYS_BASE_ALIGN) {
      k = attempt(BigInt(root - imageOffset), "search");
    }
  }
  if (!k) {
    return declared === undefined ? `init_top_pgt (${hex(top)}) does not map itself for any phys_base`
      : `init_top_pgt (${hex(top)}) does not map itself with phys_base ${hex(BigInt.asIntN(64, declared))}`;
  }
  const release = info.osrelease!;
  const uts = info.symbol("init_uts_ns");
  if (uts !== undefined) {
    // The release string sits in init_uts_ns.name (offset 0 since Linux
    // 4.x moved the kref out; earlier kernels put it after the kref), so
    // search the first bytes instead of assuming an offset.
    let text = "";
    try {
      text = Buffer.from(k.as.read(uts, 512, "init_uts_ns")).toString("latin1");
    } catch {
      return `init_uts_ns (${hex(uts)}) is not readable`;
    }
    if (!text.includes("\0" + release + "\0")) return `init_uts_ns does not hold release ${release}: VMCOREINFO belongs to another kernel`;
  }
  return k;
}
