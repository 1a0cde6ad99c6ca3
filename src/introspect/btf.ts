// The kernel's own type information (BTF), read from its memory: with
// CONFIG_DEBUG_INFO_BTF (Linux 5.2+; Debian's 6.1 kernels have it) the
// linker script keeps the .BTF section between __start_BTF and __stop_BTF,
// loaded and mapped like the rest of the image, and kallsyms names both.
//
// Format: include/uapi/linux/btf.h and Documentation/bpf/btf.rst. A header,
// then a type section (type ids count from 1 in order of appearance; id 0
// is void) and a string section that name offsets point into.
//
// The guest wrote every byte. The header's lengths are checked against the
// bytes actually present before anything is allocated, the type count is
// bounded by what the type section can hold, every reference is checked
// to name a type that exists, and every walk along a chain of types
// (typedef -> const -> typedef ...) is bounded by a depth, so a loop ends
// in an error instead of a hang.
import { GuestcoreError, hex } from "../core/errors.js";

export const BTF_KIND = {
  VOID: 0, INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, FWD: 7, TYPEDEF: 8, VOLATILE: 9, CONST: 10,
  RESTRICT: 11, FUNC: 12, FUNC_PROTO: 13, VAR: 14, DATASEC: 15, FLOAT: 16, DECL_TAG: 17, TYPE_TAG: 18, ENUM64: 19,
} as const;
const K = BTF_KIND;
const KIND_NAMES = ["void", "int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef", "volatile", "const",
  "restrict", "func", "func_proto", "var", "datasec", "float", "decl_tag", "type_tag", "enum64"];

const MAGIC = 0xeb9f;
const HEADER_LEN = 24;
const TYPE_LEN = 12;
// btf.h: BTF_MAX_TYPE, BTF_MAX_NAME_OFFSET.
const MAX_TYPE = 0xfffff;
const MAX_NAME_OFFSET = 0xffffff;
// The kernel's own MAX_RESOLVE_DEPTH (kernel/bpf/btf.c) for modifier and
// typedef chains, and for anonymous members nested in anonymous members.
const MAX_DEPTH = 32;
// Members visited in one search through nested anonymous structs and unions.
const MAX_MEMBER_VISITS = 1 << 16;
// Debian's 6.1 vmlinux BTF is 4.2 MiB; allyesconfig kernels stay well under this.
export const MAX_BTF_BYTES = 64 << 20;
// INT encoding bits (btf.h BTF_INT_SIGNED, BTF_INT_CHAR, BTF_INT_BOOL).
export const BTF_INT_SIGNED = 1;
export const BTF_INT_CHAR = 2;
export const BTF_INT_BOOL = 4;
const POINTER_SIZE = 8; // x86-64

export interface BtfHeader {
  version: number;
  flags: number;
  hdrLen: number;
  typeOff: number;
  typeLen: number;
  strOff: number;
  strLen: number;
}

export interface BtfMember {
  name: string;
  type: number;
  /** From the start of the struct or union. */
  bitOffset: number;
  /** Non-zero for a bitfield. */
  bitSize: number;
}

export interface BtfEnumerator {
  name: string;
  value: bigint;
}

export interface BtfParam {
  name: string;
  type: number;
}

export interface BtfSecVar {
  type: number;
  offset: number;
  size: number;
}

interface Common {
  id: number;
  name: string;
}

export type BtfType =
  | (Common & { kind: typeof K.VOID })
  | (Common & { kind: typeof K.INT; size: number; encoding: number; bitOffset: number; bits: number })
  | (Common & { kind: typeof K.PTR | typeof K.TYPEDEF | typeof K.VOLATILE | typeof K.CONST | typeof K.RESTRICT | typeof K.TYPE_TAG; type: number })
  | (Common & { kind: typeof K.ARRAY; elemType: number; indexType: number; nelems: number })
  | (Common & { kind: typeof K.STRUCT | typeof K.UNION; size: number; members: BtfMember[] })
  | (Common & { kind: typeof K.ENUM | typeof K.ENUM64; size: number; signed: boolean; values: BtfEnumerator[] })
  | (Common & { kind: typeof K.FWD; union: boolean })
  | (Common & { kind: typeof K.FUNC; type: number; linkage: number })
  | (Common & { kind: typeof K.FUNC_PROTO; returnType: number; params: BtfParam[] })
  | (Common & { kind: typeof K.VAR; type: number; linkage: number })
  | (Common & { kind: typeof K.DATASEC; size: number; vars: BtfSecVar[] })
  | (Common & { kind: typeof K.FLOAT; size: number })
  | (Common & { kind: typeof K.DECL_TAG; type: number; componentIdx: number });

