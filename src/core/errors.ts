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

/** "ENOSPC (no space left on device)" from a Node fs error; anything else as text. */
export function errnoText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (!err || typeof err !== "object" || !err.code) return String(e);
  const desc = /^[A-Z0-9_]+: ([^,]+)/.exec(err.message ?? "")?.[1];
  return desc ? `${err.code} (${desc})` : err.code;
}

/** A GuestcoreError for a failed system call, carrying its errno code. */
export function ioError(what: string, e: unknown): GuestcoreError {
  const err = new GuestcoreError(`${what}: ${errnoText(e)}`);
  err.code = (e as NodeJS.ErrnoException)?.code;
  return err;
}

export function hex(n: number | bigint): string {
  return n < 0 ? "-0x" + (-n).toString(16) : "0x" + n.toString(16);
}
