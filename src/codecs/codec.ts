// Per-page compression, as in makedumpfile's kdump-compressed format: each
// page is compressed on its own, and a page that does not shrink is stored
// as it is. The kdump reader decodes pages through a Codecs object and the
// writers encode through one; whoever starts the work loads it once and
// passes it on, so zstd is loaded once per process (or worker thread).
import { inflateSync, deflateSync, constants as zc } from "node:zlib";
import { GuestcoreError } from "../core/errors.js";
import {
  DUMP_DH_COMPRESSED_LZO, DUMP_DH_COMPRESSED_SNAPPY, DUMP_DH_COMPRESSED_ZLIB, DUMP_DH_COMPRESSED_ZSTD,
} from "../format/kdump.js";
import { lzo1xDecompress } from "./lzo1x.js";
import { snappyDecompress } from "./snappy.js";
import { loadNativeZstd, loadWasmZstd, type Zstd } from "./zstd.js";

/** The codecs guestcore writes. */
export type CodecName = "zstd" | "zlib" | "none";

/** Decodes the pages of one compression (page_desc.flags bit). */
export interface PageDecoder {
  readonly name: string;
  /** page_desc.flags value (and disk_dump_header.status bit) of its pages. */
  readonly flag: number;
  /**
   * Decode one compressed page into `dst` (room for exactly a page): the
   * number of bytes it decodes to. More than a page is a GuestcoreError;
   * a corrupt stream may throw a plain Error, which the reader names.
   */
  decompressInto(src: Uint8Array, dst: Uint8Array): number;
}

/** A codec guestcore can write with (it decodes its own pages too). */
export interface PageCodec extends PageDecoder {
  readonly name: CodecName;
  /** Which implementation runs: "zstd-napi", "zstd-codec", "node:zlib", "none". */
  readonly impl: string;
  /**
   * Compress into `dst` (room for a page): the byte count, or 0 when
   * compression would not save space. The hot path: no allocation per page
   * where the implementation allows it.
   */
  compressInto(page: Uint8Array, dst: Uint8Array): number;
}

class ZlibCodec implements PageCodec {
  readonly name = "zlib";
  readonly flag = DUMP_DH_COMPRESSED_ZLIB;
  readonly impl = "node:zlib";
  // makedumpfile uses compress2(..., Z_BEST_SPEED): the zlib wrapper, level 1.
  compressInto(page: Uint8Array, dst: Uint8Array): number {
    const out = deflateSync(page, { level: zc.Z_BEST_SPEED });
    if (out.length >= page.length) return 0;
    dst.set(out);
    return out.length;
  }
  decompressInto(src: Uint8Array, dst: Uint8Array): number {
    let out: Uint8Array;
    try {
      out = inflateSync(src, { maxOutputLength: dst.length });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
        throw new GuestcoreError(`zlib page decompresses to more than ${dst.length} bytes`);
      }
      throw e;
    }
    dst.set(out);
    return out.length;
  }
}

class ZstdCodec implements PageCodec {
  readonly name = "zstd";
  readonly flag = DUMP_DH_COMPRESSED_ZSTD;
  constructor(private readonly zstd: Zstd) {}
  get impl(): string {
    return this.zstd.impl;
  }
  compressInto(page: Uint8Array, dst: Uint8Array): number {
    return this.zstd.compressInto(page, dst);
  }
  decompressInto(src: Uint8Array, dst: Uint8Array): number {
    return this.zstd.decompressInto(src, dst);
  }
}

class NoCodec implements PageCodec {
  readonly name = "none";
  readonly flag = 0;
  readonly impl = "none";
  compressInto(): number {
    return 0;
  }
  decompressInto(src: Uint8Array, dst: Uint8Array): number {
    if (src.length > dst.length) throw new GuestcoreError(`uncompressed page of ${src.length} bytes, more than ${dst.length}`);
    dst.set(src);
    return src.length;
  }
}

/** makedumpfile -l and -p pages: guestcore reads them but does not write them. */
const LZO: PageDecoder = { name: "lzo", flag: DUMP_DH_COMPRESSED_LZO, decompressInto: lzo1xDecompress };
const SNAPPY: PageDecoder = { name: "snappy", flag: DUMP_DH_COMPRESSED_SNAPPY, decompressInto: snappyDecompress };

/**
 * The loaded codecs: the loader object callers pass around. Its codecs
 * keep compression contexts and scratch buffers, so one Codecs serves one
 * thread at a time.
 */
export class Codecs {
  private readonly zlib = new ZlibCodec();
  private readonly none = new NoCodec();
  private readonly zstd?: ZstdCodec;

  private constructor(zstd: Zstd | undefined) {
    if (zstd) this.zstd = new ZstdCodec(zstd);
  }

  /**
   * Every codec. zstd prefers the native zstd-napi and falls back to
   * zstd-codec's Wasm build when the native module is missing;
   * GUESTCORE_ZSTD=codec forces the fallback.
   */
  static async load(): Promise<Codecs> {
    return new Codecs(loadNativeZstd() ?? (await loadWasmZstd()));
  }

  /**
   * What loads without waiting: zstd only through zstd-napi. For callers
   * that cannot await (a synchronous open with no Codecs given).
   */
  static loadSync(): Codecs {
    return new Codecs(loadNativeZstd());
  }

  /** "zstd-napi", "zstd-codec", or "none" when no zstd could be loaded. */
  get zstdImpl(): string {
    return this.zstd?.impl ?? "none";
  }

  /** A codec to write with. */
  codec(name: CodecName): PageCodec {
    if (name === "zlib") return this.zlib;
    if (name === "none") return this.none;
    if (name !== "zstd") throw new GuestcoreError(`unknown codec "${name}" (zstd, zlib or none)`);
    if (!this.zstd) throw new GuestcoreError("zstd: neither zstd-napi nor zstd-codec can be loaded");
    return this.zstd;
  }

  /** The decoder for one page_desc compression flag (a single bit), or a GuestcoreError naming what is missing. */
  decoder(flag: number): PageDecoder {
    switch (flag) {
      case DUMP_DH_COMPRESSED_ZLIB: return this.zlib;
      case DUMP_DH_COMPRESSED_LZO: return LZO;
      case DUMP_DH_COMPRESSED_SNAPPY: return SNAPPY;
      case DUMP_DH_COMPRESSED_ZSTD:
        if (this.zstd) return this.zstd;
        throw new GuestcoreError("zstd page, but no zstd is loaded (zstd-napi is missing here, and zstd-codec loads only through Codecs.load())");
    }
    throw new GuestcoreError(`unknown compression flags 0x${flag.toString(16)}`);
  }
}

/** One codec by name, from a freshly loaded Codecs (library callers that need just one). */
export async function loadCodec(name: CodecName): Promise<PageCodec> {
  return (await Codecs.load()).codec(name);
}
