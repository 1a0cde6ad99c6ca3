// Write-rate limiting: the dump must leave disk bandwidth to the new VM
// that boots meanwhile (Vicover). The pipeline asks before every write.

export interface WriteLimiter {
  /** Resolves when `bytes` may be written. */
  acquire(bytes: number): Promise<void>;
}

export const unlimited: WriteLimiter = { acquire: async () => {} };

/** A token bucket: `bytesPerSecond` sustained, bursts up to `burst` bytes. */
export class TokenBucket implements WriteLimiter {
  private tokens: number;
  private last = performance.now();

  constructor(private readonly bytesPerSecond: number, private readonly burst = Math.max(bytesPerSecond / 4, 4 << 20)) {
    this.tokens = this.burst;
  }

  async acquire(bytes: number): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond);
      this.last = now;
      // A request larger than the burst waits for a full bucket, then goes.
      const need = Math.min(bytes, this.burst);
      if (this.tokens >= need) {
        this.tokens -= bytes;
        return;
      }
      await new Promise((r) => setTimeout(r, Math.ceil(((need - this.tokens) / this.bytesPerSecond) * 1000)));
    }
  }
}
