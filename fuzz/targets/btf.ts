// The kernel's BTF as guestcore finds it in a real capture's memory
// (__start_BTF..__stop_BTF through kallsyms and the page tables), with the
// input in its place: header, type section, string section, every kind.
// Then what the analysis does with it: decode and describe every type,
// sizes through typedef/qualifier/array chains, members through anonymous
// members, lookups by name and pointer, enumerators, and the layouts
// VMCOREINFO also gives (checkLayouts).
//
// The real blob is 4.3 MiB and 100k types (7 ms to parse, 15 ms to
// index); the seed is the same kernel's BTF cut down to the types the
// VMCOREINFO structs need, plus the first type of every kind, renumbered,
// with pointers to structs outside the cut turned to void pointers. Its
// bytes are the real records with their ids and name offsets rewritten.
import { Kallsyms } from "../../src/introspect/kallsyms.js";
import { Btf, BTF_KIND as K, readKernelBtf } from "../../src/introspect/btf.js";
import { checkLayouts } from "../../src/introspect/btf-vmcoreinfo.js";
import type { Field, Seed, SeedContext } from "../target.js";
import { kernelOver, materialTarget, OverlaySource, layOver, requireCapture, tolerate, type Capture } from "../guest-memory.js";

const HDR = 24;
// The VMCOREINFO structs and what typed.ts walks; their embedded types come along.
const ROOTS = ["page", "list_head", "mem_section", "printk_ringbuffer", "prb_desc_ring", "printk_info", "uts_namespace", "zone", "pglist_data", "module"];
const SAMPLE_KINDS = [K.FUNC, K.VAR, K.DATASEC, K.ENUM64, K.FLOAT, K.RESTRICT, K.VOLATILE, K.FWD, K.DECL_TAG, K.TYPE_TAG, K.ENUM];
const DATASEC_VARS = 8;

interface Material {
  cap: Capture;
  start: bigint;
  seeds: Seed[];
}

interface Raw {
  v: DataView;
  types: number;
  strs: number;
  offsets: number[];
  kind(id: number): number;
  vlen(id: number): number;
  at(id: number): number;
}

function trailing(kind: number, vlen: number): number {
  switch (kind) {
    case K.INT: case K.VAR: case K.DECL_TAG: return 4;
    case K.ARRAY: return 12;
    case K.STRUCT: case K.UNION: case K.DATASEC: case K.ENUM64: return 12 * vlen;
    case K.ENUM: case K.FUNC_PROTO: return 8 * vlen;
    default: return 0;
  }
}

function rawOf(blob: Uint8Array): Raw {
  const v = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const hdrLen = v.getUint32(4, true);
  const types = hdrLen + v.getUint32(8, true);
  const typeLen = v.getUint32(12, true);
  const strs = hdrLen + v.getUint32(16, true);
  const offsets = [0];
  for (let pos = 0; pos < typeLen;) {
    offsets.push(pos);
    const info = v.getUint32(types + pos + 4, true);
    pos += 12 + trailing((info >>> 24) & 0x1f, info & 0xffff);
  }
  const at = (id: number) => types + offsets[id];
  return { v, types, strs, offsets, at, kind: (id) => (v.getUint32(at(id) + 4, true) >>> 24) & 0x1f, vlen: (id) => v.getUint32(at(id) + 4, true) & 0xffff };
}

/** Type references of a record: [byte position, referenced id]. */
function refs(r: Raw, id: number, vlen: number): number[] {
  const at = r.at(id);
  switch (r.kind(id)) {
    case K.PTR: case K.TYPEDEF: case K.VOLATILE: case K.CONST: case K.RESTRICT: case K.TYPE_TAG: case K.FUNC: case K.VAR: case K.DECL_TAG: case K.FUNC_PROTO:
      return [at + 8, ...(r.kind(id) === K.FUNC_PROTO ? Array.from({ length: vlen }, (_, i) => at + 12 + 8 * i + 4) : [])];
    case K.ARRAY: return [at + 12, at + 16];
    case K.STRUCT: case K.UNION: return Array.from({ length: vlen }, (_, i) => at + 12 + 12 * i + 4);
    case K.DATASEC: return Array.from({ length: vlen }, (_, i) => at + 12 + 12 * i);
    default: return [];
  }
}

/** Name offsets of a record (its own, its members', enumerators', parameters'). */
function nameRefs(r: Raw, id: number, vlen: number): number[] {
  const at = r.at(id);
  const stride = { [K.STRUCT]: 12, [K.UNION]: 12, [K.ENUM]: 8, [K.ENUM64]: 12, [K.FUNC_PROTO]: 8 }[r.kind(id)];
  return [at, ...(stride ? Array.from({ length: vlen }, (_, i) => at + 12 + stride * i) : [])];
}

