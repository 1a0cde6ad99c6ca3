// The BTF parser on crafted blobs: what it must read from well-formed BTF
// (every kind, both bitfield encodings, signed and 64-bit enums, sizes
// through typedef/qualifier/array chains, members inside anonymous unions),
// and malformed or hostile BTF, which must end in one GuestcoreError line,
// never a hang, a huge allocation or a read outside the blob.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Btf, BTF_KIND, readKernelBtf } from "../../src/introspect/btf.js";
import { GuestcoreError } from "../../src/core/errors.js";
import { oneLineError } from "../helpers/errors.js";
import { BtfBuilder, type HeaderOverrides } from "../helpers/btf-build.js";

/** A small BTF with one of every kind. */
function sample() {
  const b = new BtfBuilder();
  const { int, uint, char, u64, listHead, listPtr } = b.basics("long long unsigned int");
  const typedefU64 = b.typedef("u64", u64);
  const constU64 = b.qualifier("const", typedefU64);
  const volConst = b.qualifier("volatile", constU64);
  const tdVol = b.typedef("vu64", volConst);
  const arr = b.array(char, int, 16);
  const arr2 = b.array(arr, int, 3);
  const anonUnion = b.struct("", 8, [["counter", int, 0], ["raw", uint, 0]], { union: true });
  const flags = b.struct("flags", 4, [["a", uint, 0, 3], ["b", int, 3, 5], ["c", uint, 8, 1]], { kflag: true });
  // The encoding before kind_flag (pahole < 1.13): the int carries the bitfield.
  const bits4 = b.int("unsigned int", 4, { bits: 4, offset: 0 });
  const legacy = b.struct("legacy", 4, [["x", bits4, 4], ["y", uint, 0]], { kflag: false });
  const state = b.enum("state", 4, [["NEG", -1], ["ZERO", 0], ["BIG", 7]], true);
  const e64 = b.enum64("wide", 8, [["HIGH", 0xfffff00000000000n], ["ONE", 1n]]);
  const fwd = b.fwd("opaque", true);
  const proto = b.funcProto(int, [["x", u64], ["", 0]]);
  const func = b.func("f", proto);
  const outer = b.struct("outer", 96, [
    ["head", listHead, 0], ["", anonUnion, 128], ["name", arr, 192], ["names", arr2, 320], ["v", tdVol, 704],
  ]);
  const tdOuter = b.typedef("outer_t", outer);
  const v = b.variable("runqueues", outer);
  const sec = b.datasec(".data..percpu", 96, [[v, 0, 96]]);
  const fl = b.float("double", 8);
  const tag = b.declTag("kfunc", func, -1);
  const tt = b.qualifier("type_tag", listPtr, "rcu");
  b.qualifier("restrict", listPtr);
  return { b, ids: { int, uint, char, u64, listHead, listPtr, typedefU64, constU64, volConst, tdVol, arr, arr2, anonUnion, flags, bits4, legacy, state, e64, fwd, proto, func, outer, tdOuter, v, sec, fl, tag, tt } };
}

