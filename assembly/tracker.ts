// The warm-cache block tracker: for each 4 KiB disk block the NBD server
// touches, a keyed 128-bit content hash and a small state machine, shared
// lock-free by every thread that instantiates this core on one memory.
//
// A block may be served from a crashed guest's page cache only when its
// slot is CONSISTENT: the last operation on it started with nothing else
// in flight and ended with nothing having begun since. A read that began
// while a write was in flight, and ended after it, may hash the old data
// while the disk holds the new; the clean-start rule rejects exactly that.
//
// Layout at the table pointer `t` (all little-endian):
//   header, 128 bytes: two cache lines, so that the per-miss counters do
//   not bounce the line every begin() reads.
//     0 magic u32, 4 slots u32 (a power of two, >= BUCKET), 8 bucket u32,
//     12 layout version u32, 16 k0 u64, 24 k1 u64, 32 blind writes in
//     flight u32.
//     64 evictions u64, 72 untracked begins u64, 80 insert races u64,
//     88 stuck ends u64, 96 eviction clock u32.
//   slots, 32 bytes each: 0 key u64 (block + 1, 0 = empty), 8 h0 u64,
//     16 h1 u64, 24 state u32, 28 copy u32 (0 = none, else a host token).
//
// state = kind (bits 0..2) | in-flight count (bits 3..7) | generation
// (bits 8..31). The generation changes on every transition, so one word
// compare is a seqlock over the slot. A slot's key, h0, h1 and copy
// change only while its state is BUSY, or just after a transition that
// already changed the generation (a write's begin takes the copy; the
// one operation about to publish stores h0, h1 while INFLIGHT, which no
// reader takes data from). A CAS that succeeds on a state word read
// before the fields therefore proves the fields were unchanged in
// between (up to 2^24 transitions of one slot during one call, which no
// caller approaches).
//
// A block lives only in the BUCKET slots of its bucket. Inserting is
// lock-free: claim a slot through BUSY, publish the key, then look for a
// rival slot with the same key (an entry or a concurrent inserter). With
// sequentially consistent atomics two inserters cannot both miss each
// other, so whoever sees a rival backs out and retries; no block is ever
// held by two live slots.
//
// Writes that cannot be tracked (bucket full of in-flight slots, or 31
// operations in flight on the block) are "blind": no operation that
// begins while one is in flight gets a clean start. The order matters: a
// write raises the blind count before its last look at the bucket, and
// begin() reads the count only after its own slot is visible (key stored
// or CAS done). With sequentially consistent atomics an operation that
// read the count too early was therefore visible to that last look,
// which then joins it instead of going blind. Reads that cannot be
// tracked are simply not recorded.
//
// Copies: the host attaches a token for a preserved page to a CONSISTENT
// slot whose hash equals the page's. Whoever takes a token out of a slot
// (a write's begin, an eviction, a publish with a new hash, detach) gets
// it exactly once from an atomic exchange and reports it, so the host
// can drop its reference. One token may sit in many slots (equal pages).
//
// Nothing here allocates; every loop is bounded by the bucket, the table
// or a spin budget.
import { siphash128 } from "./siphash";

const MAGIC: u32 = 0x54574347; // "GCWT"
const VERSION: u32 = 1;
const HEADER: usize = 128;
const SLOT: usize = 32;
const BUCKET: u32 = 8;

const H_MAGIC: usize = 0;
const H_SLOTS: usize = 4;
const H_BUCKET: usize = 8;
const H_VERSION: usize = 12;
const H_K0: usize = 16;
const H_K1: usize = 24;
const H_BLIND: usize = 32;
const H_EVICTIONS: usize = 64;
const H_UNTRACKED: usize = 72;
const H_RACES: usize = 80;
const H_STUCK: usize = 88;
const H_CLOCK: usize = 96;

const S_KEY: usize = 0;
const S_H0: usize = 8;
const S_H1: usize = 16;
const S_STATE: usize = 24;
const S_COPY: usize = 28;

