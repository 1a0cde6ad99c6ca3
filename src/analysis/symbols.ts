// Addresses to names in the core kernel and in loaded modules, as the
// kernel's %pS prints them: kallsyms for [_stext, _end), and each module's
// own symbol table (mod->kallsyms) for module addresses, so that a RIP
// inside a module (pvpanic's notifier, on every QEMU capture here) gets a
// name without the module's .ko.
import { GuestcoreError } from "../core/errors.js";
import { listModules, type ModuleInfo } from "./modules.js";
import type { Obj, TypedKernel } from "./typed.js";

// Elf64_Sym: st_name u32, st_info u8, st_other u8, st_shndx u16, st_value u64, st_size u64.
const SYM_SIZE = 24;
const SHN_UNDEF = 0;
// A module's symtab holds its own symbols (a few thousand for the largest
// in-tree modules); the bound keeps a hostile num_symtab to a 12 MiB read.
const MAX_MODULE_SYMS = 1 << 19;
// KSYM_NAME_LEN since 6.1 (commit 18e8f1c5fee3).
const KSYM_NAME_LEN = 512;

export interface AddressSymbol {
  name: string;
  offset: bigint;
  size: bigint;
  /** The module, for a module address. */
  module?: string;
}

interface ModuleRanges {
  info: ModuleInfo;
  obj: Obj;
  /** Where its code lies: [start, end) pairs, core text first, then init text while loading. */
  text: [bigint, bigint][];
  /** Every byte of the module, core and init. */
  all: [bigint, bigint][];
}

/**
 * A module's text and whole extent:
 * - 6.4+ (commit ac3b43283923): mem[MOD_TEXT], mem[MOD_INIT_TEXT] and the other mem[] regions;
 * - 4.5 to 6.3: core_layout / init_layout {base, size, text_size};
 * - before (module_core, core_text_size) modules are reported without text ranges.
 */
function moduleRanges(k: TypedKernel, m: ModuleInfo): ModuleRanges {
  const obj = k.obj("struct module", m.address);
  const text: [bigint, bigint][] = [];
  const all: [bigint, bigint][] = [];
  const add = (to: [bigint, bigint][], base: bigint, size: number) => {
    if (base !== 0n && size > 0) to.push([base, base + BigInt(size)]);
  };
  if (obj.hasMember("mem")) {
    const mem = obj.member("mem");
    for (const e of k.btf.enumerators(k.type("enum mod_mem_type"))) {
      if (e.value < 0n || e.value >= BigInt(mem.length)) continue;
      const r = mem.array(Number(e.value));
      const base = r.member("base").ptr();
      const size = r.member("size").number();
      add(all, base, size);
      if (e.name === "MOD_TEXT" || e.name === "MOD_INIT_TEXT") add(text, base, size);
    }
  } else if (obj.hasMember("core_layout")) {
    for (const l of ["core_layout", "init_layout"]) {
      const lay = obj.member(l);
      const base = lay.member("base").ptr();
      add(all, base, lay.member("size").number());
      add(text, base, lay.member("text_size").number());
    }
  } else {
    add(all, m.base, m.size);
  }
  return { info: m, obj, text, all };
}

const inside = (rs: [bigint, bigint][], a: bigint) => rs.some(([s, e]) => a >= s && a < e);

/**
 * The kernel's is_mapping_symbol() (kernel/module/kallsyms.c, 6.1): ARM
 * and RISC-V mapping symbols ($a, $x, $d...) and local labels (.L...),
 * which find_kallsyms_symbol() passes over.
 */
function isMappingSymbol(s: string): boolean {
  if (s.startsWith(".L")) return true;
  return s[0] === "$" && "axtd".includes(s[1] ?? "") && (s.length === 2 || s[2] === ".");
}

/** A module's named, defined symbols by value (stable: equal values keep symtab order). */
interface ModuleSymtab {
  values: BigUint64Array;
  /** symtab[0]'s value: find_kallsyms_symbol() starts its best match there. */
  first: bigint;
  strtab: bigint;
  nameOffsets: Uint32Array;
}

/** Ranges of all modules, sorted by start, for a binary search instead of a walk over every module per address. */
interface RangeIndex {
  starts: bigint[];
  ends: bigint[];
  mods: ModuleRanges[];
}

function rangeIndex(mods: ModuleRanges[], pick: (m: ModuleRanges) => [bigint, bigint][]): RangeIndex {
  const rs = mods.flatMap((m) => pick(m).map(([s, e]) => ({ s, e, m })));
  rs.sort((x, y) => (x.s < y.s ? -1 : x.s > y.s ? 1 : 0));
  return { starts: rs.map((r) => r.s), ends: rs.map((r) => r.e), mods: rs.map((r) => r.m) };
}

/** How many of the sorted `xs` are at or below `a`. */
function countAtOrBelow(xs: ArrayLike<bigint>, a: bigint): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] <= a) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The module whose range (the one starting last at or below `a`) holds `a`. */
function rangeOf(ix: RangeIndex, a: bigint): ModuleRanges | undefined {
  const n = countAtOrBelow(ix.starts, a);
  return n > 0 && a < ix.ends[n - 1] ? ix.mods[n - 1] : undefined;
}

export class KernelSymbols {
  private modules?: { list: ModuleRanges[]; all: RangeIndex; text: RangeIndex };
  private readonly symtabs = new Map<ModuleRanges, ModuleSymtab | undefined>();
  private readonly coreText: [bigint, bigint][] = [];

