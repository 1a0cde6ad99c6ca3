// Handing a crashed guest's memory back: coalesce() and the ledger against
// a recording releaser (each page reaches the releaser once, the rest is
// exactly the complement, nothing past maxPfn), then FileReleaser on real
// tmpfs files, judged by the kernel: punched bytes read back as zeros,
// the others are unchanged, and fstat's allocated blocks drop by exactly
// the bytes released. Layouts with a split (q35's 0:2G@0,4G:2G@2G scaled
// down) and unaligned file offsets punch the right file ranges, and a
// file the kernel cannot punch gives a one-line error.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GuestcoreError } from "../../src/core/errors.js";
import { coalesce, ReleaseLedger, type MemoryReleaser } from "../../src/recovery/release.js";
import { allocatedBytes, FileReleaser } from "../../src/recovery/hole-punch.js";
import { attachCrashedGuest } from "../../src/recovery/crashed-guest.js";
import { parseLayout } from "../../src/sources/raw.js";
import type { PfnRun } from "../../src/core/bitmap.js";
import { oneLineError } from "../helpers/errors.js";

const PAGE = 4096;
const MiB = 1 << 20;
const dir = mkdtempSync("/dev/shm/guestcore-release-");
after(() => rmSync(dir, { recursive: true, force: true }));

/** Every byte non-zero, and each page different (its pfn in its first bytes). */
function pattern(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = ((i * 7 + (i >> 12) * 13) & 0xff) | 1;
  for (let p = 0; p < bytes / PAGE; p++) b.writeUInt32LE(p + 1, p * PAGE);
  return b;
}

function tmpfsFile(name: string, data: Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
}

/** Zero [from, to) of a copy: what the file must read as after a punch. */
function zeroed(b: Buffer, ...ranges: [number, number][]): Buffer {
  const c = Buffer.from(b);
  for (const [a, z] of ranges) c.fill(0, a, z);
  return c;
}

function firstDiff(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i += PAGE) {
    if (Buffer.compare(a.subarray(i, i + PAGE), b.subarray(i, i + PAGE)) !== 0) {
      for (let j = i; j < i + PAGE; j++) if (a[j] !== b[j]) return j;
    }
  }
  return -1;
}

class Recording implements MemoryReleaser {
  readonly kind = "recording";
  readonly calls: PfnRun[][] = [];
  failNext = false;
  release(runs: readonly PfnRun[]): number {
    if (this.failNext) {
      this.failNext = false;
      throw new GuestcoreError("refused");
    }
    this.calls.push(runs.map((r) => ({ ...r })));
    return runs.reduce((n, r) => n + r.count * PAGE, 0);
  }
  held(): undefined {
    return undefined;
  }
  close(): void {}
  /** How many times each pfn was handed over. */
  passes(maxPfn: number): Uint8Array {
    const n = new Uint8Array(maxPfn + 64);
    for (const c of this.calls) for (const r of c) for (let p = r.pfn; p < r.pfn + r.count; p++) n[p]++;
    return n;
  }
}

// ---- coalesce and the ledger ----

test("coalesce sorts, joins adjacent and overlapping runs, drops empty ones, leaves its input alone", () => {
  const input: PfnRun[] = [
    { pfn: 50, count: 5 }, { pfn: 10, count: 5 }, { pfn: 15, count: 3 }, // adjacent: 10..18
    { pfn: 12, count: 2 }, // inside
    { pfn: 53, count: 10 }, // overlaps 50..55 -> 50..63
    { pfn: 30, count: 0 }, // empty
    { pfn: 100, count: 1 }, { pfn: 99, count: 1 },
  ];
  const copy = structuredClone(input);
  assert.deepEqual(coalesce(input), [{ pfn: 10, count: 8 }, { pfn: 50, count: 13 }, { pfn: 99, count: 2 }]);
  assert.deepEqual(input, copy);
  assert.deepEqual(coalesce([]), []);
});

