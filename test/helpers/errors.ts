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