const KIND_EMPTY: u32 = 0;
const KIND_INFLIGHT: u32 = 1;
const KIND_CONSISTENT: u32 = 2;
const KIND_UNKNOWN: u32 = 3;
const KIND_BUSY: u32 = 4;
const KIND_MASK: u32 = 7;
const COUNT_SHIFT: u32 = 3;
const COUNT_MAX: u32 = 31;
const GEN_SHIFT: u32 = 8;
const GEN_MASK: u32 = 0xff_ffff;

// Tickets: the generation begin() set (never 0), plus CLEAN when nothing
// was in flight on the block and no blind write was outstanding. BLIND
// (generation 0) marks an untracked write, which end() must still see.
const TICKET_CLEAN: u32 = 0x8000_0000;
const TICKET_BLIND: u32 = 0x4000_0000;

// Spin budgets, in turns of a bucket scan (~10-20 ns each). A BUSY
// section is a handful of stores; only a holder descheduled in the middle
// keeps others waiting. A read may give up early (it is then just not
// recorded); a write or an end() that gave up would cost correctness or
// a slot, so they wait for up to about a quarter of a second.
const SPIN_SHORT: u32 = 1 << 12;
const SPIN_LONG: u32 = 1 << 24;

const CLAIM_RETRY: u32 = 0;
const CLAIM_FULL: u32 = 1;

// Victim preference: a free slot, then an UNKNOWN one (it can serve
// nothing until a later clean operation anyway), then a CONSISTENT one;
// slots holding a copy last, because evicting them throws a preserved
// page away.
const SCORE_NONE: u32 = 99;

@inline
function kindOf(s: u32): u32 {
  return s & KIND_MASK;
}

@inline
function countOf(s: u32): u32 {
  return (s >> COUNT_SHIFT) & COUNT_MAX;
}

@inline
function genOf(s: u32): u32 {
  return s >> GEN_SHIFT;
}

// The state word after one transition from `s`.
@inline
function advance(s: u32, kind: u32, count: u32): u32 {
  let g = (genOf(s) + 1) & GEN_MASK;
  if (g == 0) g = 1;
  return kind | (count << COUNT_SHIFT) | (g << GEN_SHIFT);
}

@inline
function slotAt(t: usize, i: u32): usize {
  return t + HEADER + <usize>i * SLOT;
}

// murmur3's fmix64 over the block xor the secret k1: neighbouring blocks
// spread over buckets, and the guest cannot aim its I/O at one bucket to
// evict what another file left there.
@inline
function bucketOf(t: usize, block: u64): usize {
  let h = block ^ load<u64>(t + H_K1);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccd;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53;
  h ^= h >> 33;
  const buckets = load<u32>(t + H_SLOTS) / BUCKET;
  return slotAt(t, (<u32>h & (buckets - 1)) * BUCKET);
}

// The bucket's slot holding `want`: a live entry if there is one (at most
// one exists), else a BUSY slot with that key (an insert, eviction or
// update in progress), else 0. Callers re-read state, then key, and act
// by CAS on that state word.
function findSlot(b: usize, want: u64): usize {
  let busy: usize = 0;
  for (let i: u32 = 0; i < BUCKET; i++) {
    const p = b + <usize>i * SLOT;
    if (atomic.load<u64>(p + S_KEY) != want) continue;
    const kind = kindOf(atomic.load<u32>(p + S_STATE));
    if (kind == KIND_BUSY) {
      if (busy == 0) busy = p;
    } else if (kind != KIND_EMPTY) {
      return p;
    }
  }
  return busy;
}

@inline
function victimScore(p: usize, s: u32, copyOk: bool): u32 {
  const kind = kindOf(s);
  if (kind == KIND_EMPTY) return 0;
  if (kind != KIND_UNKNOWN && kind != KIND_CONSISTENT) return SCORE_NONE;
  const base: u32 = kind == KIND_UNKNOWN ? 1 : 2;
  if (atomic.load<u32>(p + S_COPY) == 0) return base;
  return copyOk ? base + 2 : SCORE_NONE;
}

