// What a user-caused failure must look like: a GuestcoreError whose
// message is one line (the CLI prints it as `guestcore: MESSAGE`).
import assert from "node:assert/strict";
import { GuestcoreError } from "../../src/core/errors.js";

/** A validator for assert.throws and assert.rejects. */
export function oneLineError(pattern: RegExp): (e: unknown) => true {
  return (e) => {
    assert.ok(e instanceof GuestcoreError, `a GuestcoreError, not ${e instanceof Error ? `${e.name}: ${e.message}` : e}`);
    assert.ok(!e.message.includes("\n"), `one line: ${JSON.stringify(e.message)}`);
    assert.match(e.message, pattern);
    return true;
  };
}

/** A CLI run that failed as a user error must: exit 2, one `guestcore:` line on stderr matching `line`. */
export function assertOneLineExit(code: number | null, stderr: string, line: RegExp, what: string): void {
  assert.equal(code, 2, `${what}: exit status (${stderr})`);
  const lines = stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, `${what}: one line: ${JSON.stringify(stderr)}`);
  assert.match(lines[0], /^guestcore: /, what);
  assert.match(lines[0], line, what);
}
