// What the NBD server serves: a byte range store with the NBD verbs. The
// protocol room (nbd-server.ts) knows nothing of images, tracking or warm
// copies, as nbdkit's server core knows nothing of its plugins and filters.

export interface BlockBackend {
  readonly size: number;
  readonly readOnly: boolean;
  /** Request alignment the backend needs (the NBD minimum block size). */
  readonly minBlock: number;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  /** WRITE_ZEROES; `mayTrim` when the client allowed holes (no NBD_CMD_FLAG_NO_HOLE). */
  zero(offset: number, length: number, fua: boolean, mayTrim: boolean): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  flush(): Promise<void>;
}

/** Per-block bookkeeping around disk I/O (the warm-cache tracker implements it). */
export interface BlockTracking {
  /** Before I/O on whole or partial 4 KiB blocks [first, first+n). Writes drop preserved copies. */
  begin(first: number, n: number, write: boolean): Uint32Array;
  /**
   * After the I/O. `data` points (in the shared Wasm memory) at the n blocks'
   * bytes as they now are on the disk; undefined when they are unknown
   * (failed I/O, partial blocks), which makes the blocks unreusable.
   */
  end(first: number, n: number, tickets: Uint32Array, data: number | undefined): void;
  /** After zeroing or punching whole blocks: they now read as zeros. */
  endZero(first: number, n: number, tickets: Uint32Array): void;
}

/** Preserved copies of blocks, served instead of the disk (warm cache). */
export interface WarmSource {
  /**
   * Fill as many of blocks [first, first+n) as it can at dst (Wasm memory,
   * block i at dst + i*4096), each verified against the tracker's hash of
   * the disk's content; returns which were filled.
   */
  serve(first: number, n: number, dst: number): Uint8Array;
}
