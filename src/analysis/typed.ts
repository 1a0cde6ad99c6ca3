// Typed access to kernel objects, drgn style, from the dump alone: the
// types from the kernel's own BTF, addresses from its kallsyms, bytes from
// its page tables. Helpers (tasks, modules, time) are small functions over
// these objects and find layout differences between kernel versions by
// asking BTF whether a member exists, not by version numbers.
import { GuestcoreError, hex } from "../core/errors.js";
import { BTF_INT_SIGNED, BTF_KIND as K, type Btf, readKernelBtf } from "../introspect/btf.js";
import { Kallsyms } from "../introspect/kallsyms.js";
import type { Kernel } from "../introspect/kernel.js";

const PAGE = 4096;
const PAGE_BIG = 4096n;
// Pages kept by one TypedKernel; task and module walks touch a few hundred.
const CACHE_PAGES = 1024;
// x86-64's largest NR_CPUS (CONFIG_MAXSMP): a bound for nr_cpu_ids.
const MAX_CPUS = 8192;
/** Default step budget of a list walk. */
export const LIST_BUDGET = 1 << 20;
// Strings read through a pointer stop here unless the caller says otherwise.
const STRING_MAX = 4096;
// One object read: a hostile BTF size (a struct of 4 GiB) must not become an allocation.
const MAX_READ = 16 << 20;

export interface SymbolTable {
  lookup(name: string): bigint | undefined;
  locate?(address: bigint): { name: string; offset: bigint; size: bigint } | undefined;
}

export interface VirtualReader {
  read(vaddr: bigint, len: number, what: string): Uint8Array;
}

export class TypedKernel {
  private readonly pages = new Map<bigint, Uint8Array>();
  private perCpuOffsets?: bigint[];

  constructor(readonly btf: Btf, readonly symbols: SymbolTable, private readonly mem: VirtualReader) {}

  /** kallsyms and BTF from the kernel's memory; throws when it has either missing. */
  static load(k: Kernel, symbols?: Kallsyms): TypedKernel {
    const ks = symbols ?? Kallsyms.load(k);
    if (!ks) throw new GuestcoreError("VMCOREINFO has no kallsyms symbols (Linux 6.0+ exports them): no symbols for typed access");
    const btf = readKernelBtf(k.as, (n) => ks.lookup(n));
    if (!btf) throw new GuestcoreError("the kernel has no BTF (__start_BTF is not in kallsyms: CONFIG_DEBUG_INFO_BTF is off, or Linux before 5.2)");
    return new TypedKernel(btf, ks, k.as);
  }

  /** Virtual memory through a page cache (a dump does not change under us). */
  /** The C string at `vaddr`, at most `max` bytes, read page by page (never past its NUL's page). */
  cString(vaddr: bigint, max: number, what: string): string {
    const bytes = readCString(this, vaddr, max, what);
    const nul = bytes.indexOf(0);
    return Buffer.from(bytes.subarray(0, nul < 0 ? bytes.length : nul)).toString("latin1");
  }

