// The host side of the warm-cache block tracker (assembly/tracker.ts):
// one table in the shared Wasm memory, used at once by the NBD I/O path,
// matcher workers and the serving path, each through its own instance of
// the core and its own scratch region for out-parameters.
//
// Copy ids are the host's names for preserved pages; the table stores
// id + 1 so that 0 means none. Every id the table lets go of (a write's
// begin, an eviction, a new hash) is handed to `onDropped` exactly once
// per block that held it, so the host can count references down.
import { randomBytes } from "node:crypto";
import { GuestcoreError } from "../core/errors.js";
import { instantiateCore, type CoreExports, type WasmCore } from "../core/wasm.js";
import type { BlockTracking } from "./block-backend.js";

export const BLOCK_BYTES = 4096;

/** Slot kinds, as assembly/tracker.ts numbers them. */
export const Kind = { EMPTY: 0, INFLIGHT: 1, CONSISTENT: 2, UNKNOWN: 3, BUSY: 4 } as const;

export interface TrackerKey {
  k0: bigint;
  k1: bigint;
}

export interface BlockHash {
  h0: bigint;
  h1: bigint;
}

export interface TrackedBlock extends BlockHash {
  /** The preserved copy attached to the block, if any. */
  copy?: number;
}

export interface TrackerStats {
  slots: number;
  tableBytes: number;
  /** Table bytes per slot: 32 plus the header's share. */
  bytesPerBlock: number;
  evictions: number;
  /** Begins that could not be recorded (reads) or went blind (writes). */
  untracked: number;
  blindInFlight: number;
  insertRaces: number;
  stuckEnds: number;
}

export interface CoreHandle {
  memory: WebAssembly.Memory;
  exports: CoreExports;
}

export interface TrackerOptions {
  /** Told each copy id a block let go of. */
  onDropped?: (copy: number) => void;
}

// Blocks a range call handles at once; a 1 MiB NBD chunk is 256 blocks,
// and larger ranges go in turns so that the scratch stays fixed.
const RANGE = 256;
const SCRATCH_LOOKUP = 0; // h0, h1, copy: 24 bytes
const SCRATCH_DROPPED = 32; // two u32 for one begin
const SCRATCH_HASH = 48; // 16 bytes
const SCRATCH_TICKETS = 64; // RANGE u32
const SCRATCH_RANGE_DROPPED = SCRATCH_TICKETS + RANGE * 4; // RANGE x two u32
const SCRATCH_HASHES = SCRATCH_RANGE_DROPPED + RANGE * 8; // RANGE x 16 bytes
/** Bytes of the per-thread region a tracker handle writes its out-parameters to. */
export const SCRATCH_BYTES = SCRATCH_HASHES + RANGE * 16;

// Header counters, as trackerCounter numbers them.
const COUNTER_EVICTIONS = 0;
const COUNTER_UNTRACKED = 1;
const COUNTER_BLIND = 2;
const COUNTER_RACES = 3;
const COUNTER_STUCK = 4;

function isCore(c: WasmCore | CoreHandle): c is WasmCore {
  return "x" in c;
}

export class BlockTracker implements BlockTracking {
  readonly memory: WebAssembly.Memory;
  readonly x: CoreExports;
  readonly slots: number;
  private readonly onDropped?: (copy: number) => void;
  private readonly u32: Uint32Array;
  private readonly u64: BigUint64Array;
  private zeroHash: BlockHash | undefined;

  /**
   * A handle on the table at `table`, writing out-parameters to `scratch`
   * (SCRATCH_BYTES, 8-aligned, used by this handle's thread only).
   */
  constructor(core: WasmCore | CoreHandle, readonly table: number, readonly scratch: number, opts: TrackerOptions = {}) {
    this.memory = core.memory;
    this.x = isCore(core) ? core.x : core.exports;
    this.slots = this.x.trackerSlots(table);
    if (this.slots === 0) throw new GuestcoreError(`internal: no block tracker table at ${table}`);
    if (scratch % 8 !== 0) throw new GuestcoreError(`internal: tracker scratch at ${scratch} is not 8-aligned`);
    this.onDropped = opts.onDropped;
    // Shared memory never detaches its buffer, so views made once stay valid.
    this.u32 = new Uint32Array(this.memory.buffer, scratch, SCRATCH_BYTES / 4);
    this.u64 = new BigUint64Array(this.memory.buffer, scratch, SCRATCH_BYTES / 8);
  }

  /** The largest slot count (a power of two) whose table fits `budgetBytes`, or 0. */
  static slotsFor(x: CoreExports, budgetBytes: number): number {
    let slots = 0;
    // trackerBytes() is 0 past the largest table the layout allows.
    for (let s = 8; s <= 2 ** 30; s *= 2) {
      const bytes = x.trackerBytes(s);
      if (bytes === 0 || bytes > budgetBytes) break;
      slots = s;
    }
    return slots;
  }

