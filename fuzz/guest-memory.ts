// Guest memory for the kernel-content targets: a real capture, opened once
// per worker, with an input laid over the bytes of one region (the
// kallsyms tables, the page tables, the printk ring...). The parsers then
// run on it exactly as the CLI runs them on a dump.
import { join } from "node:path";
import { existsSync } from "node:fs";
import { GuestcoreError, hex } from "../src/core/errors.js";
import { WasmCore } from "../src/core/wasm.js";
import type { ElfNote } from "../src/format/elf64.js";
import { GuestImage } from "../src/image.js";
import { AddressSpace } from "../src/introspect/address-space.js";
import type { Kernel } from "../src/introspect/kernel.js";
import { findSegment, type MemorySource, type PhysSegment, type ReadRequest } from "../src/sources/source.js";
import type { FuzzTarget, RunContext, Seed, SeedContext } from "./target.js";

export interface Capture {
  profile: string;
  image: GuestImage;
  kernel: Kernel;
  core: WasmCore;
}

/** The ELF capture of a fixture profile (its VMCOREINFO note makes opening cheap), or undefined when not built. */
export function openCapture(cacheDir: string, profile: string): Capture | undefined {
  const path = join(cacheDir, "fixtures", profile, "vmcore.elf");
  if (!existsSync(path)) return undefined;
  const image = GuestImage.open(path);
  return { profile, image, kernel: image.kernel, core: image.core };
}

export function requireCapture(cacheDir: string, profiles: readonly string[]): Capture {
  for (const p of profiles) {
    const c = openCapture(cacheDir, p);
    if (c) return c;
  }
  throw new Error(`no real capture of ${profiles.join(" or ")} under ${cacheDir}/fixtures: run 'bash fixtures/build-real.sh ${profiles[0]}'`);
}

export interface Patch {
  paddr: number;
  bytes: Uint8Array;
}

/**
 * The capture's memory with patches laid over it. `segments` may report
 * less than the capture holds (a smaller guest, so a run stays fast);
 * with `strict`, reads outside them fail as a dump's would.
 */
export class OverlaySource implements MemorySource {
  readonly format: string;
  readonly path: string;
  readonly segments: readonly PhysSegment[];
  readonly zeroFill: readonly PhysSegment[];
  readonly notes: readonly ElfNote[];

  constructor(private readonly base: MemorySource, private readonly patches: readonly Patch[],
    opts: { segments?: readonly PhysSegment[]; notes?: readonly ElfNote[]; strict?: boolean } = {}) {
    this.format = base.format;
    this.path = base.path;
    this.segments = opts.segments ?? base.segments;
    this.zeroFill = opts.segments ? [] : base.zeroFill ?? [];
    this.notes = opts.notes ?? base.notes;
    this.strict = opts.strict ?? false;
  }

  private readonly strict: boolean;

  readBatch(reqs: readonly ReadRequest[]): void {
    for (const r of reqs) {
      if (this.strict) {
        for (let at = r.paddr; at < r.paddr + r.dst.length;) {
          const i = findSegment(this.segments, at);
          if (i < 0) throw new GuestcoreError(`physical address ${hex(at)} is not in the ${this.format} image`);
          at = this.segments[i].end;
        }
      }
      this.base.readBatch([r]);
      const end = r.paddr + r.dst.length;
      for (const p of this.patches) {
        const lo = Math.max(p.paddr, r.paddr);
        const hi = Math.min(p.paddr + p.bytes.length, end);
        if (hi > lo) r.dst.set(p.bytes.subarray(lo - p.paddr, hi - p.paddr), lo - r.paddr);
      }
    }
  }

  close(): void {}
}

/** A piece of the input: `length` bytes that go over guest virtual memory at `vaddr`. */
export interface Piece {
  vaddr: bigint;
  length: number;
}

/**
 * Patches laying `input` over `pieces` in order, through the capture's own
 * page tables. Where the input is shorter than the pieces, `fill` (the
 * seed) goes on; bytes past the last piece continue after it in virtual
 * memory, as far as it is mapped.
 */
export function layOver(k: Kernel, pieces: readonly Piece[], input: Uint8Array, fill?: Uint8Array): Patch[] {
  if (fill && input.length < fill.length) {
    const whole = fill.slice();
    whole.set(input);
    input = whole;
  }
  const out: Patch[] = [];
  let at = 0;
  pieces.forEach((p, i) => {
    const len = i === pieces.length - 1 ? input.length - at : Math.min(p.length, input.length - at);
    if (len <= 0) return;
    let done = 0;
    while (done < len) {
      const t = k.as.translate(p.vaddr + BigInt(done));
      if (!t) break;
      const n = Math.min(t.span, len - done);
      out.push({ paddr: t.paddr, bytes: input.subarray(at + done, at + done + n) });
      done += n;
    }
    at += len;
  });
  return out;
}

/** The capture's kernel seen through another source (its page tables re-read from it). */
export function kernelOver(c: Capture, src: MemorySource): Kernel {
  const k = c.kernel;
  return { ...k, as: new AddressSpace(src, c.core, k.as.form, k.as.root) };
}

/** The bytes of `pieces`, concatenated: a seed. */
export function readPieces(k: Kernel, pieces: readonly Piece[]): Uint8Array {
  const parts = pieces.map((p) => k.as.read(p.vaddr, p.length, "seed region"));
  const out = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const b of parts) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

/** A source that notes every page read from it, to find what a parse touches. */
export class RecordingSource implements MemorySource {
  readonly pages = new Set<number>();
  constructor(private readonly base: MemorySource) {}
  get format() { return this.base.format; }
  get path() { return this.base.path; }
  get segments() { return this.base.segments; }
  get zeroFill() { return this.base.zeroFill; }
  get notes() { return this.base.notes; }
  readBatch(reqs: readonly ReadRequest[]): void {
    for (const r of reqs) for (let p = Math.floor(r.paddr / 4096); p * 4096 < r.paddr + r.dst.length; p++) this.pages.add(p);
    this.base.readBatch(reqs);
  }
  close(): void {}
}

/** Sorted pfns as [start, end) byte segments, merged where adjacent. */
export function pageSegments(pfns: Iterable<number>): PhysSegment[] {
  const sorted = [...new Set(pfns)].sort((a, b) => a - b);
  const out: PhysSegment[] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last && last.end === p * 4096) last.end += 4096;
    else out.push({ start: p * 4096, end: (p + 1) * 4096, vaddr: 0n });
  }
  return out;
}

/**
 * Runs `f`; a one-line GuestcoreError (which the contract allows) ends only
 * this step, so one input goes on through the later steps of a target.
 */
export function tolerate<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (e instanceof GuestcoreError && !e.message.includes("\n")) return undefined;
    throw e;
  }
}

/**
 * A target whose seeds() builds read-only material (an open capture, the
 * region's layout, the seeds) that run() uses: built once per worker, as
 * the harness calls seeds() once before any run().
 */
export function materialTarget<M extends { seeds: Seed[] }>(spec: {
  name: string;
  describes: string;
  build: (ctx: SeedContext) => M;
  run: (m: M, input: Uint8Array, ctx: RunContext) => void | Promise<void>;
}): FuzzTarget {
  let material: M | undefined;
  const prepare = (ctx: SeedContext) => (material ??= spec.build(ctx));
  return {
    name: spec.name,
    describes: spec.describes,
    async seeds(ctx) {
      return prepare(ctx).seeds;
    },
    run(input, ctx) {
      return spec.run(prepare(ctx), input, ctx);
    },
  };
}
