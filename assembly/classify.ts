// Page classification over a window of struct pages, by makedumpfile
// 1.7.2's rules (__exclude_unnecessary_pages), so that the set of pages we
// keep at a dump level is the set makedumpfile keeps.
//
// The host reads `count + 1` struct pages for pfns [pfnStart, pfnStart +
// count] into linear memory (the extra one is the first tail page, where
// compound_order and compound_dtor live) and pre-fills one class byte per
// pfn: CLASS_KEEP where the pfn is backed by the source, CLASS_HOLE where
// it is not. This pass overwrites the class of every excluded pfn with the
// reason. A multi-page exclusion (buddy block, compound page) that runs
// past the window is carried into the next call.

export const CLASS_KEEP: u8 = 0;
export const CLASS_ZERO: u8 = 1;
export const CLASS_CACHE: u8 = 2;
export const CLASS_CACHE_PRIVATE: u8 = 3;
export const CLASS_USER: u8 = 4;
export const CLASS_FREE: u8 = 5;
export const CLASS_HWPOISON: u8 = 6;
export const CLASS_OFFLINE: u8 = 7;
export const CLASS_HOLE: u8 = 8;
const NCLASSES: i32 = 9;

// Dump level bits, as makedumpfile's -d.
const DL_ZERO: i32 = 1;
const DL_CACHE: i32 = 2;
const DL_CACHE_PRI: i32 = 4;
const DL_USER: i32 = 8;
const DL_FREE: i32 = 16;

// makedumpfile reads struct pages in blocks of 512; a compound head in the
// last slot of a block never has its order read. Mirrored for equality.
const PGMM_CACHED: u64 = 512;

// ---- kernel layout, set once per dump by the host ----
let pageSize: i32 = 64;
let offFlags: i32 = 0;
let offMapping: i32 = 24;
let offMapcount: i32 = -1;
let offPrivate: i32 = -1;
let offCompoundHead: i32 = -1;
let offCompoundOrder: i32 = -1;
let offCompoundDtor: i32 = -1;
let orderWidth: i32 = 1;
let dtorWidth: i32 = 1;

let pgLru: i32 = -1;
let pgPrivate: i32 = -1;
let pgSwapcache: i32 = -1;
let pgSwapbacked: i32 = -1;
let pgSlab: i32 = -1;
let pgHwpoison: i32 = -1;
let headMask: u64 = 0;
let buddyMapcount: i64 = 0;
let hasBuddyMapcount: bool = false;
let offlineMapcount: i64 = 0;
let hasOfflineMapcount: bool = false;
let hugetlbDtor: i64 = 0;
let hasHugetlbDtor: bool = false;
let freeAreaLength: i64 = -1;

let pendingEnd: u64 = 0;
let pendingClass: u8 = 0;

// Static data, not a heap allocation: the host owns the heap above
// __heap_base (the stub runtime's allocator would collide with it).
const counts: usize = memory.data(8 * 9);

export function classifySetLayout(
  sizeofPage: i32, flags: i32, mapping: i32, mapcount: i32, private_: i32,
  compoundHead: i32, compoundOrder: i32, compoundDtor: i32,
  orderW: i32, dtorW: i32,
): void {
  pageSize = sizeofPage;
  offFlags = flags;
  offMapping = mapping;
  offMapcount = mapcount;
  offPrivate = private_;
  offCompoundHead = compoundHead;
  offCompoundOrder = compoundOrder;
  offCompoundDtor = compoundDtor;
  orderWidth = orderW;
  dtorWidth = dtorW;
}

// Bit numbers are -1 when VMCOREINFO lacks them; the *Valid flags say
// whether the NUMBER() exists at all, because makedumpfile tests presence.
export function classifySetFlags(
  lru: i32, private_: i32, swapcache: i32, swapbacked: i32, slab: i32, hwpoison: i32,
  head: u64,
  buddy: i64, buddyValid: bool, offline: i64, offlineValid: bool,
  hugetlb: i64, hugetlbValid: bool, freeAreaLen: i64,
): void {
  pgLru = lru;
  pgPrivate = private_;
  pgSwapcache = swapcache;
  pgSwapbacked = swapbacked;
  pgSlab = slab;
  pgHwpoison = hwpoison;
  headMask = head;
  buddyMapcount = buddy;
  hasBuddyMapcount = buddyValid;
  offlineMapcount = offline;
  hasOfflineMapcount = offlineValid;
  hugetlbDtor = hugetlb;
  hasHugetlbDtor = hugetlbValid;
  freeAreaLength = freeAreaLen;
}

export function classifyReset(): void {
  pendingEnd = 0;
  pendingClass = 0;
  memory.fill(counts, 0, 8 * NCLASSES);
}

export function classCount(cls: i32): u64 {
  return cls >= 0 && cls < NCLASSES ? load<u64>(counts + (<usize>cls << 3)) : 0;
}