test("ReleaseLedger hands each page to the releaser once, and releaseRest exactly the complement", () => {
  const rec = new Recording();
  const maxPfn = 1000;
  const l = new ReleaseLedger(rec, maxPfn);
  assert.equal(l.release([{ pfn: 5, count: 3 }, { pfn: 6, count: 4 }]), 5 * PAGE);
  assert.deepEqual(rec.calls[0], [{ pfn: 5, count: 5 }]);
  // Overlapping the pages released: only the new ones go, as two runs around them.
  assert.equal(l.release([{ pfn: 0, count: 20 }]), 15 * PAGE);
  assert.deepEqual(rec.calls[1], [{ pfn: 0, count: 5 }, { pfn: 10, count: 10 }]);
  // Nothing new: no call at all.
  assert.equal(l.release([{ pfn: 3, count: 10 }, { pfn: 19, count: 1 }]), 0);
  assert.equal(rec.calls.length, 2);
  // Scattered releases, then the rest of two present ranges (a hole at 600..700).
  l.release([{ pfn: 300, count: 1 }, { pfn: 302, count: 1 }, { pfn: 650, count: 10 }]);
  assert.deepEqual(rec.calls[2], [{ pfn: 300, count: 1 }, { pfn: 302, count: 1 }, { pfn: 650, count: 10 }]);
  const before = rec.calls.length;
  l.releaseRest([[0, 600], [700, 1000]]);
  const rest = rec.calls.slice(before).flat();
  assert.deepEqual(rest, [{ pfn: 20, count: 280 }, { pfn: 301, count: 1 }, { pfn: 303, count: 297 }, { pfn: 700, count: 300 }]);
  const n = rec.passes(maxPfn);
  for (let p = 0; p < maxPfn; p++) {
    const want = p < 600 || p >= 700 || (p >= 650 && p < 660) ? 1 : 0;
    assert.equal(n[p], want, `pfn ${p} handed over ${n[p]} times`);
  }
  assert.equal(l.releasedPages, 900 + 10);
  // The whole range: only the hole's pages not released before, then nothing.
  assert.equal(l.releaseRest([[0, 1000]]), 90 * PAGE);
  assert.deepEqual(rec.calls[rec.calls.length - 1], [{ pfn: 600, count: 50 }, { pfn: 660, count: 40 }]);
  const calls = rec.calls.length;
  assert.equal(l.releaseRest([[0, 1000]]), 0);
  assert.equal(rec.calls.length, calls);
  assert.ok(rec.passes(maxPfn).subarray(0, maxPfn).every((x) => x === 1), "every page handed over exactly once");
});

test("ReleaseLedger stops at maxPfn", () => {
  const rec = new Recording();
  const l = new ReleaseLedger(rec, 100);
  l.release([{ pfn: 95, count: 20 }, { pfn: 100, count: 5 }, { pfn: 5000, count: 1 }]);
  assert.deepEqual(rec.calls, [[{ pfn: 95, count: 5 }]]);
  assert.equal(l.release([{ pfn: 100, count: 1000 }]), 0);
  assert.equal(rec.calls.length, 1);
  assert.equal(l.releasedPages, 5);
  // A maxPfn that is not a multiple of 8: the last partial byte of the bitmap.
  const rec2 = new Recording();
  const l2 = new ReleaseLedger(rec2, 13);
  l2.releaseRest([[0, 20]]);
  assert.deepEqual(rec2.calls, [[{ pfn: 0, count: 13 }]]);
  assert.equal(l2.releaseRest([[0, 20]]), 0);
});

test("ReleaseLedger: pages a releaser refused are not counted released, so a retry hands them over", () => {
  const rec = new Recording();
  const l = new ReleaseLedger(rec, 64);
  rec.failNext = true;
  assert.throws(() => l.release([{ pfn: 8, count: 8 }]), oneLineError(/refused/));
  assert.equal(l.releasedPages, 0);
  assert.equal(l.release([{ pfn: 8, count: 8 }]), 8 * PAGE);
  assert.deepEqual(rec.calls, [[{ pfn: 8, count: 8 }]]);
});

// ---- FileReleaser on tmpfs ----

