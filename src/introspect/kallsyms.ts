// Kernel symbols without vmlinux: the kernel's own compressed symbol table
// (kallsyms), located through VMCOREINFO. Linux 6.0 added the kallsyms
// symbols to VMCOREINFO (commit 5fd8fea935a1, "vmcoreinfo: include kallsyms
// symbols"); older kernels simply have no resolver.
//
// Format (kernel/kallsyms.c, scripts/kallsyms.c): kallsyms_names is a list
// of entries, each a length then that many indexes into a 256-entry token
// table (kallsyms_token_index gives each token's offset in
// kallsyms_token_table); the first character of the expanded name is the
// symbol type. Addresses are kallsyms_offsets[] relative to
// kallsyms_relative_base (CONFIG_KALLSYMS_BASE_RELATIVE).
//
// Address -> symbol follows the kernel's own kallsyms_lookup_size_offset()
// (kernel/kallsyms.c, 6.1): the last symbol at or below the address, the
// first of its aliases in table order, its size up to the next higher
// address; only inside [_stext, _end), as is_ksym_addr() with
// CONFIG_KALLSYMS_ALL (Debian's) allows.
import { GuestcoreError } from "../core/errors.js";
import type { Kernel } from "./kernel.js";
import { lastAtOrBefore } from "../core/search.js";

// Far more than any kernel has (6.1 generic: ~95k, allyesconfig ~400k), a
// bound for hostile counts.
const MAX_SYMS = 1 << 20;
const NAMES_CHUNK = 64 << 10;
// The 6.1 names table is ~1.4 MiB; a corrupt one must not keep us reading.
const MAX_NAMES_BYTES = 16 << 20;
// include/linux/kallsyms.h: 512 since 6.1 (commit b8a94bfb3395), 128
// before. scripts/kallsyms refuses a symbol whose type letter and name
// reach it, so no name, and no token (a piece of one), expands further.
const KSYM_NAME_LEN = 512;
// Every entry is a length byte and at least one token.
const MIN_ENTRY_BYTES = 2;
// Names expand to ~2 MiB of text in 6.1; this leaves room for any real
// kernel while keeping what load() holds bounded.
const MAX_NAMES_TEXT = 32 << 20;

export interface KernelSymbol {
  name: string;
  type: string;
  address: bigint;
}

/** Where an address falls: its symbol, the offset into it, the symbol's size. */
export interface SymbolLocation extends KernelSymbol {
  offset: bigint;
  size: bigint;
}

export class Kallsyms {
  private readonly byName = new Map<string, number>();
  private byAddress?: { order: Uint32Array | undefined; lo: bigint; hi: bigint; einittext?: bigint; sinittext?: bigint };

  private constructor(private readonly names: string[], private readonly types: string, private readonly addrs: BigUint64Array) {
    names.forEach((n, i) => {
      if (!this.byName.has(n)) this.byName.set(n, i);
    });
  }

  get size(): number {
    return this.names.length;
  }

  lookup(name: string): bigint | undefined {
    const i = this.byName.get(name);
    return i === undefined ? undefined : this.addrs[i];
  }

  symbol(name: string): KernelSymbol | undefined {
    const i = this.byName.get(name);
    return i === undefined ? undefined : { name, type: this.types[i], address: this.addrs[i] };
  }

  /** Every symbol in table order (aliases and same-named statics included). */
  *entries(): Generator<KernelSymbol> {
    for (let i = 0; i < this.names.length; i++) yield { name: this.names[i], type: this.types[i], address: this.addrs[i] };
  }

  /**
   * The symbol containing `address` in the core kernel, or undefined
   * outside [_stext, _end) (modules, BPF and per-cpu offsets are not in
   * this table's address range).
   */
  locate(address: bigint): SymbolLocation | undefined {
    const a = this.addressIndex();
    if (address < a.lo || address >= a.hi) return undefined;
    const n = this.addrs.length;
    const at = (k: number) => this.addrs[a.order ? a.order[k] : k];
    // Last position whose address is <= the target; at(0) <= lo <= address.
    let low = lastAtOrBefore(n, at, address);
    const start = at(low);
    while (low > 0 && at(low - 1) === start) low--;
    let end: bigint | undefined;
    for (let k = low + 1; k < n; k++) {
      if (at(k) > start) {
        end = at(k);
        break;
      }
    }
    // The last symbol: the kernel ends it at _einittext inside init text,
    // else at _end (CONFIG_KALLSYMS_ALL).
    if (end === undefined) end = a.sinittext !== undefined && a.einittext !== undefined && address >= a.sinittext && address < a.einittext ? a.einittext : a.hi;
    const i = a.order ? a.order[low] : low;
    return { name: this.names[i], type: this.types[i], address: start, offset: address - start, size: end - start };
  }

