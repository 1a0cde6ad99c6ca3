// Releasing a Xen domain's memory through libxenctrl's
// xc_domain_decrease_reservation_exact, against the fake library with the
// same ABI (test/native/fakexen.c): released pages stop mapping for the
// live source while the others still read back the guest's bytes,
// tot_pages drops by exactly the bytes released, runs are split into
// bounded batches (2 MiB-aligned stretches as order-9 extents, falling back
// to single pages when Xen refuses order 9), and every failure is one line.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { XenReleaser } from "../../src/recovery/xen-release.js";
import { openXenDomain } from "../../src/sources/xen-live.js";
import { tempDir, writeTemp } from "../helpers/synthetic.js";
import { fakeReleaseStats, throwsGuestcore, useFakeXen, type FakeXenEnv } from "../helpers/xen.js";

const PAGE = 4096;
const PAGES = 4096; // a 16 MiB guest
// One guest for the file's tests, made when the first needs it; its directory goes when they are done.
const shared = tempDir({ after });
let guest: { path: string; image: Buffer } | undefined;
function mem() {
  if (!guest) {
    const image = randomBytes(PAGES * PAGE);
    guest = { path: writeTemp(shared, "guest.raw", image), image };
  }
  return guest;
}

function withFake(env: Omit<FakeXenEnv, "mem">, body: () => void): void {
  const restore = useFakeXen({ mem: mem().path, ...env });
  try {
    body();
    const f = fakeReleaseStats();
    assert.equal(f.xcOpens, f.xcCloses, "every libxenctrl handle closed");
  } finally {
    restore();
  }
}

const segs = (src: ReturnType<typeof openXenDomain>) => src.segments.map((s) => [s.start / PAGE, s.end / PAGE]);