// Take a slot for `want`, which the bucket did not hold: returns the new
// INFLIGHT state word, CLAIM_RETRY after a lost race or while a slot is
// BUSY, CLAIM_FULL when every slot has operations in flight. A copy
// thrown out with the victim is reported at `dropped`; with no place to
// report one (dropped == 0, or a copy already reported by this begin)
// victims with copies are passed over.
function claim(t: usize, b: usize, want: u64, dropped: usize): u32 {
  const copyOk = dropped != 0 && load<u32>(dropped) == 0;
  let victim: usize = 0;
  let vs: u32 = 0;
  let best = SCORE_NONE;
  let busySeen = false;
  for (let i: u32 = 0; i < BUCKET; i++) {
    const p = b + <usize>i * SLOT;
    const s = atomic.load<u32>(p + S_STATE);
    const score = victimScore(p, s, copyOk);
    if (score < best) { best = score; victim = p; vs = s; }
    if (kindOf(s) == KIND_BUSY) busySeen = true;
  }
  if (victim == 0) return busySeen ? CLAIM_RETRY : CLAIM_FULL;
  if (best != 0) {
    // An eviction: among the equally good victims, round-robin.
    const hand = atomic.add<u32>(t + H_CLOCK, 1);
    for (let j: u32 = 0; j < BUCKET; j++) {
      const p = b + <usize>((hand + j) & (BUCKET - 1)) * SLOT;
      const s = atomic.load<u32>(p + S_STATE);
      if (victimScore(p, s, copyOk) == best) { victim = p; vs = s; break; }
    }
  }
  const busy = advance(vs, KIND_BUSY, 0);
  if (atomic.cmpxchg<u32>(victim + S_STATE, vs, busy) != vs) return CLAIM_RETRY;
  if (kindOf(vs) != KIND_EMPTY) atomic.add<u64>(t + H_EVICTIONS, 1);
  const copy = atomic.xchg<u32>(victim + S_COPY, 0);
  if (copy != 0 && dropped != 0) store<u32>(dropped, copy);
  atomic.store<u64>(victim + S_KEY, want);
  for (let i: u32 = 0; i < BUCKET; i++) {
    const p = b + <usize>i * SLOT;
    if (p != victim && atomic.load<u64>(p + S_KEY) == want) {
      atomic.store<u64>(victim + S_KEY, 0);
      atomic.store<u32>(victim + S_STATE, advance(busy, KIND_EMPTY, 0));
      atomic.add<u64>(t + H_RACES, 1);
      return CLAIM_RETRY;
    }
  }
  atomic.store<u64>(victim + S_H0, 0);
  atomic.store<u64>(victim + S_H1, 0);
  const next = advance(busy, KIND_INFLIGHT, 1);
  atomic.store<u32>(victim + S_STATE, next);
  return next;
}

/** Bytes a table of `slots` slots takes; 0 unless a power of two >= 8. */
export function trackerBytes(slots: u32): usize {
  if (slots < BUCKET || (slots & (slots - 1)) != 0 || slots > (1 << 26)) return 0;
  return HEADER + <usize>slots * SLOT;
}

/** Lay out an empty table at `t` (8-aligned, trackerBytes(slots) long)
 * before any other thread sees it. Returns false for a bad slot count. */
export function trackerInit(t: usize, slots: u32, k0: u64, k1: u64): bool {
  const bytes = trackerBytes(slots);
  if (bytes == 0 || (t & 7) != 0) return false;
  memory.fill(t, 0, bytes);
  store<u32>(t + H_SLOTS, slots);
  store<u32>(t + H_BUCKET, BUCKET);
  store<u32>(t + H_VERSION, VERSION);
  store<u64>(t + H_K0, k0);
  store<u64>(t + H_K1, k1);
  atomic.store<u32>(t + H_MAGIC, MAGIC);
  return true;
}

/** The table's slot count, or 0 when `t` holds no table of this layout. */
export function trackerSlots(t: usize): u32 {
  if (atomic.load<u32>(t + H_MAGIC) != MAGIC || load<u32>(t + H_VERSION) != VERSION || load<u32>(t + H_BUCKET) != BUCKET) return 0;
  return load<u32>(t + H_SLOTS);
}