  read(vaddr: bigint, len: number, what: string): Uint8Array {
    if (!Number.isSafeInteger(len) || len < 0 || len > MAX_READ) throw new GuestcoreError(`${what}: a read of ${len} bytes (at most ${MAX_READ})`);
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const va = BigInt.asUintN(64, vaddr + BigInt(done));
      const pageVa = va - (va % PAGE_BIG);
      const inPage = Number(va - pageVa);
      const n = Math.min(PAGE - inPage, len - done);
      out.set(this.page(pageVa, what).subarray(inPage, inPage + n), done);
      done += n;
    }
    return out;
  }

  private page(pageVa: bigint, what: string): Uint8Array {
    let p = this.pages.get(pageVa);
    if (!p) {
      p = this.mem.read(pageVa, PAGE, what);
      if (this.pages.size >= CACHE_PAGES) this.pages.delete(this.pages.keys().next().value as bigint);
      this.pages.set(pageVa, p);
    }
    return p;
  }

  /** A type id from C-like text ("struct task_struct", "atomic_t") or an id. */
  type(spec: string | number): number {
    if (typeof spec === "number") {
      this.btf.kind(spec);
      return spec;
    }
    const id = this.btf.lookup(spec);
    if (id === undefined) throw new GuestcoreError(`BTF has no type "${spec}"`);
    return id;
  }

  has(spec: string): boolean {
    return this.btf.lookup(spec) !== undefined;
  }

  /** Does the struct have this member (path through anonymous members)? For feature detection. */
  hasMember(spec: string | number, path: string): boolean {
    const id = typeof spec === "number" ? spec : this.btf.lookup(spec);
    return id !== undefined && this.btf.member(id, path) !== undefined;
  }

  obj(type: string | number, address: bigint): Obj {
    return new Obj(this, this.type(type), address);
  }

  symbol(name: string): bigint {
    const a = this.symbols.lookup(name);
    if (a === undefined) throw new GuestcoreError(`kallsyms has no symbol ${name}`);
    return a;
  }

  /**
   * A global variable. vmlinux BTF describes only per-CPU variables (pahole
   * emits VARs for .data..percpu alone), so other globals need their type.
   */
  global(name: string, type?: string | number): Obj {
    return this.obj(type ?? this.varType(name), this.symbol(name));
  }

  private varType(name: string): number {
    const v = this.btf.find("var", name);
    if (v === undefined) throw new GuestcoreError(`BTF has no variable ${name}: give its type`);
    return (this.btf.type(v) as { type: number }).type;
  }

  /** nr_cpu_ids, the number of possible CPU ids. */
  get nrCpuIds(): number {
    // Uniprocessor kernels have no nr_cpu_ids variable (it is the constant 1).
    const a = this.symbols.lookup("nr_cpu_ids");
    if (a === undefined) return 1;
    const n = new DataView(this.read(a, 4, "nr_cpu_ids").buffer).getUint32(0, true);
    if (n < 1 || n > MAX_CPUS) throw new GuestcoreError(`nr_cpu_ids is ${n}: not a CPU count`);
    return n;
  }

  /** __per_cpu_offset[cpu]: where CPU `cpu`'s copy of the per-CPU area lies. */
  perCpuOffset(cpu: number): bigint {
    if (!this.perCpuOffsets) {
      const n = this.nrCpuIds;
      const arr = this.symbols.lookup("__per_cpu_offset");
      if (arr === undefined) {
        // !CONFIG_SMP: one copy, at the variables' own addresses.
        this.perCpuOffsets = [0n];
      } else {
        const b = this.read(arr, n * 8, "__per_cpu_offset");
        const v = new DataView(b.buffer);
        this.perCpuOffsets = Array.from({ length: n }, (_, i) => v.getBigUint64(i * 8, true));
      }
    }
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.perCpuOffsets.length) {
      throw new GuestcoreError(`CPU ${cpu} is not a possible CPU (nr_cpu_ids ${this.perCpuOffsets.length})`);
    }
    return this.perCpuOffsets[cpu];
  }

  /**
   * CPU `cpu`'s instance of a per-CPU variable: its kallsyms address (an
   * offset into the per-CPU area on x86-64 SMP) plus __per_cpu_offset[cpu];
   * its type from BTF's VAR.
   */
  perCpu(name: string, cpu: number, type?: string | number): Obj {
    return this.obj(type ?? this.varType(name), BigInt.asUintN(64, this.symbol(name) + this.perCpuOffset(cpu)));
  }

  /** CPUs set in __cpu_online_mask (Linux 4.5+), or every possible one without it. */
  onlineCpus(): number[] {
    const n = this.nrCpuIds;
    const mask = this.symbols.lookup("__cpu_online_mask");
    if (mask === undefined) return Array.from({ length: n }, (_, i) => i);
    const b = this.read(mask, Math.ceil(n / 64) * 8, "__cpu_online_mask");
    const out: number[] = [];
    for (let c = 0; c < n; c++) if (b[c >> 3] & (1 << (c & 7))) out.push(c);
    return out;
  }
}

/** A typed object in guest memory: a type, an address, and for a bitfield its bit range. */
export class Obj {
  constructor(
    readonly k: TypedKernel,
    readonly type: number,
    readonly address: bigint,
    /** Bit offset from `address` (0-7 after normalising) and width, for bitfields. */
    readonly bitOffset = 0,
    readonly bitSize = 0,
  ) {}

  private get btf(): Btf {
    return this.k.btf;
  }

  /** The type with typedefs and qualifiers stripped. */
  get resolved(): number {
    return this.btf.resolve(this.type);
  }

