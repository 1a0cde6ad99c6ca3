// Writes BTF blobs for tests, well-formed or not: types are appended in id
// order (the first is id 1), strings deduplicated; build() lays out the
// header and sections, and lets a test overwrite any header field.

export interface HeaderOverrides {
  magic?: number;
  version?: number;
  flags?: number;
  hdrLen?: number;
  typeOff?: number;
  typeLen?: number;
  strOff?: number;
  strLen?: number;
  /** Bytes appended after the header (for hdr_len > 24). */
  headerExtra?: number[];
}

const KIND = { INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, FWD: 7, TYPEDEF: 8, VOLATILE: 9, CONST: 10, RESTRICT: 11,
  FUNC: 12, FUNC_PROTO: 13, VAR: 14, DATASEC: 15, FLOAT: 16, DECL_TAG: 17, TYPE_TAG: 18, ENUM64: 19 };

export type MemberSpec = [name: string, type: number, bitOffset: number, bitSize?: number];

export class BtfBuilder {
  private readonly words: number[] = [];
  private readonly strs = new Map<string, number>([["", 0]]);
  private readonly strBytes: number[] = [0];
  private count = 0;

  /** The id the next type will get. */
  get next(): number {
    return this.count + 1;
  }

  str(s: string): number {
    let off = this.strs.get(s);
    if (off === undefined) {
      off = this.strBytes.length;
      this.strs.set(s, off);
      this.strBytes.push(...Buffer.from(s, "latin1"), 0);
    }
    return off;
  }

  /** Any record: name offset, kind, vlen, kind_flag, the size/type word and trailing words. */
  raw(nameOff: number, kind: number, vlen: number, kflag: boolean, sizeOrType: number, trailing: number[] = []): number {
    this.words.push(nameOff >>> 0, ((kflag ? 1 : 0) << 31 | (kind & 0x1f) << 24 | (vlen & 0xffff)) >>> 0, sizeOrType >>> 0, ...trailing.map((w) => w >>> 0));
    return ++this.count;
  }

  int(name: string, size: number, o: { signed?: boolean; char?: boolean; bool?: boolean; bits?: number; offset?: number } = {}): number {
    const enc = (o.signed ? 1 : 0) | (o.char ? 2 : 0) | (o.bool ? 4 : 0);
    return this.raw(this.str(name), KIND.INT, 0, false, size, [(enc << 24) | ((o.offset ?? 0) << 16) | (o.bits ?? size * 8)]);
  }

  ptr(target: number): number {
    return this.raw(0, KIND.PTR, 0, false, target);
  }

  array(elem: number, index: number, nelems: number): number {
    return this.raw(0, KIND.ARRAY, 0, false, 0, [elem, index, nelems]);
  }

  /** A struct (or union); with kflag, bitfield sizes go into the offset word. */
  struct(name: string, size: number, members: MemberSpec[], o: { union?: boolean; kflag?: boolean } = {}): number {
    const kflag = o.kflag ?? members.some((m) => m[3]);
    const trailing = members.flatMap(([n, t, off, bits]) => [this.str(n), t, kflag ? ((bits ?? 0) << 24) | off : off]);
    return this.raw(this.str(name), o.union ? KIND.UNION : KIND.STRUCT, members.length, kflag, size, trailing);
  }

  enum(name: string, size: number, values: [string, number][], signed = false): number {
    return this.raw(this.str(name), KIND.ENUM, values.length, signed, size, values.flatMap(([n, v]) => [this.str(n), v]));
  }

  enum64(name: string, size: number, values: [string, bigint][], signed = false): number {
    return this.raw(this.str(name), KIND.ENUM64, values.length, signed, size,
      values.flatMap(([n, v]) => [this.str(n), Number(BigInt.asUintN(64, v) & 0xffffffffn), Number(BigInt.asUintN(64, v) >> 32n)]));
  }

  fwd(name: string, union = false): number {
    return this.raw(this.str(name), KIND.FWD, 0, union, 0);
  }

  typedef(name: string, target: number): number {
    return this.raw(this.str(name), KIND.TYPEDEF, 0, false, target);
  }

  qualifier(kind: "const" | "volatile" | "restrict" | "type_tag", target: number, name = ""): number {
    const k = { const: KIND.CONST, volatile: KIND.VOLATILE, restrict: KIND.RESTRICT, type_tag: KIND.TYPE_TAG }[kind];
    return this.raw(this.str(name), k, 0, false, target);
  }

  funcProto(ret: number, params: [string, number][]): number {
    return this.raw(0, KIND.FUNC_PROTO, params.length, false, ret, params.flatMap(([n, t]) => [this.str(n), t]));
  }

  func(name: string, proto: number, linkage = 1): number {
    return this.raw(this.str(name), KIND.FUNC, linkage, false, proto);
  }

  variable(name: string, type: number, linkage = 1): number {
    return this.raw(this.str(name), KIND.VAR, 0, false, type, [linkage]);
  }

  datasec(name: string, size: number, vars: [type: number, offset: number, size: number][]): number {
    return this.raw(this.str(name), KIND.DATASEC, vars.length, false, size, vars.flat());
  }

  float(name: string, size: number): number {
    return this.raw(this.str(name), KIND.FLOAT, 0, false, size);
  }

  declTag(name: string, target: number, component: number): number {
    return this.raw(this.str(name), KIND.DECL_TAG, 0, false, target, [component]);
  }

  /** The C basics every test kernel starts with: int, unsigned int, char, an 8-byte unsigned, struct list_head and a pointer to it. */
  basics(u64Name = "long unsigned int") {
    const int = this.int("int", 4, { signed: true });
    const uint = this.int("unsigned int", 4);
    const char = this.int("char", 1, { signed: true, char: true });
    const u64 = this.int(u64Name, 8);
    const listHead = this.next;
    const listPtr = this.next + 1;
    this.struct("list_head", 16, [["next", listPtr, 0], ["prev", listPtr, 64]]);
    this.ptr(listHead);
    return { int, uint, char, u64, listHead, listPtr };
  }

  build(o: HeaderOverrides = {}): Uint8Array {
    const extra = o.headerExtra ?? [];
    const hdrLen = 24 + extra.length;
    const typeLen = this.words.length * 4;
    const strLen = this.strBytes.length;
    const out = Buffer.alloc(hdrLen + typeLen + strLen);
    out.writeUInt16LE(o.magic ?? 0xeb9f, 0);
    out.writeUInt8(o.version ?? 1, 2);
    out.writeUInt8(o.flags ?? 0, 3);
    out.writeUInt32LE(o.hdrLen ?? hdrLen, 4);
    out.writeUInt32LE(o.typeOff ?? 0, 8);
    out.writeUInt32LE(o.typeLen ?? typeLen, 12);
    out.writeUInt32LE(o.strOff ?? typeLen, 16);
    out.writeUInt32LE(o.strLen ?? strLen, 20);
    Buffer.from(extra).copy(out, 24);
    this.words.forEach((w, i) => out.writeUInt32LE(w, hdrLen + i * 4));
    Buffer.from(this.strBytes).copy(out, hdrLen + typeLen);
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }
}
