// Compress a batch of pages that sits in (shared) Wasm memory. The same
// function runs in a worker thread or, with --workers 0, inline.
import type { PageCodec } from "../codecs/codec.js";

export const PAGE_ZERO = 2;
export const PAGE_COMPRESSED = 1;
export const PAGE_RAW = 0;

/**
 * A batch lives entirely in shared memory, so nothing is copied or
 * allocated per batch: `count` pages at `ptr`; one byte per page at
 * `kindPtr`, 1 on input where the page is a zero page to skip and the
 * page's kind on output; one u32 per page at `sizePtr` (bytes stored);
 * the stored bytes of all non-zero pages, in order, at `outPtr`.
 */
export interface BatchRequest {
  seq: number;
  ptr: number;
  count: number;
  kindPtr: number;
  sizePtr: number;
  outPtr: number;
}

export interface BatchResult {
  seq: number;
  /** Bytes stored at outPtr. */
  bytes: number;
}

export function compressBatch(mem: ArrayBuffer | SharedArrayBuffer, req: BatchRequest, codec: PageCodec, pageSize = 4096): BatchResult {
  const kinds = new Uint8Array(mem, req.kindPtr, req.count);
  const sizes = new Uint32Array(mem, req.sizePtr, req.count);
  const out = new Uint8Array(mem, req.outPtr, req.count * pageSize);
  let at = 0;
  for (let i = 0; i < req.count; i++) {
    if (kinds[i]) {
      kinds[i] = PAGE_ZERO;
      sizes[i] = 0;
      continue;
    }
    const page = new Uint8Array(mem, req.ptr + i * pageSize, pageSize);
    let n = codec.compressInto(page, out.subarray(at, at + pageSize));
    kinds[i] = n ? PAGE_COMPRESSED : PAGE_RAW;
    if (!n) {
      out.set(page, at);
      n = pageSize;
    }
    sizes[i] = n;
    at += n;
  }
  return { seq: req.seq, bytes: at };
}
