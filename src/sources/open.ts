// Opens any supported input by sniffing its first bytes, never its name.
import { GuestcoreError } from "../core/errors.js";
import { preadExact } from "../core/file.js";
import { isElf } from "../format/elf64.js";
import { openElf } from "./elf.js";
import { openRaw } from "./raw.js";
import { openReadOnly } from "./file-backed.js";
import { closeSync } from "node:fs";
import type { MemorySource } from "./source.js";

export interface OpenOptions {
  /** Force a format instead of sniffing: "raw" or "elf". */
  format?: string;
  /** Physical layout of a raw image (see parseLayout). */
  layout?: string;
}

const KDUMP_SIGNATURES = ["KDUMP   ", "makedumpfile"];

export function sniffFormat(path: string): string {
  const { fd, size } = openReadOnly(path);
  try {
    const head = new Uint8Array(Math.min(16, size));
    preadExact(fd, head, 0, head.length, 0, path);
    if (isElf(head)) return "elf";
    const text = Buffer.from(head).toString("latin1");
    if (KDUMP_SIGNATURES.some((s) => text.startsWith(s))) {
      throw new GuestcoreError(`${path}: kdump-compressed and flattened inputs are not supported yet`);
    }
    return "raw";
  } finally {
    closeSync(fd);
  }
}

export function openSource(path: string, opts: OpenOptions = {}): MemorySource {
  const format = opts.format ?? (opts.layout ? "raw" : sniffFormat(path));
  if (format === "elf") return openElf(path);
  if (format === "raw") return openRaw(path, opts.layout);
  throw new GuestcoreError(`unknown input format "${format}" (expected raw or elf)`);
}
