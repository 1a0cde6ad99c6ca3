// x86-64 address translation as a resumable walk.
//
// The paging form (number of levels, where huge leaves may sit, which
// bits of an entry are the address) is data set by the host, so 4- and
// 5-level paging share one walker. The walk never reads memory itself:
// it tells the host which 8-byte entry it needs and the host feeds it
// back. That keeps I/O (files, Xen maps, QMP) on the host side, lets the
// host batch and cache table pages, and bounds every walk to `levels`
// steps, so a hostile table (one that points to itself, say) can only
// produce a wrong or absent translation, never a loop.

export const WALK_NEED: i32 = 1;
export const WALK_DONE: i32 = 0;
export const WALK_NOT_PRESENT: i32 = -1;
export const WALK_NONCANONICAL: i32 = -2;
export const WALK_BAD_STATE: i32 = -3;
// An entry leads back to a table this walk already used. Linux never
// builds recursive mappings, so this is corruption (or an attack).
export const WALK_LOOP: i32 = -4;

const PTE_PRESENT: u64 = 1;
const PTE_PSE: u64 = 1 << 7;

let formLevels: i32 = 4;
// Bits of an entry that hold the next table's (or the page's) address,
// with the SME/SEV encryption bit already removed by the host.
let formAddrMask: u64 = 0x000f_ffff_ffff_f000;
// Bit i set: a leaf with PSE may sit at level i (1 = PTE level).
// x86-64 allows 2 MiB leaves at level 2 and 1 GiB leaves at level 3.
let formHugeLevels: u32 = (1 << 2) | (1 << 3);

let wVaddr: u64 = 0;
let wLevel: i32 = 0;
let wTable: u64 = 0;
let wResult: u64 = 0;
let wPageShift: i32 = 12;
let wActive: bool = false;
// Tables visited by the current walk, for loop detection (at most 5).
const visited: usize = memory.data(8 * 6);
let nVisited: i32 = 0;

export function pagingSetForm(levels: i32, addrMask: u64, hugeLevels: u32): void {
  formLevels = levels;
  formAddrMask = addrMask;
  formHugeLevels = hugeLevels;
}

function vaBits(): i32 {
  return 12 + 9 * formLevels;
}

function isCanonical(va: u64): bool {
  const bits = vaBits();
  const top = <i64>va >> (bits - 1);
  return top == 0 || top == -1;
}

function indexAt(level: i32): u64 {
  return (wVaddr >> <u64>(12 + 9 * (level - 1))) & 0x1ff;
}

export function walkStart(root: u64, vaddr: u64): i32 {
  wActive = false;
  if (formLevels < 2 || formLevels > 5) return WALK_BAD_STATE;
  if (!isCanonical(vaddr)) return WALK_NONCANONICAL;
  wVaddr = vaddr;
  wLevel = formLevels;
  wTable = root & formAddrMask;
  store<u64>(visited, wTable);
  nVisited = 1;
  wActive = true;
  return WALK_NEED;
}

// Physical address of the entry the walk needs next.
export function walkNeedAddr(): u64 {
  return wTable + (indexAt(wLevel) << 3);
}

export function walkFeed(entry: u64): i32 {
  if (!wActive) return WALK_BAD_STATE;
  if ((entry & PTE_PRESENT) == 0) {
    wActive = false;
    return WALK_NOT_PRESENT;
  }
  const addr = entry & formAddrMask;
  const level = wLevel;
  if (level == 1 || ((entry & PTE_PSE) != 0 && (formHugeLevels & (1 << level)) != 0)) {
    const shift = 12 + 9 * (level - 1);
    const pageMask: u64 = (<u64>1 << <u64>shift) - 1;
    wResult = (addr & ~pageMask) | (wVaddr & pageMask);
    wPageShift = shift;
    wActive = false;
    return WALK_DONE;
  }
  for (let i = 0; i < nVisited; i++) {
    if (load<u64>(visited + (<usize>i << 3)) == addr) {
      wActive = false;
      return WALK_LOOP;
    }
  }
  store<u64>(visited + (<usize>nVisited << 3), addr);
  nVisited++;
  wTable = addr;
  wLevel = level - 1;
  return WALK_NEED;
}

export function walkResult(): u64 {
  return wResult;
}

export function walkPageShift(): i32 {
  return wPageShift;
}
