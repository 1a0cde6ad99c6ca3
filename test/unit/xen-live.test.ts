// Live Xen domains through libxenforeignmemory/libxenctrl (koffi FFI).
//
// Without Xen, Debian's real libraries must fail with one clear line and
// print nothing themselves. The data path runs against a fake library with
// the same ABI (test/native/fakexen.c) serving a synthetic guest's memory:
// the kernel is found and the same pages kept as from the raw image, pages
// are mapped in batches (a few map calls, never one per page) and always
// unmapped, pages that fail to map are holes, and pages that stop mapping
// later fail the read with their pfn.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildSynthetic, type Synthetic } from "../../fixtures/synthetic.js";
import { GuestImage } from "../../src/image.js";
import { openXenDomain } from "../../src/sources/xen-live.js";
import { tempDir, writeTemp, assertMatchesKinds } from "../helpers/synthetic.js";
import { fakeStats, throwsGuestcore, useFakeXen } from "../helpers/xen.js";

const PAGE = 4096;
const XEN_LIVE = fileURLToPath(new URL("../../src/sources/xen-live.js", import.meta.url));
// One guest for the file's tests, made when the first needs it; its directory goes when they are done.
const shared = tempDir({ after });
let synth: { s: Synthetic; path: string; dir: string } | undefined;
function guest() {
  if (!synth) {
    const s = buildSynthetic({ memMiB: 16 });
    synth = { s, dir: shared, path: writeTemp(shared, "guest.raw", s.image) };
  }
  return synth;
}

test("Debian's libxenforeignmemory without Xen: one clear error, nothing printed by the library", () => {
  // A child process, so its stderr shows whatever the C library would print.
  const script = `
    const { openXenDomain } = await import(${JSON.stringify(XEN_LIVE)});
    try { openXenDomain(0x7fe0); console.log("opened"); } catch (e) { console.log(e.name + ": " + e.message); }`;
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("GUESTCORE_XEN") || k.startsWith("GUESTCORE_FAKEXEN")) delete env[k];
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", env, timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "", "the library logs through our logger, not to stderr");
  if (!existsSync("/dev/xen/privcmd")) {
    assert.equal(r.stdout.trim(), "GuestcoreError: cannot open Xen foreign memory: no /dev/xen/privcmd — not running in a Xen dom0?");
  } else {
    // In a real dom0: root reaches libxenctrl and learns there is no such domain.
    assert.match(r.stdout.trim(), /^GuestcoreError: (there is no Xen domain 32736|cannot open .*permission denied)/);
  }
});

test("fake Xen without a guest: the same error as without /dev/xen/privcmd", () => {
  const restore = useFakeXen(undefined);
  try {
    throwsGuestcore(() => openXenDomain(1), /^cannot open Xen foreign memory: no \/dev\/xen\/privcmd — not running in a Xen dom0\?$/);
  } finally {
    restore();
  }
});

test("fake Xen: the guest's kernel and kept pages equal the raw image's, in a few batched maps, all unmapped", () => {
  const { s, path } = guest();
  const restore = useFakeXen({ mem: path });
  try {
    const src = openXenDomain(1);
    assert.equal(src.format, "xen-domain");
    assert.equal(src.path, "xen:1");
    assert.equal(src.info.state, "paused");
    assert.equal(src.info.hvm, true);
    assert.equal(src.info.totPages, s.kinds.length);
    assert.equal(src.info.maxGpfn, s.kinds.length - 1);
    assert.deepEqual(src.warnings, []);
    assert.deepEqual(src.segments.map((x) => [x.start, x.end]), [[0, s.image.length]]);
    assert.equal(src.stats.probeMapCalls, Math.ceil(s.kinds.length / 1024), "probe: one map per 1024 pages");
    const img = GuestImage.open(src.path, { source: src });
    try {
      assert.equal(img.kernel.origin, "scan");
      assert.equal(img.vmcoreinfo.osrelease, s.release);
      assertMatchesKinds(img, s);
    } finally {
      img.close();
    }
    const f = fakeStats();
    assert.equal(f.mapCalls, src.stats.probeMapCalls + src.stats.readMapCalls, "every map call counted");
    assert.equal(f.pagesMapped, src.stats.pagesMapped);
    assert.equal(f.outstanding, 0, "every mapping unmapped");
    assert.equal(f.unmapCalls, f.mapCalls);
    assert.equal(f.opens, 1);
    assert.equal(f.closes, 1, "handle closed with the image");
    assert.ok(f.pagesMapped / f.mapCalls >= 8, `batched: ${f.pagesMapped} pages in ${f.mapCalls} map calls`);
  } finally {
    restore();
  }
});

