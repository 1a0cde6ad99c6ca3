// A compression worker: compresses batches of pages straight out of the
// shared Wasm memory and hands back the stored bytes.
import { parentPort, workerData } from "node:worker_threads";
import { loadCodec, type CodecName } from "../codecs/codec.js";
import { compressBatch, type BatchRequest } from "./compress-batch.js";

const { memory, codec: name } = workerData as { memory: WebAssembly.Memory; codec: CodecName };
const codec = await loadCodec(name);
parentPort!.on("message", (req: BatchRequest) => {
  const r = compressBatch(memory.buffer, req, codec);
  // Copy into a transferable buffer of its own (the result view may sit
  // inside a larger allocation).
  const data = r.data.slice();
  parentPort!.postMessage({ ...r, data }, [data.buffer as ArrayBuffer, r.kinds.buffer as ArrayBuffer, r.sizes.buffer as ArrayBuffer]);
});
parentPort!.postMessage({ ready: codec.impl });
