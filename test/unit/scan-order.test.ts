// The order the VMCOREINFO scan reads memory in (scan-order.ts): every
// byte once, the places Linux allocates from early first; the search
// over it still validates every candidate, passes decoys over, and stops
// at its budget. Sources here are sparse (zeros but for the synthetic
// guest's first 32 MiB and the pages a test plants), so a 64 GiB guest
// costs what the scan reads of it, and the bytes read are counted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { buildSynthetic } from "../../fixtures/synthetic.js";
import { GuestcoreError } from "../../src/core/errors.js";
import { WasmCore } from "../../src/core/wasm.js";
import { findKernel, findKernelAmong } from "../../src/introspect/kernel.js";
import { findInRaw } from "../../src/introspect/raw-layout.js";
import { likelyFirst, type ScanChunk } from "../../src/introspect/scan-order.js";
import { SEARCH_LIMITS, SearchBudget } from "../../src/introspect/search-budget.js";
import type { MemorySource, PhysSegment, ReadRequest } from "../../src/sources/source.js";

const PAGE = 4096;
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const seg = (start: number, end: number): PhysSegment => ({ start, end, vaddr: 0n });

/** Chunks cover the segments exactly, each inside one, none twice. */
function assertEveryByteOnce(segments: PhysSegment[], chunks: ScanChunk[], chunk: number): void {
  const sorted = [...chunks].sort((a, b) => a.start - b.start);
  let at = 0;
  let k = 0;
  for (const s of segments) {
    at = s.start;
    while (at < s.end) {
      const c = sorted[k++];
      assert.ok(c, `nothing read from ${at.toString(16)}`);
      assert.equal(c.start, at, `chunk ${c.start.toString(16)}-${c.end.toString(16)}: expected one from ${at.toString(16)}`);
      assert.ok(c.end > c.start && c.end <= s.end && c.end - c.start <= chunk, `chunk ${c.start.toString(16)}-${c.end.toString(16)} in segment ${s.start.toString(16)}-${s.end.toString(16)}`);
      assert.equal(c.segmentEnd, s.end);
      at = c.end;
    }
  }
  assert.equal(k, sorted.length, "no chunk outside the segments");
}

test("every byte once, over one segment, QEMU's layouts, holes, segments off page boundaries", () => {
  const layouts: [string, PhysSegment[], number[], number][] = [
    ["256 MiB", [seg(0, 256 * MiB)], [], 8 * MiB],
    ["q35 64 GiB", [seg(0, 2 * GiB), seg(4 * GiB, 66 * GiB)], [], 8 * MiB],
    ["raw 6 GiB, QEMU's split starts", [seg(0, 6 * GiB)], [2 * GiB, 3 * GiB], 8 * MiB],
    ["off page boundaries", [seg(0, 0x120010), seg(0x120010, 0x920010), seg(0x920010, 40 * MiB + 10)], [0x300010], 8 * MiB],
    ["holes", Array.from({ length: 100 }, (_, i) => seg(i * 5 * MiB + 4096, i * 5 * MiB + 3 * MiB)), [7 * MiB + 5, 400 * MiB], MiB],
    ["high only", [seg(GiB, GiB + 100 * MiB)], [2 * GiB], 8 * MiB],
    ["one page", [seg(0, PAGE)], [2 * GiB, 3 * GiB], 8 * MiB],
  ];
  for (const [what, segments, starts, chunk] of layouts) {
    const chunks = [...likelyFirst(segments, starts, chunk)];
    assert.doesNotThrow(() => assertEveryByteOnce(segments, chunks, chunk), what);
  }
});

