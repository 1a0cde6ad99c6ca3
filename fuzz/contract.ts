// The contract every input is judged by (see target.ts), and how findings
// are named: an input parses, or fails with one GuestcoreError line.
import { readSync } from "node:fs";
import { GuestcoreError } from "../src/core/errors.js";

/** crash: an exception outside the contract; hang: past the time budget; memory: past the memory budget. */
export type FindingClass = "crash" | "hang" | "memory";

export const FINDING_CLASSES: readonly FindingClass[] = ["crash", "hang", "memory"];

export interface Verdict {
  cls: FindingClass;
  /**
   * What makes two findings the same bug: the class, and for a crash the
   * error's type and the innermost guestcore frame. Minimisation keeps an
   * input only while its signature stays the same.
   */
  signature: string;
  /** One line for the report. */
  message: string;
}

/**
 * Per-input budgets, from issue 10. The time budget is 2 s of the child's
 * own time (user + system): on a host shared with other work (load 13 on
 * 2 cores while this was written) a child waits its turn for seconds, and
 * wall time alone called inputs of 300 ms hangs. An input that does not
 * answer within `stallMs` of wall time, on CPU or not (a blocking read),
 * is a hang too.
 */
export const BUDGETS = {
  wallMs: 2000,
  stallMs: 30_000,
  memoryBytes: 256 * 1024 * 1024,
};

/** undefined when `e` is within the contract (a one-line GuestcoreError). */
export function judgeError(e: unknown): Verdict | undefined {
  if (e instanceof GuestcoreError && !e.message.includes("\n")) return undefined;
  const err = e instanceof Error ? e : new Error(String(e));
  const kind = e instanceof GuestcoreError ? "GuestcoreError with a newline" : err.name || "throw";
  const frame = innermostFrame(err.stack ?? "");
  return {
    cls: "crash",
    signature: `crash:${kind}@${frame}`,
    message: `${kind}: ${firstLine(err.message)} at ${frame}`,
  };
}

function firstLine(s: string): string {
  const line = s.split("\n", 1)[0];
  return line.length > 160 ? line.slice(0, 157) + "..." : line;
}

/** "src/format/elf64.ts:parseNotes" style: the first stack frame inside dist/src/. */
function innermostFrame(stack: string): string {
  for (const line of stack.split("\n").slice(1)) {
    const m = /at (?:(\S+) \()?.*?\/dist\/(src\/[^:)]+):\d+:\d+\)?$/.exec(line.trim());
    if (m) return `${m[2].replace(/\.js$/, ".ts")}:${m[1] ?? "<anonymous>"}`;
  }
  const first = stack.split("\n")[1]?.trim() ?? "";
  return first.replace(/^at /, "").replace(/:\d+:\d+\)?$/, "").replace(/.*\//, "") || "<unknown>";
}

export function overBudget(cls: "hang" | "memory", detail: string): Verdict {
  return { cls, signature: cls, message: detail };
}

const STATUS_FIELD = { VmRSS: /VmRSS:\s+(\d+) kB/, VmHWM: /VmHWM:\s+(\d+) kB/ } as const;

/**
 * A memory field of /proc/PID/status in bytes, read through a descriptor
 * kept open (the worker reads it for every input, the parent every 50 ms);
 * 0 once the process is gone.
 */
export function statusBytes(fd: number, field: keyof typeof STATUS_FIELD, buf: Buffer): number {
  try {
    const n = readSync(fd, buf, 0, buf.length, 0);
    const m = STATUS_FIELD[field].exec(buf.toString("latin1", 0, n));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
