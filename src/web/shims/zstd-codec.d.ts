// zstd-codec ships no types; the bundle only hands the module on.
declare module "zstd-codec" {
  export const ZstdCodec: { run(cb: (z: unknown) => void): void };
}