function cut(real: Btf, blob: Uint8Array): Uint8Array {
  const r = rawOf(blob);
  const vlenOf = (id: number) => (r.kind(id) === K.DATASEC ? Math.min(DATASEC_VARS, r.vlen(id)) : r.vlen(id));
  const aggregate = (id: number) => {
    const k = r.kind(tolerate(() => real.resolve(id)) ?? id);
    return k === K.STRUCT || k === K.UNION || k === K.FUNC_PROTO || k === K.FWD;
  };
  const order: number[] = [];
  const newId = new Map<number, number>([[0, 0]]);
  const add = (id: number) => {
    if (newId.has(id)) return;
    newId.set(id, order.length + 1);
    order.push(id);
  };
  for (const n of ROOTS) {
    const id = real.find("struct", n);
    if (id !== undefined) add(id);
  }
  for (const kind of SAMPLE_KINDS) {
    for (let id = 1; id < r.offsets.length; id++) if (r.kind(id) === kind) { add(id); break; }
  }
  for (let i = 0; i < order.length; i++) {
    const id = order[i];
    for (const p of refs(r, id, vlenOf(id))) {
      const t = r.v.getUint32(p, true);
      if (r.kind(id) === K.PTR && t !== 0 && !newId.has(t) && aggregate(t)) continue;
      add(t);
    }
  }
  const strings: number[] = [0];
  const strIds = new Map<number, number>([[0, 0]]);
  const str = (off: number) => {
    let n = strIds.get(off);
    if (n === undefined) {
      n = strings.length;
      strIds.set(off, n);
      const s = blob.subarray(r.strs + off, blob.indexOf(0, r.strs + off) + 1);
      strings.push(...s);
    }
    return n;
  };
  const recs = order.map((id) => {
    const vlen = vlenOf(id);
    const len = 12 + trailing(r.kind(id), vlen);
    const rec = blob.slice(r.at(id), r.at(id) + len);
    const v = new DataView(rec.buffer);
    const base = r.at(id);
    if (vlen !== r.vlen(id)) v.setUint32(4, (r.v.getUint32(base + 4, true) & ~0xffff) | vlen, true);
    for (const p of refs(r, id, vlen)) {
      const t = r.v.getUint32(p, true);
      v.setUint32(p - base, newId.get(t) ?? 0, true);
    }
    for (const p of nameRefs(r, id, vlen)) v.setUint32(p - base, str(r.v.getUint32(p, true)), true);
    return rec;
  });
  const typeLen = recs.reduce((n, x) => n + x.length, 0);
  const out = new Uint8Array(HDR + typeLen + strings.length);
  const h = new DataView(out.buffer);
  h.setUint16(0, 0xeb9f, true);
  out[2] = 1;
  h.setUint32(4, HDR, true);
  h.setUint32(8, 0, true);
  h.setUint32(12, typeLen, true);
  h.setUint32(16, typeLen, true);
  h.setUint32(20, strings.length, true);
  let o = HDR;
  for (const x of recs) {
    out.set(x, o);
    o += x.length;
  }
  out.set(strings, o);
  return out;
}

function fieldsOf(blob: Uint8Array): Field[] {
  const f: Field[] = [
    { offset: 0, width: 2, kind: "magic", name: "magic" }, { offset: 2, width: 1, kind: "flags", name: "version" },
    { offset: 4, width: 4, kind: "size", name: "hdr_len" }, { offset: 8, width: 4, kind: "offset", name: "type_off" },
    { offset: 12, width: 4, kind: "size", name: "type_len" }, { offset: 16, width: 4, kind: "offset", name: "str_off" },
    { offset: 20, width: 4, kind: "size", name: "str_len" },
  ];
  const r = rawOf(blob);
  for (let id = 1; id < r.offsets.length && f.length < 2048; id++) {
    const at = r.at(id);
    f.push({ offset: at, width: 4, kind: "offset", name: `type ${id} name_off` }, { offset: at + 4, width: 4, kind: "flags", name: `type ${id} info` },
      { offset: at + 8, width: 4, kind: "size", name: `type ${id} size/type` }, { offset: at + 4, width: 2, kind: "count", name: `type ${id} vlen` });
    for (const p of refs(r, id, r.vlen(id)).slice(0, 8)) f.push({ offset: p, width: 4, kind: "count", name: `type ${id} ref` });
  }
  return f;
}

function build(ctx: SeedContext): Material {
  const cap = requireCapture(ctx.cacheDir, ["q35-256m", "q35-512m"]);
  const ks = Kallsyms.load(cap.kernel);
  const real = ks && readKernelBtf(cap.kernel.as, (n) => ks.lookup(n));
  if (!ks || !real) throw new Error(`${cap.profile}: no kallsyms or no BTF in the capture`);
  const blob = cut(real, real.raw);
  Btf.parse(blob);
  return { cap, start: ks.lookup("__start_BTF")!, seeds: [{ label: `${cap.profile} BTF cut to ${ROOTS.length} structs and every kind (${blob.length} bytes)`, bytes: blob, fields: fieldsOf(blob) }] };
}

export default materialTarget({
  name: "btf",
  describes: "the kernel's BTF in a real capture's memory (header, types of every kind, strings) and the lookups analysis makes in it",
  build,
  run(m, input) {
    const src = new OverlaySource(m.cap.image.source, layOver(m.cap.kernel, [{ vaddr: m.start, length: input.length }], input));
    const k = kernelOver(m.cap, src);
    const stop = m.start + BigInt(input.length);
    const btf = tolerate(() => readKernelBtf(k.as, (n) => (n === "__start_BTF" ? m.start : n === "__stop_BTF" ? stop : undefined)));
    if (!btf) return;
    for (let id = 1; id <= btf.count; id++) {
      tolerate(() => btf.describe(id));
      const t = tolerate(() => btf.type(id));
      if (t && (t.kind === K.STRUCT || t.kind === K.UNION)) {
        tolerate(() => btf.sizeOf(id));
        for (const mem of t.members.slice(0, 4)) tolerate(() => btf.member(id, mem.name || "x"));
      }
    }
    const page = tolerate(() => btf.lookup("struct page"));
    if (page !== undefined) tolerate(() => btf.member(page, "compound_head"));
    tolerate(() => btf.lookup("struct list_head *"));
    tolerate(() => btf.enumValue("PIDTYPE_PID"));
    tolerate(() => checkLayouts(btf, m.cap.kernel.info));
  },
});
