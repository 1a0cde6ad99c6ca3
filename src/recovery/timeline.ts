// What happened when during a recovery: the phases (panic → replacement
// ready → dump complete → crashed VM gone) and, sampled over time, the
// host memory the crashed guest still held and the dump's write rate.
// Times are milliseconds since the Unix epoch, so a supervisor's panic
// timestamp (QMP GUEST_PANICKED) and ours share one clock.

export type Phase =
  | "panic" | "attach" | "classified" | "withheld" | "released" | "replacement-started" | "replacement-ready"
  | "dump-complete" | "crashed-vm-gone" | "done";

export interface TimelineEvent {
  t: number;
  phase?: Phase;
  note?: string;
  data?: Record<string, unknown>;
}

export interface TimelineSample {
  t: number;
  /** Bytes of host memory the crashed guest's backing still holds. */
  heldBytes?: number;
  /** Dump bytes written so far. */
  writtenBytes: number;
  /** Write rate over the last interval, bytes per second. */
  writeBps: number;
  /** The rate policy's allowed rate (null: unlimited). */
  allowedBps: number | null;
}

const MAX_SAMPLES = 20_000;

export class Timeline {
  readonly events: TimelineEvent[] = [];
  readonly samples: TimelineSample[] = [];
  private readonly at = new Map<Phase, number>();

  mark(phase: Phase, t = Date.now(), data?: Record<string, unknown>): number {
    if (!this.at.has(phase)) this.at.set(phase, t);
    this.events.push({ t, phase, ...(data ? { data } : {}) });
    return t;
  }

  note(note: string, data?: Record<string, unknown>): void {
    if (this.events.length < 10_000) this.events.push({ t: Date.now(), note, ...(data ? { data } : {}) });
  }

  time(phase: Phase): number | undefined {
    return this.at.get(phase);
  }

  sample(s: TimelineSample): void {
    // Keep a long recovery's samples bounded: thin out every other one.
    if (this.samples.length >= MAX_SAMPLES) {
      for (let i = 1, j = 1; i < this.samples.length; i += 2, j++) this.samples[j] = this.samples[i];
      this.samples.length = Math.ceil(this.samples.length / 2);
    }
    this.samples.push(s);
  }

  /** Seconds between two phases, when both happened. */
  between(a: Phase, b: Phase): number | undefined {
    const x = this.at.get(a);
    const y = this.at.get(b);
    return x !== undefined && y !== undefined ? (y - x) / 1000 : undefined;
  }

  toJSON(): Record<string, unknown> {
    const start = this.at.get("panic") ?? this.at.get("attach") ?? this.events[0]?.t ?? 0;
    return {
      origin: start,
      phases: Object.fromEntries([...this.at].map(([p, t]) => [p, { t, s: +((t - start) / 1000).toFixed(3) }])),
      downtimeSeconds: this.between("panic", "replacement-ready") ?? null,
      events: this.events,
      samples: this.samples,
    };
  }
}