test("the order: the first 32 MiB, the first 16 MiB above 4 GiB and from each start, then a chunk from each place in turn", () => {
  const head = (segments: PhysSegment[], starts: number[], n: number) =>
    [...likelyFirst(segments, starts)].slice(0, n).map((c) => `${c.start / MiB}+${(c.end - c.start) / MiB}`);
  const M = (a: number) => a / MiB;
  // A 64 GiB q35 guest as QMP lays it out: RAM from 4 GiB, the top at 66 GiB.
  assert.deepEqual(head([seg(0, 2 * GiB), seg(4 * GiB, 66 * GiB)], [], 11), [
    "0+8", "8+8", "16+8", "24+8", `${M(4 * GiB)}+8`, `${M(4 * GiB) + 8}+8`,
    `${M(4 * GiB) + 16}+8`, `${M(66 * GiB) - 8}+8`, "32+8", `${M(4 * GiB) + 24}+8`, `${M(66 * GiB) - 16}+8`,
  ]);
  // A 4 GiB memory-backend file, 1:1: QEMU's RAM above 4 GiB begins at 2 GiB (q35) or 3 GiB (pc) in it.
  assert.deepEqual(head([seg(0, 4 * GiB)], [2 * GiB, 3 * GiB], 9), [
    "0+8", "8+8", "16+8", "24+8", "2048+8", "2056+8", "3072+8", "3080+8", "2064+8",
  ]);
});

/** The synthetic guest's low 32 MiB, its VMCOREINFO pages blanked, in a sparse source of `segments`. */
function sparseGuest(segments: PhysSegment[]) {
  const s = buildSynthetic({ memMiB: 32 });
  const base = Buffer.from(s.image);
  base.fill(0, 0x120 * PAGE, 0x122 * PAGE);
  const planted = new Map<number, Buffer>();
  const src: MemorySource & { bytesRead: number } = {
    format: "raw", path: "sparse.raw", notes: [], segments, bytesRead: 0,
    readBatch(reqs: readonly ReadRequest[]) {
      for (const r of reqs) {
        const end = r.paddr + r.dst.length;
        if (!segments.some((g) => g.start <= r.paddr && end <= g.end)) throw new GuestcoreError(`physical address ${r.paddr} is not in the image`);
        this.bytesRead += r.dst.length;
        r.dst.fill(0);
        if (r.paddr < base.length) r.dst.set(base.subarray(r.paddr, Math.min(end, base.length)));
        for (let p = Math.floor(r.paddr / PAGE) * PAGE; p < end; p += PAGE) {
          const page = planted.get(p);
          if (!page) continue;
          const from = Math.max(p, r.paddr);
          r.dst.set(page.subarray(from - p, Math.min(PAGE, end - p)), from - r.paddr);
        }
      }
    },
    close() {},
  };
  /** VMCOREINFO `text` at `paddr`: a page's start (vmcoreinfo_data), or 24 bytes in after a note header. */
  const plant = (paddr: number, text: string) => {
    const page = Buffer.alloc(PAGE);
    if (paddr % PAGE === 24) {
      page.writeUInt32LE(11, 0);
      page.writeUInt32LE(text.length, 4);
      page.write("VMCOREINFO\0", 12, "latin1");
    }
    page.write(text, paddr % PAGE, "latin1");
    planted.set(paddr - (paddr % PAGE), page);
  };
  return { s, src, plant, planted };
}

const Q35_64G = () => [seg(0, 2 * GiB), seg(4 * GiB, 66 * GiB)];

test("VMCOREINFO where Linux puts it in a 64 GiB guest: found, each after reading at most 128 MiB", () => {
  const core = new WasmCore();
  // ZONE_NORMAL's start (q35 4 GiB: 3.4 MiB in, the note copy; pc: 8 MiB, the
  // page-aligned one), near the top, ZONE_DMA32's start (25 MiB).
  for (const at of [4 * GiB + 0x35a018, 4 * GiB + 0x806000, 66 * GiB - 14 * MiB + 0x124018, 0x18e2018]) {
    const g = sparseGuest(Q35_64G());
    g.plant(at, g.s.vmcoreinfo);
    const k = findKernel(g.src, core);
    assert.equal(k.foundAt, at);
    assert.equal(k.physBase, g.s.physBase);
    assert.ok(g.src.bytesRead <= 128 * MiB, `${at.toString(16)}: ${g.src.bytesRead / MiB} MiB read`);
  }
  // The first chunk above 4 GiB comes right after the low 32 MiB.
  const g = sparseGuest(Q35_64G());
  g.plant(4 * GiB + 0x35a018, g.s.vmcoreinfo);
  findKernel(g.src, core);
  assert.ok(g.src.bytesRead <= 41 * MiB, `${g.src.bytesRead / MiB} MiB read`);
});

