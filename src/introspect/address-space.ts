// The kernel's virtual address space over a memory source.
//
// Translation is the Wasm core's resumable walk; this side feeds it
// entries from a small cache of page-table pages, so translating a long
// virtual range (mem_map, say) reads each table page once.
import { GuestcoreError, hex } from "../core/errors.js";
import type { WasmCore } from "../core/wasm.js";
import { findSegment, type MemorySource } from "../sources/source.js";
import type { PagingForm } from "./x86-64.js";

const WALK_NEED = 1;
const WALK_DONE = 0;
const WALK_LOOP = -4;
const TABLE_CACHE_PAGES = 512;

export interface Translation {
  paddr: number;
  /** Bytes from paddr to the end of the mapping page (4K, 2M or 1G). */
  span: number;
}

export class AddressSpace {
  private readonly tables = new Map<number, DataView>();

  constructor(
    readonly source: MemorySource,
    private readonly core: WasmCore,
    readonly form: PagingForm,
    readonly root: number,
  ) {}

  private entry(paddr: number): bigint | undefined {
    const page = paddr - (paddr % 4096);
    let t = this.tables.get(page);
    if (!t) {
      const buf = new Uint8Array(4096);
      // An absent table page leaves the address unmapped. A present one
      // that cannot be read (the file cut short, an I/O error, a Xen
      // domain destroyed) is no answer about the mapping: it fails the walk.
      const s = this.source.segments[findSegment(this.source.segments, page)];
      if (s && s.end >= page + 4096) {
        this.source.readBatch([{ paddr: page, dst: buf }]);
      } else {
        try {
          this.source.readBatch([{ paddr: page, dst: buf }]);
        } catch {
          return undefined;
        }
      }
      if (this.tables.size >= TABLE_CACHE_PAGES) this.tables.delete(this.tables.keys().next().value as number);
      t = new DataView(buf.buffer);
      this.tables.set(page, t);
    }
    return t.getBigUint64(paddr - page, true);
  }

  /** Translate one virtual address; undefined when it is not mapped, throws on a table loop. */
  translate(vaddr: bigint): Translation | undefined {
    const x = this.core.x;
    x.pagingSetForm(this.form.levels, this.form.addrMask, this.form.hugeLevels);
    let st = x.walkStart(BigInt(this.root), BigInt.asIntN(64, vaddr));
    // One entry per level: the walker bounds itself so, and the host does
    // too, so a broken core cannot make it read on.
    for (let steps = 0; st === WALK_NEED && steps < this.form.levels; steps++) {
      const need = Number(x.walkNeedAddr());
      const e = this.entry(need);
      if (e === undefined) return undefined;
      st = x.walkFeed(BigInt.asIntN(64, e));
    }
    if (st === WALK_LOOP) throw new GuestcoreError(`page-table loop while translating ${hex(vaddr)}: a table points back to one above it`);
    if (st !== WALK_DONE) return undefined;
    const paddr = Number(BigInt.asUintN(64, x.walkResult()));
    const size = 2 ** x.walkPageShift();
    return { paddr, span: size - (paddr % size) };
  }

  /** Physical runs backing [vaddr, vaddr + len), merged where contiguous. */
  runs(vaddr: bigint, len: number, what: string): { paddr: number; len: number }[] {
    const out: { paddr: number; len: number }[] = [];
    let done = 0;
    while (done < len) {
      const va = vaddr + BigInt(done);
      const t = this.translate(va);
      if (!t) throw new GuestcoreError(`${what}: virtual address ${hex(va)} is not mapped`);
      const n = Math.min(t.span, len - done);
      const last = out[out.length - 1];
      if (last && last.paddr + last.len === t.paddr) last.len += n;
      else out.push({ paddr: t.paddr, len: n });
      done += n;
    }
    return out;
  }

  /** Read virtual memory into dst (which may be a view of Wasm memory). */
  readInto(vaddr: bigint, dst: Uint8Array, what: string): void {
    const runs = this.runs(vaddr, dst.length, what);
    let off = 0;
    const reqs = runs.map((r) => {
      const req = { paddr: r.paddr, dst: dst.subarray(off, off + r.len) };
      off += r.len;
      return req;
    });
    try {
      this.source.readBatch(reqs);
    } catch (e) {
      if (e instanceof GuestcoreError) throw new GuestcoreError(`${what} at ${hex(vaddr)}: ${e.message}`);
      throw e;
    }
  }

  read(vaddr: bigint, len: number, what: string): Uint8Array {
    const buf = new Uint8Array(len);
    this.readInto(vaddr, buf, what);
    return buf;
  }

  readU64(vaddr: bigint, what: string): bigint {
    const b = this.read(vaddr, 8, what);
    return new DataView(b.buffer).getBigUint64(0, true);
  }
}
