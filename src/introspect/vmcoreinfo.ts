// VMCOREINFO: the kernel's own description of itself (symbols, struct
// offsets, flag bits) that makes vmlinux unnecessary. It comes from the
// ELF note, from a file the user gives, or by scanning guest memory.
import { GuestcoreError } from "../core/errors.js";
import { readSmallFile } from "../core/file.js";
import type { ElfNote } from "../format/elf64.js";
import type { MemorySource } from "../sources/source.js";
import { likelyFirst } from "./scan-order.js";
import { SearchBudget } from "./search-budget.js";

// The kernel allocates one page for it (VMCOREINFO_BYTES).
const MAX_VMCOREINFO_BYTES = 4096;

export class VmcoreInfo {
  readonly entries = new Map<string, string>();

  constructor(readonly text: string) {
    for (const line of text.split("\n")) {
      const eq = line.indexOf("=");
      if (eq <= 0) continue;
      this.entries.set(line.slice(0, eq), line.slice(eq + 1));
    }
  }

  get(key: string): string | undefined {
    return this.entries.get(key);
  }

  get osrelease(): string | undefined {
    return this.get("OSRELEASE");
  }

  get pageSize(): number {
    return Number(this.get("PAGESIZE") ?? 4096);
  }

  /** SYMBOL(name), a hexadecimal address. */
  symbol(name: string): bigint | undefined {
    return hexValue(this.get(`SYMBOL(${name})`));
  }

  /** NUMBER(name), decimal (may be negative). */
  number(name: string): bigint | undefined {
    return decValue(this.get(`NUMBER(${name})`));
  }

  offset(structField: string): number | undefined {
    return smallDec(this.get(`OFFSET(${structField})`));
  }

  size(name: string): number | undefined {
    return smallDec(this.get(`SIZE(${name})`));
  }

  length(name: string): number | undefined {
    return smallDec(this.get(`LENGTH(${name})`));
  }

  /** KERNELOFFSET, the KASLR slide of the kernel image (hex, no 0x). */
  get kernelOffset(): bigint | undefined {
    return hexValue(this.get("KERNELOFFSET"));
  }

  /** [major, minor, patch] from OSRELEASE, for version-dependent layouts. */
  get kernelVersion(): [number, number, number] | undefined {
    const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(this.osrelease ?? "");
    return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
  }

  require(key: string): string {
    const v = this.get(key);
    if (v === undefined) throw new GuestcoreError(`VMCOREINFO lacks ${key}`);
    return v;
  }
}

function hexValue(v: string | undefined): bigint | undefined {
  if (v === undefined || !/^(0x)?[0-9a-fA-F]{1,16}$/.test(v)) return undefined;
  return BigInt(v.startsWith("0x") ? v : "0x" + v);
}

function decValue(v: string | undefined): bigint | undefined {
  if (v === undefined || !/^-?\d{1,20}$/.test(v)) return undefined;
  return BigInt(v);
}

function smallDec(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,9}$/.test(v)) return undefined;
  return Number(v);
}

/** A candidate is plausible text with the keys guestcore cannot work without. */
export function plausible(info: VmcoreInfo): boolean {
  return info.osrelease !== undefined && /^\d+\.\d+/.test(info.osrelease)
    && (info.symbol("init_top_pgt") !== undefined || info.symbol("swapper_pg_dir") !== undefined)
    && info.get("PAGESIZE") !== undefined;
}

export function fromNotes(notes: readonly ElfNote[]): VmcoreInfo | undefined {
  const note = notes.find((n) => n.name === "VMCOREINFO");
  if (!note) return undefined;
  const info = new VmcoreInfo(decodeText(note.desc));
  return plausible(info) ? info : undefined;
}

