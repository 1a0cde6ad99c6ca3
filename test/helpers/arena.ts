// Guest memory for crafted kernels, mapped as a dump's page tables map it:
// whole 4 KiB pages, mapped by map() and zero until written; a write or a
// read outside them is an error (for reads, the one a dump gives).
import { GuestcoreError } from "../../src/core/errors.js";

const PAGE = 4096n;

export class Arena {
  private readonly pages = new Map<bigint, Buffer>();

  /** Map the pages under [at, at + size). */
  map(at: bigint, size: number): void {
    for (let p = at - (at % PAGE); p < at + BigInt(size); p += PAGE) if (!this.pages.has(p)) this.pages.set(p, Buffer.alloc(Number(PAGE)));
  }

  private byte(va: bigint): { page: Buffer; off: number } | undefined {
    const page = this.pages.get(va - (va % PAGE));
    return page && { page, off: Number(va % PAGE) };
  }

  set(va: bigint, data: Uint8Array): void {
    data.forEach((b, i) => {
      const at = this.byte(va + BigInt(i));
      if (!at) throw new Error(`arena: 0x${(va + BigInt(i)).toString(16)} is not mapped: map() it first`);
      at.page[at.off] = b;
    });
  }

  u64(va: bigint, v: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, v));
    this.set(va, b);
  }

  u32(va: bigint, v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.set(va, b);
  }

  /** A NUL-terminated string at `va` (mapped here); returns `va`. */
  cstr(va: bigint, s: string): bigint {
    this.map(va, s.length + 1);
    this.set(va, Buffer.from(s + "\0", "latin1"));
    return va;
  }

  read(vaddr: bigint, len: number, what: string): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const at = this.byte(BigInt.asUintN(64, vaddr + BigInt(i)));
      if (!at) throw new GuestcoreError(`${what}: virtual address 0x${(vaddr + BigInt(i)).toString(16)} is not mapped`);
      out[i] = at.page[at.off];
    }
    return out;
  }
}
