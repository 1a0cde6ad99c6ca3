// Compress a batch of pages that sits in (shared) Wasm memory. The same
// function runs in a worker thread or, with --workers 0, inline.
import type { PageCodec } from "../codecs/codec.js";

export const PAGE_ZERO = 2;
export const PAGE_COMPRESSED = 1;
export const PAGE_RAW = 0;

export interface BatchRequest {
  seq: number;
  /** Offset of `count` pages in the shared memory. */
  ptr: number;
  count: number;
  /** Offset of `count` bytes: 1 where the page is a zero page to skip. */
  zeroPtr: number;
}

export interface BatchResult {
  seq: number;
  /** Per page: PAGE_ZERO, PAGE_COMPRESSED or PAGE_RAW. */
  kinds: Uint8Array;
  /** Per page: bytes in `data` (0 for zero pages). */
  sizes: Uint32Array;
  /** The stored bytes of all non-zero pages, in order. */
  data: Uint8Array;
}

export function compressBatch(mem: ArrayBuffer | SharedArrayBuffer, req: BatchRequest, codec: PageCodec, pageSize = 4096): BatchResult {
  const kinds = new Uint8Array(req.count);
  const sizes = new Uint32Array(req.count);
  const zero = new Uint8Array(mem, req.zeroPtr, req.count);
  const out = new Uint8Array(req.count * pageSize);
  let at = 0;
  for (let i = 0; i < req.count; i++) {
    if (zero[i]) {
      kinds[i] = PAGE_ZERO;
      continue;
    }
    const page = new Uint8Array(mem, req.ptr + i * pageSize, pageSize);
    const c = codec.compress(page);
    const stored = c ?? page;
    out.set(stored, at);
    kinds[i] = c ? PAGE_COMPRESSED : PAGE_RAW;
    sizes[i] = stored.length;
    at += stored.length;
  }
  return { seq: req.seq, kinds, sizes, data: out.subarray(0, at) };
}