export function fromFile(path: string): VmcoreInfo {
  let buf: Buffer;
  try {
    // Not limited to regular files: --vmcoreinfo <(ssh host ...) is a pipe.
    buf = readSmallFile(path, 1 << 20);
  } catch (e) {
    if (e instanceof GuestcoreError) throw new GuestcoreError(`${path} is too large to be VMCOREINFO`);
    throw new GuestcoreError(`cannot read VMCOREINFO file ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  const info = new VmcoreInfo(decodeText(buf));
  if (!plausible(info)) throw new GuestcoreError(`${path} does not look like VMCOREINFO (needs OSRELEASE, PAGESIZE and SYMBOL(init_top_pgt))`);
  return info;
}

function decodeText(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  const end = Math.min(nul < 0 ? bytes.length : nul, 1 << 20);
  return Buffer.from(bytes.buffer, bytes.byteOffset, end).toString("latin1");
}

export interface ScanCandidate {
  paddr: number;
  info: VmcoreInfo;
  /** The lowest address the scan has met this text at so far (it goes on lowering it as it reads on). */
  lowest: number;
}

const NEEDLE = Buffer.from("OSRELEASE=", "latin1");
const PAGE = 4096;
const SCAN_CHUNK = 8 << 20;

/**
 * Find VMCOREINFO text in memory, where the kernel is likely to have put
 * it first (scan-order.ts; `starts` are more places to look from). The
 * kernel keeps it at the start of a page (vmcoreinfo_data) and inside the
 * ELF note buffer (after a "VMCOREINFO" note header), so only those two
 * placements are parsed. Candidates come lazily and deduplicated by text,
 * so the caller can stop at the first one that validates instead of
 * reading the whole image.
 *
 * The bytes read are the image's, once each (plus up to 4 KiB past each
 * chunk of at most 8 MiB), and two places per page are compared with the
 * needle: the needle planted anywhere else is never looked at. Parsed
 * texts and distinct plausible ones are counted against `budget`, which
 * throws when a planted crowd of fakes has spent it.
 */
export function* scanForVmcoreinfo(src: MemorySource, onProgress?: (done: number, total: number) => void,
  budget: SearchBudget = new SearchBudget(), starts: readonly number[] = []): Generator<ScanCandidate> {
  const seen = new Map<string, ScanCandidate>();
  const total = src.segments.reduce((n, s) => n + (s.end - s.start), 0);
  let done = 0;
  // Sized by the largest segment: a small source is not charged 8 MiB a scan.
  const buf = Buffer.alloc(Math.min(SCAN_CHUNK + MAX_VMCOREINFO_BYTES, src.segments.reduce((m, s) => Math.max(m, s.end - s.start), 0)));
  for (const chunk of likelyFirst(src.segments, starts, SCAN_CHUNK)) {
    const at = chunk.start;
    const len = Math.min(chunk.end - at + MAX_VMCOREINFO_BYTES, chunk.segmentEnd - at);
    const view = buf.subarray(0, len);
    src.readBatch([{ paddr: at, dst: view }]);
    const scanEnd = chunk.end - at;
    // Only two places per page can hold the text, so only those are
    // looked at: the needle planted anywhere else costs nothing.
    const firstPage = (PAGE - (at % PAGE)) % PAGE;
    for (let page = firstPage - PAGE; page < scanEnd; page += PAGE) for (let i = page; i <= page + 24; i += 24) {
      if (i < 0 || i >= scanEnd || i + NEEDLE.length > len || view[i] !== NEEDLE[0] || view.compare(NEEDLE, 0, NEEDLE.length, i, i + NEEDLE.length) !== 0) continue;
      const paddr = at + i;
      const noteHeader = paddr % PAGE === 24 && i >= 12 && view.toString("latin1", i - 12, i - 2) === "VMCOREINFO";
      if (paddr % PAGE !== 0 && !noteHeader) continue;
      budget.take("candidates");
      const info = new VmcoreInfo(decodeText(view.subarray(i, Math.min(len, i + MAX_VMCOREINFO_BYTES))));
      if (!plausible(info)) continue;
      const met = seen.get(info.text);
      if (met) {
        met.lowest = Math.min(met.lowest, paddr);
        continue;
      }
      budget.take("validations");
      const c = { paddr, info, lowest: paddr };
      seen.set(info.text, c);
      yield c;
    }
    done += scanEnd;
    onProgress?.(done, total);
  }
}