test("fake Xen: reads of any shape return the guest's bytes", () => {
  const { s, path } = guest();
  const restore = useFakeXen({ mem: path });
  try {
    const src = openXenDomain(1, { batchPages: 3 });
    try {
      const at = [0x120 * PAGE + 4000, 17, 9 * PAGE, 0x120 * PAGE + 4000];
      const dsts = [new Uint8Array(5 * PAGE + 7), new Uint8Array(1), new Uint8Array(PAGE), new Uint8Array(300)];
      const before = src.stats.readMapCalls;
      src.readBatch(at.map((paddr, i) => ({ paddr, dst: dsts[i] })));
      at.forEach((p, i) => assert.deepEqual(Buffer.from(dsts[i]), s.image.subarray(p, p + dsts[i].length), `request ${i}`));
      // Distinct pages: 0, 9, 0x120..0x125 = 8 pages, in batches of 3.
      assert.equal(src.stats.readMapCalls - before, 3);
    } finally {
      src.close();
    }
    assert.equal(fakeStats().outstanding, 0);
  } finally {
    restore();
  }
});

test("fake Xen: pages that fail to map are holes; batch size is honoured", () => {
  const { s, path } = guest();
  const restore = useFakeXen({ mem: path, errPfns: "5,3000-3099" });
  try {
    const src = openXenDomain(1, { batchPages: 100 });
    try {
      assert.equal(src.stats.probeMapCalls, Math.ceil(s.kinds.length / 100));
      assert.deepEqual(src.segments.map((x) => [x.start / PAGE, x.end / PAGE]), [[0, 5], [6, 3000], [3100, s.kinds.length]]);
      assert.equal(src.presentPages, s.kinds.length - 101);
      assert.equal(src.info.totPages, s.kinds.length - 101);
      throwsGuestcore(() => src.readBatch([{ paddr: 5 * PAGE + 12, dst: new Uint8Array(4) }]), /^physical address 0x500c is not in Xen domain 1's memory$/);
    } finally {
      src.close();
    }
  } finally {
    restore();
  }
});

test("fake Xen: a page that stops mapping after the probe fails the read with its pfn, mappings still released", () => {
  const { path } = guest();
  const restore = useFakeXen({ mem: path, latePfns: "200" });
  try {
    const src = openXenDomain(1);
    try {
      assert.deepEqual(src.segments.map((x) => [x.start / PAGE, x.end / PAGE]), [[0, 4096]]);
      throwsGuestcore(() => src.readBatch([{ paddr: 199 * PAGE, dst: new Uint8Array(3 * PAGE) }]),
        /^Xen domain 1: page 0xc8 could not be mapped \(ENOENT\), though it was present when the domain was opened/);
      assert.equal(fakeStats().outstanding, 0);
    } finally {
      src.close();
    }
  } finally {
    restore();
  }
});

test("fake Xen: domain states", () => {
  const { path } = guest();
  const HVM = 1 << 1;
  const cases: [string, number, (f: () => unknown) => void][] = [
    ["PV", 1 << 3, (f) => throwsGuestcore(f, /^Xen domain 1 is a PV guest: its memory is addressed by machine frames/)],
    ["dying", HVM | 1, (f) => throwsGuestcore(f, /^Xen domain 1 is dying/)],
    ["running", HVM | (1 << 5), (f) => {
      const src = f() as ReturnType<typeof openXenDomain>;
      assert.equal(src.info.state, "running");
      assert.match(src.warnings.join("\n"), /Xen domain 1 is running: its memory changes while it is read \(xl pause 1 first/);
      src.close();
    }],
    ["crashed", HVM | (1 << 2) | (3 << 16), (f) => {
      const src = f() as ReturnType<typeof openXenDomain>;
      assert.equal(src.info.state, "shutdown (crash)");
      assert.equal(src.info.shutdownReason, "crash");
      assert.deepEqual(src.warnings, []);
      src.close();
    }],
  ];
  for (const [name, flags, check] of cases) {
    const restore = useFakeXen({ mem: path, flags });
    try {
      check(() => openXenDomain(1));
      const f = fakeStats();
      assert.equal(f.opens, f.closes, `${name}: handles closed`);
    } finally {
      restore();
    }
  }
});

test("fake Xen: unknown and impossible domain ids, bad options", () => {
  const { path } = guest();
  const restore = useFakeXen({ mem: path, domid: 3 });
  try {
    throwsGuestcore(() => openXenDomain(4), /^there is no Xen domain 4$/);
    throwsGuestcore(() => openXenDomain(-1), /^Xen domain id -1 is not a domain/);
    throwsGuestcore(() => openXenDomain(0x7ff0), /^Xen domain id 32752 is not a domain/);
    throwsGuestcore(() => openXenDomain(3, { batchPages: 0 }), /^Xen map batch of 0 pages/);
    throwsGuestcore(() => openXenDomain(3, { pfnRanges: [[0, 5000]] }), /^Xen pfn range \[0, 5000\) is not within the domain's pfns \[0, 4096\)$/);
    const src = openXenDomain(3, { pfnRanges: [[256, 4096], [0, 160]] });
    try {
      assert.equal(src.stats.probeMapCalls, 0, "given ranges are not probed");
      assert.deepEqual(src.segments.map((x) => [x.start / PAGE, x.end / PAGE]), [[0, 160], [256, 4096]]);
    } finally {
      src.close();
    }
    const f = fakeStats();
    assert.equal(f.opens, f.closes, "handles closed on every failure");
  } finally {
    restore();
  }
});

test("fake Xen: a highest gpfn past the end of RAM is probed as holes", () => {
  const { s, path } = guest();
  const restore = useFakeXen({ mem: path, maxGpfn: s.kinds.length + 2047 });
  try {
    const src = openXenDomain(1);
    try {
      assert.equal(src.stats.probeMapCalls, Math.ceil((s.kinds.length + 2048) / 1024));
      assert.deepEqual(src.segments.map((x) => [x.start / PAGE, x.end / PAGE]), [[0, s.kinds.length]]);
    } finally {
      src.close();
    }
  } finally {
    restore();
  }
});

test("fake Xen: a planted highest gpfn far past the domain's size stops the probe at max_pages plus the 4 GiB hole", () => {
  const { s, path } = guest();
  // A guest can map its shared-info frame at gfn 2^36 and make that the highest gpfn.
  const restore = useFakeXen({ mem: path, maxGpfn: 2 ** 36 });
  try {
    const src = openXenDomain(1);
    try {
      const cap = s.kinds.length + (4 * 2 ** 30) / PAGE;
      assert.equal(src.info.maxGpfn, 2 ** 36);
      assert.equal(src.stats.probeMapCalls, Math.ceil(cap / 1024), "probed up to the cap, not to 2^36");
      assert.equal(src.stats.pagesMapped, cap);
      assert.deepEqual(src.segments.map((x) => [x.start / PAGE, x.end / PAGE]), [[0, s.kinds.length]]);
      assert.deepEqual(src.warnings, [`Xen domain 1: highest gpfn 0x1000000000 lies past what its ${s.kinds.length} pages and a 4 GiB hole can reach; pfns from 0x${cap.toString(16)} on are not read`]);
    } finally {
      src.close();
    }
    assert.equal(fakeStats().outstanding, 0);
  } finally {
    restore();
  }
});
