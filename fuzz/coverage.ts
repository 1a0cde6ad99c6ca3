// Coverage feedback from V8's precise block coverage, measured on
// guestcore's own modules (dist/src/) only.
//
// In binary mode (callCount: false) every takePreciseCoverage resets the
// counters, and a take lists only the functions that ran since the last
// one (about 1 ms here with ~30 functions). V8 merges a block into its
// parent range when both ran, so a block shows up by itself only while
// it has not run: a block counts as covered when its function ran and no
// range reported with count 0 encloses it.
import { Session } from "node:inspector";

interface Range { startOffset: number; endOffset: number; count: number }
interface FunctionCoverage { functionName: string; ranges: Range[] }
interface ScriptCoverage { url: string; functions: FunctionCoverage[] }

export class Coverage {
  private readonly session = new Session();
  private readonly covered = new Set<string>();
  /** Blocks seen unexecuted per function key: "start:end". */
  private readonly blocks = new Map<string, Set<string>>();

  constructor(private readonly urlPart: string) {
    this.session.connect();
    this.post("Profiler.enable");
    this.post("Profiler.startPreciseCoverage", { callCount: false, detailed: true });
  }

  /** The inspector answers in-thread, so the callback has run when post returns. */
  private post(method: string, params?: object): unknown {
    let result: unknown;
    let error: Error | null = null;
    this.session.post(method, params ?? {}, (e: Error | null, r?: unknown) => {
      error = e;
      result = r;
    });
    if (error) throw error;
    return result;
  }

  get size(): number {
    return this.covered.size;
  }

  /** Forget what ran since the last take (before a measured stretch). */
  reset(): void {
    this.post("Profiler.takePreciseCoverage");
  }

  /**
   * Blocks that ran since the last take and never before. With `commit`
   * they join the covered set; without, they are only counted (a batch is
   * checked first, then its inputs one by one).
   */
  take(commit: boolean): number {
    const r = this.post("Profiler.takePreciseCoverage") as { result: ScriptCoverage[] };
    let fresh = 0;
    for (const sc of r.result) {
      if (!sc.url.includes(this.urlPart)) continue;
      for (const fn of sc.functions) {
        const rs = fn.ranges;
        if (!rs.length || rs[0].count === 0) continue;
        const fkey = `${sc.url}:${rs[0].startOffset}`;
        if (!this.covered.has(fkey)) {
          if (commit) this.covered.add(fkey);
          fresh++;
        }
        let known = this.blocks.get(fkey);
        const zero: Range[] = [];
        for (let i = 1; i < rs.length; i++) {
          if (rs[i].count !== 0) continue;
          zero.push(rs[i]);
          if (!known) this.blocks.set(fkey, (known = new Set()));
          const b = `${rs[i].startOffset}:${rs[i].endOffset}`;
          if (!this.covered.has(`${fkey}:${b}`)) known.add(b);
        }
        if (!known) continue;
        for (const b of known) {
          const key = `${fkey}:${b}`;
          const [s, e] = b.split(":").map(Number);
          if (zero.some((z) => z.startOffset <= s && z.endOffset >= e)) continue;
          fresh++;
          if (!commit) continue;
          this.covered.add(key);
          known.delete(b);
        }
      }
    }
    return fresh;
  }

  close(): void {
    try {
      this.post("Profiler.stopPreciseCoverage");
    } finally {
      this.session.disconnect();
    }
  }
}