/** SipHash-128 of `len` bytes at `ptr` under the table's key. */
export function trackerHash(t: usize, ptr: usize, len: usize, out: usize): void {
  siphash128(ptr, len, load<u64>(t + H_K0), load<u64>(t + H_K1), out);
}

/** Hash `count` pages of `pageSize` bytes at `data` into 16-byte (h0, h1)
 * pairs at `out`: the per-page work for a multi-block NBD request. */
export function trackerHashPages(t: usize, data: usize, pageSize: usize, count: u32, out: usize): void {
  const k0 = load<u64>(t + H_K0);
  const k1 = load<u64>(t + H_K1);
  for (let i: u32 = 0; i < count; i++) {
    siphash128(data + <usize>i * pageSize, pageSize, k0, k1, out + (<usize>i << 4));
  }
}

@inline
function untracked(t: usize): u32 {
  atomic.add<u64>(t + H_UNTRACKED, 1);
  return 0;
}

@inline
function blindTicket(t: usize, announced: bool): u32 {
  if (!announced) atomic.add<u32>(t + H_BLIND, 1);
  atomic.add<u64>(t + H_UNTRACKED, 1);
  return TICKET_BLIND;
}

/**
 * Call before the I/O on `block` is issued; `write` for WRITE, TRIM and
 * WRITE_ZEROES. Returns the ticket to hand to trackerEnd(): non-zero,
 * the new generation with bit 31 set on a clean start; 0 for a read that
 * could not be tracked; TICKET_BLIND (bit 30 alone) for a write that
 * could not be. Copy tokens this call took out of the table go to two
 * u32s at `dropped`: [0] an evicted victim's, [1] the block's own (a
 * write's), 0 where none; dropped = 0 only if no copies are attached.
 */
export function trackerBegin(t: usize, block: u64, write: bool, dropped: usize): u32 {
  if (dropped != 0) store<u64>(dropped, 0);
  const want = block + 1;
  const b = bucketOf(t, block);
  const limit = write ? SPIN_LONG : SPIN_SHORT;
  // A write that finds it cannot be tracked counts itself as blind and
  // then looks once more: an operation that slipped in before the count
  // rose is then seen (and joined), one after it sees the count.
  let announced = false;
  for (let spin: u32 = 0; spin < limit; spin++) {
    const p = findSlot(b, want);
    let next: u32 = 0;
    let fresh = true;
    if (p != 0) {
      const s = atomic.load<u32>(p + S_STATE);
      if (atomic.load<u64>(p + S_KEY) != want) continue;
      const kind = kindOf(s);
      if (kind == KIND_BUSY || kind == KIND_EMPTY) continue;
      const n = countOf(s);
      if (n == COUNT_MAX) {
        if (!write) return untracked(t);
        if (announced) return blindTicket(t, true);
        atomic.add<u32>(t + H_BLIND, 1);
        announced = true;
        continue;
      }
      next = advance(s, KIND_INFLIGHT, n + 1);
      if (atomic.cmpxchg<u32>(p + S_STATE, s, next) != s) continue;
      fresh = n == 0;
      // The copy goes only now that readers see INFLIGHT: a lookup can no
      // longer validate the old content, and attach() needs CONSISTENT.
      if (write && dropped != 0) store<u32>(dropped, atomic.xchg<u32>(p + S_COPY, 0), 4);
    } else {
      next = claim(t, b, want, dropped);
      if (next == CLAIM_RETRY) continue;
      if (next == CLAIM_FULL) {
        if (!write) return untracked(t);
        if (announced) return blindTicket(t, true);
        atomic.add<u32>(t + H_BLIND, 1);
        announced = true;
        continue;
      }
    }
    if (announced) atomic.sub<u32>(t + H_BLIND, 1);
    // Read only now that our slot is visible: see "blind" at the top.
    const clean = fresh && atomic.load<u32>(t + H_BLIND) == 0;
    return genOf(next) | (clean ? TICKET_CLEAN : 0);
  }
  return write ? blindTicket(t, announced) : untracked(t);
}

