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

export class KernelSymbols {
  private modules?: ModuleRanges[];
  private readonly coreText: [bigint, bigint][] = [];

  constructor(private readonly k: TypedKernel) {
    // Kernel text as is_kernel_text() sees it: [_stext, _etext) and the init text.
    for (const [s, e] of [["_stext", "_etext"], ["_sinittext", "_einittext"]]) {
      const a = k.symbols.lookup(s);
      const b = k.symbols.lookup(e);
      if (a !== undefined && b !== undefined && b > a) this.coreText.push([a, b]);
    }
  }

  private mods(): ModuleRanges[] {
    this.modules ??= listModules(this.k).map((m) => moduleRanges(this.k, m));
    return this.modules;
  }

  /** The module an address lies in (core or init), if any. */
  moduleOf(address: bigint): ModuleInfo | undefined {
    return this.mods().find((m) => inside(m.all, address))?.info;
  }

  /** Kernel or module text: where a return address can point. */
  isText(address: bigint): boolean {
    return inside(this.coreText, address) || this.mods().some((m) => inside(m.text, address));
  }

  locate(address: bigint): AddressSymbol | undefined {
    const core = this.k.symbols.locate?.(address);
    if (core) return { name: core.name, offset: core.offset, size: core.size };
    const m = this.mods().find((x) => inside(x.all, address));
    return m && this.moduleSymbol(m, address);
  }

  /** `name+0xoff/0xsize`, with ` [module]` for a module address, as %pS prints it. */
  format(address: bigint): string | undefined {
    const l = this.locate(address);
    return l && `${l.name}+0x${l.offset.toString(16)}/0x${l.size.toString(16)}${l.module ? ` [${l.module}]` : ""}`;
  }

  /**
   * find_kallsyms_symbol() (kernel/module/kallsyms.c, 6.1): the closest
   * named, defined symbol at or below the address; its size runs to the
   * next one above, or to the end of the text the address lies in.
   */
  private moduleSymbol(m: ModuleRanges, address: bigint): AddressSymbol | undefined {
    const ks = m.obj.member("kallsyms").ptr();
    if (ks === 0n) return undefined;
    const mk = this.k.obj("struct mod_kallsyms", ks);
    const n = mk.member("num_symtab").number();
    if (n < 0 || n > MAX_MODULE_SYMS) throw new GuestcoreError(`module ${m.info.name}: num_symtab ${n} (at most ${MAX_MODULE_SYMS})`);
    const symtab = mk.member("symtab").ptr();
    const strtab = mk.member("strtab").ptr();
    if (n < 2 || symtab === 0n || strtab === 0n) return undefined;
    const raw = this.k.read(symtab, n * SYM_SIZE, `module ${m.info.name} symtab`);
    const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const nameAt = (i: number, max: number) => this.k.cString(strtab + BigInt(v.getUint32(i * SYM_SIZE, true)), max, `symbol name in module ${m.info.name}`);
    // The kernel starts from the end of the core (or init) text; an address
    // outside the text (module data) gets the end of its own region instead,
    // so that the size never runs below the symbol.
    let nextval = (m.text.find(([s, e]) => address >= s && address < e) ?? m.all.find(([s, e]) => address >= s && address < e))?.[1] ?? address + 1n;
    let best = 0;
    let bestval = v.getBigUint64(8, true);
    // ELF's real symbols start at 1.
    for (let i = 1; i < n; i++) {
      if (v.getUint16(i * SYM_SIZE + 6, true) === SHN_UNDEF) continue;
      const val = v.getBigUint64(i * SYM_SIZE + 8, true);
      const wanted = (val <= address && val > bestval) || (val > address && val < nextval);
      if (!wanted) continue;
      // Whether a name is empty or a mapping symbol shows in its first three
      // bytes; reading every candidate's whole name (a hostile table's are
      // KSYM_NAME_LEN long, all ascending) would cost n * 512 bytes.
      const s = nameAt(i, 3);
      if (s === "" || isMappingSymbol(s)) continue;
      if (val <= address) {
        best = i;
        bestval = val;
      } else {
        nextval = val;
      }
    }
    if (!best) return undefined;
    return { name: nameAt(best, KSYM_NAME_LEN), offset: address - bestval, size: nextval - bestval, module: m.info.name };
  }
}