test("well-formed BTF: every kind decodes, names and chains resolve", () => {
  const { b, ids } = sample();
  const btf = Btf.parse(b.build());
  assert.equal(btf.count, ids.tt + 1);
  assert.equal(btf.find("struct", "list_head"), ids.listHead);
  assert.equal(btf.find("struct", "outer"), ids.outer);
  assert.equal(btf.find("typedef", "u64"), ids.typedefU64);
  assert.equal(btf.find("enum", "wide"), ids.e64);
  assert.equal(btf.find("var", "runqueues"), ids.v);
  assert.equal(btf.find("union", "nothing"), undefined);
  assert.equal(btf.lookup("struct list_head *"), ids.listPtr);
  assert.equal(btf.lookup("outer_t"), ids.tdOuter);
  assert.equal(btf.lookup("struct ("), undefined);
  // First of two same-named ints (the full one) wins.
  assert.equal(btf.find("int", "unsigned int"), ids.uint);

  assert.equal(btf.resolve(ids.tdVol), ids.u64);
  assert.equal(btf.sizeOf(ids.tdVol), 8);
  assert.equal(btf.sizeOf(ids.arr2), 48);
  assert.equal(btf.sizeOf(ids.tdOuter), 96);
  assert.equal(btf.sizeOf(ids.listPtr), 8);
  assert.throws(() => btf.sizeOf(ids.fwd), oneLineError(/has no size/));
  assert.throws(() => btf.sizeOf(ids.func), oneLineError(/has no size/));
  assert.equal(btf.describe(ids.tdVol), "vu64");
  assert.equal(btf.describe(ids.volConst), "volatile const u64");
  assert.equal(btf.describe(ids.arr2), "char[16][3]");
  assert.equal(btf.describe(ids.listPtr), "struct list_head *");

  assert.deepEqual(btf.member(ids.tdOuter, "counter"), { type: ids.int, bitOffset: 128, bitSize: 0 });
  assert.deepEqual(btf.member(ids.outer, "head.prev"), { type: ids.listPtr, bitOffset: 64, bitSize: 0 });
  assert.deepEqual(btf.member(ids.outer, "v"), { type: ids.tdVol, bitOffset: 704, bitSize: 0 });
  assert.equal(btf.member(ids.outer, "nope"), undefined);
  assert.equal(btf.member(ids.outer, "head.next.x"), undefined);
  assert.deepEqual(btf.members(ids.flags).map((m) => [m.name, m.bitOffset, m.bitSize]), [["a", 0, 3], ["b", 3, 5], ["c", 8, 1]]);
  assert.deepEqual(btf.members(ids.legacy).map((m) => [m.name, m.bitOffset, m.bitSize]), [["x", 4, 4], ["y", 0, 0]]);

  assert.deepEqual(btf.enumerators(ids.state).map((e) => [e.name, e.value]), [["NEG", -1n], ["ZERO", 0n], ["BIG", 7n]]);
  assert.deepEqual(btf.enumerators(ids.e64).map((e) => [e.name, e.value]), [["HIGH", 0xfffff00000000000n], ["ONE", 1n]]);
  assert.equal(btf.enumValue("BIG"), 7n);

  const kinds = Array.from({ length: btf.count }, (_, i) => btf.kind(i + 1));
  for (const k of Object.values(BTF_KIND)) if (k !== BTF_KIND.VOID) assert.ok(kinds.includes(k), `kind ${k} is in the sample`);
  const p = btf.type(ids.proto);
  assert.ok(p.kind === BTF_KIND.FUNC_PROTO && p.params.length === 2 && p.params[1].type === 0);
  const s = btf.type(ids.sec);
  assert.ok(s.kind === BTF_KIND.DATASEC && s.vars[0].type === ids.v && s.name === ".data..percpu");
  const t = btf.type(ids.tag);
  assert.ok(t.kind === BTF_KIND.DECL_TAG && t.componentIdx === -1 && t.type === ids.func);
  assert.ok(btf.type(ids.fwd).kind === BTF_KIND.FWD && (btf.type(ids.fwd) as { union: boolean }).union);
  assert.throws(() => btf.type(btf.count + 1), oneLineError(/no type/));
  assert.throws(() => btf.type(-1), oneLineError(/no type/));
});

test("a longer header is accepted when its unknown fields are zero, refused otherwise", () => {
  const { b } = sample();
  assert.ok(Btf.parse(b.build({ headerExtra: [0, 0, 0, 0] })).count > 0);
  assert.throws(() => Btf.parse(b.build({ headerExtra: [0, 1, 0, 0] })), oneLineError(/header byte 25 is set/));
});

