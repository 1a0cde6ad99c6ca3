// Rearranging a flattened kdump stream (see format/flattened.ts) into a
// normal kdump-compressed file, as `makedumpfile -R` does: bounded memory,
// and the output appears under its name only when complete.
import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { FlatParser } from "../format/flattened.js";
import { openReadOnly } from "../sources/file-backed.js";
import { AtomicFile } from "./atomic-file.js";

export interface RearrangeResult {
  records: number;
  /** Size of the kdump file written. */
  size: number;
}

/**
 * Turn a flattened stream (a file path or a readable stream, e.g. stdin)
 * into a normal kdump-compressed file at `outPath`, like `makedumpfile -R`.
 * The output appears under its name only when complete.
 */
export async function rearrange(input: string | Readable | AsyncIterable<Uint8Array>, outPath: string): Promise<RearrangeResult> {
  let total: number | undefined;
  let what = "<stream>";
  let stream: AsyncIterable<Uint8Array>;
  if (typeof input === "string") {
    const { fd, size } = openReadOnly(input);
    total = size;
    what = input;
    stream = createReadStream("", { fd, highWaterMark: 1 << 20 });
  } else {
    stream = input;
  }
  let out: AtomicFile | undefined;
  try {
    out = new AtomicFile(outPath);
    const file = out;
    const p = new FlatParser(what, (off, b) => file.writeAt(b, off), total);
    for await (const chunk of stream) {
      p.push(typeof chunk === "string" ? Buffer.from(chunk, "latin1") : chunk);
      if (p.done) break;
    }
    p.finish();
    out.commit();
    return { records: p.records, size: p.size };
  } catch (e) {
    out?.abort();
    throw e;
  } finally {
    if (typeof input === "string") (stream as unknown as { destroy(): void }).destroy();
  }
}
