// The flattened form of a kdump-compressed file (makedumpfile -F,
// QEMU's dump-guest-memory "kdump-zlib"/"kdump-lzo"/"kdump-snappy"):
// a 4096-byte header ("makedumpfile", type 1, version 1; big-endian
// int64s), then records of {offset, size} (big-endian int64s) each followed
// by `size` bytes that belong at `offset` of the real file, then an end
// record whose two fields are -1. Records come in the order the writer
// produced them: page descriptors and page data interleave, the headers
// come first; later records may (in principle) overwrite earlier ones.
//
// This module decodes the layout only. sources/flattened.ts reads such a
// file in place; writers/rearrange.ts turns one into a plain kdump file.
import { GuestcoreError } from "../core/errors.js";
import { FLAT_HEADER_SIZE, FLAT_RECORD_HEADER, FLAT_SIGNATURE, FLAT_TYPE } from "./kdump.js";

/** No kdump file is this large; a record reaching beyond it is corrupt. */
export const FLAT_MAX_OFFSET = 2 ** 40;

export function checkFlatHeader(b: Uint8Array, what: string): void {
  if (b.length < FLAT_HEADER_SIZE) throw new GuestcoreError(`${what}: truncated flattened dump: the ${FLAT_HEADER_SIZE}-byte header is cut short`);
  const sig = Buffer.from(b.buffer, b.byteOffset, 16).toString("latin1");
  if (!sig.startsWith(FLAT_SIGNATURE)) throw new GuestcoreError(`${what}: not a flattened dump (no "${FLAT_SIGNATURE}" signature)`);
  const type = new DataView(b.buffer, b.byteOffset, 32).getBigInt64(16, false);
  if (type !== FLAT_TYPE) throw new GuestcoreError(`${what}: flattened dump of unknown type ${type}`);
}

/**
 * Validate one record header. `pos` is where the header sits in the stream,
 * `remaining` the bytes after the header if known. Returns undefined for
 * the end record.
 */
export function checkFlatRecord(offset: bigint, size: bigint, pos: number, remaining: number | undefined, what: string): { offset: number; size: number } | undefined {
  if (offset === -1n && size === -1n) return undefined;
  const at = `${what}: flattened record at byte ${pos}`;
  if (offset < 0n || size < 0n) throw new GuestcoreError(`${at} has a negative ${offset < 0n ? "offset" : "size"} (${offset < 0n ? offset : size})`);
  if (offset + size > BigInt(FLAT_MAX_OFFSET)) {
    throw new GuestcoreError(`${at} claims bytes up to ${offset + size}, beyond any dump (1 TiB)`);
  }
  if (remaining !== undefined && size > BigInt(remaining)) {
    throw new GuestcoreError(`${at} claims ${size} bytes but only ${remaining} remain (truncated?)`);
  }
  return { offset: Number(offset), size: Number(size) };
}

/**
 * Push parser for a flattened stream: feed it chunks, it hands each piece
 * of record data to `onData(offset, bytes)` as it arrives (a record may
 * come in several pieces). Memory: the header and one record header.
 */
export class FlatParser {
  private head = new Uint8Array(FLAT_HEADER_SIZE);
  private headLen = 0;
  private rec = new Uint8Array(FLAT_RECORD_HEADER);
  private recLen = 0;
  private pos = 0;
  private dataLeft = 0;
  private dataOffset = 0;
  private ended = false;
  records = 0;
  /** The end record has been seen. */
  get done(): boolean {
    return this.ended;
  }
  /** Logical size: the end of the furthest record. */
  size = 0;

  constructor(
    private readonly what: string,
    private readonly onData: (offset: number, bytes: Uint8Array) => void,
    /** Total stream length if known (a file), to reject records longer than what remains. */
    private readonly total?: number,
  ) {}

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length && !this.ended) {
      if (this.headLen < FLAT_HEADER_SIZE) {
        const n = Math.min(FLAT_HEADER_SIZE - this.headLen, chunk.length - i);
        this.head.set(chunk.subarray(i, i + n), this.headLen);
        this.headLen += n;
        i += n;
        this.pos += n;
        if (this.headLen === FLAT_HEADER_SIZE) checkFlatHeader(this.head, this.what);
        continue;
      }
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, chunk.length - i);
        this.onData(this.dataOffset, chunk.subarray(i, i + n));
        this.dataOffset += n;
        this.dataLeft -= n;
        i += n;
        this.pos += n;
        continue;
      }
      const n = Math.min(FLAT_RECORD_HEADER - this.recLen, chunk.length - i);
      this.rec.set(chunk.subarray(i, i + n), this.recLen);
      this.recLen += n;
      i += n;
      this.pos += n;
      if (this.recLen < FLAT_RECORD_HEADER) continue;
      this.recLen = 0;
      const v = new DataView(this.rec.buffer);
      const hdrPos = this.pos - FLAT_RECORD_HEADER;
      const r = checkFlatRecord(v.getBigInt64(0, false), v.getBigInt64(8, false), hdrPos,
        this.total === undefined ? undefined : this.total - this.pos, this.what);
      if (!r) {
        this.ended = true;
        break;
      }
      this.records++;
      this.dataOffset = r.offset;
      this.dataLeft = r.size;
      this.size = Math.max(this.size, r.offset + r.size);
    }
  }

  /** At the end of the input: the stream must have ended with its end record. */
  finish(): void {
    if (this.ended) return;
    if (this.headLen < FLAT_HEADER_SIZE) {
      throw new GuestcoreError(`${this.what}: truncated flattened dump: ${this.headLen} bytes, the header alone needs ${FLAT_HEADER_SIZE}`);
    }
    if (this.dataLeft > 0) throw new GuestcoreError(`${this.what}: truncated flattened dump: it ends ${this.dataLeft} bytes into a record`);
    throw new GuestcoreError(`${this.what}: truncated flattened dump: it ends without its end record`);
  }
}