  get kind(): number {
    return this.btf.kind(this.resolved);
  }

  get typeName(): string {
    return this.btf.describe(this.type);
  }

  get size(): number {
    return this.btf.sizeOf(this.type);
  }

  private fail(msg: string): never {
    throw new GuestcoreError(`${this.typeName} at ${hex(this.address)}: ${msg}`);
  }

  /** A member, by a path through nested (and anonymous) members: "se.exec_start", "signal". */
  member(path: string): Obj {
    if (this.bitSize) this.fail(`a bitfield has no member ${path}`);
    const loc = this.btf.member(this.type, path);
    if (!loc) this.fail(`no member ${path}`);
    const bytes = Math.floor(loc.bitOffset / 8);
    const addr = BigInt.asUintN(64, this.address + BigInt(bytes));
    if (loc.bitSize) return new Obj(this.k, loc.type, addr, loc.bitOffset % 8, loc.bitSize);
    if (loc.bitOffset % 8) this.fail(`member ${path} is not byte-aligned and not a bitfield`);
    return new Obj(this.k, loc.type, addr);
  }

  hasMember(path: string): boolean {
    return this.btf.member(this.type, path) !== undefined;
  }

  /** Raw bytes of the object (not for bitfields). */
  bytes(len = this.size): Uint8Array {
    return this.k.read(this.address, len, this.typeName);
  }

  /**
   * The value of an integer, enum, bool, pointer or bitfield, sign-extended
   * when BTF says it is signed.
   */
  value(): bigint {
    const r = this.resolved;
    const t = this.btf.type(r);
    let size: number;
    let signed = false;
    switch (t.kind) {
      case K.INT: size = t.size; signed = (t.encoding & BTF_INT_SIGNED) !== 0; break;
      case K.ENUM: case K.ENUM64: size = t.size; signed = t.signed; break;
      case K.PTR: size = 8; break;
      default: return this.fail("is not an integer, enum or pointer");
    }
    if (this.bitSize) {
      const nbytes = Math.ceil((this.bitOffset + this.bitSize) / 8);
      const b = this.k.read(this.address, nbytes, this.typeName);
      let raw = 0n;
      for (let i = nbytes - 1; i >= 0; i--) raw = (raw << 8n) | BigInt(b[i]);
      const v = (raw >> BigInt(this.bitOffset)) & ((1n << BigInt(this.bitSize)) - 1n);
      return signed ? BigInt.asIntN(this.bitSize, v) : v;
    }
    if (size > 8) return this.fail(`${size}-byte integers are not read`);
    const b = this.k.read(this.address, size, this.typeName);
    let raw = 0n;
    for (let i = size - 1; i >= 0; i--) raw = (raw << 8n) | BigInt(b[i]);
    return signed ? BigInt.asIntN(size * 8, raw) : raw;
  }