  /** `name+0xoff/0xsize`, as the kernel's %pS prints an address, or undefined. */
  format(address: bigint): string | undefined {
    const l = this.locate(address);
    return l && `${l.name}+0x${l.offset.toString(16)}/0x${l.size.toString(16)}`;
  }

  /**
   * scripts/kallsyms writes the table sorted by address; a table that is
   * not (a hostile one) gets a sorted index instead of a wrong search.
   */
  private addressIndex() {
    if (this.byAddress) return this.byAddress;
    const addrs = this.addrs;
    let sorted = true;
    for (let i = 1; i < addrs.length && sorted; i++) sorted = addrs[i - 1] <= addrs[i];
    let order: Uint32Array | undefined;
    if (!sorted) {
      order = new Uint32Array(addrs.length);
      for (let i = 0; i < order.length; i++) order[i] = i;
      order.sort((x, y) => (addrs[x] < addrs[y] ? -1 : addrs[x] > addrs[y] ? 1 : x - y));
    }
    let lo = this.lookup("_stext");
    let hi = this.lookup("_end");
    if (lo === undefined || hi === undefined || hi <= lo) {
      // No section markers: the whole table's range, the last symbol ending at itself + 1.
      const first = addrs[order ? order[0] : 0];
      const last = addrs[order ? order[addrs.length - 1] : addrs.length - 1];
      lo = first;
      hi = last + 1n;
    }
    this.byAddress = { order, lo, hi, sinittext: this.lookup("_sinittext"), einittext: this.lookup("_einittext") };
    return this.byAddress;
  }

  /**
   * The resolver, or undefined when VMCOREINFO has no kallsyms symbols
   * (kernels before 6.0). Throws when the table is there but corrupt.
   */
  static load(k: Kernel): Kallsyms | undefined {
    const names: string[] = [];
    let types = "";
    const addrs = walk(k, (text, n) => {
      names.push(text.toString("latin1", 1, n));
      types += String.fromCharCode(text[0]);
      return false;
    });
    return addrs ? new Kallsyms(names, types, addrs.all) : undefined;
  }

  /**
   * Just these symbols, without keeping the table (~95k names for a 6.1
   * kernel): for callers that need one or two addresses.
   */
  static resolve(k: Kernel, wanted: readonly string[]): Map<string, bigint> | undefined {
    const want = new Set(wanted);
    const found = new Map<string, number>();
    // Only names of a wanted length (with the type letter) are expanded.
    const lengths = new Uint8Array(KSYM_NAME_LEN + 1);
    for (const w of wanted) lengths[Math.min(Buffer.byteLength(w, "latin1") + 1, KSYM_NAME_LEN)] = 1;
    const addrs = walk(k, (text, n, i) => {
      const name = text.toString("latin1", 1, n);
      if (want.has(name) && !found.has(name)) found.set(name, i);
      return found.size === want.size;
    }, lengths);
    if (!addrs) return undefined;
    return new Map([...found].map(([n, i]) => [n, addrs.at(i)]));
  }
}

/**
 * Decode kallsyms_names in order, calling `visit(text, length, index)` with
 * the expanded entry (its type letter, then its name) in text[0, length)
 * until it returns true; then the addresses, as a function of the index.
 * With `lengths`, only entries of an expanded length it marks are copied
 * out and visited, and entries too long to have such a length are not
 * decoded at all (nor checked: what they would expand to is not read).
 */