/**
 * Call after the I/O began with `ticket` completed, with the content hash
 * of the block as it now is on disk (for a read, of the data read; for a
 * write, of the data written) and whether the I/O succeeded. The block
 * becomes CONSISTENT with (h0, h1) only when nothing else overlapped this
 * operation; otherwise UNKNOWN once the last one in flight ends. Returns
 * a copy token that had to go because the block's hash changed, or 0.
 */
export function trackerEnd(t: usize, block: u64, ticket: u32, h0: u64, h1: u64, ok: bool): u32 {
  if (ticket == 0) return 0;
  if ((ticket & GEN_MASK) == 0) {
    if ((ticket & TICKET_BLIND) != 0) atomic.sub<u32>(t + H_BLIND, 1);
    return 0;
  }
  const want = block + 1;
  const b = bucketOf(t, block);
  for (let spin: u32 = 0; spin < SPIN_LONG; spin++) {
    const p = findSlot(b, want);
    // Our own count pins the slot, so it is only missing after a second
    // end() for one ticket.
    if (p == 0) return 0;
    const s = atomic.load<u32>(p + S_STATE);
    if (atomic.load<u64>(p + S_KEY) != want) continue;
    const kind = kindOf(s);
    if (kind == KIND_BUSY) continue;
    if (kind != KIND_INFLIGHT) return 0;
    const n = countOf(s);
    if (ok && (ticket & TICKET_CLEAN) != 0 && genOf(s) == (ticket & GEN_MASK) && n == 1) {
      // Without a copy the hash may be stored while the slot is still
      // INFLIGHT, which no reader takes data from, and published by the
      // one CAS: no BUSY step, one locked instruction less (10-15% of an
      // update). Should the CAS fail (an operation joined), the slot is
      // not published and, with no copy, no stale hash can matter: attach
      // needs CONSISTENT, and a publication stores its own hash first.
      if (atomic.load<u32>(p + S_COPY) == 0) {
        store<u64>(p + S_H0, h0);
        store<u64>(p + S_H1, h1);
        if (atomic.cmpxchg<u32>(p + S_STATE, s, advance(s, KIND_CONSISTENT, 0)) == s) return 0;
        continue;
      }
      const busy = advance(s, KIND_BUSY, 0);
      if (atomic.cmpxchg<u32>(p + S_STATE, s, busy) != s) continue;
      const same = atomic.load<u64>(p + S_H0) == h0 && atomic.load<u64>(p + S_H1) == h1;
      // Plain stores: readers validate them by the state word.
      store<u64>(p + S_H0, h0);
      store<u64>(p + S_H1, h1);
      const gone = same ? 0 : atomic.xchg<u32>(p + S_COPY, 0);
      atomic.store<u32>(p + S_STATE, advance(busy, KIND_CONSISTENT, 0));
      return gone;
    }
    const next = n > 1 ? advance(s, KIND_INFLIGHT, n - 1) : advance(s, KIND_UNKNOWN, 0);
    if (atomic.cmpxchg<u32>(p + S_STATE, s, next) == s) return 0;
  }
  // Only a thread that stopped inside a BUSY section gets here; the slot
  // then stays in flight, which is safe, and is counted.
  atomic.add<u64>(t + H_STUCK, 1);
  return 0;
}

// Blocks whose buckets a range call loads ahead of working on them.
const TOUCH_AHEAD: u32 = 8;

// A plain load from each of the buckets of blocks [first, first + n):
// every begin() and end() waits at its CAS for its bucket's cache miss,
// so on a table larger than the cache the misses would come one at a
// time; started together they overlap. Measured on 64 Ki blocks over a
// 32 MiB table: 5 -> 9 M updates/s (Node 20, EPYC).
@inline
function touchBuckets(t: usize, first: u64, i: u32, count: u32): void {
  if ((i & (TOUCH_AHEAD - 1)) != 0) return;
  const n = count - i < TOUCH_AHEAD ? count - i : TOUCH_AHEAD;
  for (let j: u32 = 0; j < n; j++) load<u64>(bucketOf(t, first + <u64>(i + j)));
}

/** trackerBegin over blocks [first, first + count): a u32 ticket a block
 * at `tickets`, the two dropped-copy u32s a block at `dropped` (or 0).
 * Returns how many blocks are tracked. */