test("FileReleaser on tmpfs: released pages read back as zeros, the rest unchanged, allocated blocks drop by exactly the bytes released", () => {
  const size = 8 * MiB;
  const data = pattern(size);
  const path = tmpfsFile("flat.mem", data);
  assert.equal(allocatedBytes(path), size, "tmpfs holds every written page");
  const r = new FileReleaser(path, parseLayout(`0:${size}@0`));
  try {
    assert.equal(r.kind, "file");
    assert.equal(r.hugetlbfs, false);
    assert.equal(r.granule, PAGE);
    assert.equal(r.held(), size);
    // Unsorted and overlapping: 3..10 and 100, 8 pages.
    const freed = r.release([{ pfn: 6, count: 4 }, { pfn: 100, count: 1 }, { pfn: 3, count: 5 }]);
    assert.equal(freed, 8 * PAGE);
    assert.equal(r.held(), size - 8 * PAGE);
    assert.equal(allocatedBytes(path), size - 8 * PAGE);
    let want = zeroed(data, [3 * PAGE, 10 * PAGE], [100 * PAGE, 101 * PAGE]);
    assert.equal(firstDiff(readFileSync(path), want), -1);
    assert.equal(statSync(path).size, size, "KEEP_SIZE: the file keeps its length");
    // Punching a hole again frees nothing more (the kernel's count says so too).
    r.release([{ pfn: 3, count: 2 }]);
    assert.equal(allocatedBytes(path), size - 8 * PAGE);
    // A run past the end of the layout is clipped to it.
    assert.equal(r.release([{ pfn: size / PAGE - 2, count: 10 }]), 2 * PAGE);
    want = zeroed(want, [size - 2 * PAGE, size]);
    assert.equal(firstDiff(readFileSync(path), want), -1);
    assert.equal(allocatedBytes(path), size - 10 * PAGE);
    // Everything goes back at the end.
    r.releaseAll();
    assert.equal(r.held(), 0);
    assert.equal(allocatedBytes(path), 0);
    assert.equal(statSync(path).size, size);
    assert.equal(firstDiff(readFileSync(path), Buffer.alloc(size)), -1);
  } finally {
    r.close();
  }
});

test("FileReleaser with a split layout (q35's 0:2G@0,4G:2G@2G scaled down to 0:4M@0,8M:4M@4M) punches the file ranges of each piece", () => {
  const size = 8 * MiB;
  const data = pattern(size);
  const path = tmpfsFile("split.mem", data);
  const r = new FileReleaser(path, parseLayout("0:4M@0,8M:4M@4M"));
  try {
    // Physical 3M..9M crosses the hole 4M..8M: file 3M..4M and 4M..5M.
    const freed = r.release([{ pfn: (3 * MiB) / PAGE, count: (6 * MiB) / PAGE }]);
    assert.equal(freed, 2 * MiB);
    assert.equal(allocatedBytes(path), size - 2 * MiB);
    let want = zeroed(data, [3 * MiB, 5 * MiB]);
    assert.equal(firstDiff(readFileSync(path), want), -1);
    // A run inside the hole has no file bytes: nothing is punched.
    assert.equal(r.release([{ pfn: (5 * MiB) / PAGE, count: 16 }]), 0);
    // High memory: physical 11M..12M is file 7M..8M (not 11M, beyond the file).
    assert.equal(r.release([{ pfn: (11 * MiB) / PAGE, count: MiB / PAGE }]), MiB);
    want = zeroed(want, [7 * MiB, 8 * MiB]);
    assert.equal(firstDiff(readFileSync(path), want), -1);
    assert.equal(allocatedBytes(path), size - 3 * MiB);
    assert.equal(r.stats.bytes, 3 * MiB);
    assert.equal(r.stats.calls, 3, "one fallocate per file range");
  } finally {
    r.close();
  }
});

test("FileReleaser rounds inward when a segment's file offset is not page aligned: a shared page stays", () => {
  const size = MiB + PAGE;
  const data = pattern(size);
  const path = tmpfsFile("unaligned.mem", data);
  // Physical page p is file bytes 0x800 + p*4096: every page straddles two file pages.
  const r = new FileReleaser(path, parseLayout("0:1M@0x800"));
  try {
    assert.equal(r.release([{ pfn: 0, count: 1 }]), 0, "file 0x800..0x1800 holds no whole file page");
    assert.equal(firstDiff(readFileSync(path), data), -1);
    // Pfns 0..1: file 0x800..0x2800, of which only the file page 0x1000..0x2000 is whole.
    assert.equal(r.release([{ pfn: 0, count: 2 }]), PAGE);
    assert.equal(firstDiff(readFileSync(path), zeroed(data, [0x1000, 0x2000])), -1);
    assert.equal(allocatedBytes(path), size - PAGE);
  } finally {
    r.close();
  }
});

