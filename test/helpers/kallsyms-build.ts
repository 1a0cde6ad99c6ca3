// The kernel's compressed symbol table, written the way scripts/kallsyms
// lays it out (offsets, relative base, count, names, markers, token table,
// token index), for crafted kernels: a plain one (one token per byte), or
// any part replaced by hostile bytes.
import { IMAGE_PHYS, imageVaddr } from "../../fixtures/guest-layout.js";

export interface KallsymsSpec {
  symbols?: { name: string; type: string; address: bigint }[];
  /** Replace the encoded names (kallsyms_names) with these bytes. */
  names?: Buffer;
  numSyms?: number;
  tokenTable?: Buffer;
  tokenIndex?: number[];
}

export interface KallsymsTables {
  /** SYMBOL() lines for VMCOREINFO. */
  vmcoreinfo: string[];
  /** Where the tables go in the synthetic image (physical), and their bytes. */
  paddr: number;
  bytes: Buffer;
}

// Inside the synthetic kernel image, clear of init_top_pgt and init_uts_ns.
const AT = 0x100000;

const align = (n: number, a: number) => Math.ceil(n / a) * a;

export function kallsymsTables(spec: KallsymsSpec): KallsymsTables {
  const symbols = spec.symbols ?? [];
  const relBase = symbols.length ? symbols.reduce((m, s) => (s.address < m ? s.address : m), symbols[0].address) : imageVaddr(0);
  // One token per byte value: token t is the single character t (0 is empty).
  const tokenTable = spec.tokenTable ?? Buffer.from([0, ...Array.from({ length: 255 }, (_, i) => [i + 1, 0]).flat()]);
  const tokenIndex = spec.tokenIndex ?? [0, ...Array.from({ length: 255 }, (_, i) => 1 + 2 * i)];
  const names = spec.names ?? Buffer.concat(symbols.map((s) => {
    const text = Buffer.from(s.type + s.name, "latin1");
    const len = text.length < 128 ? Buffer.from([text.length]) : Buffer.from([0x80 | (text.length & 0x7f), text.length >> 7]);
    return Buffer.concat([len, text]);
  }));
  const n = symbols.length;
  const offsetsAt = 0;
  const relBaseAt = align(offsetsAt + 4 * n, 8);
  const numAt = relBaseAt + 8;
  const namesAt = numAt + 8;
  const markersAt = align(namesAt + names.length, 8);
  const tokTableAt = markersAt + 8;
  const tokIndexAt = align(tokTableAt + tokenTable.length, 8);
  const bytes = Buffer.alloc(tokIndexAt + 512);
  // CONFIG_KALLSYMS_ABSOLUTE_PERCPU: a text address is relative_base - 1 - offset.
  symbols.forEach((s, i) => bytes.writeInt32LE(Number(relBase - 1n - s.address), offsetsAt + 4 * i));
  bytes.writeBigUInt64LE(relBase, relBaseAt);
  bytes.writeUInt32LE(spec.numSyms ?? n, numAt);
  names.copy(bytes, namesAt);
  tokenTable.copy(bytes, tokTableAt);
  tokenIndex.forEach((o, t) => bytes.writeUInt16LE(o, tokIndexAt + 2 * t));
  const va = (o: number) => imageVaddr(AT + o).toString(16);
  return {
    vmcoreinfo: [
      `SYMBOL(kallsyms_names)=${va(namesAt)}`, `SYMBOL(kallsyms_num_syms)=${va(numAt)}`,
      `SYMBOL(kallsyms_token_table)=${va(tokTableAt)}`, `SYMBOL(kallsyms_token_index)=${va(tokIndexAt)}`,
      `SYMBOL(kallsyms_offsets)=${va(offsetsAt)}`, `SYMBOL(kallsyms_relative_base)=${va(relBaseAt)}`,
    ],
    paddr: IMAGE_PHYS + AT,
    bytes,
  };
}