export function trackerBeginRange(t: usize, first: u64, count: u32, write: bool, tickets: usize, dropped: usize): u32 {
  let tracked: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    touchBuckets(t, first, i, count);
    const ticket = trackerBegin(t, first + <u64>i, write, dropped == 0 ? 0 : dropped + (<usize>i << 3));
    store<u32>(tickets + (<usize>i << 2), ticket);
    if ((ticket & GEN_MASK) != 0) tracked++;
  }
  return tracked;
}

/** trackerEnd over blocks [first, first + count), with the tickets of
 * trackerBeginRange and 16-byte (h0, h1) pairs at `hashes`; a dropped
 * copy a block goes to `dropped` (u32s, or 0 to ignore them). */
export function trackerEndRange(t: usize, first: u64, count: u32, tickets: usize, hashes: usize, ok: bool, dropped: usize): void {
  for (let i: u32 = 0; i < count; i++) {
    touchBuckets(t, first, i, count);
    const h = hashes + (<usize>i << 4);
    const gone = trackerEnd(t, first + <u64>i, load<u32>(tickets + (<usize>i << 2)), load<u64>(h), load<u64>(h, 8), ok);
    if (dropped != 0) store<u32>(dropped + (<usize>i << 2), gone);
  }
}

/**
 * Seqlock read: when `block` is CONSISTENT, store h0 u64, h1 u64 and the
 * copy token u32 (0 = none) at `out` and return 1; else 0.
 */
export function trackerLookup(t: usize, block: u64, out: usize): u32 {
  const want = block + 1;
  const b = bucketOf(t, block);
  for (let tries: u32 = 0; tries < SPIN_SHORT; tries++) {
    const p = findSlot(b, want);
    if (p == 0) return 0;
    const s = atomic.load<u32>(p + S_STATE);
    const kind = kindOf(s);
    if (kind == KIND_BUSY) continue;
    if (kind != KIND_CONSISTENT) return 0;
    if (atomic.load<u64>(p + S_KEY) != want) continue;
    const h0 = atomic.load<u64>(p + S_H0);
    const h1 = atomic.load<u64>(p + S_H1);
    const copy = atomic.load<u32>(p + S_COPY);
    if (atomic.load<u32>(p + S_STATE) != s) continue;
    store<u64>(out, h0);
    store<u64>(out, h1, 8);
    store<u32>(out, copy, 16);
    return 1;
  }
  return 0;
}

// Put `copy` into slot `p` if it is CONSISTENT with (h0, h1), holds no
// copy and (unless want == 0) still holds block want - 1.
function attachAt(p: usize, want: u64, h0: u64, h1: u64, copy: u32): bool {
  for (let tries: u32 = 0; tries < SPIN_SHORT; tries++) {
    const s = atomic.load<u32>(p + S_STATE);
    const kind = kindOf(s);
    if (kind == KIND_BUSY) continue;
    if (kind != KIND_CONSISTENT) return false;
    if (want != 0 && atomic.load<u64>(p + S_KEY) != want) return false;
    if (atomic.load<u64>(p + S_H0) != h0 || atomic.load<u64>(p + S_H1) != h1) return false;
    if (atomic.load<u32>(p + S_COPY) != 0) return false;
    // The checks above hold as long as the state word does.
    const busy = advance(s, KIND_BUSY, 0);
    if (atomic.cmpxchg<u32>(p + S_STATE, s, busy) != s) continue;
    atomic.store<u32>(p + S_COPY, copy);
    atomic.store<u32>(p + S_STATE, advance(busy, KIND_CONSISTENT, 0));
    return true;
  }
  return false;
}

/** Attach copy token `copy` (non-zero) to `block` if it is CONSISTENT with
 * exactly (h0, h1) and has no copy yet. */
export function trackerAttach(t: usize, block: u64, h0: u64, h1: u64, copy: u32): bool {
  if (copy == 0) return false;
  const p = findSlot(bucketOf(t, block), block + 1);
  return p != 0 && attachAt(p, block + 1, h0, h1, copy);
}

