// Who runs a dump's batches: a fixed pool of compression threads over
// the shared Wasm memory, or the calling thread for small dumps.
import { Worker } from "node:worker_threads";
import { GuestcoreError } from "../core/errors.js";
import type { CodecName, PageCodec } from "../codecs/codec.js";
import { BatchAbandoned, runBatch, type BatchRequest, type BatchResult } from "./compress-batch.js";

export interface Compressor {
  readonly impl: string;
  /** Run one batch; batches that write themselves must be given in seq order. */
  compress(req: BatchRequest): Promise<BatchResult>;
  close(): Promise<void>;
}

/** Runs batches in the calling thread: for --workers 0 and small inputs. */
export class InlineCompressor implements Compressor {
  constructor(private readonly memory: WebAssembly.Memory, private readonly codec: PageCodec) {}
  get impl(): string {
    return this.codec.impl;
  }
  async compress(req: BatchRequest): Promise<BatchResult> {
    return runBatch({ memory: this.memory, codec: this.codec }, req);
  }
  async close(): Promise<void> {}
}

type Reply = BatchResult & { ready?: string; failed?: "abandoned" | "guestcore" | "internal"; message?: string; code?: string };

export class WorkerPool implements Compressor {
  private readonly pending = new Map<number, { resolve: (r: BatchResult) => void; reject: (e: Error) => void }>();
  private next = 0;
  private closing = false;
  impl = "";

  private constructor(private readonly workers: Worker[]) {
    for (const w of workers) {
      w.on("message", (m: Reply) => {
        if (m.ready) return;
        const p = this.pending.get(m.seq);
        this.pending.delete(m.seq);
        if (!m.failed) p?.resolve(m);
        else p?.reject(m.failed === "abandoned" ? new BatchAbandoned(m.message)
          : m.failed === "guestcore" ? Object.assign(new GuestcoreError(m.message!), { code: m.code })
            : new Error(`a compression worker failed: ${m.message}`));
      });
      w.on("error", (e) => this.failAll(e));
      w.on("exit", (code) => {
        if (code !== 0 && !this.closing) this.failAll(new GuestcoreError(`a compression worker exited with code ${code}`));
      });
    }
  }

  static async start(n: number, memory: WebAssembly.Memory, codec: CodecName): Promise<WorkerPool> {
    const url = new URL("./compress-worker.js", import.meta.url);
    // Workers allocate little (pages live in shared memory): small heaps keep
    // their footprint, and so the dump's peak RSS, down.
    const resourceLimits = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 32 };
    const workers = Array.from({ length: n }, () => new Worker(url, { workerData: { memory, codec }, resourceLimits }));
    const impls = await Promise.all(workers.map((w) => new Promise<string>((resolve, reject) => {
      w.once("message", (m: { ready?: string }) => resolve(m.ready ?? "?"));
      w.once("error", reject);
    })));
    const pool = new WorkerPool(workers);
    pool.impl = impls[0];
    return pool;
  }

  compress(req: BatchRequest): Promise<BatchResult> {
    return new Promise((resolve, reject) => {
      this.pending.set(req.seq, { resolve, reject });
      // Round robin in seq order: each thread runs its batches in order,
      // so the lowest unfinished batch never waits on the ring.
      this.workers[this.next++ % this.workers.length].postMessage(req);
    });
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  async close(): Promise<void> {
    this.closing = true;
    this.pending.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