function walk(k: Kernel, visit: (text: Buffer, length: number, index: number) => boolean, lengths?: Uint8Array):
  { at: (i: number) => bigint; all: BigUint64Array } | undefined {
  const info = k.info;
  const sym = (n: string) => info.symbol(n);
  const names = sym("kallsyms_names");
  const num = sym("kallsyms_num_syms");
  const tokTable = sym("kallsyms_token_table");
  const tokIndex = sym("kallsyms_token_index");
  const offsets = sym("kallsyms_offsets");
  const base = sym("kallsyms_relative_base");
  if (names === undefined || num === undefined || tokTable === undefined || tokIndex === undefined) return undefined;
  if (offsets === undefined || base === undefined) return undefined; // absolute kallsyms_addresses: not on x86-64
  const as = k.as;
  const count = new DataView(as.read(num, 4, "kallsyms_num_syms").buffer).getUint32(0, true);
  // scripts/kallsyms lays out kallsyms_names, kallsyms_markers, then the
  // token table: the names end before it (kallsyms_markers lies between).
  const namesBytes = tokTable > names && tokTable - names < BigInt(MAX_NAMES_BYTES) ? Number(tokTable - names) : MAX_NAMES_BYTES;
  const maxCount = Math.min(MAX_SYMS, Math.floor(namesBytes / MIN_ENTRY_BYTES));
  if (count === 0 || count > maxCount) {
    throw new GuestcoreError(`kallsyms_num_syms is ${count}: not a symbol table (its ${namesBytes}-byte kallsyms_names holds at most ${maxCount})`);
  }

  const idx = new DataView(as.read(tokIndex, 512, "kallsyms_token_index").buffer);
  let tokEnd = 0;
  for (let t = 0; t < 256; t++) tokEnd = Math.max(tokEnd, idx.getUint16(t * 2, true));
  // The last token starts at the highest index and is shorter than a name.
  const tokBytes = as.read(tokTable, tokEnd + KSYM_NAME_LEN, "kallsyms_token_table");
  const tokStart = new Uint16Array(256);
  const tokLen = new Uint16Array(256);
  for (let t = 0; t < 256; t++) {
    const off = idx.getUint16(t * 2, true);
    const len = tokBytes.subarray(off, off + KSYM_NAME_LEN).indexOf(0);
    if (len < 0) throw new GuestcoreError(`kallsyms token ${t} at ${off} is longer than KSYM_NAME_LEN (${KSYM_NAME_LEN} bytes): corrupt token table`);
    tokStart[t] = off;
    tokLen[t] = len;
  }

  // Offsets from kallsyms_names as plain numbers: BigInt arithmetic per
  // byte would dominate the decoding.
  let chunk: Uint8Array = new Uint8Array(0);
  let chunkAt = 0;
  let pos = 0;
  // The chunk holds [at, at + n) of the names afterwards.
  const need = (at: number, n: number): void => {
    if (at + n > namesBytes) throw new GuestcoreError(`kallsyms_names runs past its ${namesBytes} bytes (into the token table): corrupt symbol table`);
    if (at >= chunkAt && at + n <= chunkAt + chunk.length) return;
    chunkAt = at;
    chunk = as.read(names + BigInt(at), Math.min(Math.max(NAMES_CHUNK, n), namesBytes - at), "kallsyms_names");
  };
  const text = Buffer.alloc(KSYM_NAME_LEN);
  let textTotal = 0;
  const longest = lengths && tokLen.every((l) => l > 0) ? lengths.lastIndexOf(1) : Infinity;
  for (let i = 0; i < count; i++) {
    need(pos, 1);
    let len = chunk[pos++ - chunkAt];
    // Linux 6.1 (commit 73bbb94466fd): lengths of 128 and more take two
    // bytes, the high bit of the first saying so.
    if (len & 0x80) {
      need(pos, 1);
      len = (len & 0x7f) | (chunk[pos++ - chunkAt] << 7);
    }
    if (len === 0) throw new GuestcoreError(`kallsyms entry ${i} is empty`);
    need(pos, len);
    const first = pos - chunkAt;
    pos += len;
    // Tokens of one byte or more expand an entry to at least its length:
    // one longer than every wanted name is passed over undecoded.
    if (len > longest) continue;
    // The expanded length first: the other names are never copied out.
    let n = 0;
    for (let j = first, end = first + len; j < end; j++) n += tokLen[chunk[j]];
    if (n > KSYM_NAME_LEN) throw new GuestcoreError(`kallsyms entry ${i} expands past KSYM_NAME_LEN (${KSYM_NAME_LEN} bytes): corrupt symbol table`);
    if (n === 0) throw new GuestcoreError(`kallsyms entry ${i} is empty`);
    textTotal += n;
    if (textTotal > MAX_NAMES_TEXT) throw new GuestcoreError(`kallsyms names expand to more than ${MAX_NAMES_TEXT} bytes: corrupt symbol table`);
    if (lengths && !lengths[n]) continue;
    for (let j = first, end = first + len, o = 0; j < end; j++) {
      const t = chunk[j];
      for (let q = tokStart[t], e = q + tokLen[t]; q < e; q++) text[o++] = tokBytes[q];
    }
    if (visit(text, n, i)) break;
  }

  const relBase = new DataView(as.read(base, 8, "kallsyms_relative_base").buffer).getBigUint64(0, true);
  // CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86-64 SMP): non-negative offsets are
  // absolute (per-cpu symbols); negative ones count down from the base.
  const addr = (o: number) => (o >= 0 ? BigInt(o) : BigInt.asUintN(64, relBase - 1n - BigInt(o)));
  let all: BigUint64Array | undefined;
  return {
    at: (i) => addr(new DataView(as.read(offsets + BigInt(i * 4), 4, "kallsyms_offsets").buffer).getInt32(0, true)),
    get all() {
      if (!all) {
        const offs = as.read(offsets, count * 4, "kallsyms_offsets");
        const ov = new DataView(offs.buffer, offs.byteOffset, offs.byteLength);
        all = new BigUint64Array(count);
        for (let i = 0; i < count; i++) all[i] = addr(ov.getInt32(i * 4, true));
      }
      return all;
    },
  };
}
