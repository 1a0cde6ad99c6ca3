// Where the RAM of a raw image sits in guest-physical space.
//
// A QEMU memory-backend file is the guest's RAM blocks back to back: RAM
// below the PCI hole, then the RAM QEMU moved above 4 GiB (q35 splits at
// 2 GiB, pc at 3 GiB, once the guest is big enough). The kernel knows where
// its RAM ends (max_pfn, through kallsyms), and the file knows how much RAM
// there is; together they give the split. Whatever the layout's origin,
// it is checked against the kernel's memory sections, so a wrong layout
// is an error rather than a dump of the wrong bytes.
import { GuestcoreError, hex } from "../core/errors.js";
import type { MemorySource } from "../sources/source.js";
import { findSegment } from "../sources/source.js";
import { Kallsyms } from "./kallsyms.js";
import type { Kernel, KernelAmong, KernelOptions, LayoutView } from "./kernel.js";
import { memMapRanges, sparseLayout } from "./memmap.js";

const GiB = 2 ** 30;
const SPLIT_ALIGN = 128 * 2 ** 20;

/** The kernel's max_pfn (end of RAM), through kallsyms; undefined without kallsyms. */
export function kernelMaxPfn(k: Kernel): number | undefined {
  const sym = Kallsyms.resolve(k, ["max_pfn"])?.get("max_pfn");
  if (sym === undefined) return undefined;
  const v = new DataView(k.as.read(sym, 8, "max_pfn").buffer).getBigUint64(0, true);
  if (v === 0n || v > 1n << 40n) throw new GuestcoreError(`max_pfn is ${v}: not a plausible end of memory`);
  return Number(v);
}

/**
 * A layout for a raw file of `fileSize` bytes whose RAM ends at page
 * `maxPfn`, or undefined when the file maps 1:1.
 */
export function splitLayout(fileSize: number, maxPfn: number): string | undefined {
  const low = splitLow(fileSize, maxPfn);
  return low === undefined ? undefined : splitSpec(fileSize, low);
}

/** How much of the file is RAM below 4 GiB, the rest being above it; undefined when it maps 1:1. */
function splitLow(fileSize: number, maxPfn: number): number | undefined {
  const end = maxPfn * 4096;
  if (end <= fileSize) return undefined;
  // max_pfn ends the last *usable* range, so firmware-reserved pages at the
  // top of RAM make it a little short; QEMU's low-RAM sizes (2 GiB, 2.75
  // GiB, 3 GiB, 3.5 GiB) are all multiples of 128 MiB.
  const low = Math.floor((fileSize - (end - 4 * GiB)) / SPLIT_ALIGN) * SPLIT_ALIGN;
  const high = fileSize - low;
  if (high <= 0 || low <= 0 || low > 4 * GiB) {
    throw new GuestcoreError(`a raw image of ${fileSize} bytes cannot hold RAM up to ${hex(end)} (max_pfn ${hex(maxPfn)}): give --layout`);
  }
  return low;
}

/** The --layout of a file whose first `low` bytes are RAM from 0 and the rest RAM from 4 GiB. */
function splitSpec(fileSize: number, low: number): string {
  return `0:${low}@0,${4 * GiB}:${fileSize - low}@${low}`;
}

/**
 * Check that the source holds every memory section the kernel marks
 * present, and (when known) RAM up to max_pfn.
 */
export function checkLayout(src: MemorySource, k: Kernel, maxPfn: number | undefined): void {
  const end = src.segments.reduce((m, s) => Math.max(m, s.end), 0);
  if (maxPfn !== undefined && maxPfn * 4096 > end) {
    throw new GuestcoreError(`the image's memory ends at ${hex(end)} but the kernel's RAM ends at ${hex(maxPfn * 4096)}: wrong or missing --layout`);
  }
  let ranges;
  try {
    ranges = memMapRanges(k, sparseLayout(k), Math.max(Math.ceil(end / 4096), maxPfn ?? 0));
  } catch (e) {
    if (e instanceof GuestcoreError) throw new GuestcoreError(`the memory layout does not fit this kernel (${e.message}): wrong or missing --layout`);
    throw e;
  }
  for (const r of ranges) {
    const at = r.pfnStart * 4096;
    if (maxPfn !== undefined && r.pfnStart >= maxPfn) continue;
    if (findSegment(src.segments, at) < 0) {
      throw new GuestcoreError(`memory section at ${hex(at)} is not in the image: wrong or missing --layout`);
    }
  }
}