test("malformed headers and sections: one error line each", () => {
  const { b } = sample();
  const good = b.build();
  const cases: [HeaderOverrides | Uint8Array, RegExp][] = [
    [good.subarray(0, 10), /cannot hold the 24-byte header/],
    [{ magic: 0x9feb }, /magic 0x9feb/],
    [{ version: 2 }, /version 2/],
    [{ hdrLen: 8 }, /hdr_len 8 outside/],
    [{ hdrLen: 0xffffffff }, /hdr_len 4294967295 outside/],
    [{ typeLen: 0xfffffff0 }, /type section .* runs past/],
    [{ strOff: 0xffffffff }, /string section .* runs past/],
    [{ strLen: 0x7fffffff }, /string section .* runs past/],
    [{ typeOff: 2, typeLen: 8 }, /not 4-byte aligned/],
    [{ typeOff: 0, strOff: 4 }, /overlap/],
    [{ strLen: 0, strOff: 0, typeOff: 0, typeLen: 0 }, /string section length 0/],
  ];
  for (const [c, re] of cases) {
    const bytes = c instanceof Uint8Array ? c : b.build(c);
    assert.throws(() => Btf.parse(bytes), oneLineError(re), JSON.stringify(c instanceof Uint8Array ? c.length : c));
  }
  // A string section that does not end with NUL.
  const cut = Buffer.from(good);
  cut[cut.length - 1] = 0x41;
  assert.throws(() => Btf.parse(cut), oneLineError(/does not start and end with NUL/));
});

test("records that run past the type section, unknown kinds, dangling references", () => {
  const mk = (f: (b: BtfBuilder) => void) => {
    const b = new BtfBuilder();
    b.int("int", 4, { signed: true });
    f(b);
    return b.build();
  };
  // vlen 0xffff members, none of them present: refused before decoding any.
  assert.throws(() => Btf.parse(mk((b) => b.raw(0, BTF_KIND.STRUCT, 0xffff, false, 8))), oneLineError(/vlen 65535\) runs past/));
  assert.throws(() => Btf.parse(mk((b) => b.raw(0, 20, 0, false, 0))), oneLineError(/unknown kind 20/));
  assert.throws(() => Btf.parse(mk((b) => b.raw(0, 31, 0, false, 0))), oneLineError(/unknown kind 31/));
  assert.throws(() => Btf.parse(mk((b) => b.ptr(99))), oneLineError(/refers to type 99, past the last \(2\)/));
  assert.throws(() => Btf.parse(mk((b) => b.array(1, 1000, 4))), oneLineError(/index type refers to type 1000/));
  assert.throws(() => Btf.parse(mk((b) => b.struct("s", 4, [["m", 77, 0]]))), oneLineError(/member 0 refers to type 77/));
  assert.throws(() => Btf.parse(mk((b) => b.funcProto(1, [["p", 5]]))), oneLineError(/parameter 0 refers to type 5/));
  assert.throws(() => Btf.parse(mk((b) => b.datasec(".bss", 4, [[9, 0, 4]]))), oneLineError(/variable 0 refers to type 9/));
  assert.throws(() => Btf.parse(mk((b) => b.raw(0x7fffff, BTF_KIND.TYPEDEF, 0, false, 1))), oneLineError(/name offset 8388607 is outside/));
  assert.throws(() => Btf.parse(mk((b) => b.raw(0, BTF_KIND.ENUM, 1, false, 4, [0x100000, 1]))), oneLineError(/entry 0 has name offset 1048576 outside/));
  assert.throws(() => Btf.parse(mk((b) => b.int("odd", 3))), oneLineError(/int type 2 has size 3/));
  assert.throws(() => Btf.parse(mk((b) => b.int("wide", 4, { bits: 40 }))), oneLineError(/40 bits at 0 in 4 bytes/));
  // A record cut by the end of the section: declared type_len shorter than the records.
  const b = new BtfBuilder();
  b.int("int", 4);
  const bytes = b.build();
  assert.throws(() => Btf.parse(b.build({ typeLen: 12, strOff: 16 })), oneLineError(/runs past the type section|cut off/));
  assert.ok(Btf.parse(bytes).count === 1);
});

