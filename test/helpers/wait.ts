// Waiting in tests for something that has no callback: bounded, and failing
// with what was awaited, never a fixed sleep nor a hang.

/** "pending" when `p` has not settled by the end of this turn of the event loop. */
export async function stateOf(p: Promise<unknown>): Promise<"pending" | "settled"> {
  let settled = false;
  p.then(() => (settled = true), () => (settled = true));
  await new Promise<void>((r) => setImmediate(r));
  return settled ? "settled" : "pending";
}

/**
 * Polls `cond` until it holds; fails with `what` after `ms` of wall time.
 * For an event that has no callback to wait on (a file appearing, a
 * counter reaching a value): the bound turns a missing event into a
 * failure with a message, not a hang.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000, stepMs = 10): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
