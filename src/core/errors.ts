// One error type for everything a user can cause: bad input, hostile guest
// data, wrong options. The CLI prints its message as a single line and
// exits non-zero; anything else is a bug and keeps its stack.
export class GuestcoreError extends Error {
  /** The errno code behind it, when there is one (ENOSPC, EIO…). */
  code?: string;
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = "GuestcoreError";
  }
}

export function fail(message: string): never {
  throw new GuestcoreError(message);
}

export function hex(n: number | bigint): string {
  return n < 0 ? "-0x" + (-n).toString(16) : "0x" + n.toString(16);
}
