// node:zlib in the browser bundle, through fflate: the zlib-wrapped
// deflate that makedumpfile -c writes per page.
import { unzlibSync, zlibSync } from "fflate";

export const constants = { Z_BEST_SPEED: 1 };

export function inflateSync(src: Uint8Array, opts: { maxOutputLength?: number } = {}): Uint8Array {
  const out = unzlibSync(src);
  if (opts.maxOutputLength !== undefined && out.length > opts.maxOutputLength) {
    throw Object.assign(new RangeError("Cannot create a Buffer larger than maxOutputLength"), { code: "ERR_BUFFER_TOO_LARGE" });
  }
  return out;
}

export function deflateSync(src: Uint8Array, opts: { level?: number } = {}): Uint8Array {
  return zlibSync(src, { level: (opts.level ?? 6) as 1 });
}
export default { constants, inflateSync, deflateSync };
