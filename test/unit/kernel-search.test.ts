// The kernel search against images that plant fakes: thousands of
// "OSRELEASE=" strings (page-aligned, after forged VMCOREINFO note
// headers, and everywhere in between), forged texts without phys_base
// (each one a phys_base search over all of memory), forged texts with a
// wrong phys_base. The work is counted by the search's own budget, and
// the bytes it reads by the source: the real kernel is still found when
// the fakes leave room for it, and otherwise the search ends in one line
// after a fixed number of steps, never in work that grows with the fakes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildSynthetic } from "../../fixtures/synthetic.js";
import { imageVaddr } from "../../fixtures/guest-layout.js";
import { GuestcoreError } from "../../src/core/errors.js";
import { WasmCore } from "../../src/core/wasm.js";
import { findKernel, findKernelAmong } from "../../src/introspect/kernel.js";
import { kernelImage } from "../../src/introspect/kernel-image.js";
import { findInRaw } from "../../src/introspect/raw-layout.js";
import type { Kernel } from "../../src/introspect/kernel.js";
import { SEARCH_LIMITS, SearchBudget } from "../../src/introspect/search-budget.js";
import type { MemorySource, ReadRequest } from "../../src/sources/source.js";
import { tempDir, writeTemp } from "../helpers/synthetic.js";

const PAGE = 4096;
const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));

/** Guest memory in a buffer, 1:1, counting the bytes read. */
function bufferSource(image: Buffer, cuts: number[] = []): MemorySource & { bytesRead: number } {
  const bounds = [0, ...cuts, image.length];
  return {
    format: "raw", path: "planted.raw", notes: [], bytesRead: 0,
    segments: bounds.slice(1).map((end, i) => ({ start: bounds[i], end, vaddr: 0n })),
    readBatch(reqs: readonly ReadRequest[]) {
      for (const r of reqs) {
        if (r.paddr + r.dst.length > image.length) throw new GuestcoreError(`physical address ${r.paddr} is not in the image`);
        r.dst.set(image.subarray(r.paddr, r.paddr + r.dst.length));
        this.bytesRead += r.dst.length;
      }
    },
    close() {},
  };
}

/** Junk that passes the placement test: a page-aligned "OSRELEASE=" and a forged note header at +12. */
const JUNK = (() => {
  const page = Buffer.alloc(PAGE);
  page.write("OSRELEASE=x", 0, "latin1");
  page.write("VMCOREINFO\0", 12, "latin1");
  page.write("OSRELEASE=9.9\n", 24, "latin1");
  // Needles anywhere else cost a compare each, not a parse.
  for (let o = 64; o + 10 <= PAGE; o += 16) page.write("OSRELEASE=", o, "latin1");
  return page;
})();

function plantJunk(img: Buffer, pfn: number): void {
  JUNK.copy(img, pfn * PAGE);
}

/** A plausible forgery: a new release, no phys_base, and a table that maps nothing. */
function plantForgery(img: Buffer, pfn: number, i: number, physBase?: bigint): void {
  const at = pfn * PAGE;
  img.fill(0, at, at + PAGE);
  const top = imageVaddr(0x3f0000).toString(16);
  const text = `OSRELEASE=6.1.0-forged-${i}\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=${top}\n` + (physBase !== undefined ? `NUMBER(phys_base)=${physBase}\n` : "");
  img.write(text, at, "latin1");
}

// Pages below the real VMCOREINFO (pfn 0x120) that the synthetic guest does not use.
const FREE_LOW = [...Array(0xff).keys()].map((i) => i + 1).concat([...Array(0x120 - 0x10b).keys()].map((i) => i + 0x10b));

test("a crowd of fakes below the real VMCOREINFO: the kernel is found, every step counted", () => {
  const s = buildSynthetic({ memMiB: 32 });
  const img = s.image;
  let forgedBare = 0;
  let forgedDeclared = 0;
  FREE_LOW.forEach((pfn, i) => {
    if (i % 10 === 0 && forgedBare < 25) plantForgery(img, pfn, forgedBare++);
    else if (i % 10 === 5 && forgedDeclared < 25) plantForgery(img, pfn, 100 + forgedDeclared++, -(1n << 40n));
    else plantJunk(img, pfn);
  });
  const src = bufferSource(img);
  const budget = new SearchBudget();
  const k = findKernel(src, new WasmCore(), { budget });
  assert.equal(k.foundAt, 0x120 * PAGE);
  assert.equal(k.info.osrelease, s.release);
  assert.equal(k.physBase, s.physBase);
  const junk = FREE_LOW.length - forgedBare - forgedDeclared;
  // Each junk page is two candidates (page start and note placement); each forgery and the real text one.
  assert.equal(budget.used.candidates, 2 * junk + forgedBare + forgedDeclared + 1);
  assert.equal(budget.used.validations, forgedBare + forgedDeclared + 1);
  // A bare forgery probes every 2 MiB slot of 32 MiB; a wrong declared phys_base lands outside memory (no probe).
  assert.equal(budget.used.probes, forgedBare * 16 + 1);
  assert.ok(src.bytesRead <= 2 * img.length, `${src.bytesRead} bytes read for a ${img.length}-byte image`);
});

