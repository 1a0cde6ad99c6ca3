// A clock the test drives, for code that waits with setTimeout and measures
// with performance.now() (rate limits, polling probes): both are replaced for
// the length of one test, and time jumps to the next timer whenever the code
// under test has nothing else to do. Waits cost no wall time, and what a
// policy lets through in N seconds is exact arithmetic, not a measurement
// of a busy machine.
import type { TestContext } from "node:test";

interface Timer { at: number; seq: number; fn: () => void; cleared: boolean }

export class VirtualClock {
  /** Milliseconds since the clock was made, as performance.now() now answers. */
  now = 0;
  private readonly timers: Timer[] = [];
  private seq = 0;
  // The real one: it lets pending promise callbacks and I/O callbacks run.
  private readonly turn = setImmediate;

  constructor(t: TestContext) {
    t.mock.method(performance, "now", () => this.now);
    const set = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      const timer: Timer = { at: this.now + Math.max(1, Number(ms) || 0), seq: this.seq++, fn: () => fn(...args), cleared: false };
      this.timers.push(timer);
      const handle = { ref: () => handle, unref: () => handle, hasRef: () => false, refresh: () => handle, [Symbol.toPrimitive]: () => timer.seq, timer };
      return handle;
    };
    const clear = (h: unknown) => {
      const timer = (h as { timer?: Timer } | undefined)?.timer;
      if (timer) timer.cleared = true;
    };
    t.mock.method(globalThis, "setTimeout", set as unknown as typeof setTimeout);
    t.mock.method(globalThis, "clearTimeout", clear as typeof clearTimeout);
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.timers.filter((x) => !x.cleared).length;
  }

  /**
   * Settles `p`, moving time to each next timer while `p` waits. Fails
   * (instead of hanging) when `p` waits on nothing but this clock and no
   * timer is left, or after `maxTimers` timers.
   */
  async run<T>(p: Promise<T>, maxTimers = 1_000_000): Promise<T> {
    let settled = false;
    p.then(() => (settled = true), () => (settled = true));
    for (let i = 0; ; i++) {
      await this.idle();
      if (settled) return p;
      if (i >= maxTimers) throw new Error(`still waiting after ${maxTimers} timers (virtual ${this.now} ms)`);
      if (!this.fireNext(Infinity)) throw new Error(`waits on no timer: it would never settle (virtual ${this.now} ms)`);
    }
  }

  /** Moves time forward by `ms`, running every timer due on the way (and what they start). */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    await this.idle();
    while (this.fireNext(end)) await this.idle();
    this.now = end;
  }

  private fireNext(limit: number): boolean {
    let next: Timer | undefined;
    for (const x of this.timers) if (!x.cleared && (!next || x.at < next.at || (x.at === next.at && x.seq < next.seq))) next = x;
    if (!next || next.at > limit) return false;
    this.timers.splice(this.timers.indexOf(next), 1);
    this.now = Math.max(this.now, next.at);
    next.fn();
    return true;
  }

  /** A few turns of the real event loop: promise chains and quick I/O callbacks run. */
  private async idle(): Promise<void> {
    for (let i = 0; i < 3; i++) await new Promise<void>((r) => this.turn(r));
  }
}
