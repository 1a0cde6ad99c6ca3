// The crashed guest's clean page-cache pages: PG_uptodate, not PG_dirty,
// not PG_writeback, not PG_locked (a read may still be filling it), not
// PG_swapbacked (anon, shmem and tmpfs pages: no disk block behind them),
// with a file mapping. A warm-cache reboot hashes these and reuses the ones
// whose content equals a block on the disk.
//
// VMCOREINFO names only some page flags (PG_lru, PG_private, PG_swapcache,
// PG_swapbacked, PG_slab, PG_head_mask), not PG_uptodate, PG_dirty,
// PG_writeback or PG_locked. Their numbers come from enum pageflags of
// the kernels whose exported flags match: Linux 4.x to 6.9 order PG_locked,
// PG_referenced, PG_uptodate, PG_dirty, PG_lru, ... PG_writeback after
// PG_private_2. Linux 6.10 moved PG_writeback to bit 1 (and PG_lru with it),
// which the PG_lru check below tells apart; any other layout is refused.
import { GuestcoreError } from "../core/errors.js";
import type { WasmCore } from "../core/wasm.js";
import type { Kernel } from "../introspect/kernel.js";
import type { PageFilter } from "./page-filter.js";

const CHUNK_PFNS = 1 << 15;

export interface FlagBits {
  locked: number;
  uptodate: number;
  dirty: number;
  writeback: number;
  swapbacked: number;
}

export function pageFlagBits(kernel: Kernel): FlagBits {
  const info = kernel.info;
  const n = (k: string) => {
    const v = info.number(k);
    return v === undefined ? undefined : Number(v);
  };
  const lru = n("PG_lru");
  const priv = n("PG_private");
  const slab = n("PG_slab");
  const swapbacked = n("PG_swapbacked");
  if (lru === 4 && priv === 13 && slab === 9 && swapbacked !== undefined && swapbacked > 15 && swapbacked < 32) {
    return { locked: 0, uptodate: 2, dirty: 3, writeback: 15, swapbacked };
  }
  throw new GuestcoreError(
    `unknown page-flags layout (PG_lru=${lru}, PG_private=${priv}, PG_slab=${slab}): cannot tell clean page-cache pages apart for the warm cache`,
  );
}

export interface FileCachePages {
  /** Bit per pfn, LSB first. */
  bitmap: Uint8Array;
  count: number;
}

export function fileCachePages(kernel: Kernel, core: WasmCore, filter: PageFilter): FileCachePages {
  const bits = pageFlagBits(kernel);
  const info = kernel.info;
  const flagsOff = info.offset("page.flags")!;
  const mappingOff = info.offset("page.mapping")!;
  const size = filter.layout.sizeofPage;
  const bit = (b: number) => 1n << BigInt(b);
  const mustSet = bit(bits.uptodate);
  const mustClear = bit(bits.dirty) | bit(bits.writeback) | bit(bits.locked) | bit(bits.swapbacked);
  const bitmap = new Uint8Array(Math.ceil(filter.maxPfn / 8));
  const mark = core.mark();
  const pagesPtr = core.alloc(CHUNK_PFNS * size);
  const outPtr = core.alloc(CHUNK_PFNS);
  let count = 0;
  try {
    for (const r of filter.ranges) {
      const end = Math.min(r.pfnEnd, filter.maxPfn);
      for (let a = r.pfnStart; a < end; a += CHUNK_PFNS) {
        const n = Math.min(CHUNK_PFNS, end - a);
        kernel.as.readInto(r.memMap + BigInt((a - r.pfnStart) * size), core.bytes(pagesPtr, n * size), `struct page array for pfn ${a}`);
        if (core.x.fileCacheSelect(pagesPtr, n, size, flagsOff, mappingOff, mustSet, mustClear, outPtr) === 0) continue;
        const sel = core.bytes(outPtr, n);
        for (let i = 0; i < n; i++) {
          if (sel[i]) {
            const p = a + i;
            bitmap[p >> 3] |= 1 << (p & 7);
            count++;
          }
        }
      }
    }
  } finally {
    core.release(mark);
  }
  return { bitmap, count };
}