  /** A scratch region for one more thread's handle (see attach()). */
  static allocScratch(core: WasmCore): number {
    return core.alloc(SCRATCH_BYTES);
  }

  /**
   * A new table of at most `budgetBytes` (the largest power-of-two slot
   * count that fits) in the core's arena, which also gives up to 63 bytes
   * to align it and SCRATCH_BYTES for this handle. The key is the host's
   * secret: without it a guest cannot write a page whose hash equals
   * another block's. Default: 16 random bytes.
   */
  static create(core: WasmCore, budgetBytes: number, key?: TrackerKey, opts: TrackerOptions = {}): BlockTracker {
    const slots = BlockTracker.slotsFor(core.x, budgetBytes);
    if (slots === 0) throw new GuestcoreError(`a block tracker needs at least ${core.x.trackerBytes(8)} bytes, not ${budgetBytes}`);
    const k = key ?? randomKey();
    // Buckets are 256 bytes; on 64-byte lines each then spans four lines, not five.
    const table = (core.alloc(core.x.trackerBytes(slots) + 63) + 63) & ~63;
    if (!core.x.trackerInit(table, slots, k.k0, k.k1)) throw new GuestcoreError(`internal: trackerInit(${slots}) failed`);
    return new BlockTracker(core, table, BlockTracker.allocScratch(core), opts);
  }

  /** A handle for a worker: its own instance of build/core.wasm on the shared memory. */
  static attach(memory: WebAssembly.Memory, table: number, scratch: number, opts: TrackerOptions = {}): BlockTracker {
    return new BlockTracker({ memory, exports: instantiateCore(memory) }, table, scratch, opts);
  }

  /** Before I/O on one block; returns its ticket. */
  beginBlock(block: number, write: boolean): number {
    const ticket = this.x.trackerBegin(this.table, BigInt(block), write ? 1 : 0, this.scratch + SCRATCH_DROPPED);
    this.report(SCRATCH_DROPPED / 4, 2);
    return ticket;
  }

  /** After the I/O on one block: its hash as now on disk, or undefined when unknown (failed I/O). */
  endBlock(block: number, ticket: number, hash: BlockHash | undefined): void {
    const h = hash ?? { h0: 0n, h1: 0n };
    const gone = this.x.trackerEnd(this.table, BigInt(block), ticket, h.h0, h.h1, hash ? 1 : 0);
    if (gone !== 0) this.onDropped?.(gone - 1);
  }

  begin(first: number, n: number, write: boolean): Uint32Array {
    const tickets = new Uint32Array(n);
    for (let done = 0; done < n; done += RANGE) {
      const m = Math.min(RANGE, n - done);
      this.x.trackerBeginRange(this.table, BigInt(first + done), m, write ? 1 : 0,
        this.scratch + SCRATCH_TICKETS, this.scratch + SCRATCH_RANGE_DROPPED);
      tickets.set(this.u32.subarray(SCRATCH_TICKETS / 4, SCRATCH_TICKETS / 4 + m), done);
      this.report(SCRATCH_RANGE_DROPPED / 4, 2 * m);
    }
    return tickets;
  }

  end(first: number, n: number, tickets: Uint32Array, data: number | undefined): void {
    this.endRange(first, n, tickets, (done, m) => {
      if (data !== undefined) this.x.trackerHashPages(this.table, data + done * BLOCK_BYTES, BLOCK_BYTES, m, this.scratch + SCRATCH_HASHES);
      return data !== undefined;
    });
  }

  endZero(first: number, n: number, tickets: Uint32Array): void {
    const z = this.zeroHash ?? (this.zeroHash = this.hashZeroPage());
    this.endRange(first, n, tickets, (_done, m) => {
      for (let i = 0; i < m; i++) {
        this.u64[SCRATCH_HASHES / 8 + 2 * i] = z.h0;
        this.u64[SCRATCH_HASHES / 8 + 2 * i + 1] = z.h1;
      }
      return true;
    });
  }

  /** The block's hash and copy when it is CONSISTENT. */
  lookup(block: number): TrackedBlock | undefined {
    if (!this.x.trackerLookup(this.table, BigInt(block), this.scratch + SCRATCH_LOOKUP)) return undefined;
    const token = this.u32[SCRATCH_LOOKUP / 4 + 4];
    const r: TrackedBlock = { h0: this.u64[SCRATCH_LOOKUP / 8], h1: this.u64[SCRATCH_LOOKUP / 8 + 1] };
    if (token !== 0) r.copy = token - 1;
    return r;
  }

  /** Attach copy `copy` to the block if it is CONSISTENT with exactly `hash` and has none. */
  attachCopy(block: number, hash: BlockHash, copy: number): boolean {
    return this.x.trackerAttach(this.table, BigInt(block), hash.h0, hash.h1, copyToken(copy)) !== 0;
  }