// Take the copy token off slot `p` (only if it is `expect`, unless that
// is 0; only while the slot holds `want`, unless that is 0) through BUSY,
// keeping the slot's kind and in-flight count. Returns the token or 0.
function detachAt(p: usize, want: u64, expect: u32): u32 {
  for (let tries: u32 = 0; tries < SPIN_SHORT; tries++) {
    const s = atomic.load<u32>(p + S_STATE);
    if (want != 0 && atomic.load<u64>(p + S_KEY) != want) return 0;
    const kind = kindOf(s);
    if (kind == KIND_BUSY) continue;
    const copy = atomic.load<u32>(p + S_COPY);
    if (copy == 0 || (expect != 0 && copy != expect)) return 0;
    const busy = advance(s, KIND_BUSY, countOf(s));
    if (atomic.cmpxchg<u32>(p + S_STATE, s, busy) != s) continue;
    const old = atomic.xchg<u32>(p + S_COPY, 0);
    atomic.store<u32>(p + S_STATE, advance(busy, kind, countOf(s)));
    return old;
  }
  return 0;
}

/**
 * Take the copy token off `block` (only if it is `expect`, unless expect
 * is 0) and return it, or 0. It goes through BUSY with a new generation,
 * so an operation in flight on the block will not publish; detach after
 * serving, when nothing else is expected on the block.
 */
export function trackerDetach(t: usize, block: u64, expect: u32): u32 {
  const p = findSlot(bucketOf(t, block), block + 1);
  return p == 0 ? 0 : detachAt(p, block + 1, expect);
}

/** Take every copy off slots [start, start + span): for a host that has
 * already let go of all its copies. Returns how many slots held one. */
export function trackerClearCopies(t: usize, start: u32, span: u32): u32 {
  const slots = load<u32>(t + H_SLOTS);
  const end = start + span < slots && start + span > start ? start + span : slots;
  let n: u32 = 0;
  for (let i = start; i < end; i++) {
    if (detachAt(slotAt(t, i), 0, 0) != 0) n++;
  }
  return n;
}

/** Block numbers (u64s at `out`) of slots [start, start + span) that hold
 * a copy now; returns how many. A snapshot. */
export function trackerCopyBlocks(t: usize, start: u32, span: u32, out: usize): u32 {
  const slots = load<u32>(t + H_SLOTS);
  const end = start + span < slots && start + span > start ? start + span : slots;
  let n: u32 = 0;
  for (let i = start; i < end; i++) {
    const p = slotAt(t, i);
    const key = atomic.load<u64>(p + S_KEY);
    if (key == 0 || atomic.load<u32>(p + S_COPY) == 0) continue;
    store<u64>(out + (<usize>n << 3), key - 1);
    n++;
  }
  return n;
}

/** How many slots are of `kind` (0 empty, 1 in flight, 2 consistent,
 * 3 unknown, 4 busy): a scan, exact only when the table is quiet. */
export function trackerCount(t: usize, kind: u32): u32 {
  const slots = load<u32>(t + H_SLOTS);
  let n: u32 = 0;
  for (let i: u32 = 0; i < slots; i++) {
    if (kindOf(atomic.load<u32>(slotAt(t, i) + S_STATE)) == kind) n++;
  }
  return n;
}

/** A header counter: 0 evictions, 1 untracked begins (reads and blind
 * writes), 2 blind writes in flight, 3 insert races, 4 stuck ends. */
export function trackerCounter(t: usize, which: u32): u64 {
  if (which == 0) return atomic.load<u64>(t + H_EVICTIONS);
  if (which == 1) return atomic.load<u64>(t + H_UNTRACKED);
  if (which == 2) return <u64>atomic.load<u32>(t + H_BLIND);
  if (which == 3) return atomic.load<u64>(t + H_RACES);
  if (which == 4) return atomic.load<u64>(t + H_STUCK);
  return 0;
}