  /** value() as a JS number; throws when it does not fit exactly. */
  number(): number {
    const v = this.value();
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) this.fail(`value ${v} does not fit a number`);
    return Number(v);
  }

  /** The raw 64-bit contents (for any 8-byte object: u64, pointer, unsigned long). */
  u64(): bigint {
    return BigInt.asUintN(64, this.value());
  }

  u32(): number {
    return Number(BigInt.asUintN(32, this.value()));
  }

  /** A pointer's value. */
  ptr(): bigint {
    if (this.kind !== K.PTR) this.fail("is not a pointer");
    return this.value();
  }

  /** The object a pointer points to. */
  deref(): Obj {
    const t = this.btf.type(this.resolved);
    if (t.kind !== K.PTR) return this.fail("is not a pointer");
    const p = this.value();
    if (p === 0n) this.fail("is a NULL pointer");
    return new Obj(this.k, t.type, p);
  }

  /** Element count of an array (0 for a flexible array member). */
  get length(): number {
    const t = this.btf.type(this.resolved);
    if (t.kind !== K.ARRAY) return this.fail("is not an array");
    return t.nelems;
  }

  /**
   * Element i of an array, or of the memory a pointer points to. Arrays are
   * bounds-checked unless flexible (nelems 0).
   */
  array(i: number): Obj {
    const t = this.btf.type(this.resolved);
    if (!Number.isSafeInteger(i) || i < 0) this.fail(`index ${i}`);
    if (t.kind === K.ARRAY) {
      if (t.nelems && i >= t.nelems) this.fail(`index ${i} is past its ${t.nelems} elements`);
      return new Obj(this.k, t.elemType, BigInt.asUintN(64, this.address + BigInt(i) * BigInt(this.btf.sizeOf(t.elemType))));
    }
    if (t.kind === K.PTR) {
      return new Obj(this.k, t.type, BigInt.asUintN(64, this.value() + BigInt(i) * BigInt(this.btf.sizeOf(t.type))));
    }
    return this.fail("is neither an array nor a pointer");
  }

  /**
   * A C string: a char array's contents up to its first NUL (at most its
   * length), or what a char pointer points to, up to `max` bytes.
   */
  string(max = STRING_MAX): string {
    const t = this.btf.type(this.resolved);
    let bytes: Uint8Array;
    if (t.kind === K.ARRAY) {
      bytes = this.k.read(this.address, Math.min(max, t.nelems * this.btf.sizeOf(t.elemType)), this.typeName);
    } else if (t.kind === K.PTR) {
      const p = this.value();
      if (p === 0n) this.fail("is a NULL string pointer");
      bytes = readCString(this.k, p, max, this.typeName);
    } else {
      return this.fail("is neither a char array nor a pointer");
    }
    const nul = bytes.indexOf(0);
    return Buffer.from(bytes.subarray(0, nul < 0 ? bytes.length : nul)).toString("latin1");
  }

  /** The enumerator's name for an enum's value, or undefined for a value it does not name. */
  enumName(): string | undefined {
    const v = this.value();
    return this.btf.enumerators(this.resolved).find((e) => e.value === v)?.name;
  }

  /** The object of `type` that contains this one as member `path` (the kernel's container_of). */
  containerOf(type: string | number, path: string): Obj {
    const tid = this.k.type(type);
    const loc = this.k.btf.member(tid, path);
    if (!loc || loc.bitSize || loc.bitOffset % 8) throw new GuestcoreError(`${this.k.btf.describe(tid)} has no byte-aligned member ${path}`);
    return new Obj(this.k, tid, BigInt.asUintN(64, this.address - BigInt(loc.bitOffset / 8)));
  }
}

function readCString(k: TypedKernel, p: bigint, max: number, what: string): Uint8Array {
  // Page by page: a short string near the end of a mapping must not need the next page.
  const parts: Uint8Array[] = [];
  let got = 0;
  while (got < max) {
    const va = BigInt.asUintN(64, p + BigInt(got));
    const n = Math.min(PAGE - Number(va % PAGE_BIG), max - got);
    const chunk = k.read(va, n, what);
    parts.push(chunk);
    got += n;
    if (chunk.includes(0)) break;
  }
  return Buffer.concat(parts);
}

export interface ListOptions {
  /** Most entries to walk before giving up (a list that never returns to its head). */
  budget?: number;
}

/**
 * The entries of a kernel list_head list, as list_for_each_entry: `head`
 * is the list head (an Obj of struct list_head, or its address), each
 * entry a `type` linked through its member `member`. A node seen twice
 * without reaching the head, a NULL link, or more than `budget` entries
 * is an error.
 */
export function listEntries(k: TypedKernel, head: Obj | bigint, type: string | number, member: string, opts: ListOptions = {}): Obj[] {
  const budget = opts.budget ?? LIST_BUDGET;
  const headAddr = typeof head === "bigint" ? head : head.address;
  const node = (a: bigint) => k.obj("struct list_head", a);
  const seen = new Set<bigint>();
  const out: Obj[] = [];
  let pos = node(headAddr).member("next").ptr();
  while (pos !== headAddr) {
    if (pos === 0n) throw new GuestcoreError(`list at ${hex(headAddr)}: NULL next pointer after ${out.length} entries`);
    if (seen.has(pos)) throw new GuestcoreError(`list at ${hex(headAddr)}: node ${hex(pos)} comes round again without the head (a cycle)`);
    if (out.length >= budget) throw new GuestcoreError(`list at ${hex(headAddr)}: more than ${budget} entries`);
    seen.add(pos);
    out.push(node(pos).containerOf(type, member));
    pos = node(pos).member("next").ptr();
  }
  return out;
}