// makedumpfile's test_bit(): an int mask, so only the low 5 bits of the
// bit number count, and bit 31 sign-extends over the upper half.
@inline
function bump(cls: u8, n: u64): void {
  const p = counts + (<usize>cls << 3);
  store<u64>(p, load<u64>(p) + n);
}

@inline
function testBit(flags: u64, nr: i32): bool {
  if (nr < 0) return false;
  const b = nr & 31;
  const mask: u64 = b == 31 ? 0xffff_ffff_8000_0000 : (<u64>1 << <u64>b);
  return (flags & mask) != 0;
}

@inline
function isCachePage(flags: u64): bool {
  if (testBit(flags, pgLru)) return true;
  // PG_swapcache aliases PG_owner_priv_1 and means swap cache only when
  // PG_swapbacked is set (Linux 4.10, commit 6326fec1122c); before that
  // kernel PG_swapbacked did not exist.
  return (pgSwapbacked < 0 || testBit(flags, pgSwapbacked)) && testBit(flags, pgSwapcache);
}

@inline
function readField(base: usize, off: i32, width: i32): u64 {
  if (off < 0) return 0;
  const p = base + <usize>off;
  if (width == 1) return <u64>load<u8>(p);
  if (width == 2) return <u64>load<u16>(p);
  if (width == 4) return <u64>load<u32>(p);
  return load<u64>(p);
}

// makedumpfile computes `1 << order` in int: x86 masks the shift to 5 bits
// and the result is sign-extended. Only hostile orders reach that case.
@inline
function pagesOfOrder(order: u64): u64 {
  return <u64><i64>(<i32>1 << <i32>(order & 31));
}

function excludeRun(cls: usize, i: i32, count: i32, pfn: u64, nr: u64, reason: u8, maxPfn: u64): i32 {
  let end = pfn + nr;
  if (end < pfn || end > maxPfn) end = maxPfn;
  const inWindow = <u64>(count - i);
  const here = end - pfn < inWindow ? <i32>(end - pfn) : count - i;
  for (let j = 0; j < here; j++) store<u8>(cls + <usize>(i + j), reason);
  bump(reason, <u64>here);
  if (<u64>here < end - pfn) {
    pendingEnd = end;
    pendingClass = reason;
  }
  return here;
}

// Where an exclusion begun in an earlier window ends (0: none), so the
// host can skip windows without memory only when none reaches them.
export function classifyPendingEnd(): u64 {
  return pendingEnd;
}

// Finish a multi-page exclusion begun in an earlier window. makedumpfile
// clears the whole range at once, holes and pfns without a mem_map
// included, so the host calls this for such gaps as well.
export function applyPending(pfnStart: u64, count: i32, cls: usize): i32 {
  if (pendingEnd <= pfnStart) {
    pendingEnd = 0;
    return 0;
  }
  const carry = pendingEnd - pfnStart < <u64>count ? <i32>(pendingEnd - pfnStart) : count;
  for (let j = 0; j < carry; j++) store<u8>(cls + <usize>j, pendingClass);
  bump(pendingClass, <u64>carry);
  if (pendingEnd <= pfnStart + <u64>count) pendingEnd = 0;
  return carry;
}

// Classify pfns [pfnStart, pfnStart + count). Returns the number of pfns
// whose class was decided here (for the host's sanity checks).
export function classifyWindow(
  pfnStart: u64, count: i32, pages: usize, hasNext: bool, cls: usize, level: i32, maxPfn: u64,
): i32 {
  let i: i32 = applyPending(pfnStart, count, cls);

  let decided: i32 = i;
  while (i < count) {
    const pfn = pfnStart + <u64>i;
    if (load<u8>(cls + <usize>i) == CLASS_HOLE) { i++; continue; }
    const page = pages + <usize>i * <usize>pageSize;
    const flags = load<u64>(page + <usize>offFlags);
    const mapping = load<u64>(page + <usize>offMapping);
    const mapcount: i64 = offMapcount >= 0 ? <i64>load<i32>(page + <usize>offMapcount) : 0;
    const priv: u64 = readField(page, offPrivate, 8);
    const compoundHead: u64 = readField(page, offCompoundHead, 8);

    let order: u64 = 0;
    let dtor: u64 = 0;
    const lastInWindow = i == count - 1 && !hasNext;
    if ((pfn % PGMM_CACHED) != PGMM_CACHED - 1 && (flags & headMask) != 0 && !lastInWindow) {
      const next = page + <usize>pageSize;
      order = readField(next, offCompoundOrder, orderWidth);
      dtor = readField(next, offCompoundDtor, dtorWidth);
      if (order >= 64 || (pfn & ((<u64>1 << order) - 1)) != 0) order = 0;
    }
    let nr = pagesOfOrder(order);
    let reason: u8 = 255;

    if ((compoundHead & 1) != 0) {
      // A tail page: its head decided for the whole compound page.
      i++;
      continue;
    } else if ((level & DL_FREE) != 0 && hasBuddyMapcount && offMapcount >= 0 && offPrivate >= 0
        && !(pgSlab >= 0 && (flags & (<u64>1 << <u64>pgSlab)) != 0)
        && mapcount == buddyMapcount) {
      if (freeAreaLength >= 0 && priv >= <u64>freeAreaLength) {
        // makedumpfile warns and keeps the page: the order is not credible.
        i++;
        continue;
      }
      nr = pagesOfOrder(priv);
      reason = CLASS_FREE;
    } else if ((level & DL_CACHE) != 0 && isCachePage(flags)
        && !testBit(flags, pgPrivate) && (mapping & 1) == 0) {
      reason = CLASS_CACHE;
    } else if ((level & DL_CACHE_PRI) != 0 && isCachePage(flags) && (mapping & 1) == 0) {
      reason = testBit(flags, pgPrivate) ? CLASS_CACHE_PRIVATE : CLASS_CACHE;
    } else if ((level & DL_USER) != 0 && ((mapping & 1) != 0 || (hasHugetlbDtor && <i64>dtor == hugetlbDtor))) {
      reason = CLASS_USER;
    } else if (pgHwpoison >= 0 && testBit(flags, pgHwpoison)) {
      reason = CLASS_HWPOISON;
    } else if (hasOfflineMapcount && !(pgSlab >= 0 && (flags & (<u64>1 << <u64>pgSlab)) != 0)
        && mapcount == offlineMapcount) {
      reason = CLASS_OFFLINE;
    } else {
      i++;
      continue;
    }

    if (nr == 1) {
      store<u8>(cls + <usize>i, reason);
      bump(reason, 1);
      i++;
      decided++;
    } else {
      const n = excludeRun(cls, i, count, pfn, nr, reason, maxPfn);
      i += n > 0 ? n : 1;
      decided += n;
    }
  }
  return decided;
}

