// Loads the AssemblyScript core and owns its linear memory.
//
// The host imports the memory so it can read file data straight into it
// (no copy between a Node buffer and Wasm). Regions are carved from a
// simple arena above __heap_base; callers ask for views again after any
// allocation, because growing the memory detaches old ArrayBuffers.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { GuestcoreError } from "./errors.js";

export interface CoreExports {
  heapBase(): number;
  pagingSetForm(levels: number, addrMask: bigint, hugeLevels: number): void;
  walkStart(root: bigint, vaddr: bigint): number;
  walkNeedAddr(): bigint;
  walkFeed(entry: bigint): number;
  walkResult(): bigint;
  walkPageShift(): number;
  classifySetLayout(sizeofPage: number, flags: number, mapping: number, mapcount: number, priv: number,
    compoundHead: number, compoundOrder: number, compoundDtor: number, orderW: number, dtorW: number): void;
  classifySetFlags(lru: number, priv: number, swapcache: number, swapbacked: number, slab: number, hwpoison: number,
    head: bigint, buddy: bigint, buddyValid: number, offline: bigint, offlineValid: number,
    hugetlb: bigint, hugetlbValid: number, freeAreaLen: bigint): void;
  classifyReset(): void;
  classCount(cls: number): bigint;
  classifyWindow(pfnStart: bigint, count: number, pages: number, hasNext: number, cls: number, level: number, maxPfn: bigint): number;
  applyPending(pfnStart: bigint, count: number, cls: number): number;
  classifyPendingEnd(): bigint;
  markZeroPages(data: number, psize: number, cls: number, first: number, n: number): number;
  packBitmap(cls: number, n: number, mask: number, out: number, bitOffset: number): number;
  findClass(cls: number, from: number, n: number, mask: number): number;
  findZeroPages(data: number, psize: number, n: number, out: number): number;
  runLength(cls: number, from: number, n: number, mask: number): number;
  siphash128(ptr: number, len: number, k0: bigint, k1: bigint, out: number): void;
  trackerBytes(slots: number): number;
  trackerInit(t: number, slots: number, k0: bigint, k1: bigint): number;
  trackerSlots(t: number): number;
  trackerHash(t: number, ptr: number, len: number, out: number): void;
  trackerHashPages(t: number, data: number, pageSize: number, count: number, out: number): void;
  trackerBegin(t: number, block: bigint, write: number, dropped: number): number;
  trackerEnd(t: number, block: bigint, ticket: number, h0: bigint, h1: bigint, ok: number): number;
  trackerBeginRange(t: number, first: bigint, count: number, write: number, tickets: number, dropped: number): number;
  trackerEndRange(t: number, first: bigint, count: number, tickets: number, hashes: number, ok: number, dropped: number): void;
  trackerLookup(t: number, block: bigint, out: number): number;
  trackerAttach(t: number, block: bigint, h0: bigint, h1: bigint, copy: number): number;
  trackerDetach(t: number, block: bigint, expect: number): number;
  trackerClearCopies(t: number, start: number, span: number): number;
  trackerCopyBlocks(t: number, start: number, span: number, out: number): number;
  trackerCount(t: number, kind: number): number;
  trackerCounter(t: number, which: number): bigint;
  matchIndexBytes(slots: number): number;
  matchIndexBuild(t: number, idx: number): number;
  matchAttach(t: number, idx: number, h0: bigint, h1: bigint, copy: number): number;
  fileCacheSelect(pages: number, n: number, size: number, flagsOff: number, mappingOff: number, mustSet: bigint, mustClear: bigint, out: number): number;
}

const WASM_PAGE = 65536;
const MAX_PAGES = 16384; // 1 GiB; must match asconfig.json's maximumMemory
let compiled: WebAssembly.Module | undefined;

function wasmPath(): string {
  // dist/src/core/wasm.js -> build/core.wasm
  return fileURLToPath(new URL("../../../build/core.wasm", import.meta.url));
}

/**
 * The core instantiated on an existing shared memory, for a worker that
 * works on tables the owning thread laid out there. It has no arena: only
 * the owner allocates. Instantiating re-applies the core's data segments,
 * which resets the static state other instances keep below heapBase
 * (classify's counts): start workers before a classify pass, not in one.
 */
export function instantiateCore(memory: WebAssembly.Memory): CoreExports {
  if (!compiled) compiled = new WebAssembly.Module(readFileSync(wasmPath()));
  const instance = new WebAssembly.Instance(compiled, {
    env: {
      memory,
      abort: (_msg: number, _file: number, line: number, col: number) => {
        throw new GuestcoreError(`internal error in the Wasm core at ${line}:${col}`);
      },
    },
  });
  return instance.exports as unknown as CoreExports;
}

export class WasmCore {
  readonly memory: WebAssembly.Memory;
  readonly x: CoreExports;
  private top: number;
  private readonly base: number;

  constructor() {
    // Shared, so that compression workers read page data where the host
    // read it, without a copy. The maximum only reserves address space.
    this.memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
    this.x = instantiateCore(this.memory);
    this.base = (this.x.heapBase() + 15) & ~15;
    this.top = this.base;
  }

  /** Reserve `size` bytes (16-aligned); grows the memory as needed. */
  alloc(size: number): number {
    const ptr = this.top;
    const end = ptr + ((size + 15) & ~15);
    const have = this.memory.buffer.byteLength;
    if (end > MAX_PAGES * WASM_PAGE) throw new GuestcoreError(`internal: Wasm arena exhausted (${end} bytes)`);
    if (end > have) this.memory.grow(Math.ceil((end - have) / WASM_PAGE));
    this.top = end;
    return ptr;
  }

  /** Free everything allocated since `mark` (arena discipline). */
  release(mark: number): void {
    this.top = mark;
  }

  mark(): number {
    return this.top;
  }

  bytes(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, len);
  }

  /** A Buffer view (for fs and codecs) of Wasm memory. */
  buffer(ptr: number, len: number): Buffer {
    return Buffer.from(this.memory.buffer, ptr, len);
  }
}
