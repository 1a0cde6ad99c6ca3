// Opens any supported input by sniffing its first bytes, never its name.
import { GuestcoreError } from "../core/errors.js";
import { preadExact } from "../core/file.js";
import { isElf } from "../format/elf64.js";
import { isFlatHeader, KDUMP_SIGNATURE, FLAT_SIGNATURE } from "../format/kdump.js";
import { openFlattened } from "./flattened.js";
import { openElf } from "./elf.js";
import { openKdump } from "./kdump.js";
import { openRaw } from "./raw.js";
import { openReadOnly } from "./file-backed.js";
import { closeSync } from "node:fs";
import type { MemorySource } from "./source.js";
import type { Codecs } from "../codecs/codec.js";
import { isXenDumpCore, openXenDumpCore } from "./xen-dumpcore.js";

/** What OpenOptions.format (and the CLI's --input-format) accepts. */
export const INPUT_FORMATS = ["raw", "elf", "kdump", "flattened", "xen-dumpcore"] as const;

export interface OpenOptions {
  /** Force a format instead of sniffing: one of INPUT_FORMATS ("kdump-flattened" is "flattened"). */
  format?: string;
  /** Physical layout of a raw image (see parseLayout). */
  layout?: string;
  /**
   * An already-open source, e.g. a live Xen domain from openXenDomain():
   * used as it is, `path` only names it. Whoever opens with it takes it
   * over (GuestImage closes it).
   */
  source?: MemorySource;
  /** Page decoders for kdump inputs (from Codecs.load(), to have zstd-codec where zstd-napi is missing). */
  codecs?: Codecs;
}

export function sniffFormat(path: string): string {
  const { fd, size } = openReadOnly(path);
  try {
    const head = new Uint8Array(Math.min(32, size));
    preadExact(fd, head, 0, head.length, 0, path);
    if (isElf(head)) return isXenDumpCore(fd, size, path) ? "xen-dumpcore" : "elf";
    const text = Buffer.from(head).toString("latin1");
    if (text.startsWith(KDUMP_SIGNATURE)) return "kdump";
    if (isFlatHeader(head)) return "flattened";
    if (text.startsWith(FLAT_SIGNATURE)) throw new GuestcoreError(`${path}: a makedumpfile header, but not of the flattened type`);
    if (text.startsWith("DISKDUMP")) throw new GuestcoreError(`${path}: the old diskdump format is not supported (only makedumpfile's kdump-compressed)`);
    return "raw";
  } finally {
    closeSync(fd);
  }
}

export function openSource(path: string, opts: OpenOptions = {}): MemorySource {
  if (opts.source) return opts.source;
  const format = opts.format ?? (opts.layout ? "raw" : sniffFormat(path));
  if (format === "elf") return openElf(path);
  if (format === "raw") return openRaw(path, opts.layout);
  if (format === "kdump") return openKdump(path, { codecs: opts.codecs });
  if (format === "flattened" || format === "kdump-flattened") return openFlattened(path, { codecs: opts.codecs });
  if (format === "xen-dumpcore") return openXenDumpCore(path);
  throw new GuestcoreError(`unknown input format "${format}" (expected ${INPUT_FORMATS.join(", ")})`);
}
