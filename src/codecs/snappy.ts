// Raw snappy decompression (makedumpfile -p: snappy_compress per page, no
// framing), from the snappy format description. Hostile input: every copy
// is bounds-checked and the stream must produce exactly the length its
// preamble declares.
//
// Preamble: the uncompressed length as a little-endian base-128 varint.
// Then elements, by the two low bits of a tag byte:
//   00 literal: length - 1 in the upper six bits; 60..63 mean the length - 1
//      follows in 1..4 little-endian bytes
//   01 copy: length 4 + bits 2..4, offset bits 5..7 << 8 | next byte
//   10 copy: length 1 + upper six bits, offset in the next 2 bytes (LE)
//   11 copy: length 1 + upper six bits, offset in the next 4 bytes (LE)

export class SnappyError extends Error {}

/** The length a snappy stream declares, or throws. */
export function snappyLength(src: Uint8Array): { length: number; headerBytes: number } {
  let len = 0;
  for (let i = 0; i < 5; i++) {
    if (i >= src.length) throw new SnappyError("stream ends inside its length");
    const b = src[i];
    len += (b & 0x7f) * 2 ** (7 * i);
    if (!(b & 0x80)) {
      if (len > 0xffffffff) break;
      return { length: len, headerBytes: i + 1 };
    }
  }
  throw new SnappyError("bad length varint");
}

/** Decompress into `dst`, which must be exactly the declared length. */
export function snappyDecompress(src: Uint8Array, dst: Uint8Array): number {
  const { length, headerBytes } = snappyLength(src);
  if (length !== dst.length) throw new SnappyError(`stream declares ${length} bytes, expected ${dst.length}`);
  let ip = headerBytes;
  let op = 0;
  const end = src.length;
  const need = (n: number) => {
    if (ip + n > end) throw new SnappyError(`input overrun at byte ${ip}`);
  };
  while (ip < end) {
    const tag = src[ip++];
    let len: number;
    let off: number;
    switch (tag & 3) {
      case 0: {
        len = tag >> 2;
        if (len >= 60) {
          const nb = len - 59;
          need(nb);
          len = 0;
          for (let i = 0; i < nb; i++) len += src[ip + i] * 2 ** (8 * i);
          ip += nb;
        }
        len += 1;
        need(len);
        if (op + len > length) throw new SnappyError(`literal of ${len} bytes at output byte ${op} overruns the output`);
        dst.set(src.subarray(ip, ip + len), op);
        ip += len;
        op += len;
        continue;
      }
      case 1:
        need(1);
        len = 4 + ((tag >> 2) & 7);
        off = ((tag >> 5) << 8) | src[ip++];
        break;
      case 2:
        need(2);
        len = 1 + (tag >> 2);
        off = src[ip] | (src[ip + 1] << 8);
        ip += 2;
        break;
      default:
        need(4);
        len = 1 + (tag >> 2);
        off = (src[ip] | (src[ip + 1] << 8) | (src[ip + 2] << 16)) + src[ip + 3] * 2 ** 24;
        ip += 4;
        break;
    }
    if (off === 0 || off > op) throw new SnappyError(`copy offset ${off} at output byte ${op} is out of range`);
    if (op + len > length) throw new SnappyError(`copy of ${len} bytes at output byte ${op} overruns the output`);
    let from = op - off;
    if (off >= len) {
      dst.copyWithin(op, from, from + len);
      op += len;
    } else {
      for (const stop = op + len; op < stop;) dst[op++] = dst[from++];
    }
  }
  if (op !== length) throw new SnappyError(`stream produced ${op} bytes, declared ${length}`);
  return op;
}
