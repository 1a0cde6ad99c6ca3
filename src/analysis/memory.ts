// Memory by zone and by page class. Zones come from the kernel's node
// data through BTF (spanned, present and managed pages, watermarks, the
// zone counters and the buddy allocator's free lists), as crash's
// `kmem -z` and /proc/zoneinfo show them; the global counters as `kmem -i`
// and /proc/meminfo start from them. Page classes come from the page
// filter's windows (makedumpfile's classification) and are tallied per
// pfn range: per zone, per cell of a memory map, or over all memory.
import { GuestcoreError } from "../core/errors.js";
import { CLASS } from "../filter/classes.js";
import type { Window } from "../filter/page-filter.js";
import type { Obj, TypedKernel } from "./typed.js";
import { lastAtOrBefore } from "../core/search.js";

// MAX_NUMNODES is 1 << CONFIG_NODES_SHIFT, 10 at most on x86-64.
const MAX_NODES = 1024;
// MAX_NR_ZONES is 5 on 6.1 x86-64 (DMA, DMA32, Normal, Movable, Device); a bound for nr_zones.
const MAX_ZONES = 8;
// MAX_ORDER is 11 on x86-64 (4 MiB blocks); 64 bounds a hostile free_area length.
const MAX_ORDERS = 64;

export interface ZoneInfo {
  node: number;
  /** Index in node_zones (enum zone_type). */
  index: number;
  name: string;
  address: bigint;
  startPfn: number;
  spanned: number;
  present: number;
  managed: number;
  /** _watermark[WMARK_MIN, LOW, HIGH] (boost not added, as crash prints them). */
  watermarks: { min: number; low: number; high: number };
  /** zone->vm_stat by enum zone_stat_item name (the global part; per-CPU deltas not folded in). */
  stats: Record<string, number>;
  /** vm_stat[NR_FREE_PAGES]. */
  free: number;
  /** Pages on the buddy free lists: free_area[order].nr_free << order, per order and summed. */
  freeByOrder: number[];
  freeArea: number;
}

/** An atomic_long_t (5.0+, commit 9705bea5f833 for managed_pages) or a plain integer. */
function counter(o: Obj): number {
  return o.hasMember("counter") ? o.member("counter").number() : o.number();
}

/** An enum's names by value, without the _BASE aliases and the NR_..._ITEMS count. */
function statNames(k: TypedKernel, enumName: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!k.has(enumName)) return out;
  for (const e of k.btf.enumerators(k.type(enumName))) {
    if (/_BASE$|^NR_VM_.*_ITEMS$/.test(e.name) || e.value < 0n) continue;
    out.set(e.name, Number(e.value));
  }
  return out;
}

/** Counters by name from an array of atomic_long_t (or integers) of `n` elements at `at(i)`. */
function readStats(names: Map<string, number>, n: number, at: (i: number) => Obj): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, i] of names) if (i < n) out[name] = counter(at(i));
  return out;
}

/**
 * The online nodes' pglist_data: node_data[] under NUMA (node_states[N_ONLINE]
 * says which are online), contig_page_data without it.
 */
export function listNodes(k: TypedKernel): { node: number; pgdat: Obj }[] {
  const contig = k.symbols.lookup("contig_page_data");
  if (contig !== undefined) return [{ node: 0, pgdat: k.obj("struct pglist_data", contig) }];
  const arr = k.symbol("node_data");
  const sized = k.symbols.locate?.(arr);
  const n = Math.min(MAX_NODES, sized && sized.offset === 0n && sized.size > 0n ? Number(sized.size / 8n) : MAX_NODES);
  const ptrs = new DataView(k.read(arr, n * 8, "node_data").buffer);
  let online: Uint8Array | undefined;
  const states = k.symbols.lookup("node_states");
  const nOnline = k.has("enum node_states") ? k.btf.enumerators(k.type("enum node_states")).find((e) => e.name === "N_ONLINE") : undefined;
  if (states !== undefined && nOnline && k.has("nodemask_t")) {
    const size = k.btf.sizeOf(k.type("nodemask_t"));
    online = k.read(states + nOnline.value * BigInt(size), size, "node_states[N_ONLINE]");
  }
  const out: { node: number; pgdat: Obj }[] = [];
  for (let i = 0; i < n; i++) {
    const p = ptrs.getBigUint64(i * 8, true);
    if (p === 0n) continue;
    if (online && (i >> 3 >= online.length || !(online[i >> 3] & (1 << (i & 7))))) continue;
    out.push({ node: i, pgdat: k.obj("struct pglist_data", p) });
  }
  if (out.length === 0) throw new GuestcoreError("node_data has no online node");
  return out;
}

export function listZones(k: TypedKernel): ZoneInfo[] {
  const zoneStats = statNames(k, "enum zone_stat_item");
  const out: ZoneInfo[] = [];
  for (const { node, pgdat } of listNodes(k)) {
    const zones = pgdat.member("node_zones");
    const nr = Math.min(zones.length, MAX_ZONES);
    for (let i = 0; i < nr; i++) {
      const z = zones.array(i);
      // _watermark since 5.0 (commit 1c30844d2dfe, "mm: reclaim small amounts of memory when an external fragmentation event occurs").
      const wm = z.member(z.hasMember("_watermark") ? "_watermark" : "watermark");
      const fa = z.member("free_area");
      const orders = Math.min(fa.length, MAX_ORDERS);
      const freeByOrder: number[] = [];
      for (let o = 0; o < orders; o++) freeByOrder.push(fa.array(o).member("nr_free").number() * 2 ** o);
      const vm = z.member("vm_stat");
      const stats = readStats(zoneStats, vm.length, (j) => vm.array(j));
      const namePtr = z.member("name");
      out.push({
        node, index: i, name: namePtr.ptr() === 0n ? `zone ${i}` : namePtr.string(32), address: z.address,
        startPfn: z.member("zone_start_pfn").number(), spanned: z.member("spanned_pages").number(),
        present: z.member("present_pages").number(), managed: counter(z.member("managed_pages")),
        watermarks: { min: wm.array(0).number(), low: wm.array(1).number(), high: wm.array(2).number() },
        stats, free: stats.NR_FREE_PAGES ?? 0, freeByOrder, freeArea: freeByOrder.reduce((a, b) => a + b, 0),
      });
    }
  }
  return out;
}

