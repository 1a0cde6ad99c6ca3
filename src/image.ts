// GuestImage: the library's entry point. Opens any supported input,
// finds the kernel in it and answers questions about its memory.
import { WasmCore } from "./core/wasm.js";
import { hex } from "./core/errors.js";
import { findKernel, findKernelAmong, type Kernel, type KernelOptions } from "./introspect/kernel.js";
import { checkLayout, findInRaw, kernelMaxPfn, verifyRawLayout } from "./introspect/raw-layout.js";
import { SearchBudget } from "./introspect/search-budget.js";
import type { VmcoreInfo } from "./introspect/vmcoreinfo.js";
import { PageFilter, type FilterResult, type Window } from "./filter/page-filter.js";
import { openSource, type OpenOptions } from "./sources/open.js";
import type { MemorySource } from "./sources/source.js";
import type { ElfNote } from "./format/elf64.js";
import { GuestcoreError } from "./core/errors.js";

export interface GuestImageOptions extends OpenOptions {
  /** Use this VMCOREINFO text file instead of the note or a memory scan. */
  vmcoreinfo?: string;
  onProgress?: (what: string, done: number, total: number) => void;
  /** Limits and counts the kernel search's steps (default: SEARCH_LIMITS). */
  searchBudget?: SearchBudget;
}

export class GuestImage {
  private filterCache?: PageFilter;

  private constructor(readonly source: MemorySource, readonly kernel: Kernel, readonly core: WasmCore) {}

  static open(path: string, opts: GuestImageOptions = {}): GuestImage {
    const t0 = performance.now();
    const first = openSource(path, opts);
    let core: WasmCore;
    try {
      core = new WasmCore();
    } catch (e) {
      first.close();
      throw e;
    }
    // One budget for every layout tried: retries must not multiply the search.
    const budget = opts.searchBudget ?? new SearchBudget();
    const search: KernelOptions = { vmcoreinfoFile: opts.vmcoreinfo, onProgress: opts.onProgress, budget };
    const find = (src: MemorySource) => findKernel(src, core, search);
    let found: { source: MemorySource; kernel: Kernel };
    if (first.format === "raw" && !opts.layout) {
      found = findInRaw(first, (layout) => openSource(path, { ...opts, layout }), (views, more) => findKernelAmong(views, core, { ...search, ...more }));
    } else {
      try {
        let kernel: Kernel;
        try {
          kernel = find(first);
        } catch (e) {
          if (e instanceof GuestcoreError && opts.layout) throw new GuestcoreError(`${e.message}; is --layout ${opts.layout} right?`);
          throw e;
        }
        if (first.format === "raw") verifyRawLayout(first, kernel);
        found = { source: first, kernel };
      } catch (e) {
        first.close();
        throw e;
      }
    }
    if (process.env.GUESTCORE_TIMING) process.stderr.write(`timing: kernel found in ${((performance.now() - t0) / 1000).toFixed(3)} s\n`);
    return new GuestImage(found.source, found.kernel, core);
  }

  /**
   * A GuestImage over a source opened elsewhere (e.g. openQemuGuest). The
   * image owns the source from here on: close() closes it, and so does a
   * failure to find the kernel. A "qemu" source's layout (from QMP) is
   * checked against the kernel's memory sections and max_pfn.
   */
  static fromSource(source: MemorySource, opts: Pick<GuestImageOptions, "vmcoreinfo" | "onProgress" | "searchBudget"> = {}): GuestImage {
    const t0 = performance.now();
    try {
      const core = new WasmCore();
      const kernel = findKernel(source, core, { vmcoreinfoFile: opts.vmcoreinfo, onProgress: opts.onProgress, budget: opts.searchBudget });
      if (source.format === "qemu") checkLayout(source, kernel, kernelMaxPfn(kernel));
      if (process.env.GUESTCORE_TIMING) process.stderr.write(`timing: kernel found in ${((performance.now() - t0) / 1000).toFixed(3)} s\n`);
      return new GuestImage(source, kernel, core);
    } catch (e) {
      source.close();
      throw e;
    }
  }

  get vmcoreinfo(): VmcoreInfo {
    return this.kernel.info;
  }

  readPhys(paddr: number, len: number): Uint8Array {
    const buf = new Uint8Array(len);
    this.source.readBatch([{ paddr, dst: buf }]);
    return buf;
  }

  readVirt(vaddr: bigint, len: number): Uint8Array {
    return this.kernel.as.read(vaddr, len, "read");
  }

  translate(vaddr: bigint): number | undefined {
    return this.kernel.as.translate(vaddr)?.paddr;
  }

  get filter(): PageFilter {
    this.filterCache ??= new PageFilter(this.source, this.kernel, this.core);
    return this.filterCache;
  }

  /** Classify every page at a dump level (31 = makedumpfile's full table). */
  pageStats(level = 31, onWindow?: (w: Window) => void): FilterResult {
    return this.filter.run(level, onWindow, (d, t) => this.onProgress?.("classifying pages", d, t));
  }

  onProgress?: (what: string, done: number, total: number) => void;

  /** Notes for an output dump: the source's, with the VMCOREINFO in use. */
  outputNotes(): ElfNote[] {
    const text = Buffer.from(this.kernel.info.text + (this.kernel.info.text.endsWith("\n") ? "" : "\n"), "latin1");
    const desc = new Uint8Array(text.length);
    desc.set(text);
    const others = this.source.notes.filter((n) => n.name !== "VMCOREINFO");
    return [...others, { name: "VMCOREINFO", type: 0, desc }];
  }

  summary(): Record<string, unknown> {
    const info = this.kernel.info;
    return {
      input: this.source.path,
      format: this.source.format,
      kernelRelease: info.osrelease,
      pageSize: info.pageSize,
      vmcoreinfoFrom: this.kernel.origin + (this.kernel.foundAt !== undefined ? ` at ${hex(this.kernel.foundAt)}` : ""),
      kaslrOffset: hex(this.kernel.kaslrOffset),
      physBase: hex(this.kernel.physBase),
      physBaseFrom: this.kernel.physBaseFrom,
      pagingLevels: this.kernel.as.form.levels,
      topLevelTable: hex(this.kernel.as.root),
      physicalRanges: this.source.segments.map((s) => [hex(s.start), hex(s.end)]),
      ...("layout" in this.source && this.source.layout ? { layout: this.source.layout } : {}),
    };
  }

  close(): void {
    this.source.close();
  }
}
