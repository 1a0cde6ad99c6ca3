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
  let t = 0;
  let len = 0;
  let dist = 0;
  let lit = 0;
  // The hot path is inlined (no closures): V8 runs it about twice as fast.
  if (inEnd === 0) throw new LzoError("empty input");
  if (src[0] > 17) {
    lit = src[ip++] - 17;
    state = lit < 4 ? lit : 4;
  }
  for (;;) {
    if (lit > 0) {
      if (ip + lit > inEnd) throw new LzoError(`literal run of ${lit} bytes at input byte ${ip} runs past the input`);
      if (op + lit > outEnd) throw new LzoError(`literal run of ${lit} bytes at output byte ${op} overruns the ${outEnd}-byte output`);
      if (lit < 32) {
        for (const end = ip + lit; ip < end;) dst[op++] = src[ip++];
      } else {
        dst.set(src.subarray(ip, ip + lit), op);
        ip += lit;
        op += lit;
      }
      lit = 0;
    }
    if (ip >= inEnd) throw new LzoError(`input overrun at byte ${ip}`);
    t = src[ip++];
    if (t >= 64) {
      if (ip >= inEnd) throw new LzoError(`input overrun at byte ${ip}`);
      len = (t >> 5) + 1;
      dist = ((t >> 2) & 7) + (src[ip++] << 3) + 1;
      state = t & 3;
    } else if (t >= 32) {
      len = t & 31;
      if (len === 0) {
        const e = extendedEnd(src, ip, outEnd);
        len = extendedLength(src, ip, e, 31);
        ip = e;
      }
      len += 2;
      if (ip + 2 > inEnd) throw new LzoError(`input overrun at byte ${ip}`);
      const le = src[ip] | (src[ip + 1] << 8);
      ip += 2;
      dist = (le >> 2) + 1;
      state = le & 3;
    } else if (t >= 16) {
      len = t & 7;
      if (len === 0) {
        const e = extendedEnd(src, ip, outEnd);
        len = extendedLength(src, ip, e, 7);
        ip = e;
      }
      len += 2;
      if (ip + 2 > inEnd) throw new LzoError(`input overrun at byte ${ip}`);
      const le = src[ip] | (src[ip + 1] << 8);
      ip += 2;
      dist = ((t & 8) << 11) + (le >> 2);
      if (dist === 0) {
        // End of stream (0x11 0x00 0x00 from the compressor); it must be
        // the last input, as for lzo1x_decompress_safe.
        if (ip !== inEnd) throw new LzoError(`${inEnd - ip} bytes of input follow the end-of-stream marker`);
        return op;
      }
      dist += 16384;
      state = le & 3;
    } else if (state === 0) {
      if (t === 0) {
        const e = extendedEnd(src, ip, outEnd);
        lit = extendedLength(src, ip, e, 15) + 3;
        ip = e;
      } else {
        lit = t + 3;
      }
      state = 4;
      continue;
    } else {
      if (ip >= inEnd) throw new LzoError(`input overrun at byte ${ip}`);
      if (state === 4) {
        dist = (t >> 2) + (src[ip++] << 2) + 2049;
        len = 3;
      } else {
        dist = (t >> 2) + (src[ip++] << 2) + 1;
        len = 2;
      }
      state = t & 3;
    }
    // The match.
    if (dist > op) throw new LzoError(`match distance ${dist} at output byte ${op} reaches before the start`);
    if (op + len > outEnd) throw new LzoError(`match of ${len} bytes at output byte ${op} overruns the ${outEnd}-byte output`);
    let from = op - dist;
    if (dist >= len && len >= 32) {
      dst.copyWithin(op, from, from + len);
      op += len;
    } else {
      // Short or overlapping (it repeats the last `dist` bytes): byte by byte.
      for (const end = op + len; op < end;) dst[op++] = dst[from++];
    }
    lit = state;
  }
}

/**
 * An extended length starting at `ip`: zero bytes that count 255 each,
 * then one non-zero byte. Returns the input position after it.
 */
function extendedEnd(src: Uint8Array, ip: number, outEnd: number): number {
  for (let zeros = 0; ; zeros++) {
    if (ip >= src.length) throw new LzoError(`input overrun at byte ${ip}`);
    if (src[ip++] !== 0) return ip;
    // No length can exceed the output; stop a hostile run of zeros early.
    if ((zeros + 1) * 255 > outEnd) throw new LzoError(`length at input byte ${ip} exceeds the output size`);
  }
}

/** The value of the extended length in [ip, end) (see extendedEnd), plus `base`. */
function extendedLength(src: Uint8Array, ip: number, end: number, base: number): number {
  return (end - ip - 1) * 255 + base + src[end - 1];
}