  /** Take the block's copy off (only `copy`, if given); returns the id taken. */
  detachCopy(block: number, copy?: number): number | undefined {
    const token = this.x.trackerDetach(this.table, BigInt(block), copy === undefined ? 0 : copyToken(copy));
    return token === 0 ? undefined : token - 1;
  }

  /** The blocks that hold a copy now (a snapshot). */
  blocksWithCopies(): number[] {
    const span = (RANGE * 16) / 8; // block numbers the hashes region holds
    const out: number[] = [];
    for (let start = 0; start < this.slots; start += span) {
      const n = this.x.trackerCopyBlocks(this.table, start, span, this.scratch + SCRATCH_HASHES);
      for (let i = 0; i < n; i++) out.push(Number(this.u64[SCRATCH_HASHES / 8 + i]));
    }
    return out.sort((a, b) => a - b);
  }

  /**
   * Take every copy off the table without telling onDropped: for a host
   * that has already let go of all of them. Returns how many blocks held one.
   */
  clearCopies(): number {
    let n = 0;
    for (let start = 0; start < this.slots; start += RANGE) n += this.x.trackerClearCopies(this.table, start, RANGE);
    return n;
  }

  /** SipHash-128 of `len` bytes at `ptr` in the shared memory, under the table's key. */
  hash(ptr: number, len: number): BlockHash {
    this.x.trackerHash(this.table, ptr, len, this.scratch + SCRATCH_HASH);
    return { h0: this.u64[SCRATCH_HASH / 8], h1: this.u64[SCRATCH_HASH / 8 + 1] };
  }

  /** Slots of `kind` now (a scan; exact only when no I/O is in flight). */
  count(kind: number): number {
    return this.x.trackerCount(this.table, kind);
  }

  stats(): TrackerStats {
    const c = (i: number) => Number(this.x.trackerCounter(this.table, i));
    const tableBytes = this.x.trackerBytes(this.slots);
    return {
      slots: this.slots,
      tableBytes,
      bytesPerBlock: tableBytes / this.slots,
      evictions: c(COUNTER_EVICTIONS),
      untracked: c(COUNTER_UNTRACKED),
      blindInFlight: c(COUNTER_BLIND),
      insertRaces: c(COUNTER_RACES),
      stuckEnds: c(COUNTER_STUCK),
    };
  }

  /** Bytes of a matcher index over this table. */
  matchIndexBytes(): number {
    return this.x.matchIndexBytes(this.slots);
  }

  /** Index the CONSISTENT blocks by hash at `idx` (matchIndexBytes(), 8-aligned, this thread's). */
  buildMatchIndex(idx: number): number {
    return this.x.matchIndexBuild(this.table, idx);
  }

  /** Attach `copy` to every indexed block CONSISTENT with `hash` and without a copy; returns how many. */
  matchAttach(idx: number, hash: BlockHash, copy: number): number {
    return this.x.matchAttach(this.table, idx, hash.h0, hash.h1, copyToken(copy));
  }

  private endRange(first: number, n: number, tickets: Uint32Array, fillHashes: (done: number, m: number) => boolean): void {
    if (tickets.length !== n) throw new GuestcoreError(`internal: ${tickets.length} tickets for ${n} blocks`);
    for (let done = 0; done < n; done += RANGE) {
      const m = Math.min(RANGE, n - done);
      this.u32.set(tickets.subarray(done, done + m), SCRATCH_TICKETS / 4);
      const ok = fillHashes(done, m);
      this.x.trackerEndRange(this.table, BigInt(first + done), m, this.scratch + SCRATCH_TICKETS,
        this.scratch + SCRATCH_HASHES, ok ? 1 : 0, this.scratch + SCRATCH_RANGE_DROPPED);
      this.report(SCRATCH_RANGE_DROPPED / 4, m);
    }
  }

  // Hand the copy tokens in `n` scratch u32s at `at` to onDropped.
  private report(at: number, n: number): void {
    for (let i = at; i < at + n; i++) {
      const token = this.u32[i];
      if (token !== 0) this.onDropped?.(token - 1);
    }
  }

  private hashZeroPage(): BlockHash {
    // The hashes region is free between calls; a zero page in it is 4 KiB.
    const ptr = this.scratch + SCRATCH_HASHES;
    new Uint8Array(this.memory.buffer, ptr, BLOCK_BYTES).fill(0);
    return this.hash(ptr, BLOCK_BYTES);
  }
}

function copyToken(copy: number): number {
  if (!Number.isInteger(copy) || copy < 0 || copy >= 0xffff_ffff) throw new GuestcoreError(`internal: copy id ${copy} out of range`);
  return copy + 1;
}

function randomKey(): TrackerKey {
  const b = randomBytes(16);
  return { k0: b.readBigUInt64LE(0), k1: b.readBigUInt64LE(8) };
}
