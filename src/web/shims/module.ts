// node:module in the browser bundle: createRequire serves the one package
// guestcore's readers load at run time there, zstd-codec (zstd-napi is
// native and absent, so they fall back to it as on a machine without it).
import * as zstdCodec from "zstd-codec";

export function createRequire(_from: string | URL): (id: string) => unknown {
  return (id: string) => {
    if (id === "zstd-codec") return zstdCodec;
    throw Object.assign(new Error(`Cannot find module '${id}' in the browser`), { code: "MODULE_NOT_FOUND" });
  };
}
export default { createRequire };