/**
 * True when every memory section the kernel marks present starts inside
 * the source. RAM QEMU moved above 4 GiB ends at most 4 GiB past the
 * file's size, so sections are looked for that far.
 */
export function sectionsInImage(src: MemorySource, k: Kernel): boolean {
  const end = src.segments.reduce((m, s) => Math.max(m, s.end), 0);
  try {
    const ranges = memMapRanges(k, sparseLayout(k), Math.ceil((end + 4 * GiB) / 4096));
    return ranges.every((r) => findSegment(src.segments, r.pfnStart * 4096) >= 0);
  } catch (e) {
    if (e instanceof GuestcoreError) return false;
    throw e;
  }
}

/** Finds the kernel among views of one file: findKernelAmong, with its options but the views. */
export type RawSearch = (views: readonly LayoutView[], opts: Pick<KernelOptions, "known" | "scanStarts">) => KernelAmong;

/**
 * A raw file without --layout. The file is scanned once, and each
 * VMCOREINFO candidate is checked 1:1 first, then under the splits QEMU
 * uses (q35: file bytes from 2 GiB on at 4 GiB; pc: from 3 GiB on), for
 * the kernel or its page tables may live above 4 GiB; the scan starts
 * at the file offsets of those splits, where such a guest's kernel puts
 * it. Once the kernel is found, its max_pfn says whether (and where) RAM
 * continues above 4 GiB. `reopen` opens the file again with a layout,
 * only when a candidate is to be checked under it (a file with no
 * plausible VMCOREINFO opens nothing more); the source returned is the
 * one the kernel was found in, and on failure every source opened here
 * (`first` too) is closed.
 */
export function findInRaw(first: MemorySource, reopen: (layout: string) => MemorySource, search: RawSearch): { source: MemorySource; kernel: Kernel } {
  const size = first.segments.length > 0 ? first.segments[first.segments.length - 1].end : 0;
  const opened: MemorySource[] = [first];
  const physOf = (low: number) => (off: number) => (off < low ? off : 4 * GiB + off - low);
  /** The file split at `low`, opened when first read; `at` maps the search's first view to it. */
  const splitView = (low: number, at: (scanned: number) => number): LayoutView => {
    const layout = splitSpec(size, low);
    let open: MemorySource | undefined;
    return {
      get src() {
        if (!open) opened.push(open = reopen(layout));
        return open;
      },
      at,
    };
  };
  let source: MemorySource | undefined;
  try {
    const views: LayoutView[] = [{ src: first, at: (off) => off }, ...QEMU_SPLITS.filter((low) => size > low).map((low) => splitView(low, physOf(low)))];
    const found = search(views, { scanStarts: QEMU_SPLITS });
    let kernel = found.kernel;
    source = views[found.view].src;
    // The common case costs nothing more: every present memory section lies
    // in the file as it is mapped now. Only otherwise is kallsyms decoded.
    if (!sectionsInImage(source, kernel)) {
      const maxPfn = kernelMaxPfn(kernel);
      const low = maxPfn !== undefined ? splitLow(size, maxPfn) : undefined;
      if (low !== undefined && splitSpec(size, low) !== ("layout" in source ? source.layout : undefined)) {
        const relaid = splitView(low, (p) => p);
        // The text that fit is tried where it lies in the file before anything is scanned again.
        const paddr = found.scanned === undefined ? undefined : physOf(low)(found.scanned);
        kernel = search([relaid], { known: { info: kernel.info, origin: kernel.origin, paddr } }).kernel;
        source = relaid.src;
      }
      checkLayout(source, kernel, maxPfn);
    }
    for (const s of opened) if (s !== source) s.close();
    return { source, kernel };
  } catch (e) {
    for (const s of opened) s.close();
    throw e;
  }
}

/** Low RAM sizes of QEMU's splits: q35 moves RAM above 2 GiB to 4 GiB, pc above 3 GiB. */
const QEMU_SPLITS = [2 * GiB, 3 * GiB];

/** A layout the user gave (or none) must hold the kernel's memory. */
export function verifyRawLayout(source: MemorySource, kernel: Kernel): void {
  if (!sectionsInImage(source, kernel)) checkLayout(source, kernel, kernelMaxPfn(kernel));
}