test("released pages no longer map, the rest read back their bytes, held() drops by exactly the released bytes", () => {
  const { image } = mem();
  withFake({}, () => {
    const rel = new XenReleaser(1);
    let freed: number;
    try {
      assert.equal(rel.kind, "xen");
      assert.equal(rel.held(), PAGES * PAGE);
      // Out of order, overlapping and adjacent: [3, 6), [512, 2048), [3000, 3010).
      freed = rel.release([{ pfn: 1536, count: 512 }, { pfn: 3, count: 2 }, { pfn: 512, count: 1024 }, { pfn: 5, count: 1 },
        { pfn: 600, count: 10 }, { pfn: 3000, count: 10 }, { pfn: 100, count: 0 }]);
      assert.equal(freed, (3 + 1536 + 10) * PAGE);
      assert.equal(rel.held(), PAGES * PAGE - freed, "tot_pages fell by what release() returned");
      assert.deepEqual(rel.stats, { calls: 2, bytes: freed });
    } finally {
      rel.close();
    }
    const f = fakeReleaseStats();
    assert.equal(f.calls, 2, "one call of 13 single pages, one of three 2 MiB extents");
    assert.equal(f.extents, 13 + 3);
    assert.equal(f.pages, 1549);
    assert.equal(f.released, 1549);

    // A fresh open probes the domain: the released pfns are holes now.
    const src = openXenDomain(1);
    try {
      assert.deepEqual(segs(src), [[0, 3], [6, 512], [2048, 3000], [3010, PAGES]]);
      assert.equal(src.info.totPages, PAGES - 1549);
      for (const s of src.segments) {
        const dst = new Uint8Array(s.end - s.start);
        src.readBatch([{ paddr: s.start, dst }]);
        assert.ok(Buffer.from(dst).equals(image.subarray(s.start, s.end)), `pfns ${s.start / PAGE}..${s.end / PAGE} read back`);
      }
      throwsGuestcore(() => src.readBatch([{ paddr: 1000 * PAGE, dst: new Uint8Array(8) }]), /^physical address 0x3e8000 is not in Xen domain 1's memory$/);
    } finally {
      src.close();
    }
    // Told the old layout, the source maps a released page and Xen answers that page alone with an error.
    const stale = openXenDomain(1, { pfnRanges: [[0, PAGES]], batchPages: 16 });
    try {
      const dst = new Uint8Array(PAGE);
      stale.readBatch([{ paddr: 2 * PAGE, dst }]);
      assert.ok(Buffer.from(dst).equals(image.subarray(2 * PAGE, 3 * PAGE)));
      throwsGuestcore(() => stale.readBatch([{ paddr: 2 * PAGE, dst: new Uint8Array(2 * PAGE) }]),
        /^Xen domain 1: page 0x3 could not be mapped \(EINVAL\), though it was present when the domain was opened/);
    } finally {
      stale.close();
    }
  });
});

test("batching: runs longer than a batch are split, aligned stretches go as order-9 extents", () => {
  withFake({}, () => {
    const rel = new XenReleaser(1, { batchExtents: 100 });
    try {
      // [1, 1001): 1000 single pages (no 2 MiB-aligned whole stretch in it) in 10 calls.
      assert.equal(rel.release([{ pfn: 1, count: 1000 }]), 1000 * PAGE);
      assert.deepEqual(fakeReleaseStats(), { calls: 10, extents: 1000, pages: 1000, released: 1000, xcOpens: 1, xcCloses: 0 });
    } finally {
      rel.close();
    }
    const big = new XenReleaser(1, { batchExtents: 3 });
    try {
      // [1024, 4096): six 2 MiB extents, three per call.
      assert.equal(big.release([{ pfn: 1024, count: 3072 }]), 3072 * PAGE);
      const f = fakeReleaseStats();
      assert.equal(f.calls, 10 + 2);
      assert.equal(f.extents, 1000 + 6);
      assert.equal(big.held(), (PAGES - 1000 - 3072) * PAGE);
    } finally {
      big.close();
    }
    // Releasing the same pages again frees nothing and says so.
    const again = new XenReleaser(1);
    try {
      throwsGuestcore(() => again.release([{ pfn: 1, count: 1 }]),
        /^Xen domain 1: releasing 1 pages from gpfn 0x1 failed \(EINVAL: xc: Failed deallocation for dom 1: 1 extents of order 0\); 0 pages released before it/);
      assert.equal(again.held(), (PAGES - 4072) * PAGE);
    } finally {
      again.close();
    }
  });
});

test("Xen refusing order 9 (memop-max-order below 9): the same pages go one by one, and order 9 is given up", () => {
  withFake({ maxOrder: 0 }, () => {
    const rel = new XenReleaser(1);
    try {
      assert.equal(rel.release([{ pfn: 1024, count: 1024 }]), 1024 * PAGE);
      assert.equal(rel.held(), (PAGES - 1024) * PAGE);
      assert.equal(rel.warnings.length, 1);
      assert.match(rel.warnings[0], /^Xen domain 1: 2 order-9 extents \(1024 pages\) from gpfn 0x400 refused \(EINVAL: xc: Failed deallocation for dom 1: 2 extents of order 9\); releasing page by page$/);
      let f = fakeReleaseStats();
      assert.deepEqual([f.calls, f.extents, f.pages], [2, 1024, 1024], "the refused call freed nothing");
      assert.equal(rel.release([{ pfn: 2048, count: 512 }]), 512 * PAGE);
      f = fakeReleaseStats();
      assert.equal(f.calls, 3, "no second order-9 attempt");
    } finally {
      rel.close();
    }
  });
});

test("a page Xen cannot remove fails the call in one line; what went before it stays released", () => {
  withFake({ errPfns: "700" }, () => {
    const rel = new XenReleaser(1, { batchExtents: 5 });
    try {
      const before = rel.held()!;
      assert.equal(before, (PAGES - 1) * PAGE);
      throwsGuestcore(() => rel.release([{ pfn: 690, count: 20 }]),
        /^Xen domain 1: releasing 5 pages from gpfn 0x2bc failed \(EINVAL: xc: Failed deallocation for dom 1: 5 extents of order 0\); 10 pages released before it, and Xen does not say how many of these$/);
      assert.deepEqual(rel.stats, { calls: 3, bytes: 10 * PAGE });
      // The _exact call hides it, but tot_pages shows the pages 690..699 gone and nothing past the hole.
      assert.equal(rel.held(), before - 10 * PAGE);
      assert.equal(fakeReleaseStats().released, 10);
    } finally {
      rel.close();
    }
  });
});

test("bad domains, bad runs and bad options: one line each, nothing released, handles closed", () => {
  const HVM = 1 << 1;
  withFake({ domid: 3 }, () => {
    throwsGuestcore(() => new XenReleaser(4), /^there is no Xen domain 4$/);
    throwsGuestcore(() => new XenReleaser(-1), /^Xen domain id -1 is not a domain/);
    throwsGuestcore(() => new XenReleaser(0x7ff0), /^Xen domain id 32752 is not a domain/);
    throwsGuestcore(() => new XenReleaser(0), /^Xen domain 0 is the control domain/);
    throwsGuestcore(() => new XenReleaser(3, { batchExtents: 0 }), /^Xen release batch of 0 extents: expected 1 to 65536$/);
    const rel = new XenReleaser(3);
    try {
      throwsGuestcore(() => rel.release([{ pfn: 0, count: 1 }, { pfn: 4000, count: 97 }]), /^Xen domain 3: pfn run 4000\+97 is not within its pfns \[0, 0x1000\)$/);
      throwsGuestcore(() => rel.release([{ pfn: -1, count: 1 }]), /^Xen domain 3: pfn run -1\+1 is not within/);
      throwsGuestcore(() => rel.release([{ pfn: 1.5, count: 1 }]), /^Xen domain 3: pfn run 1.5\+1 is not within/);
      throwsGuestcore(() => rel.release([{ pfn: 0, count: 2 ** 60 }]), /is not within/);
      assert.equal(fakeReleaseStats().calls, 0, "a bad run list releases nothing");
      assert.equal(rel.release([]), 0);
      assert.equal(rel.held(), PAGES * PAGE);
    } finally {
      rel.close();
    }
    assert.equal(rel.held(), undefined, "a closed releaser cannot tell");
    throwsGuestcore(() => rel.release([{ pfn: 0, count: 1 }]), /^Xen domain 3: releaser is closed$/);
    rel.close();
  });
  const states: [string, number, RegExp][] = [
    ["PV", 1 << 3, /^Xen domain 1 is a PV guest: its memory is addressed by machine frames/],
    ["dying", HVM | 1, /^Xen domain 1 is dying/],
    ["running", HVM | (1 << 5), /^Xen domain 1 is running: releasing its memory would pull pages from under it \(xl pause 1 first\)$/],
  ];
  for (const [name, flags, pattern] of states) {
    withFake({ flags }, () => {
      throwsGuestcore(() => new XenReleaser(1), pattern);
      assert.equal(fakeReleaseStats().calls, 0, name);
    });
  }
  // Crashed and preserved (on_crash="preserve"): the case releasing is for.
  withFake({ flags: HVM | (1 << 2) | (3 << 16) }, () => {
    const rel = new XenReleaser(1);
    try {
      assert.equal(rel.release([{ pfn: 0, count: PAGES }]), PAGES * PAGE);
      assert.equal(rel.held(), 0);
      assert.equal(fakeReleaseStats().calls, 1, "the whole 16 MiB guest in one call of eight 2 MiB extents");
    } finally {
      rel.close();
    }
  });
});

test("without Xen: the releaser fails like the live source, in one line", () => {
  const restore = useFakeXen(undefined);
  try {
    throwsGuestcore(() => new XenReleaser(1), /^cannot open the Xen control interface \(libxenctrl\): no \/dev\/xen\/privcmd — not running in a Xen dom0\?$/);
  } finally {
    restore();
  }
});