  constructor(private readonly k: TypedKernel) {
    // Kernel text as is_kernel_text() sees it: [_stext, _etext) and the init text.
    for (const [s, e] of [["_stext", "_etext"], ["_sinittext", "_einittext"]]) {
      const a = k.symbols.lookup(s);
      const b = k.symbols.lookup(e);
      if (a !== undefined && b !== undefined && b > a) this.coreText.push([a, b]);
    }
  }

  // A stack holds up to 131072 slots and a dump up to 8192 CPU notes, each
  // looked up here: modules and their symbols are indexed once, and each
  // lookup is a binary search, not a walk over every module and symbol.
  private mods(): { list: ModuleRanges[]; all: RangeIndex; text: RangeIndex } {
    if (!this.modules) {
      const list = listModules(this.k).map((m) => moduleRanges(this.k, m));
      this.modules = { list, all: rangeIndex(list, (m) => m.all), text: rangeIndex(list, (m) => m.text) };
    }
    return this.modules;
  }

  /** The module an address lies in (core or init), if any. */
  moduleOf(address: bigint): ModuleInfo | undefined {
    return rangeOf(this.mods().all, address)?.info;
  }

  /** Kernel or module text: where a return address can point. */
  isText(address: bigint): boolean {
    return inside(this.coreText, address) || rangeOf(this.mods().text, address) !== undefined;
  }

  locate(address: bigint): AddressSymbol | undefined {
    const core = this.k.symbols.locate?.(address);
    if (core) return { name: core.name, offset: core.offset, size: core.size };
    const m = rangeOf(this.mods().all, address);
    return m && this.moduleSymbol(m, address);
  }

  /** `name+0xoff/0xsize`, with ` [module]` for a module address, as %pS prints it. */
  format(address: bigint): string | undefined {
    const l = this.locate(address);
    return l && `${l.name}+0x${l.offset.toString(16)}/0x${l.size.toString(16)}${l.module ? ` [${l.module}]` : ""}`;
  }

  /**
   * mod->kallsyms as find_kallsyms_symbol() (kernel/module/kallsyms.c, 6.1)
   * considers it: defined symbols (index 1 on) whose names are neither
   * empty nor mapping symbols, sorted by value. Whether a name qualifies
   * shows in its first three bytes, so that is all that is read of each.
   */
  private symtabOf(m: ModuleRanges): ModuleSymtab | undefined {
    if (this.symtabs.has(m)) return this.symtabs.get(m);
    let t: ModuleSymtab | undefined;
    const ks = m.obj.member("kallsyms").ptr();
    if (ks !== 0n) {
      const mk = this.k.obj("struct mod_kallsyms", ks);
      const n = mk.member("num_symtab").number();
      if (n < 0 || n > MAX_MODULE_SYMS) throw new GuestcoreError(`module ${m.info.name}: num_symtab ${n} (at most ${MAX_MODULE_SYMS})`);
      const symtab = mk.member("symtab").ptr();
      const strtab = mk.member("strtab").ptr();
      if (n >= 2 && symtab !== 0n && strtab !== 0n) t = this.indexSymtab(m, symtab, strtab, n);
    }
    this.symtabs.set(m, t);
    return t;
  }

  private indexSymtab(m: ModuleRanges, symtab: bigint, strtab: bigint, n: number): ModuleSymtab {
    const raw = this.k.read(symtab, n * SYM_SIZE, `module ${m.info.name} symtab`);
    const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const keep: number[] = [];
    for (let i = 1; i < n; i++) {
      if (v.getUint16(i * SYM_SIZE + 6, true) === SHN_UNDEF) continue;
      let prefix: string;
      try {
        prefix = this.k.cString(strtab + BigInt(v.getUint32(i * SYM_SIZE, true)), 3, `symbol name in module ${m.info.name}`);
      } catch (e) {
        // A name the dump does not hold names nothing.
        if (e instanceof GuestcoreError) continue;
        throw e;
      }
      if (prefix !== "" && !isMappingSymbol(prefix)) keep.push(i);
    }
    const value = (i: number) => v.getBigUint64(i * SYM_SIZE + 8, true);
    keep.sort((a, b) => {
      const x = value(a);
      const y = value(b);
      return x < y ? -1 : x > y ? 1 : a - b;
    });
    return {
      values: BigUint64Array.from(keep, value),
      first: value(0),
      strtab,
      nameOffsets: Uint32Array.from(keep, (i) => v.getUint32(i * SYM_SIZE, true)),
    };
  }

  /**
   * find_kallsyms_symbol(): the closest named, defined symbol at or below
   * the address (the first in symtab order among equals); its size runs to
   * the next one above, or to the end of the text the address lies in.
   */
  private moduleSymbol(m: ModuleRanges, address: bigint): AddressSymbol | undefined {
    const t = this.symtabOf(m);
    if (!t) return undefined;
    // The kernel starts from the end of the core (or init) text; an address
    // outside the text (module data) gets the end of its own region instead,
    // so that the size never runs below the symbol.
    let nextval = (m.text.find(([s, e]) => address >= s && address < e) ?? m.all.find(([s, e]) => address >= s && address < e))?.[1] ?? address + 1n;
    const p = countAtOrBelow(t.values, address);
    if (p < t.values.length && t.values[p] < nextval) nextval = t.values[p];
    if (p === 0 || t.values[p - 1] <= t.first) return undefined;
    const bestval = t.values[p - 1];
    // The first in symtab order among those equal to bestval.
    const first = countAtOrBelow(t.values, bestval - 1n);
    const name = this.k.cString(t.strtab + BigInt(t.nameOffsets[first]), KSYM_NAME_LEN, `symbol name in module ${m.info.name}`);
    return { name, offset: address - bestval, size: nextval - bestval, module: m.info.name };
  }
}
