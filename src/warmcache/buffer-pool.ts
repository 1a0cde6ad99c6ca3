// Aligned I/O buffers in the shared Wasm memory. Direct I/O needs buffers
// aligned to the device's logical block; Wasm memory starts page-aligned,
// so 4 KiB-aligned offsets in it are 4 KiB-aligned addresses. The tracker
// hashes the data where the disk put it, without a copy.
import type { WasmCore } from "../core/wasm.js";

export const ALIGN = 4096;

export class BufferPool {
  private readonly free: number[] = [];
  private readonly waiters: Array<(ptr: number) => void> = [];

  constructor(readonly core: WasmCore, readonly chunk: number, count: number) {
    const base = core.alloc(chunk * count + ALIGN);
    const first = Math.ceil(base / ALIGN) * ALIGN;
    for (let i = 0; i < count; i++) this.free.push(first + i * chunk);
  }

  /** A chunk; waits while all are in use, which bounds memory whatever the request rate. */
  acquire(): Promise<number> {
    const p = this.free.pop();
    if (p !== undefined) return Promise.resolve(p);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(ptr: number): void {
    const w = this.waiters.shift();
    if (w) w(ptr);
    else this.free.push(ptr);
  }

  view(ptr: number, len: number): Buffer {
    return this.core.buffer(ptr, len);
  }
}