// Mark all-zero pages among those still kept. `data` holds `n` pages of
// `psize` bytes for pfn slots [first, first + n) of the class array.
export function markZeroPages(data: usize, psize: i32, cls: usize, first: i32, n: i32): i32 {
  let found: i32 = 0;
  for (let k = 0; k < n; k++) {
    const c = cls + <usize>(first + k);
    if (load<u8>(c) != CLASS_KEEP) continue;
    if (isZero(data + <usize>k * <usize>psize, psize)) {
      store<u8>(c, CLASS_ZERO);
      bump(CLASS_ZERO, 1);
      found++;
    }
  }
  return found;
}

// One byte per page of `data`: 1 where the page is all zero. For the
// write pass, where zero pages are found among dumpable pages just before
// compression, as makedumpfile does for kdump-compressed output.
export function findZeroPages(data: usize, psize: i32, n: i32, out: usize): i32 {
  let found: i32 = 0;
  for (let k = 0; k < n; k++) {
    const z = isZero(data + <usize>k * <usize>psize, psize);
    store<u8>(out + <usize>k, z ? 1 : 0);
    if (z) found++;
  }
  return found;
}

@inline
function isZero(p: usize, len: i32): bool {
  let acc = i64x2.splat(0);
  const end = p + <usize>len;
  let q = p;
  while (q + 64 <= end) {
    acc = v128.or(acc, v128.or(v128.or(v128.load(q), v128.load(q, 16)), v128.or(v128.load(q, 32), v128.load(q, 48))));
    // An early exit keeps non-zero pages (the common case) cheap.
    if (v128.any_true(acc)) return false;
    q += 64;
  }
  while (q < end) {
    if (load<u8>(q) != 0) return false;
    q++;
  }
  return true;
}

// Pack the class array into a bitmap: bit set when the class is in `mask`
// (bit c of mask = class c). Bits are LSB-first within each byte, the
// order makedumpfile's bitmaps use. `bitOffset` must be a multiple of 8.
export function packBitmap(cls: usize, n: i32, mask: u32, out: usize, bitOffset: i32): i32 {
  let set: i32 = 0;
  const base = out + <usize>(bitOffset >> 3);
  for (let i = 0; i < n; i += 8) {
    let byte: u32 = 0;
    const lim = n - i < 8 ? n - i : 8;
    for (let b = 0; b < lim; b++) {
      const c = <u32>load<u8>(cls + <usize>(i + b));
      if (((mask >> c) & 1) != 0) { byte |= 1 << b; set++; }
    }
    store<u8>(base + <usize>(i >> 3), <u8>byte);
  }
  return set;
}

// Index of the first slot in [from, n) whose class is in `mask`, or n.
export function findClass(cls: usize, from: i32, n: i32, mask: u32): i32 {
  let i = from;
  while (i < n && ((mask >> <u32>load<u8>(cls + <usize>i)) & 1) == 0) i++;
  return i;
}

// Length of the run starting at `from` whose classes are all in `mask`.
export function runLength(cls: usize, from: i32, n: i32, mask: u32): i32 {
  let i = from;
  while (i < n && ((mask >> <u32>load<u8>(cls + <usize>i)) & 1) != 0) i++;
  return i - from;
}
