// Helpers for targets: find the real captures, read pieces of them, and
// hand an input to a parser that wants a file.
import { closeSync, existsSync, openSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Codecs } from "../src/codecs/codec.js";
import { openSource, type OpenOptions } from "../src/sources/open.js";
import type { MemorySource } from "../src/sources/source.js";
import type { RunContext } from "./target.js";

/** Profiles whose captures seed the targets, smallest first. */
const PROFILES = ["q35-256m", "q35-512m", "q35-256m-la57", "pc-256m-cloud"];

/** A file of the first fixture profile that has it; throws with the command that builds one. */
export function fixtureFile(cacheDir: string, name: string): string {
  for (const p of PROFILES) {
    const f = join(cacheDir, "fixtures", p, name);
    if (existsSync(f)) return f;
  }
  throw new Error(`no real capture ${name} under ${cacheDir}/fixtures: run 'bash fixtures/build-real.sh q35-256m'`);
}

export function readAt(path: string, offset: number, length: number): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const b = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, b, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return b.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/** A file holding the input: the harness's copy when it made one. */
export function inputFile(input: Uint8Array, ctx: RunContext, name = "input.bin"): string {
  if (ctx.inputPath) return ctx.inputPath;
  const f = join(ctx.scratchDir, name);
  writeFileSync(f, input);
  return f;
}

/**
 * The page codecs, loaded once per worker process as the CLI loads them
 * once per command (zstd-napi here; zstd-codec needs the async load, which
 * no target needs). Read-only for the targets: they only decode with it.
 */
const CODECS = Codecs.loadSync();

/** openSource as the CLI calls it, with the loaded codecs. */
export function openInput(path: string, opts: Omit<OpenOptions, "codecs"> = {}): MemorySource {
  return openSource(path, { ...opts, codecs: CODECS });
}

/** Pages decoded per input at most: a mutated bitmap may claim millions. */
const MAX_PAGES = 256;

/** Decode every dumped page (up to a bound), as a dump or `guestcore read` would; also reads the ends of long segments. */
export function readAllPages(src: MemorySource, pageSize = 4096): void {
  const page = new Uint8Array(pageSize);
  let n = 0;
  for (const s of src.segments) {
    for (let a = s.start; a < s.end && n < MAX_PAGES; a += pageSize, n++) src.readBatch([{ paddr: a, dst: page.subarray(0, Math.min(pageSize, s.end - a)) }]);
    if (n >= MAX_PAGES) return;
  }
}

/** A file-format target's run: open the input as the CLI does and read what it lists. */
export function openAndReadAll(path: string): void {
  const src = openInput(path);
  try {
    readAllPages(src);
  } finally {
    src.close();
  }
}
