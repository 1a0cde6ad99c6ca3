// Seeded randomness for fault trials: the seed is printed, and
// GUESTCORE_KILL_SEED replays a failing run.

/** A small seeded PRNG (mulberry32) giving floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** GUESTCORE_KILL_SEED, or one drawn from the clock. */
export function trialSeed(): number {
  return Number(process.env.GUESTCORE_KILL_SEED ?? Date.now() % 1e9);
}
