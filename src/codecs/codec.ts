// Per-page compression codecs for kdump-compressed output. Each page is
// compressed on its own (makedumpfile's format), and a page that does
// not shrink is stored as it is.
import { deflateSync, inflateSync, constants as zc } from "node:zlib";
import { createRequire } from "node:module";
import { GuestcoreError } from "../core/errors.js";
import { DUMP_DH_COMPRESSED_ZLIB, DUMP_DH_COMPRESSED_ZSTD } from "../format/kdump.js";

export type CodecName = "zstd" | "zlib" | "none";

export interface PageCodec {
  readonly name: CodecName;
  /** page_desc.flags value (and disk_dump_header.status bit) for a compressed page. */
  readonly flag: number;
  /** Which implementation runs: "zstd-napi", "zstd-codec", "node:zlib". */
  readonly impl: string;
  /** Compressed bytes, or undefined when compression would not save space. */
  compress(page: Uint8Array): Uint8Array | undefined;
  /**
   * Compress into `dst` (room for a page): the byte count, or 0 when
   * compression would not save space. The hot path: no allocation per page
   * where the implementation allows it.
   */
  compressInto(page: Uint8Array, dst: Uint8Array): number;
  decompress(data: Uint8Array, pageSize: number): Uint8Array;
}

const require = createRequire(import.meta.url);

class ZlibCodec implements PageCodec {
  readonly name = "zlib";
  readonly flag = DUMP_DH_COMPRESSED_ZLIB;
  readonly impl = "node:zlib";
  // makedumpfile uses compress2(..., Z_BEST_SPEED): the zlib wrapper, level 1.
  compress(page: Uint8Array): Uint8Array | undefined {
    const out = deflateSync(page, { level: zc.Z_BEST_SPEED });
    return out.length < page.length ? out : undefined;
  }
  compressInto(page: Uint8Array, dst: Uint8Array): number {
    return copyInto(this.compress(page), dst);
  }
  decompress(data: Uint8Array, pageSize: number): Uint8Array {
    return inflateSync(data, { maxOutputLength: pageSize });
  }
}

interface ZstdNapi {
  Compressor: new () => { setParameters(p: Record<string, number>): void; compress(b: Uint8Array): Buffer };
  Decompressor: new () => { decompress(b: Uint8Array): Buffer };
}

interface ZstdBinding {
  CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
  compressBound(n: number): number;
}

function copyInto(c: Uint8Array | undefined, dst: Uint8Array): number {
  if (!c) return 0;
  dst.set(c);
  return c.length;
}

class ZstdNapiCodec implements PageCodec {
  readonly name = "zstd";
  readonly flag = DUMP_DH_COMPRESSED_ZSTD;
  readonly impl = "zstd-napi";
  private readonly c;
  private readonly d;
  private readonly cctx;
  private readonly scratch: Uint8Array;
  constructor(mod: ZstdNapi, binding: ZstdBinding) {
    this.c = new mod.Compressor();
    // Level 1, as makedumpfile's ZSTD_compressCCtx(..., 1).
    this.c.setParameters({ compressionLevel: 1 });
    this.d = new mod.Decompressor();
    // ZSTD_compressCCtx into a reused buffer: no allocation, so no garbage
    // for the GC to let pile up over millions of pages.
    this.cctx = new binding.CCtx();
    this.scratch = new Uint8Array(binding.compressBound(65536));
  }
  compressInto(page: Uint8Array, dst: Uint8Array): number {
    const n = this.cctx.compress(this.scratch, page, 1);
    if (n >= page.length) return 0;
    dst.set(this.scratch.subarray(0, n));
    return n;
  }
  compress(page: Uint8Array): Uint8Array | undefined {
    const out = this.c.compress(page);
    return out.length < page.length ? out : undefined;
  }
  decompress(data: Uint8Array, pageSize: number): Uint8Array {
    const out = this.d.decompress(data);
    if (out.length !== pageSize) throw new GuestcoreError(`zstd page decompressed to ${out.length} bytes, not ${pageSize}`);
    return out;
  }
}

interface ZstdSimple {
  compress(b: Uint8Array, level: number): Uint8Array | null;
  decompress(b: Uint8Array): Uint8Array | null;
}

/** zstd through zstd-codec (Emscripten): where no native build is possible. */
class ZstdCodecCodec implements PageCodec {
  readonly name = "zstd";
  readonly flag = DUMP_DH_COMPRESSED_ZSTD;
  readonly impl = "zstd-codec";
  constructor(private readonly simple: ZstdSimple) {}
  compress(page: Uint8Array): Uint8Array | undefined {
    const out = this.simple.compress(page, 1);
    return out && out.length < page.length ? out : undefined;
  }
  compressInto(page: Uint8Array, dst: Uint8Array): number {
    return copyInto(this.compress(page), dst);
  }
  decompress(data: Uint8Array, pageSize: number): Uint8Array {
    const out = this.simple.decompress(data);
    if (!out || out.length !== pageSize) throw new GuestcoreError("zstd page does not decompress to a page");
    return out;
  }
}

class NoCodec implements PageCodec {
  readonly name = "none";
  readonly flag = 0;
  readonly impl = "none";
  compress(): undefined {
    return undefined;
  }
  compressInto(): number {
    return 0;
  }
  decompress(data: Uint8Array): Uint8Array {
    return data;
  }
}

let zstdCodecSimple: Promise<ZstdSimple> | undefined;

function loadZstdCodec(): Promise<ZstdSimple> {
  zstdCodecSimple ??= new Promise((resolve) => {
    const { ZstdCodec } = require("zstd-codec") as { ZstdCodec: { run(cb: (z: { Simple: new () => ZstdSimple }) => void): void } };
    ZstdCodec.run((z) => resolve(new z.Simple()));
  });
  return zstdCodecSimple;
}

/**
 * A codec by name. zstd prefers the native zstd-napi (2.4x faster per
 * page here) and falls back to zstd-codec's Wasm build when the native
 * module is missing; GUESTCORE_ZSTD=codec forces the fallback.
 */
export async function loadCodec(name: CodecName): Promise<PageCodec> {
  if (name === "zlib") return new ZlibCodec();
  if (name === "none") return new NoCodec();
  if (name !== "zstd") throw new GuestcoreError(`unknown codec "${name}" (zstd, zlib or none)`);
  if (process.env.GUESTCORE_ZSTD !== "codec") {
    try {
      return new ZstdNapiCodec(require("zstd-napi") as ZstdNapi, require("zstd-napi/binding") as ZstdBinding);
    } catch {
      // no native build here: fall through to the Wasm one
    }
  }
  return new ZstdCodecCodec(await loadZstdCodec());
}

