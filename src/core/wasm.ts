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
  markZeroPages(data: number, psize: number, cls: number, first: number, n: number): number;
  packBitmap(cls: number, n: number, mask: number, out: number, bitOffset: number): number;
  findClass(cls: number, from: number, n: number, mask: number): number;
  findZeroPages(data: number, psize: number, n: number, out: number): number;
  runLength(cls: number, from: number, n: number, mask: number): number;
}

const WASM_PAGE = 65536;
const MAX_PAGES = 16384; // 1 GiB; must match asconfig.json's maximumMemory
let compiled: WebAssembly.Module | undefined;

function wasmPath(): string {
  // dist/src/core/wasm.js -> build/core.wasm
  return fileURLToPath(new URL("../../../build/core.wasm", import.meta.url));
}

export class WasmCore {
  readonly memory: WebAssembly.Memory;
  readonly x: CoreExports;
  private top: number;
  private readonly base: number;

  constructor() {
    if (!compiled) compiled = new WebAssembly.Module(readFileSync(wasmPath()));
    // Shared, so that compression workers read page data where the host
    // read it, without a copy. The maximum only reserves address space.
    this.memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
    const instance = new WebAssembly.Instance(compiled, {
      env: {
        memory: this.memory,
        abort: (_msg: number, _file: number, line: number, col: number) => {
          throw new GuestcoreError(`internal error in the Wasm core at ${line}:${col}`);
        },
      },
    });
    this.x = instance.exports as unknown as CoreExports;
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
