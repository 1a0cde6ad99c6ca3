// One served disk: the image, its I/O buffers, the tracker and the warm
// copies in one shared Wasm memory, and the NBD server in front of them.
import { statSync } from "node:fs";
import { GuestcoreError } from "../core/errors.js";
import { WasmCore } from "../core/wasm.js";
import type { BlockTracking } from "./block-backend.js";
import { BufferPool } from "./buffer-pool.js";
import { DiskBackend } from "./disk-backend.js";
import { ImageFile, type CacheMode } from "./image-file.js";
import { NbdServer } from "./nbd-server.js";

export interface DiskServiceOptions {
  image: string;
  socket: string;
  cache?: CacheMode;
  readOnly?: boolean;
  exportName?: string;
  /** I/O buffers: chunk size and count bound the memory in flight. */
  chunkBytes?: number;
  chunks?: number;
  log?: (line: string) => void;
  /** Builds the tracking layer on the service's Wasm core (warm cache). */
  tracking?: (core: WasmCore) => BlockTracking;
}

export class DiskService {
  readonly core: WasmCore;
  readonly image: ImageFile;
  readonly backend: DiskBackend;
  readonly server: NbdServer;

  private constructor(readonly opts: DiskServiceOptions) {
    const st = statSync(opts.image, { throwIfNoEntry: false });
    if (!st) throw new GuestcoreError(`${opts.image}: no such file`);
    if (st.isFile() && st.size % 512 !== 0) throw new GuestcoreError(`${opts.image}: size ${st.size} is not a multiple of 512`);
    this.core = new WasmCore();
    this.image = new ImageFile(opts.image, opts.cache ?? "none", opts.readOnly ?? false);
    const pool = new BufferPool(this.core, opts.chunkBytes ?? 1 << 20, opts.chunks ?? 16);
    this.backend = new DiskBackend(this.image, pool, opts.tracking?.(this.core));
    this.server = new NbdServer(this.backend, { exportName: opts.exportName, log: opts.log });
  }

  static async start(opts: DiskServiceOptions): Promise<DiskService> {
    const s = new DiskService(opts);
    await s.server.listen(opts.socket);
    return s;
  }

  async stop(): Promise<void> {
    await this.server.close();
    await this.image.flush().catch(() => {});
    this.image.close();
  }
}