test("guests without RAM above 4 GiB: after a kernel image at 16 MiB, and at the top, found before all is read", () => {
  const core = new WasmCore();
  for (const [size, at] of [[256 * MiB, 0x50e2018], [512 * MiB, 0x1f124018]]) {
    const g = sparseGuest([seg(0, size)]);
    g.plant(at, g.s.vmcoreinfo);
    assert.equal(findKernel(g.src, core).foundAt, at);
    assert.ok(g.src.bytesRead < size, `${at.toString(16)}: ${g.src.bytesRead / MiB} MiB read`);
  }
});

test("VMCOREINFO where no sweep starts is still found: the worst case reads everything once", () => {
  const g = sparseGuest([seg(0, GiB)]);
  const at = 700 * MiB + 24;
  g.plant(at, g.s.vmcoreinfo);
  const k = findKernel(g.src, new WasmCore());
  assert.equal(k.foundAt, at);
  assert.ok(g.src.bytesRead <= GiB + 128 * 4096, `${g.src.bytesRead / MiB} MiB read`);
});

test("decoys where the scan looks first are validated and passed over", () => {
  const g = sparseGuest(Q35_64G());
  const text = g.s.vmcoreinfo;
  // Another kernel's text (init_uts_ns says otherwise), and this one's with a phys_base that maps nothing.
  g.plant(4 * GiB, text.replace(`OSRELEASE=${g.s.release}`, "OSRELEASE=6.1.0-decoy"));
  g.plant(4 * GiB + PAGE + 24, text.replace(/NUMBER\(phys_base\)=.*/, "NUMBER(phys_base)=1048576"));
  g.plant(66 * GiB - 14 * MiB, text);
  const budget = new SearchBudget();
  const k = findKernel(g.src, new WasmCore(), { budget });
  assert.equal(k.foundAt, 66 * GiB - 14 * MiB);
  assert.equal(k.info.osrelease, g.s.release);
  assert.equal(budget.used.validations, 3, "both decoys checked");
});

test("fakes on every page above 4 GiB, where the scan looks first: it stops at its budget after a fixed read, in one line", () => {
  const g = sparseGuest(Q35_64G());
  const junk = Buffer.alloc(PAGE);
  junk.write("OSRELEASE=x", 0, "latin1");
  junk.write("VMCOREINFO\0", 12, "latin1");
  junk.write("OSRELEASE=9.9\n", 24, "latin1");
  for (let p = 4 * GiB; p < 4 * GiB + 64 * MiB; p += PAGE) g.planted.set(p, junk);
  const budget = new SearchBudget();
  assert.throws(() => findKernel(g.src, new WasmCore(), { budget }), (e: Error) => {
    assert.ok(e instanceof GuestcoreError, e.stack);
    assert.match(e.message, /^no usable VMCOREINFO in sparse\.raw: the kernel search spent its budget of 4096 VMCOREINFO candidates .*give --vmcoreinfo FILE$/);
    return true;
  });
  assert.equal(budget.used.candidates, SEARCH_LIMITS.candidates);
  // The low 32 MiB, then the first 8 MiB above 4 GiB (2048 fakes, 4096 candidates); the 4097th starts the next chunk.
  assert.equal(g.src.bytesRead, 6 * (8 * MiB + PAGE));
});

test("a raw memory-backend file without --layout: the scan starts where QEMU's high RAM begins in the file", () => {
  const size = 8 * GiB;
  const g = sparseGuest([seg(0, size)]);
  const at = 2 * GiB + 0x35a018;
  g.plant(at, g.s.vmcoreinfo);
  const reopened: string[] = [];
  const core = new WasmCore();
  const found = findInRaw(g.src, (l) => (reopened.push(l), sparseGuest([seg(0, size)]).src), (views, more) => findKernelAmong(views, core, more));
  // This guest's kernel lives below 2 GiB, so the text fits 1:1 and no split is opened.
  assert.equal(found.source, g.src);
  assert.equal(found.kernel.foundAt, at);
  assert.deepEqual(reopened, []);
  // The low 32 MiB, 16 MiB from 4 GiB, then the chunk at 2 GiB.
  assert.ok(g.src.bytesRead <= 57 * MiB, `${g.src.bytesRead / MiB} MiB read`);
});
