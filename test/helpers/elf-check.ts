// Checks an ELF dump we wrote against its input: the PT_LOADs cover
// exactly the kept pages, and every byte equals the input's.
import assert from "node:assert/strict";
import { openElf } from "../../src/sources/elf.js";
import type { MemorySource } from "../../src/sources/source.js";
import type { PfnBitmap } from "../../src/core/pfn-bitmap.js";
import { bitmapRuns } from "../../src/core/bitmap.js";
import { denseBits } from "./real.js";

export function assertElfHoldsExactly(outPath: string, input: MemorySource, keptBits: PfnBitmap | Uint8Array, zeroBits: PfnBitmap | Uint8Array,
  maxPfn: number): void {
  const out = openElf(outPath);
  const kept = denseBits(keptBits);
  const zero = denseBits(zeroBits);
  try {
    const want = bitmapRuns(kept, maxPfn).map((r) => [r.pfn * 4096, (r.pfn + r.count) * 4096]);
    // Adjacent segments may split one run (they follow the input's segments).
    const got: number[][] = [];
    for (const s of out.segments) {
      const last = got[got.length - 1];
      if (last && last[1] === s.start) last[1] = s.end;
      else got.push([s.start, s.end]);
    }
    assert.deepEqual(got, want, "PT_LOAD ranges equal the kept runs");
    const a = new Uint8Array(1 << 20);
    const b = new Uint8Array(1 << 20);
    for (const s of out.segments) {
      for (let p = s.start; p < s.end; p += a.length) {
        const n = Math.min(a.length, s.end - p);
        out.readBatch([{ paddr: p, dst: a.subarray(0, n) }]);
        input.readBatch([{ paddr: p, dst: b.subarray(0, n) }]);
        assert.ok(Buffer.compare(a.subarray(0, n), b.subarray(0, n)) === 0, `bytes differ in ${p.toString(16)}+${n}`);
      }
    }
    assert.ok(out.notes.some((n) => n.name === "VMCOREINFO"), "VMCOREINFO note present");
    // Kept pages read back as the input's, zero pages as zeros, and the
    // other excluded pages are absent.
    const page = new Uint8Array(4096);
    const bit = (bm: Uint8Array, pfn: number) => (bm[pfn >> 3] >> (pfn & 7)) & 1;
    for (let pfn = 0; pfn < maxPfn; pfn++) {
      let readable = true;
      try { out.readBatch([{ paddr: pfn * 4096, dst: page }]); } catch { readable = false; }
      if (bit(kept, pfn)) {
        input.readBatch([{ paddr: pfn * 4096, dst: b.subarray(0, 4096) }]);
        assert.ok(readable && Buffer.compare(page, b.subarray(0, 4096)) === 0, `kept pfn ${pfn} differs`);
      } else if (bit(zero, pfn)) {
        assert.ok(readable && page.every((x) => x === 0), `zero pfn ${pfn} reads as zeros`);
      } else {
        assert.ok(!readable, `excluded pfn ${pfn} is absent`);
      }
    }
  } finally {
    out.close();
  }
}
