// A compression worker: compresses batches of pages straight out of the
// shared Wasm memory and hands back the stored bytes.
import { parentPort, workerData } from "node:worker_threads";
import { Codecs, type CodecName } from "../codecs/codec.js";
import { compressBatch, type BatchRequest } from "./compress-batch.js";

// A thread has its own module instances, so it loads its own codecs.
async function serve(): Promise<void> {
  const { memory, codec: name } = workerData as { memory: WebAssembly.Memory; codec: CodecName };
  const codec = (await Codecs.load()).codec(name);
  parentPort!.on("message", (req: BatchRequest) => {
    parentPort!.postMessage(compressBatch(memory.buffer, req, codec));
  });
  parentPort!.postMessage({ ready: codec.impl });
}

void serve();