export interface MemoryCounters {
  /** totalram_pages(): the pages the buddy allocator manages (kmem -i TOTAL MEM, MemTotal). */
  totalram: number;
  /** vm_zone_stat and vm_node_stat, the global counters, by item name. */
  zone: Record<string, number>;
  node: Record<string, number>;
}

export function memoryCounters(k: TypedKernel): MemoryCounters {
  // _totalram_pages, an atomic_long_t, since 5.0 (commit ca79b0c211af); totalram_pages before.
  const t = k.symbols.lookup("_totalram_pages") !== undefined ? counter(k.global("_totalram_pages", "atomic_long_t"))
    : k.global("totalram_pages", "unsigned long").number();
  // vm_zone_stat and vm_node_stat are arrays of atomic_long_t with no BTF
  // VAR: their length is the enum's, their element type atomic_long_t.
  const elem = k.type("atomic_long_t");
  const size = BigInt(k.btf.sizeOf(elem));
  const arr = (sym: string, en: string) => {
    const names = statNames(k, en);
    const base = k.symbols.lookup(sym);
    if (base === undefined) return {};
    return readStats(names, Math.max(0, ...names.values()) + 1, (i) => k.obj(elem, base + BigInt(i) * size));
  };
  return { totalram: t, zone: arr("vm_zone_stat", "enum zone_stat_item"), node: arr("vm_node_stat", "enum node_stat_item") };
}

/** Class names by class byte (src/filter/classes.ts). At level 31 "kernel" is every kept page. */
export const CLASS_NAMES = ["kernel", "zero", "cache", "cachePrivate", "user", "free", "hwpoison", "offline", "hole"] as const;
export type ClassName = (typeof CLASS_NAMES)[number];
export type ClassCounts = Record<ClassName, number>;
const NCLASS = CLASS.HOLE + 1;

/**
 * Class counts per pfn range ("bins"): feed it the page filter's windows
 * (GuestImage.pageStats(level, bins.add)). Bins are sorted and disjoint;
 * pfns outside every bin are not counted.
 */
export class ClassBins {
  /** counts[bin * 9 + class]. */
  readonly counts: Float64Array;

  constructor(readonly starts: readonly number[], readonly ends: readonly number[]) {
    if (starts.length !== ends.length) throw new GuestcoreError("ClassBins: starts and ends differ in length");
    for (let i = 0; i < starts.length; i++) {
      if (!(ends[i] >= starts[i]) || (i && starts[i] < ends[i - 1])) throw new GuestcoreError(`ClassBins: bin ${i} is not sorted and disjoint`);
    }
    this.counts = new Float64Array(starts.length * NCLASS);
  }

  /** Equal bins of `size` pfns from 0 to `maxPfn` (the last one shorter). */
  static uniform(maxPfn: number, size: number): ClassBins {
    const n = Math.ceil(maxPfn / size);
    return new ClassBins(Array.from({ length: n }, (_, i) => i * size), Array.from({ length: n }, (_, i) => Math.min(maxPfn, (i + 1) * size)));
  }

  readonly add = (w: Window): void => {
    const end = w.pfnStart + w.count;
    // The first bin that ends after the window starts.
    const first = lastAtOrBefore(this.ends.length, (i) => this.ends[i], w.pfnStart) + 1;
    for (let b = first; b < this.starts.length && this.starts[b] < end; b++) {
      const a = Math.max(this.starts[b], w.pfnStart) - w.pfnStart;
      const z = Math.min(this.ends[b], end) - w.pfnStart;
      const base = b * NCLASS;
      for (let i = a; i < z; i++) this.counts[base + w.cls[i]]++;
    }
  };

  bin(b: number): ClassCounts {
    const out = {} as ClassCounts;
    CLASS_NAMES.forEach((n, c) => (out[n] = this.counts[b * NCLASS + c]));
    return out;
  }

  /** The class with most pages in bin b (the lower class byte on a tie). */
  dominant(b: number): number {
    let best = 0;
    for (let c = 1; c < NCLASS; c++) if (this.counts[b * NCLASS + c] > this.counts[b * NCLASS + best]) best = c;
    return best;
  }

  total(): ClassCounts {
    const out = {} as ClassCounts;
    CLASS_NAMES.forEach((n, c) => {
      let s = 0;
      for (let b = 0; b < this.starts.length; b++) s += this.counts[b * NCLASS + c];
      out[n] = s;
    });
    return out;
  }
}

/** Bins for the zones' spans [zone_start_pfn, + spanned), empty zones left out, in pfn order. */
export function zoneBins(zones: readonly ZoneInfo[]): { zones: ZoneInfo[]; bins: ClassBins } {
  const used = zones.filter((z) => z.spanned > 0).sort((a, b) => a.startPfn - b.startPfn);
  return { zones: used, bins: new ClassBins(used.map((z) => z.startPfn), used.map((z) => z.startPfn + z.spanned)) };
}
