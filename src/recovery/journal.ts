// recover's journal: a small JSON file beside the dump, written before
// the first byte of guest memory is released and removed once the dump
// is final. A rerun after a crash (SIGKILL included) finds it and knows
// which memory file to read, with which layout and dump level, and which
// partial dumps hold the pages already released from it.
import { unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { GuestcoreError } from "../core/errors.js";
import { readSmallFile } from "../core/file.js";
import { writeFileAtomic } from "../writers/atomic-file.js";
import { parseTemporaryName } from "../writers/temporaries.js";

export interface RecoverJournal {
  version: 1;
  output: string;
  /** The crashed guest's memory file and how its bytes map to physical memory. */
  memPath: string;
  layout: string;
  memSize: number;
  memIno: number;
  level: number;
  format: "kdump" | "elf";
  /** Partial dumps of earlier runs, oldest first; pages released by a run are in its partial. */
  partials: string[];
  startedAt: number;
  panickedAt?: number;
  /** The replacement an earlier run started: a rerun must not start a second one. */
  replacementPid?: number;
}

const MAX_JOURNAL = 64 << 10;

export function journalPath(output: string): string {
  return join(dirname(output), `.${basename(output)}.recover.json`);
}

export function readJournal(output: string): RecoverJournal | undefined {
  const p = journalPath(output);
  let text: string;
  try {
    text = readSmallFile(p, MAX_JOURNAL, p, { regular: true }).toString("utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (e instanceof GuestcoreError) throw new GuestcoreError(`${e.message}: not a recover journal; remove it if no recover runs`);
    throw new GuestcoreError(`cannot read ${p}: ${code ?? (e as Error).message}`);
  }
  let j: RecoverJournal;
  try {
    j = JSON.parse(text);
  } catch (e) {
    // V8 quotes the start of the text in its message, newlines and control
    // bytes included; the CLI prints one line.
    const why = (e as Error).message.replace(/[\s\x00-\x1f\x7f]+/g, " ");
    throw new GuestcoreError(`${p}: not a recover journal (${why}); remove it if no recover runs`);
  }
  const ok = j && j.version === 1 && typeof j.memPath === "string" && typeof j.layout === "string" && Number.isSafeInteger(j.memSize) &&
    Number.isSafeInteger(j.level) && j.level >= 0 && j.level <= 31 && Number.isSafeInteger(j.memIno) && Number.isSafeInteger(j.startedAt) &&
    (j.panickedAt === undefined || Number.isSafeInteger(j.panickedAt)) &&
    (j.format === "kdump" || j.format === "elf") && Array.isArray(j.partials) &&
    j.partials.length <= 64 &&
    // kill(0 or -1, 0) would ask about whole process groups.
    (j.replacementPid === undefined || (Number.isSafeInteger(j.replacementPid) && j.replacementPid > 1)) &&
    // Only recover's own partial files beside the output: a rerun deletes what the journal names.
    j.partials.every((x) => typeof x === "string" && dirname(x) === dirname(output) && parseTemporaryName(basename(x))?.final === basename(output));
  if (!ok) throw new GuestcoreError(`${p}: not a recover journal this guestcore writes; remove it if no recover runs`);
  return j;
}

export function writeJournal(j: RecoverJournal): void {
  writeFileAtomic(journalPath(j.output), JSON.stringify(j, null, 1) + "\n");
}

export function removeJournal(output: string): void {
  try {
    unlinkSync(journalPath(output));
  } catch {
    // already gone
  }
}
