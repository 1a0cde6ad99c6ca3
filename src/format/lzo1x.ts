// LZO1X decompression (what makedumpfile -l writes per page: liblzo2's
// lzo1x_1_compress, read back with lzo1x_decompress_safe). Written from the
// format description (the Linux kernel's Documentation/staging/lzo.rst and
// the LZO1X instruction set), not from any LZO package.
//
// The input is hostile: every literal copy is checked against both the
// input and the output, every match against the output and the data
// already produced, and a stream must end with the end-of-stream marker
// exactly at the end of its input, as lzo1x_decompress_safe demands.
//
// Instructions (state = literals copied right after the previous one):
//   first byte 18..255   copy (byte - 17) literals
//   0000LLLL  state 0    literal run of 3 + L bytes (L = 0: extended length + 15)
//   0000DDSS  state 1..3 2-byte match, distance (H << 2) + D + 1, then S literals
//   0000DDSS  state 4    3-byte match, distance (H << 2) + D + 2049, then S literals
//   01LDDDSS             3..4-byte match, distance (H << 3) + D + 1
//   1LLDDDSS             5..8-byte match, distance (H << 3) + D + 1
//   001LLLLL + LE16      2 + L bytes (L = 0: extended + 31), distance (LE16 >> 2) + 1
//   0001HLLL + LE16      2 + L bytes (L = 0: extended + 7),
//                        distance 16384 + (H << 14) + (LE16 >> 2); 16384 ends the stream
// An extended length is a run of zero bytes (255 each) and one non-zero byte.
// The two low bits of a match instruction's last byte (SS) are the number
// of literals that follow it (0..3).

export class LzoError extends Error {}

/**
 * Decompress `src` into `dst`; returns the number of bytes produced.
 * Throws LzoError for any malformed, truncated or overrunning stream.
 */
export function lzo1xDecompress(src: Uint8Array, dst: Uint8Array): number {
  const inEnd = src.length;
  const outEnd = dst.length;
  let ip = 0;
  let op = 0;
  let state = 0;

  const need = (n: number) => {
    if (ip + n > inEnd) throw new LzoError(`input overrun at byte ${ip}`);
  };
  const literals = (n: number) => {
    if (ip + n > inEnd) throw new LzoError(`literal run of ${n} bytes at input byte ${ip} runs past the input`);
    if (op + n > outEnd) throw new LzoError(`literal run of ${n} bytes at output byte ${op} overruns the ${outEnd}-byte output`);
    dst.set(src.subarray(ip, ip + n), op);
    ip += n;
    op += n;
  };
  const match = (dist: number, n: number) => {
    if (dist > op) throw new LzoError(`match distance ${dist} at output byte ${op} reaches before the start`);
    if (op + n > outEnd) throw new LzoError(`match of ${n} bytes at output byte ${op} overruns the ${outEnd}-byte output`);
    let from = op - dist;
    if (dist >= n) {
      dst.copyWithin(op, from, from + n);
      op += n;
    } else {
      // Overlapping copy: repeats the last `dist` bytes, byte by byte.
      for (const end = op + n; op < end;) dst[op++] = dst[from++];
    }
  };
  const extended = (base: number) => {
    let n = 0;
    for (;;) {
      need(1);
      const b = src[ip++];
      if (b !== 0) return n + base + b;
      n += 255;
      // A run of zero bytes can only be as long as the input; this also
      // keeps a hostile length below the output size check's range.
      if (n > outEnd + 255) throw new LzoError(`length at input byte ${ip} exceeds the output size`);
    }
  };

  need(1);
  if (src[0] > 17) {
    const t = src[ip++] - 17;
    literals(t);
    state = t < 4 ? t : 4;
  }
  for (;;) {
    need(1);
    const t = src[ip++];
    let next: number;
    if (t >= 64) {
      need(1);
      const len = (t >> 5) + 1;
      const dist = ((t >> 2) & 7) + (src[ip++] << 3) + 1;
      match(dist, len);
      next = t & 3;
    } else if (t >= 32) {
      const len = (t & 31 ? t & 31 : extended(31)) + 2;
      need(2);
      const le = src[ip] | (src[ip + 1] << 8);
      ip += 2;
      match((le >> 2) + 1, len);
      next = le & 3;
    } else if (t >= 16) {
      const len = (t & 7 ? t & 7 : extended(7)) + 2;
      need(2);
      const le = src[ip] | (src[ip + 1] << 8);
      ip += 2;
      const dist = ((t & 8) << 11) + (le >> 2);
      if (dist === 0) {
        // End of stream (0x11 0x00 0x00 from the compressor); it must be
        // the last input, as for lzo1x_decompress_safe.
        if (ip !== inEnd) throw new LzoError(`${inEnd - ip} bytes of input follow the end-of-stream marker`);
        return op;
      }
      match(dist + 16384, len);
      next = le & 3;
    } else if (state === 0) {
      literals((t ? t : extended(15)) + 3);
      state = 4;
      continue;
    } else {
      need(1);
      const h = src[ip++];
      if (state === 4) match((t >> 2) + (h << 2) + 2049, 3);
      else match((t >> 2) + (h << 2) + 1, 2);
      next = t & 3;
    }
    if (next) literals(next);
    state = next;
  }
}
