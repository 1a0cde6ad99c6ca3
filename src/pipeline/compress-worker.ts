// A compression thread: runs batches (read, zero test, compress, and
// write when the output is seekable) straight in the shared Wasm memory.
import { parentPort, workerData } from "node:worker_threads";
import { Codecs, type CodecName } from "../codecs/codec.js";
import { GuestcoreError } from "../core/errors.js";
import { BatchAbandoned, runBatch, type BatchRequest } from "./compress-batch.js";

// A thread has its own module instances, so it loads its own codecs.
async function serve(): Promise<void> {
  const { memory, codec: name } = workerData as { memory: WebAssembly.Memory; codec: CodecName };
  const ctx = { memory, codec: (await Codecs.load()).codec(name) };
  parentPort!.on("message", (req: BatchRequest) => {
    try {
      parentPort!.postMessage(runBatch(ctx, req));
    } catch (e) {
      // Errors cross the thread boundary as data; the owner rebuilds them.
      const guestcore = e instanceof GuestcoreError;
      parentPort!.postMessage({
        seq: req.seq, failed: e instanceof BatchAbandoned ? "abandoned" : guestcore ? "guestcore" : "internal",
        message: (e as Error).message, code: (e as NodeJS.ErrnoException).code,
      });
    }
  });
  parentPort!.postMessage({ ready: ctx.codec.impl });
}

void serve();
