// The kernel's kallsyms tables in a real capture's memory, overwritten by
// the input: offsets, relative base, num_syms, names, token table and
// token index, laid where VMCOREINFO says they are. Then what the CLI does
// with them: the whole table (guestcore sym), a few names (max_pfn for
// raw and --qmp inputs), and addresses back to name+offset/size.
//
// The seed is the real tables with num_syms lowered to the first SEED_SYMS
// entries (past _stext), so a run decodes 512 names in a ms instead of
// 94k in 100 ms; a mutated count reaches the rest of the real table, which
// is still in memory after the seed's bytes.
import { Kallsyms } from "../../src/introspect/kallsyms.js";
import { kernelMaxPfn } from "../../src/introspect/raw-layout.js";
import type { Field, Seed, SeedContext } from "../target.js";
import { kernelOver, layOver, materialTarget, OverlaySource, readPieces, requireCapture, tolerate, type Capture, type Piece } from "../guest-memory.js";

const SEED_SYMS = 512;

interface Material {
  cap: Capture;
  pieces: Piece[];
  /** Addresses to resolve back: the image's start and some way into it, edges of the address space. */
  probes: bigint[];
  seeds: Seed[];
}

function build(ctx: SeedContext): Material {
  const cap = requireCapture(ctx.cacheDir, ["q35-256m", "q35-512m"]);
  const k = cap.kernel;
  const sym = (n: string) => {
    const v = k.info.symbol(n);
    if (v === undefined) throw new Error(`${cap.profile}: VMCOREINFO lacks SYMBOL(${n})`);
    return v;
  };
  const names = sym("kallsyms_names");
  const tokTable = sym("kallsyms_token_table");
  const tokIndex = sym("kallsyms_token_index");
  // Bytes of the first SEED_SYMS entries of kallsyms_names.
  const all = k.as.read(names, Number(tokTable - names), "kallsyms_names");
  let namesLen = 0;
  const lengthAt: number[] = [];
  for (let i = 0; i < SEED_SYMS; i++) {
    lengthAt.push(namesLen);
    let len = all[namesLen++];
    if (len & 0x80) len = (len & 0x7f) | (all[namesLen++] << 7);
    namesLen += len;
  }
  const pieces: Piece[] = [
    { vaddr: sym("kallsyms_offsets"), length: 4 * SEED_SYMS },
    { vaddr: sym("kallsyms_relative_base"), length: 8 },
    { vaddr: sym("kallsyms_num_syms"), length: 4 },
    { vaddr: names, length: namesLen },
    { vaddr: tokTable, length: Number(tokIndex - tokTable) },
    { vaddr: tokIndex, length: 512 },
  ];
  const starts: number[] = [];
  pieces.reduce((o, p) => (starts.push(o), o + p.length), 0);
  const bytes = readPieces(k, pieces);
  new DataView(bytes.buffer).setUint32(starts[2], SEED_SYMS, true);
  const fields: Field[] = [
    { offset: starts[2], width: 4, kind: "count", name: "kallsyms_num_syms" },
    { offset: starts[1], width: 8, kind: "pointer", name: "kallsyms_relative_base" },
  ];
  for (let t = 0; t < 256; t++) fields.push({ offset: starts[5] + 2 * t, width: 2, kind: "offset", name: `kallsyms_token_index[${t}]` });
  for (let i = 0; i < 128; i++) fields.push({ offset: starts[3] + lengthAt[i], width: 1, kind: "count", name: `kallsyms_names[${i}] length` });
  for (const i of [0, 1, 2, 3, 380, 381, 382, 383, 384, 385, SEED_SYMS - 2, SEED_SYMS - 1]) {
    fields.push({ offset: starts[0] + 4 * i, width: 4, kind: "offset", name: `kallsyms_offsets[${i}]` });
  }
  const stext = k.info.symbol("_stext") ?? sym("init_top_pgt");
  const probes = [0n, 0x1000n, stext, stext + 0x1234n, stext - 1n, sym("init_top_pgt"), 0xffffffffffffffffn];
  return { cap, pieces, probes, seeds: [{ label: `${cap.profile} kallsyms tables, num_syms ${SEED_SYMS}`, bytes, fields }] };
}

export default materialTarget({
  name: "kallsyms",
  describes: "kallsyms tables in a real capture's memory: decode all (sym), resolve a few (max_pfn), address -> name+off/size",
  build,
  run(m, input) {
    const src = new OverlaySource(m.cap.image.source, layOver(m.cap.kernel, m.pieces, input, m.seeds[0].bytes));
    const k = kernelOver(m.cap, src);
    const ks = tolerate(() => Kallsyms.load(k));
    if (ks) {
      for (const n of ["_stext", "startup_64", "cpu_debug_store", "max_pfn"]) ks.symbol(n);
      for (const a of m.probes) ks.format(a);
    }
    // What raw and --qmp inputs run: max_pfn (past the seed's names: every name is decoded).
    tolerate(() => kernelMaxPfn(k));
  },
});