test("segments that start off a page boundary: the page starts and note placements are where the addresses say", () => {
  const s = buildSynthetic({ memMiB: 32 });
  // The first cut splits vmcoreinfo_data's page (its text is cut short), the second the next chunk's start.
  const k = findKernel(bufferSource(s.image, [0x120010, 0x920010]), new WasmCore());
  assert.equal(k.foundAt, 0x121000 + 24, "the note copy, found from a segment starting at 0x120010");
  assert.equal(k.info.osrelease, s.release);
});

test("every page a fake: the search stops at its candidate budget, in one line", () => {
  const img = Buffer.alloc(24 << 20);
  for (let pfn = 0; pfn < img.length / PAGE; pfn++) plantJunk(img, pfn);
  const src = bufferSource(img);
  const budget = new SearchBudget();
  assert.throws(() => findKernel(src, new WasmCore(), { budget }), (e: Error) => {
    assert.ok(e instanceof GuestcoreError, e.stack);
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, /^no usable VMCOREINFO in planted\.raw: the kernel search spent its budget of 4096 VMCOREINFO candidates .*give --vmcoreinfo FILE$/);
    return true;
  });
  assert.equal(budget.used.candidates, SEARCH_LIMITS.candidates);
  // 4096 candidates are 2048 pages, the first 8 MiB chunk: the 4097th, at the start of the second, ends the scan.
  assert.equal(src.bytesRead, 2 * ((8 << 20) + PAGE));
});

test("forgeries without phys_base: 64 are checked, each search paid from one probe budget", () => {
  const img = Buffer.alloc(64 << 20);
  for (let i = 0; i < 200; i++) plantForgery(img, i, i);
  const budget = new SearchBudget();
  assert.throws(() => findKernel(bufferSource(img), new WasmCore(), { budget }),
    /: no usable VMCOREINFO in planted\.raw \(first rejected: 0x0: init_top_pgt .* does not map itself for any phys_base\): the kernel search spent its budget of 64 plausible VMCOREINFO texts/);
  assert.equal(budget.used.validations, 64);
  assert.equal(budget.used.probes, 64 * 32, "one probe per 2 MiB slot of 64 MiB, per forgery");

  const small = new SearchBudget({ ...SEARCH_LIMITS, probes: 100 });
  assert.throws(() => findKernel(bufferSource(img), new WasmCore(), { budget: small }), /spent its budget of 100 page-table probes/);
  assert.equal(small.used.probes, 100);
  assert.equal(small.used.validations, 4, "the fourth forgery's search ran out");
});

test("guestcore info on an image of fakes: exit 2, one line", (t) => {
  const dir = tempDir(t);
  try {
    const img = Buffer.alloc(16 << 20);
    for (let pfn = 0; pfn < img.length / PAGE; pfn++) plantJunk(img, pfn);
    const r = spawnSync(process.execPath, [CLI, "info", writeTemp(dir, "fakes.raw", img)], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 2, r.stderr);
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^guestcore: no usable VMCOREINFO in .*fakes\.raw: the kernel search spent its budget of 4096 VMCOREINFO candidates/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the kernel-image walk over 4 KiB leaves stops at KERNEL_IMAGE_SIZE", () => {
  let probes = 0;
  const k = {
    info: { symbol: (n: string) => (n === "_stext" ? 0xffffffff81000000n : undefined) },
    // A forged high mapping: 4 KiB pages, contiguous forever.
    as: { translate: (va: bigint) => { probes++; return { paddr: 0x1000000 + Number(va - 0xffffffff81000000n), span: PAGE }; } },
  } as unknown as Kernel;
  const image = kernelImage(k);
  assert.equal(image?.size, 1 << 30);
  assert.equal(probes, (1 << 30) / PAGE + 1);
});

test("a raw file is scanned once, its candidates checked under QEMU's splits, which are opened only to check one", () => {
  // 6 GiB of guest: both splits (2 GiB and 3 GiB low RAM) apply.
  const size = 6 * 2 ** 30;
  const forged = Buffer.alloc(PAGE);
  forged.write(`OSRELEASE=6.1.0-forged\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=${imageVaddr(0x3f0000).toString(16)}\nNUMBER(phys_base)=${-(1n << 40n)}\n`, 0, "latin1");
  for (const [planted, reopens] of [[false, 0], [true, 2]] as const) {
    let bytesRead = 0;
    let closed = 0;
    const fake = (): MemorySource => ({
      format: "raw", path: "big.raw", notes: [], segments: [{ start: 0, end: size, vaddr: 0n }],
      readBatch(reqs: readonly ReadRequest[]) {
        for (const r of reqs) {
          bytesRead += r.dst.length;
          r.dst.fill(0);
          const at = 5 * 2 ** 30 - r.paddr;
          if (planted && at >= 0 && at < r.dst.length) r.dst.set(forged.subarray(0, Math.min(PAGE, r.dst.length - at)), at);
        }
      },
      close() { closed++; },
    });
    const layouts: string[] = [];
    const core = new WasmCore();
    assert.throws(() => findInRaw(fake(), (l) => (layouts.push(l), fake()), (views, more) => findKernelAmong(views, core, more)),
      planted ? /: no usable VMCOREINFO in big\.raw \(1 candidates rejected; first: 0x140000000: init_top_pgt .* does not map itself with phys_base/ : /no VMCOREINFO found/);
    assert.equal(layouts.length, reopens, `planted: ${planted}`);
    assert.equal(closed, 1 + reopens, "every source opened is closed");
    // The chunks overlap by at most a page each: one scan, not one per split.
    assert.ok(bytesRead >= size && bytesRead < size * 1.001, `${bytesRead} bytes read`);
  }
});