/** Where a member path lands inside a type. */
export interface MemberLocation {
  type: number;
  bitOffset: number;
  bitSize: number;
}

export type NamedKind = "struct" | "union" | "enum" | "typedef" | "var" | "int" | "float" | "func" | "datasec" | "fwd";
const NAMED_KINDS: Record<NamedKind, number[]> = {
  struct: [K.STRUCT], union: [K.UNION], enum: [K.ENUM, K.ENUM64], typedef: [K.TYPEDEF], var: [K.VAR], int: [K.INT],
  float: [K.FLOAT], func: [K.FUNC], datasec: [K.DATASEC], fwd: [K.FWD],
};

function bad(msg: string): never {
  throw new GuestcoreError(`BTF: ${msg}`);
}

/** Bytes that follow the 12-byte common part, by kind (btf.rst section 2.2). */
function trailing(kind: number, vlen: number): number {
  switch (kind) {
    case K.INT: return 4;
    case K.ARRAY: return 12;
    case K.STRUCT: case K.UNION: return 12 * vlen;
    case K.ENUM: return 8 * vlen;
    case K.ENUM64: return 12 * vlen;
    case K.FUNC_PROTO: return 8 * vlen;
    case K.VAR: return 4;
    case K.DATASEC: return 12 * vlen;
    case K.DECL_TAG: return 4;
    case K.PTR: case K.FWD: case K.TYPEDEF: case K.VOLATILE: case K.CONST: case K.RESTRICT:
    case K.FUNC: case K.FLOAT: case K.TYPE_TAG:
      return 0;
    default: return -1;
  }
}

