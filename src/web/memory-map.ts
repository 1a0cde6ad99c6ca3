// The guest's physical memory as a grid of cells, each a run of pfns
// counted by page class; the page draws it, the worker fills it.
import { CLASS } from "../filter/classes.js";
import type { Window } from "../filter/page-filter.js";

/** Class bytes of the Wasm core, in its order, as the map names them. */
export const MAP_CLASSES = [
  { cls: CLASS.KEEP, name: "kernel", color: "#d94f3d" },
  { cls: CLASS.ZERO, name: "zero", color: "#f2f2f2" },
  { cls: CLASS.CACHE, name: "page cache", color: "#4a90d9" },
  { cls: CLASS.CACHE_PRIVATE, name: "private cache", color: "#8e6fd1" },
  { cls: CLASS.USER, name: "user (anon)", color: "#e9a23b" },
  { cls: CLASS.FREE, name: "free", color: "#7cc47f" },
  { cls: CLASS.HWPOISON, name: "hwpoison", color: "#000000" },
  { cls: CLASS.OFFLINE, name: "offline", color: "#9a9a9a" },
  { cls: CLASS.HOLE, name: "hole", color: "#ffffff" },
] as const;
const NCLASS = MAP_CLASSES.length;

export interface MemoryMap {
  maxPfn: number;
  /** Pfns per cell (a power of two). */
  pagesPerCell: number;
  cells: number;
  /** cells × classes counts, class-major within a cell. */
  counts: Uint32Array;
  totals: number[];
}

/** Cells for `maxPfn` pages: at most `maxCells`, each a power-of-two run of pfns. */
export function newMemoryMap(maxPfn: number, maxCells = 4096): MemoryMap {
  let per = 1;
  while (Math.ceil(maxPfn / per) > maxCells) per *= 2;
  const cells = Math.ceil(maxPfn / per);
  return { maxPfn, pagesPerCell: per, cells, counts: new Uint32Array(cells * NCLASS), totals: new Array(NCLASS).fill(0) };
}

/** Count one filter window's classes into the map. */
export function addWindow(m: MemoryMap, w: Window): void {
  const shift = Math.log2(m.pagesPerCell);
  for (let i = 0; i < w.count; i++) {
    const pfn = w.pfnStart + i;
    if (pfn >= m.maxPfn) break;
    const c = w.cls[i];
    if (c >= NCLASS) continue;
    m.counts[(pfn >> shift) * NCLASS + c]++;
    m.totals[c]++;
  }
}

/** The class most pages of a cell have. */
export function dominantClass(m: MemoryMap, cell: number): number {
  let best = 0;
  for (let c = 1; c < NCLASS; c++) if (m.counts[cell * NCLASS + c] > m.counts[cell * NCLASS + best]) best = c;
  return best;
}

export function cellCount(m: MemoryMap, cell: number, cls: number): number {
  return m.counts[cell * NCLASS + cls];
}