// ---- matcher support: from a page's hash to every block holding it ----
//
// Index at `idx`, private to the thread that built it:
//   0 capacity u32 (2 x slots), 4 indexed u32, 8 distinct hashes u32,
//   12 slots u32; then `capacity` entries of 16 bytes (h0 u64, first
//   slot + 1 u32, unused u32), open-addressed by h0 (already a keyed
//   PRF output, so its low bits are the position); then a u32 a slot:
//   the next slot + 1 with the same h0. Equal pages chain rather than
//   probe, so a thousand copies of one file cost one entry.
const X_CAP: usize = 0;
const X_COUNT: usize = 4;
const X_DISTINCT: usize = 8;
const X_SLOTS: usize = 12;
const X_HEADER: usize = 16;
const X_ENTRY: usize = 16;

/** Bytes the matcher index over a table of `slots` slots takes. */
export function matchIndexBytes(slots: u32): usize {
  if (trackerBytes(slots) == 0) return 0;
  return X_HEADER + (<usize>slots << 1) * X_ENTRY + (<usize>slots << 2);
}

/** Index the table's CONSISTENT slots by hash into `idx` (8-aligned,
 * matchIndexBytes(slots) long). Returns how many slots it indexed. The
 * index is a snapshot; matchAttach() re-checks every slot it names. */
export function matchIndexBuild(t: usize, idx: usize): u32 {
  const slots = load<u32>(t + H_SLOTS);
  const cap = slots << 1;
  memory.fill(idx, 0, X_HEADER + <usize>cap * X_ENTRY);
  const next = idx + X_HEADER + <usize>cap * X_ENTRY;
  let count: u32 = 0;
  let distinct: u32 = 0;
  for (let i: u32 = 0; i < slots; i++) {
    const p = slotAt(t, i);
    const s = atomic.load<u32>(p + S_STATE);
    if (kindOf(s) != KIND_CONSISTENT) continue;
    const h0 = atomic.load<u64>(p + S_H0);
    if (atomic.load<u32>(p + S_STATE) != s) continue;
    // distinct <= slots < cap, so a free entry is always within cap steps.
    let pos = <u32>h0 & (cap - 1);
    for (let step: u32 = 0; step < cap; step++) {
      const e = idx + X_HEADER + <usize>pos * X_ENTRY;
      const head = load<u32>(e, 8);
      if (head == 0) {
        store<u64>(e, h0);
        store<u32>(e, i + 1, 8);
        store<u32>(next + (<usize>i << 2), 0);
        distinct++;
        count++;
        break;
      }
      if (load<u64>(e) == h0) {
        store<u32>(next + (<usize>i << 2), head);
        store<u32>(e, i + 1, 8);
        count++;
        break;
      }
      pos = (pos + 1) & (cap - 1);
    }
  }
  store<u32>(idx + X_CAP, cap);
  store<u32>(idx + X_COUNT, count);
  store<u32>(idx + X_DISTINCT, distinct);
  store<u32>(idx + X_SLOTS, slots);
  return count;
}

/** Attach `copy` to every indexed block that is still CONSISTENT with
 * exactly (h0, h1) and has no copy. Returns how many took it: the host
 * holds that many references to the copy. */
export function matchAttach(t: usize, idx: usize, h0: u64, h1: u64, copy: u32): u32 {
  if (copy == 0) return 0;
  const cap = load<u32>(idx + X_CAP);
  const slots = load<u32>(idx + X_SLOTS);
  if (cap == 0 || slots != load<u32>(t + H_SLOTS)) return 0;
  const next = idx + X_HEADER + <usize>cap * X_ENTRY;
  let pos = <u32>h0 & (cap - 1);
  let head: u32 = 0;
  for (let step: u32 = 0; step < cap; step++) {
    const e = idx + X_HEADER + <usize>pos * X_ENTRY;
    head = load<u32>(e, 8);
    if (head == 0 || load<u64>(e) == h0) break;
    pos = (pos + 1) & (cap - 1);
  }
  let attached: u32 = 0;
  for (let n: u32 = 0; head != 0 && n < slots; n++) {
    const i = head - 1;
    if (attachAt(slotAt(t, i), 0, h0, h1, copy)) attached++;
    head = load<u32>(next + (<usize>i << 2));
  }
  return attached;
}
