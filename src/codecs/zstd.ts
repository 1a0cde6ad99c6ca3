// zstd pages, level 1 (makedumpfile's ZSTD_compressCCtx(..., 1)), through
// one of two implementations: the native zstd-napi (2.4x faster per page
// here), or zstd-codec's Emscripten build where no native module exists
// (the browser, a machine without a compiler). zstd-codec only loads
// asynchronously, so only an awaited loader can offer it.
import { createRequire } from "node:module";

export type ZstdImpl = "zstd-napi" | "zstd-codec";

/** One zstd implementation, its contexts reused for every page. */
export interface Zstd {
  readonly impl: ZstdImpl;
  /** Compress into `dst`: the byte count, or 0 when it would not be smaller than the page. */
  compressInto(page: Uint8Array, dst: Uint8Array): number;
  /** Decode one frame into `dst` (a page): the bytes it decoded to. A corrupt frame throws a plain Error, for the reader to name the page. */
  decompressInto(src: Uint8Array, dst: Uint8Array): number;
}

interface NapiBinding {
  CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
  DCtx: new () => { decompress(dst: Uint8Array, src: Uint8Array): number };
  compressBound(n: number): number;
}

interface ZstdSimple {
  compress(b: Uint8Array, level: number): Uint8Array | null;
  decompress(b: Uint8Array): Uint8Array | null;
}

interface ZstdCodecModule {
  ZstdCodec: { run(cb: (z: { Simple: new () => ZstdSimple }) => void): void };
}

const require = createRequire(import.meta.url);

/** zstd's fastest level that stays below makedumpfile -c's size, and when a page is tried at level 1 too. */
const FAST_LEVEL = -1;
const RETRY_ABOVE = 0.25;

/** Every SAMPLE_STRIDE-th byte of a page is counted; a value seen SKEW_MIN times is not uniform. */
const SAMPLE_STRIDE = 8;
const SKEW_MIN = 12;
const histogram = new Uint16Array(256);

/**
 * Does a sample of the page's bytes depart from uniform? Uniform bytes
 * (a 512-byte sample of random data sees each value about twice, and
 * hardly ever 12 times) leave nothing for Huffman coding to take.
 */
export function skewed(page: Uint8Array): boolean {
  histogram.fill(0);
  for (let i = 0; i < page.length; i += SAMPLE_STRIDE) if (++histogram[page[i]] >= SKEW_MIN) return true;
  return false;
}

/** Pages are at most this large (makedumpfile's block_size is the page size). */
const MAX_PAGE = 65536;

class NapiZstd implements Zstd {
  readonly impl = "zstd-napi";
  private readonly cctx;
  private readonly dctx;
  private readonly scratch: Uint8Array;
  private readonly retry: Uint8Array;
  constructor(binding: NapiBinding) {
    // ZSTD_compressCCtx and ZSTD_decompressDCtx into reused buffers: no
    // allocation per page, so no garbage piling up over millions of pages.
    this.cctx = new binding.CCtx();
    this.dctx = new binding.DCtx();
    this.scratch = new Uint8Array(binding.compressBound(MAX_PAGE));
    this.retry = new Uint8Array(binding.compressBound(MAX_PAGE));
  }
  compressInto(page: Uint8Array, dst: Uint8Array): number {
    // Level -1 first: it leaves literals raw and takes 0.63 of level 1's
    // time. A page it leaves above a quarter of its size is mostly
    // literals, which level 1's Huffman coding shrinks: that page is
    // compressed again and the smaller frame kept. So is a page level -1
    // could not shrink at all, unless a sample of its bytes looks uniform:
    // machine code has few long matches but skewed bytes, while random
    // data (encrypted or compressed page cache) would pay twice for
    // nothing. On a real 4 GiB guest's kept pages, 16 % go twice, the
    // pages take 0.81 of level 1's time, and their data is 4 % larger; the
    // file stays below makedumpfile -c's (bench/zstd-policy.ts, bench/speed.ts).
    let n = this.cctx.compress(this.scratch, page, FAST_LEVEL);
    let from = this.scratch;
    if (n > page.length * RETRY_ABOVE && (n < page.length || skewed(page))) {
      const m = this.cctx.compress(this.retry, page, 1);
      if (m < n) {
        n = m;
        from = this.retry;
      }
    }
    if (n >= page.length) return 0;
    dst.set(from.subarray(0, n));
    return n;
  }
  decompressInto(src: Uint8Array, dst: Uint8Array): number {
    return this.dctx.decompress(dst, src);
  }
}

class WasmZstd implements Zstd {
  readonly impl = "zstd-codec";
  constructor(private readonly simple: ZstdSimple) {}
  compressInto(page: Uint8Array, dst: Uint8Array): number {
    const out = this.simple.compress(page, 1);
    if (!out || out.length >= page.length) return 0;
    dst.set(out);
    return out.length;
  }
  decompressInto(src: Uint8Array, dst: Uint8Array): number {
    // zstd-codec allocates what the frame declares, and its heap is a fixed
    // 16 MiB: check the declared size before it sees the frame.
    const declared = zstdFrameContentSize(src);
    if (declared !== dst.length) {
      throw new Error(`its frame declares ${declared < 0 ? "no valid content size" : `${declared} bytes`}, not ${dst.length}`);
    }
    const out = this.simple.decompress(src);
    if (!out) throw new Error("zstd-codec could not decode it");
    dst.set(out.subarray(0, Math.min(out.length, dst.length)));
    return out.length;
  }
}

/** zstd-napi, or undefined where it is missing (or GUESTCORE_ZSTD=codec asks for the fallback). */
export function loadNativeZstd(): Zstd | undefined {
  if (process.env.GUESTCORE_ZSTD === "codec") return undefined;
  try {
    return new NapiZstd(require("zstd-napi/binding") as NapiBinding);
  } catch {
    return undefined;
  }
}

/** zstd-codec's Wasm build, or undefined where it cannot be loaded. */
export async function loadWasmZstd(): Promise<Zstd | undefined> {
  let mod: ZstdCodecModule;
  try {
    mod = require("zstd-codec") as ZstdCodecModule;
  } catch {
    return undefined;
  }
  return new Promise((resolve) => mod.ZstdCodec.run((z) => resolve(new WasmZstd(new z.Simple()))));
}

/** The frame content size a zstd frame header declares, or -1 if absent/invalid. */
export function zstdFrameContentSize(b: Uint8Array): number {
  if (b.length < 6 || b[0] !== 0x28 || b[1] !== 0xb5 || b[2] !== 0x2f || b[3] !== 0xfd) return -1;
  const fhd = b[4];
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const dictBytes = [0, 1, 2, 4][fhd & 3];
  let p = 5 + (single ? 0 : 1) + dictBytes;
  const fcsBytes = [single ? 1 : 0, 2, 4, 8][fcsFlag];
  if (fcsBytes === 0 || p + fcsBytes > b.length) return -1;
  let x = 0;
  for (let i = 0; i < fcsBytes; i++) x += b[p + i] * 2 ** (8 * i);
  p += fcsBytes;
  return fcsBytes === 2 ? x + 256 : x;
}
