// Expected results for synthetic images, from their declared page kinds.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expectedExclusion, type Synthetic } from "../../fixtures/synthetic.js";
import { EXCLUDABLE, type ExclusionCounts } from "../../src/filter/classes.js";

export function expected(s: Synthetic, level: number, present: (pfn: number) => boolean) {
  const counts = Object.fromEntries(EXCLUDABLE.map((k) => [k, 0])) as ExclusionCounts;
  const kept = new Uint8Array(Math.ceil(s.kinds.length / 8));
  let presentCount = 0;
  s.kinds.forEach((kind, pfn) => {
    if (!present(pfn)) return;
    presentCount++;
    const e = expectedExclusion(kind, level) as keyof ExclusionCounts | undefined;
    if (e) counts[e]++;
    else kept[pfn >> 3] |= 1 << (pfn & 7);
  });
  return { counts, kept, present: presentCount };
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "guestcore-test-"));
}

export function writeTemp(dir: string, name: string, data: Uint8Array | string): string {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
}