test("FileReleaser and the ledger together: overlapping reports free each page once; the rest of memory frees the file", () => {
  const size = 4 * MiB;
  const path = tmpfsFile("ledger.mem", pattern(size));
  const r = new FileReleaser(path, parseLayout(`0:${size}@0`));
  try {
    const l = new ReleaseLedger(r, size / PAGE);
    assert.equal(l.release([{ pfn: 0, count: 64 }]), 64 * PAGE);
    assert.equal(l.release([{ pfn: 32, count: 64 }]), 32 * PAGE);
    const calls = r.stats.calls;
    assert.equal(l.release([{ pfn: 10, count: 50 }]), 0);
    assert.equal(r.stats.calls, calls, "no fallocate for pages released before");
    assert.equal(allocatedBytes(path), size - 96 * PAGE);
    assert.equal(l.releaseRest([[0, size / PAGE]]), size - 96 * PAGE);
    assert.equal(allocatedBytes(path), 0);
  } finally {
    r.close();
  }
});

test("FileReleaser on files the kernel cannot punch: one-line errors", () => {
  // Every writable filesystem here (ext4, tmpfs) punches holes, so there is
  // no EOPNOTSUPP to provoke; a character device is refused by fallocate
  // itself (ENODEV), which takes the same error path.
  const r = new FileReleaser("/dev/null", [{ start: 0, end: MiB, vaddr: 0n, fileOffset: 0 }]);
  try {
    assert.throws(() => r.release([{ pfn: 0, count: 1 }]), oneLineError(/releasing \/dev\/null bytes 0x0-0x1000: ENODEV/));
    assert.equal(r.stats.calls, 0);
  } finally {
    r.close();
  }
  assert.throws(() => new FileReleaser(join(dir, "missing.mem"), []), oneLineError(/missing\.mem.*ENOENT/));
});

// ---- the crashed guest as a memory file ----

test("attachCrashedGuest with a memory file and layout: identity, reads through the layout, release, removal", async () => {
  const size = 2 * MiB;
  const data = pattern(size);
  const path = tmpfsFile("crashed.mem", data);
  const g = await attachCrashedGuest({ memPath: path, layout: "0:1M@0,4M:1M@1M" });
  try {
    assert.equal(g.via, "file");
    assert.equal(g.gone, true);
    const st = statSync(path);
    assert.deepEqual(g.identity, { memPath: path, layout: "0x0:0x100000@0x0,0x400000:0x100000@0x100000", memSize: size, memIno: st.ino });
    // Physical 4M is file offset 1M.
    const page = new Uint8Array(PAGE);
    g.source.readBatch([{ paddr: 4 * MiB, dst: page }]);
    assert.equal(Buffer.compare(page, data.subarray(MiB, MiB + PAGE)), 0);
    assert.equal(g.releaser.kind, "file");
    assert.equal(g.releaser.release([{ pfn: (4 * MiB) / PAGE, count: 1 }]), PAGE);
    assert.equal(g.releaser.held(), size - PAGE);
    g.source.readBatch([{ paddr: 4 * MiB, dst: page }]);
    assert.ok(page.every((b) => b === 0), "a released page reads as zeros through the source");
    await g.verifyStopped();
    assert.equal(g.removeBacking(), true);
    assert.equal(existsSync(path), false);
  } finally {
    g.releaser.close();
    g.source.close();
  }
});

test("attachCrashedGuest: no guest named, a missing file, a layout past the file: one-line errors", async () => {
  const fds = readdirSync("/proc/self/fd").length;
  await assert.rejects(attachCrashedGuest({}), oneLineError(/--qmp SOCKET, --mem-path FILE or --xen DOMID/));
  await assert.rejects(attachCrashedGuest({ memPath: join(dir, "none.mem") }), oneLineError(/cannot open .*none\.mem: ENOENT/));
  const path = tmpfsFile("short.mem", pattern(MiB));
  await assert.rejects(attachCrashedGuest({ memPath: path, layout: "0:2M@0" }), oneLineError(/truncated/));
  assert.equal(readdirSync("/proc/self/fd").length, fds, "a failed attach leaves no descriptor open");
});
