// One error type for everything a user can cause: bad input, hostile guest
// data, wrong options. The CLI prints its message as a single line and
// exits non-zero; anything else is a bug and keeps its stack.
export class GuestcoreError extends Error {
  /** The errno code behind it, when there is one (ENOSPC, EIO…). */
  code?: string;
  constructor(message: string, readonly exitCode = 2) {
    // Messages quote guest and peer data (a QOM id, a file name, a kernel
    // string); a newline there must not split the one line the CLI prints.
    super(message.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));
    this.name = "GuestcoreError";
  }
}

export function fail(message: string): never {
  throw new GuestcoreError(message);
}

export function hex(n: number | bigint): string {
  return n < 0 ? "-0x" + (-n).toString(16) : "0x" + n.toString(16);
}