test("typedef loops, array loops and self-nested anonymous members end in errors", { timeout: 60_000 }, () => {
  const b = new BtfBuilder();
  const int = b.int("int", 4, { signed: true });
  // 2 -> 3 -> 2: typedefs that name each other.
  const a = b.typedef("a_t", b.next + 1);
  const c = b.qualifier("const", a);
  const self = b.typedef("self_t", b.next);
  // An array of itself.
  const arr = b.array(b.next, int, 2);
  // A struct whose two anonymous members are the struct itself: 2^32 paths without a bound.
  const s = b.struct("knot", 8, [["", b.next, 0], ["", b.next, 0]]);
  const big = b.struct("big", 0xffffffff, []);
  const huge = b.array(big, int, 0xffffffff);
  const btf = Btf.parse(b.build());
  for (const id of [a, c, self]) {
    assert.throws(() => btf.resolve(id), oneLineError(/chain of more than 32 typedefs/));
    assert.throws(() => btf.sizeOf(id), oneLineError(/chain of more than 32/));
    assert.throws(() => btf.member(id, "x"), oneLineError(/chain of more than 32/));
    assert.ok(btf.describe(id).length < 64, "a typedef is described by its name, not its chain");
  }
  assert.throws(() => btf.sizeOf(arr), oneLineError(/arrays nested more than 32 deep/));
  assert.throws(() => btf.member(s, "missing"), oneLineError(/more than 65536 members visited/));
  assert.throws(() => btf.sizeOf(huge), oneLineError(/too large/));
});

test("mutated BTF: every outcome is a parsed blob or one GuestcoreError, and every type of a parsed one can be walked", { timeout: 120_000 }, () => {
  const { b } = sample();
  const good = b.build();
  // A seeded xorshift: the same mutations every run.
  let x = 0x9e3779b9;
  const rnd = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
  let parsed = 0;
  let refused = 0;
  for (let i = 0; i < 3000; i++) {
    const m = Buffer.from(good);
    const n = 1 + Math.floor(rnd() * 4);
    for (let j = 0; j < n; j++) {
      const at = Math.floor(rnd() * m.length);
      if (rnd() < 0.5) m[at] = Math.floor(rnd() * 256);
      else m.writeUInt32LE(Math.floor(rnd() * 2 ** 32) >>> 0, Math.min(at & ~3, m.length - 4));
    }
    let btf: Btf;
    try {
      btf = Btf.parse(m);
    } catch (e) {
      assert.ok(e instanceof GuestcoreError, `mutation ${i}: ${e}`);
      assert.ok(!e.message.includes("\n"));
      refused++;
      continue;
    }
    parsed++;
    for (let id = 0; id <= btf.count; id++) {
      for (const f of [() => btf.type(id), () => btf.sizeOf(id), () => btf.describe(id), () => btf.member(id, "counter"), () => btf.members(id), () => btf.enumerators(id)]) {
        try {
          f();
        } catch (e) {
          assert.ok(e instanceof GuestcoreError, `mutation ${i}, type ${id}: ${e}`);
        }
      }
    }
    btf.find("struct", "outer");
    btf.lookup("struct list_head *");
  }
  assert.ok(parsed > 100 && refused > 100, `${parsed} parsed, ${refused} refused`);
});

test("readKernelBtf bounds the section before reading it", () => {
  const { b } = sample();
  const blob = b.build();
  const base = 0xffffffff82000000n;
  let asked = 0;
  const mem = {
    read(vaddr: bigint, len: number) {
      asked += len;
      const off = Number(vaddr - base);
      return blob.slice(off, off + len);
    },
  };
  const syms = (stop: bigint) => (n: string) => (n === "__start_BTF" ? base : n === "__stop_BTF" ? stop : undefined);
  assert.equal(readKernelBtf(mem, () => undefined), undefined);
  assert.throws(() => readKernelBtf(mem, syms(base)), oneLineError(/is not above __start_BTF/));
  assert.throws(() => readKernelBtf(mem, syms(base + (1n << 40n))), oneLineError(/spans 1099511627776 bytes, more than/));
  assert.equal(asked, 0, "nothing read for a bad range");
  assert.equal(readKernelBtf(mem, syms(base + BigInt(blob.length)))!.find("struct", "outer") !== undefined, true);
});