export function parseBtfHeader(bytes: Uint8Array): BtfHeader {
  if (bytes.length < HEADER_LEN) bad(`${bytes.length} bytes cannot hold the ${HEADER_LEN}-byte header`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = v.getUint16(0, true);
  if (magic !== MAGIC) bad(`magic ${hex(magic)} is not ${hex(MAGIC)} (little-endian BTF)`);
  const h: BtfHeader = {
    version: v.getUint8(2), flags: v.getUint8(3), hdrLen: v.getUint32(4, true),
    typeOff: v.getUint32(8, true), typeLen: v.getUint32(12, true), strOff: v.getUint32(16, true), strLen: v.getUint32(20, true),
  };
  if (h.version !== 1) bad(`version ${h.version} (only 1 is defined)`);
  if (h.hdrLen < HEADER_LEN || h.hdrLen > bytes.length) bad(`hdr_len ${h.hdrLen} outside [${HEADER_LEN}, ${bytes.length}]`);
  // A longer header is a newer format; like the kernel's btf_parse_hdr,
  // accept it only when the fields we do not know are zero.
  for (let i = HEADER_LEN; i < h.hdrLen; i++) if (bytes[i] !== 0) bad(`header byte ${i} is set: a header newer than this reader`);
  const body = bytes.length - h.hdrLen;
  // u32 + u32 stays below 2^33: exact in a double.
  if (h.typeOff + h.typeLen > body) bad(`type section [${h.typeOff}, +${h.typeLen}) runs past the ${body} bytes after the header`);
  if (h.strOff + h.strLen > body) bad(`string section [${h.strOff}, +${h.strLen}) runs past the ${body} bytes after the header`);
  if (h.typeOff % 4 || h.typeLen % 4) bad(`type section at ${h.typeOff} length ${h.typeLen} is not 4-byte aligned`);
  if (h.typeOff < h.strOff + h.strLen && h.strOff < h.typeOff + h.typeLen && h.typeLen && h.strLen) bad("type and string sections overlap");
  if (h.strLen === 0 || h.strLen - 1 > MAX_NAME_OFFSET) bad(`string section length ${h.strLen} outside [1, ${MAX_NAME_OFFSET + 1}]`);
  const s = h.hdrLen + h.strOff;
  if (bytes[s] !== 0 || bytes[s + h.strLen - 1] !== 0) bad("string section does not start and end with NUL");
  return h;
}

export class Btf {
  readonly header: BtfHeader;
  /** Number of types; ids run from 1 to count. */
  readonly count: number;
  private readonly v: DataView;
  private readonly types: number;
  private readonly strs: number;
  private readonly strLen: number;
  /** Byte offset of each type's record inside the type section, by id. */
  private readonly offsets: Uint32Array;
  private byName?: Map<number, number>;
  private readonly found = new Map<string, number | undefined>();
  private readonly decoded = new Map<number, BtfType>();

  private constructor(private readonly bytes: Uint8Array, header: BtfHeader, offsets: Uint32Array, count: number) {
    this.header = header;
    this.v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.types = header.hdrLen + header.typeOff;
    this.strs = header.hdrLen + header.strOff;
    this.strLen = header.strLen;
    this.offsets = offsets;
    this.count = count;
  }

  /** Parse and check a BTF blob; throws a GuestcoreError on anything malformed. */
  static parse(bytes: Uint8Array): Btf {
    const h = parseBtfHeader(bytes);
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const base = h.hdrLen + h.typeOff;
    // Every record takes at least 12 bytes: the section's length bounds the
    // count before anything is allocated for it.
    const cap = Math.min(Math.floor(h.typeLen / TYPE_LEN), MAX_TYPE);
    const offsets = new Uint32Array(cap + 1);
    let count = 0;
    let pos = 0;
    while (pos < h.typeLen) {
      if (count >= cap) bad(`more than ${cap} types in a ${h.typeLen}-byte type section`);
      if (pos + TYPE_LEN > h.typeLen) bad(`type ${count + 1} at ${pos} is cut off by the end of the type section`);
      const info = v.getUint32(base + pos + 4, true);
      const kind = (info >>> 24) & 0x1f;
      const more = trailing(kind, info & 0xffff);
      if (more < 0) bad(`type ${count + 1} has unknown kind ${kind}`);
      if (pos + TYPE_LEN + more > h.typeLen) bad(`type ${count + 1} (${KIND_NAMES[kind]}, vlen ${info & 0xffff}) runs past the type section`);
      offsets[++count] = pos;
      pos += TYPE_LEN + more;
    }
    const btf = new Btf(bytes, h, offsets, count);
    for (let id = 1; id <= count; id++) btf.check(id);
    return btf;
  }

  private u32(at: number): number {
    return this.v.getUint32(at, true);
  }

  private str(off: number): string {
    if (off >= this.strLen) bad(`name offset ${off} is outside the ${this.strLen}-byte string section`);
    const start = this.strs + off;
    // The section ends with NUL (checked in the header), so this finds one.
    const end = this.bytes.indexOf(0, start);
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + start, end - start).toString("latin1");
  }

  private ref(id: number, t: number, what: string): void {
    if (t > this.count) bad(`type ${id}'s ${what} refers to type ${t}, past the last (${this.count})`);
  }

  /** Structural checks of one record; references must name existing types. */
  private check(id: number): void {
    const at = this.types + this.offsets[id];
    const nameOff = this.u32(at);
    if (nameOff >= this.strLen) bad(`type ${id}'s name offset ${nameOff} is outside the string section`);
    const info = this.u32(at + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const st = this.u32(at + 8);
    const names = (first: number, stride: number) => {
      for (let i = 0; i < vlen; i++) {
        const n = this.u32(first + i * stride);
        if (n >= this.strLen) bad(`type ${id}'s entry ${i} has name offset ${n} outside the string section`);
      }
    };
    switch (kind) {
      case K.INT: {
        const e = this.u32(at + 12);
        const bits = e & 0xff;
        const off = (e >>> 16) & 0xff;
        if (![1, 2, 4, 8, 16].includes(st)) bad(`int type ${id} has size ${st}`);
        if (bits === 0 || bits > 128 || off + bits > st * 8) bad(`int type ${id} has ${bits} bits at ${off} in ${st} bytes`);
        break;
      }
      case K.PTR: case K.TYPEDEF: case K.VOLATILE: case K.CONST: case K.RESTRICT: case K.TYPE_TAG: case K.FUNC: case K.VAR:
        this.ref(id, st, "target");
        break;
      case K.DECL_TAG:
        this.ref(id, st, "target");
        break;
      case K.ARRAY:
        this.ref(id, this.u32(at + 12), "element type");
        this.ref(id, this.u32(at + 16), "index type");
        break;
      case K.STRUCT: case K.UNION:
        names(at + 12, 12);
        for (let i = 0; i < vlen; i++) this.ref(id, this.u32(at + 12 + i * 12 + 4), `member ${i}`);
        break;
      case K.ENUM:
        names(at + 12, 8);
        break;
      case K.ENUM64:
        names(at + 12, 12);
        break;
      case K.FUNC_PROTO:
        this.ref(id, st, "return type");
        names(at + 12, 8);
        for (let i = 0; i < vlen; i++) this.ref(id, this.u32(at + 12 + i * 8 + 4), `parameter ${i}`);
        break;
      case K.DATASEC:
        for (let i = 0; i < vlen; i++) this.ref(id, this.u32(at + 12 + i * 12), `variable ${i}`);
        break;
    }
  }

  private assertId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id > this.count) throw new GuestcoreError(`BTF has no type ${id} (types 1 to ${this.count})`);
  }

  kind(id: number): number {
    this.assertId(id);
    return id === 0 ? K.VOID : (this.u32(this.types + this.offsets[id] + 4) >>> 24) & 0x1f;
  }

  name(id: number): string {
    this.assertId(id);
    return id === 0 ? "" : this.str(this.u32(this.types + this.offsets[id]));
  }

  /** One type, decoded (and kept: the kernel's BTF has ~100k types, helpers use a few hundred). */
  type(id: number): BtfType {
    this.assertId(id);
    let t = this.decoded.get(id);
    if (!t) {
      t = this.decode(id);
      this.decoded.set(id, t);
    }
    return t;
  }

  private decode(id: number): BtfType {
    if (id === 0) return { id, name: "", kind: K.VOID };
    const at = this.types + this.offsets[id];
    const name = this.str(this.u32(at));
    const info = this.u32(at + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const kflag = info >>> 31 === 1;
    const st = this.u32(at + 8);
    const list = <T>(stride: number, f: (p: number) => T): T[] => {
      const out: T[] = [];
      for (let i = 0; i < vlen; i++) out.push(f(at + 12 + i * stride));
      return out;
    };
    switch (kind) {
      case K.INT: {
        const e = this.u32(at + 12);
        return { id, name, kind, size: st, encoding: (e >>> 24) & 0x0f, bitOffset: (e >>> 16) & 0xff, bits: e & 0xff };
      }
      case K.PTR: case K.TYPEDEF: case K.VOLATILE: case K.CONST: case K.RESTRICT: case K.TYPE_TAG:
        return { id, name, kind, type: st };
      case K.ARRAY:
        return { id, name, kind, elemType: this.u32(at + 12), indexType: this.u32(at + 16), nelems: this.u32(at + 20) };
      case K.STRUCT: case K.UNION:
        return {
          id, name, kind, size: st,
          members: list(12, (p) => this.decodeMember(kflag, this.u32(p), this.u32(p + 4), this.u32(p + 8))),
        };
      case K.ENUM:
        return {
          id, name, kind, size: st, signed: kflag,
          values: list(8, (p) => ({ name: this.str(this.u32(p)), value: kflag ? BigInt(this.v.getInt32(p + 4, true)) : BigInt(this.u32(p + 4)) })),
        };
      case K.ENUM64:
        return {
          id, name, kind, size: st, signed: kflag,
          values: list(12, (p) => {
            const u = (BigInt(this.u32(p + 8)) << 32n) | BigInt(this.u32(p + 4));
            return { name: this.str(this.u32(p)), value: kflag ? BigInt.asIntN(64, u) : u };
          }),
        };
      case K.FWD:
        return { id, name, kind, union: kflag };
      case K.FUNC:
        return { id, name, kind, type: st, linkage: vlen };
      case K.FUNC_PROTO:
        return { id, name, kind, returnType: st, params: list(8, (p) => ({ name: this.str(this.u32(p)), type: this.u32(p + 4) })) };
      case K.VAR:
        return { id, name, kind, type: st, linkage: this.u32(at + 12) };
      case K.DATASEC:
        return { id, name, kind, size: st, vars: list(12, (p) => ({ type: this.u32(p), offset: this.u32(p + 4), size: this.u32(p + 8) })) };
      case K.FLOAT:
        return { id, name, kind, size: st };
      case K.DECL_TAG:
        return { id, name, kind, type: st, componentIdx: this.v.getInt32(at + 12, true) };
      default:
        return bad(`type ${id} has unknown kind ${kind}`);
    }
  }

  private decodeMember(kflag: boolean, nameOff: number, type: number, offset: number): BtfMember {
    const name = this.str(nameOff);
    // kind_flag set: the offset word packs the bitfield size (top 8 bits)
    // with the bit offset. Unset (pahole before 1.13, or no bitfields): a
    // plain bit offset, and a bitfield shows as an int whose own encoding
    // has fewer bits than its size, or an offset.
    if (kflag) return { name, type, bitOffset: offset & 0xffffff, bitSize: offset >>> 24 };
    if (type !== 0 && this.kind(type) === K.INT) {
      const e = this.u32(this.types + this.offsets[type] + 12);
      const bits = e & 0xff;
      const off = (e >>> 16) & 0xff;
      const size = this.u32(this.types + this.offsets[type] + 8);
      if (off !== 0 || bits !== size * 8) return { name, type, bitOffset: offset + off, bitSize: bits };
    }
    return { name, type, bitOffset: offset, bitSize: 0 };
  }

  /** Readable name of a type, as C would spell it ("struct list_head", "u64", "char *"). */
  describe(id: number, depth = 0): string {
    if (depth > MAX_DEPTH) return "...";
    const t = this.type(id);
    switch (t.kind) {
      case K.VOID: return "void";
      case K.STRUCT: return `struct ${t.name || "(anonymous)"}`;
      case K.UNION: return `union ${t.name || "(anonymous)"}`;
      case K.ENUM: case K.ENUM64: return `enum ${t.name || "(anonymous)"}`;
      case K.FWD: return `${t.union ? "union" : "struct"} ${t.name}`;
      case K.PTR: return `${this.describe(t.type, depth + 1)} *`;
      case K.CONST: return `const ${this.describe(t.type, depth + 1)}`;
      case K.VOLATILE: return `volatile ${this.describe(t.type, depth + 1)}`;
      case K.RESTRICT: return `${this.describe(t.type, depth + 1)} restrict`;
      case K.TYPE_TAG: return this.describe(t.type, depth + 1);
      case K.ARRAY: return `${this.describe(t.elemType, depth + 1)}[${t.nelems}]`;
      case K.FUNC_PROTO: return "function";
      default: return t.name || KIND_NAMES[t.kind];
    }
  }

  kindName(id: number): string {
    return KIND_NAMES[this.kind(id)];
  }

  /**
   * The first type of that kind and name. Names are unique per kind in
   * vmlinux BTF after pahole's deduplication, except for static variables
   * and a few typedefs of the same shape.
   */
  find(kind: NamedKind, name: string): number | undefined {
    const key = `${kind}:${name}`;
    if (this.found.has(key)) return this.found.get(key);
    // Numbers, not strings, in the index: decoding ~70k names would cost
    // more (mostly in the garbage collector) than the lookups it serves.
    if (!this.byName) {
      const m = new Map<number, number>();
      for (let id = this.count; id >= 1; id--) {
        const at = this.types + this.offsets[id];
        const nameOff = this.u32(at);
        if (nameOff !== 0) m.set(nameOff * 32 + ((this.u32(at + 4) >>> 24) & 0x1f), id);
      }
      this.byName = m;
    }
    // Every offset whose string is `name`: whole strings, and tails of
    // longer ones, which a producer may share.
    const needle = Buffer.from(name + "\0", "latin1");
    const section = Buffer.from(this.bytes.buffer, this.bytes.byteOffset + this.strs, this.strLen);
    let best: number | undefined;
    for (let p = section.indexOf(needle, 1); p >= 1 && name.length > 0; p = section.indexOf(needle, p + 1)) {
      for (const k of NAMED_KINDS[kind]) {
        const id = this.byName.get(p * 32 + k);
        if (id !== undefined && (best === undefined || id < best)) best = id;
      }
    }
    this.found.set(key, best);
    return best;
  }

  /**
   * A type from C-like text: "struct task_struct", "union x", "enum y", or a
   * bare name (typedef first, then struct, union, enum, int), with trailing
   * " *" levels for pointers to it where BTF has such a pointer type.
   */
  lookup(spec: string): number | undefined {
    const m = /^\s*(?:(struct|union|enum)\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*((?:\*\s*)*)$/.exec(spec);
    if (!m) return undefined;
    let id: number | undefined;
    if (m[1]) id = this.find(m[1] as NamedKind, m[2]);
    else if (m[2] === "void") id = 0;
    else for (const k of ["typedef", "struct", "union", "enum", "int", "float"] as const) if ((id = this.find(k, m[2])) !== undefined) break;
    for (let stars = (m[3].match(/\*/g) ?? []).length; id !== undefined && stars > 0; stars--) id = this.pointerTo(id);
    return id;
  }

  private pointers?: Map<number, number>;

  /** A PTR type whose target is `id`, if BTF has one. */
  pointerTo(id: number): number | undefined {
    if (!this.pointers) {
      const m = new Map<number, number>();
      for (let p = 1; p <= this.count; p++) {
        const at = this.types + this.offsets[p];
        if (((this.u32(at + 4) >>> 24) & 0x1f) !== K.PTR) continue;
        const target = this.u32(at + 8);
        if (!m.has(target)) m.set(target, p);
      }
      this.pointers = m;
    }
    return this.pointers.get(id);
  }

  /** Strip typedef, const, volatile, restrict and type tags; bounded, so a typedef loop is an error. */
  resolve(id: number): number {
    let cur = id;
    for (let depth = 0; ; depth++) {
      const k = this.kind(cur);
      if (k !== K.TYPEDEF && k !== K.CONST && k !== K.VOLATILE && k !== K.RESTRICT && k !== K.TYPE_TAG) return cur;
      if (depth >= MAX_DEPTH) bad(`type ${id}: a chain of more than ${MAX_DEPTH} typedefs and qualifiers (a loop?)`);
      cur = this.u32(this.types + this.offsets[cur] + 8);
    }
  }

  /** sizeof, through typedefs, qualifiers and arrays. */
  sizeOf(id: number, depth = 0): number {
    if (depth > MAX_DEPTH) bad(`type ${id}: arrays nested more than ${MAX_DEPTH} deep (a loop?)`);
    const r = this.resolve(id);
    const t = this.type(r);
    switch (t.kind) {
      case K.INT: case K.STRUCT: case K.UNION: case K.ENUM: case K.ENUM64: case K.FLOAT: case K.DATASEC:
        return t.size;
      case K.PTR:
        return POINTER_SIZE;
      case K.ARRAY: {
        const n = t.nelems * this.sizeOf(t.elemType, depth + 1);
        if (!Number.isSafeInteger(n)) bad(`array type ${r} is ${t.nelems} elements of ${this.sizeOf(t.elemType, depth + 1)} bytes: too large`);
        return n;
      }
      default:
        return bad(`type ${id} (${this.describe(id)}) has no size`);
    }
  }

  /** Members of a struct or union (through typedefs), in declaration order. */
  members(id: number): BtfMember[] {
    const t = this.type(this.resolve(id));
    if (t.kind !== K.STRUCT && t.kind !== K.UNION) bad(`type ${id} (${this.describe(id)}) is not a struct or union`);
    return t.members;
  }

  /**
   * Where "a.b.c" lands from the start of struct/union `id`: each step looks
   * through typedefs and into anonymous structs and unions, as C does.
   */
  member(id: number, path: string): MemberLocation | undefined {
    let type = id;
    let bitOffset = 0;
    let bitSize = 0;
    for (const part of path.split(".")) {
      if (bitSize) return undefined; // a bitfield has no members
      const found = this.findMember(type, part);
      if (!found) return undefined;
      type = found.type;
      bitOffset += found.bitOffset;
      bitSize = found.bitSize;
    }
    return { type, bitOffset, bitSize };
  }

  private findMember(id: number, name: string): MemberLocation | undefined {
    const r = this.resolve(id);
    const k = this.kind(r);
    if (k !== K.STRUCT && k !== K.UNION) return undefined;
    let visits = 0;
    const search = (sid: number, base: number, depth: number): MemberLocation | undefined => {
      const anonymous: BtfMember[] = [];
      for (const m of this.members(sid)) {
        if (++visits > MAX_MEMBER_VISITS) bad(`looking for member ${name}: more than ${MAX_MEMBER_VISITS} members visited`);
        if (m.name === name) return { type: m.type, bitOffset: base + m.bitOffset, bitSize: m.bitSize };
        if (m.name === "") anonymous.push(m);
      }
      if (depth >= MAX_DEPTH) return undefined;
      for (const m of anonymous) {
        const mr = this.resolve(m.type);
        const mk = this.kind(mr);
        if (mk !== K.STRUCT && mk !== K.UNION) continue;
        const hit = search(mr, base + m.bitOffset, depth + 1);
        if (hit) return hit;
      }
      return undefined;
    };
    return search(r, 0, 0);
  }

  /** Enumerators of an enum (through typedefs). */
  enumerators(id: number): BtfEnumerator[] {
    const t = this.type(this.resolve(id));
    if (t.kind !== K.ENUM && t.kind !== K.ENUM64) bad(`type ${id} (${this.describe(id)}) is not an enum`);
    return t.values;
  }

  /** The value of an enumerator found by name in any enum, e.g. "PIDTYPE_PID". */
  enumValue(name: string): bigint | undefined {
    for (let id = 1; id <= this.count; id++) {
      const k = (this.u32(this.types + this.offsets[id] + 4) >>> 24) & 0x1f;
      if (k !== K.ENUM && k !== K.ENUM64) continue;
      const hit = (this.type(id) as { values: BtfEnumerator[] }).values.find((e) => e.name === name);
      if (hit) return hit.value;
    }
    return undefined;
  }

  /** The whole raw blob, as read. */
  get raw(): Uint8Array {
    return this.bytes;
  }
}

/** What the loader needs of a kernel: virtual reads. */
export interface VirtualMemory {
  read(vaddr: bigint, len: number, what: string): Uint8Array;
}

/**
 * The kernel's BTF from its memory, or undefined when kallsyms names no
 * __start_BTF (a kernel without CONFIG_DEBUG_INFO_BTF, or before 5.2).
 */
export function readKernelBtf(mem: VirtualMemory, lookup: (name: string) => bigint | undefined): Btf | undefined {
  const start = lookup("__start_BTF");
  const stop = lookup("__stop_BTF");
  if (start === undefined || stop === undefined) return undefined;
  if (stop <= start) bad(`__stop_BTF ${hex(stop)} is not above __start_BTF ${hex(start)}`);
  if (stop - start > BigInt(MAX_BTF_BYTES)) bad(`__start_BTF..__stop_BTF spans ${stop - start} bytes, more than ${MAX_BTF_BYTES}`);
  return Btf.parse(mem.read(start, Number(stop - start), "the kernel's BTF (__start_BTF)"));
}
