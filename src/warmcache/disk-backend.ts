// The image behind the NBD server, with the tracker and the warm copies
// layered on it: every request is cut into pool-sized chunks read or written
// in the shared Wasm memory, where the tracker hashes them in place.
import type { BlockBackend, BlockTracking, WarmSource } from "./block-backend.js";
import type { BufferPool } from "./buffer-pool.js";
import type { ImageFile } from "./image-file.js";

export const BLOCK = 4096;
/** O_DIRECT on ext4 over a 512-byte-sector device needs 512-byte alignment. */
const SECTOR = 512;

export interface DiskCounters {
  readBytes: number;
  writeBytes: number;
  diskReadBytes: number;
  warmBlocks: number;
  zeroBytes: number;
  trimBytes: number;
  flushes: number;
}

export class DiskBackend implements BlockBackend {
  readonly minBlock = SECTOR;
  readonly counters: DiskCounters = { readBytes: 0, writeBytes: 0, diskReadBytes: 0, warmBlocks: 0, zeroBytes: 0, trimBytes: 0, flushes: 0 };
  warm: WarmSource | undefined;

  constructor(
    readonly image: ImageFile,
    private readonly pool: BufferPool,
    readonly tracking?: BlockTracking,
  ) {}

  get size(): number {
    return this.image.size;
  }
  get readOnly(): boolean {
    return this.image.readOnly;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    const chunk = this.pool.chunk;
    const ptr = await this.pool.acquire();
    try {
      for (let done = 0; done < length; done += chunk) {
        const n = Math.min(chunk, length - done);
        await this.readChunk(offset + done, n, ptr);
        this.pool.view(ptr, n).copy(out, done);
      }
    } finally {
      this.pool.release(ptr);
    }
    this.counters.readBytes += length;
    return out;
  }

  /** [off, off+len) into ptr; sector-aligned, within one pool chunk. */
  private async readChunk(off: number, len: number, ptr: number): Promise<void> {
    const end = off + len;
    const fb = Math.ceil(off / BLOCK);
    const lb = Math.floor(end / BLOCK);
    let served: Uint8Array | undefined;
    if (this.warm && lb > fb) {
      // Warm blocks land at their place in the chunk; a served block is not read from the disk.
      served = this.warm.serve(fb, lb - fb, ptr + (fb * BLOCK - off));
    }
    let pos = off;
    while (pos < end) {
      // Skip served blocks; read the next run of unserved bytes in one call.
      const b = Math.floor(pos / BLOCK);
      if (served && b >= fb && b < lb && served[b - fb] && pos === b * BLOCK) {
        pos += BLOCK;
        this.counters.warmBlocks++;
        continue;
      }
      let stop = pos;
      while (stop < end) {
        const k = Math.floor(stop / BLOCK);
        if (served && k >= fb && k < lb && served[k - fb] && stop === k * BLOCK) break;
        stop = Math.min(end, (k + 1) * BLOCK);
      }
      await this.readDisk(pos, stop - pos, ptr + (pos - off));
      pos = stop;
    }
  }

  private async readDisk(off: number, len: number, ptr: number): Promise<void> {
    const fb = Math.ceil(off / BLOCK);
    const lb = Math.floor((off + len) / BLOCK);
    const tickets = this.tracking && lb > fb ? this.tracking.begin(fb, lb - fb, false) : undefined;
    let ok = false;
    try {
      await this.image.preadFull(this.pool.view(ptr, len), off);
      this.counters.diskReadBytes += len;
      ok = true;
    } finally {
      if (tickets) this.tracking!.end(fb, lb - fb, tickets, ok ? ptr + (fb * BLOCK - off) : undefined);
    }
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    const chunk = this.pool.chunk;
    const ptr = await this.pool.acquire();
    try {
      for (let done = 0; done < data.length; done += chunk) {
        const n = Math.min(chunk, data.length - done);
        data.copy(this.pool.view(ptr, n), 0, done, done + n);
        await this.writeChunk(offset + done, n, ptr, fua);
      }
    } finally {
      this.pool.release(ptr);
    }
    this.counters.writeBytes += data.length;
  }

  private async writeChunk(off: number, len: number, ptr: number, fua: boolean): Promise<void> {
    const first = Math.floor(off / BLOCK);
    const last = Math.ceil((off + len) / BLOCK);
    const fb = Math.ceil(off / BLOCK);
    const lb = Math.floor((off + len) / BLOCK);
    // Every touched block, partial ones too, leaves the consistent state
    // before the bytes move, and its preserved copy is dropped first.
    const tickets = this.tracking?.begin(first, last - first, true);
    let ok = false;
    try {
      await this.image.pwriteFull(this.pool.view(ptr, len), off, fua);
      ok = true;
    } finally {
      if (tickets) this.endWrite(first, last, fb, lb, tickets, ok ? ptr + (fb * BLOCK - off) : undefined);
    }
  }

  /** Whole blocks get the written data's hash; partial ones become unknown. */
  private endWrite(first: number, last: number, fb: number, lb: number, tickets: Uint32Array, data: number | undefined): void {
    const t = this.tracking!;
    if (fb > first) t.end(first, fb - first, tickets.subarray(0, fb - first), undefined);
    if (lb > fb) t.end(fb, lb - fb, tickets.subarray(fb - first, lb - first), data);
    const tail = Math.max(lb, fb);
    if (last > tail) t.end(tail, last - tail, tickets.subarray(tail - first), undefined);
  }

  async zero(offset: number, length: number, fua: boolean, mayTrim: boolean): Promise<void> {
    await this.zeroRange(offset, length, fua, mayTrim, false);
    this.counters.zeroBytes += length;
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    // A trim that punches reads back as zeros on every Linux filesystem that
    // punches; where it cannot, it is a no-op (the spec allows it) and the
    // blocks keep their content, which the tracker then no longer vouches for.
    await this.zeroRange(offset, length, fua, true, true);
    this.counters.trimBytes += length;
  }

  private async zeroRange(off: number, len: number, fua: boolean, punch: boolean, trimOnly: boolean): Promise<void> {
    const first = Math.floor(off / BLOCK);
    const last = Math.ceil((off + len) / BLOCK);
    const fb = Math.ceil(off / BLOCK);
    const lb = Math.floor((off + len) / BLOCK);
    const tickets = this.tracking?.begin(first, last - first, true);
    let zeroed = false;
    try {
      if (this.image.fallocate(off, len, punch)) zeroed = true;
      else if (!trimOnly) {
        await this.writeZeros(off, len);
        zeroed = true;
      }
      if (fua && zeroed) await this.image.flush();
    } finally {
      if (tickets) {
        const t = this.tracking!;
        if (zeroed && lb > fb) {
          if (fb > first) t.end(first, fb - first, tickets.subarray(0, fb - first), undefined);
          t.endZero(fb, lb - fb, tickets.subarray(fb - first, lb - first));
          if (last > lb) t.end(lb, last - lb, tickets.subarray(lb - first), undefined);
        } else t.end(first, last - first, tickets, undefined);
      }
    }
  }

  private async writeZeros(off: number, len: number): Promise<void> {
    const ptr = await this.pool.acquire();
    try {
      const chunk = this.pool.chunk;
      this.pool.view(ptr, chunk).fill(0);
      for (let done = 0; done < len; done += chunk) {
        const n = Math.min(chunk, len - done);
        await this.image.pwriteFull(this.pool.view(ptr, n), off + done, false);
      }
    } finally {
      this.pool.release(ptr);
    }
  }

  async flush(): Promise<void> {
    await this.image.flush();
    this.counters.flushes++;
  }
}
