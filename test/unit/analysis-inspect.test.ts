// The registers, symbols, mounts, page-class tallies and hexdump on
// crafted inputs: what the real captures (QEMU notes, one CPU, the 6.1
// mount list) do not show. Kernel-written PRSTATUS notes on two CPUs,
// module symbol tables as find_kallsyms_symbol() reads them, the 6.8
// rbtree of mounts, and hostile cycles and counts, each bounded. The
// hexdump is checked against util-linux's hexdump -C.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { Btf } from "../../src/introspect/btf.js";
import { TypedKernel } from "../../src/analysis/typed.js";
import { KernelSymbols } from "../../src/analysis/symbols.js";
import { crashRegisters, decodePrstatus, prstatusNotes, PRSTATUS_SIZE, stackText, X86_64_REGS } from "../../src/analysis/registers.js";
import { listMounts } from "../../src/analysis/mounts.js";
import { CLASS_NAMES, ClassBins } from "../../src/analysis/memory.js";
import { CLASS } from "../../src/filter/classes.js";
import { hexdumpLines } from "../../src/cli/hexdump.js";
import type { ElfNote } from "../../src/format/elf64.js";
import { BtfBuilder } from "../helpers/btf-build.js";
import { Arena } from "../helpers/arena.js";
import { oneLineError } from "../helpers/errors.js";
import { tempDir, writeTemp } from "../helpers/synthetic.js";

/** An x86-64 elf_prstatus with pid and registers (each register's value derived from its index unless given). */
function prstatus(pid: number, regs: Partial<Record<(typeof X86_64_REGS)[number], bigint>> = {}): ElfNote {
  const d = Buffer.alloc(PRSTATUS_SIZE);
  d.writeInt16LE(0, 12);
  d.writeInt32LE(pid, 32);
  d.writeInt32LE(pid ? pid - 1 : 0, 36);
  X86_64_REGS.forEach((r, i) => d.writeBigUInt64LE(regs[r] ?? 0x1000n + BigInt(i), 112 + i * 8));
  return { name: "CORE", type: 1, desc: new Uint8Array(d) };
}

test("elf_prstatus: fields and user_regs_struct order; other sizes refused; who wrote the notes", () => {
  const p = decodePrstatus(prstatus(42, { rip: 0xffffffff81000010n, rsp: 0xffffc90000003f00n }).desc, 3);
  assert.equal(p.index, 3);
  assert.equal(p.pid, 42);
  assert.equal(p.ppid, 41);
  assert.equal(p.regs.rip, 0xffffffff81000010n);
  assert.equal(p.regs.rsp, 0xffffc90000003f00n);
  assert.equal(p.regs.r15, 0x1000n);
  assert.equal(p.regs.gs, 0x1000n + 26n);
  assert.throws(() => decodePrstatus(new Uint8Array(144)), oneLineError(/144 bytes: not an x86-64 elf_prstatus \(336\)/));
  assert.equal(prstatusNotes([]), undefined);
  assert.equal(prstatusNotes([prstatus(1)])!.writer, "kernel");
  assert.equal(prstatusNotes([prstatus(1), { name: "QEMU", type: 0, desc: new Uint8Array(440) }])!.writer, "qemu");
  assert.throws(() => prstatusNotes(Array.from({ length: 8193 }, () => prstatus(1))), oneLineError(/8193 PRSTATUS notes/));
});

const KB = 0xffffffff81000000n;
const MOD = 0xffffffffc0001000n;
const PERCPU = (c: number) => 0xffff888000100000n + BigInt(c) * 0x10000n;
const TASK = (i: number) => 0xffff888000200000n + BigInt(i) * 0x100n;
const STACK = (i: number) => 0xffffc90000000000n + BigInt(i) * 0x4000n;

/**
 * Two CPUs, two running tasks with stacks, a module with its own symbol
 * table; `crowd` more symbols at ascending addresses from MOD, all named
 * by one KSYM_NAME_LEN-long string, make a hostile table.
 */
function cpuKernel(numSymtab?: number, crowd = 0) {
  const b = new BtfBuilder();
  const { int, uint, char, listHead } = b.basics();
  const voidPtr = b.ptr(0);
  const comm = b.array(char, int, 16);
  const task = b.struct("task_struct", 64, [["pid", int, 0], ["comm", comm, 64], ["stack", voidPtr, 192], ["tasks", listHead, 256]]);
  const taskPtr = b.ptr(task);
  const rq = b.struct("rq", 16, [["curr", taskPtr, 0], ["idle", taskPtr, 64]]);
  const v = b.variable("runqueues", rq);
  b.datasec(".data..percpu", 16, [[v, 0x3000, 16]]);
  b.typedef("atomic_t", b.struct("", 4, [["counter", int, 0]]));
  const st = b.enum("module_state", 4, [["MODULE_STATE_LIVE", 0]]);
  const layout = b.struct("module_layout", 16, [["base", voidPtr, 0], ["size", uint, 64], ["text_size", uint, 96]]);
  const mk = b.struct("mod_kallsyms", 24, [["symtab", voidPtr, 0], ["num_symtab", uint, 64], ["strtab", b.ptr(char), 128]]);
  b.struct("module", 160, [["state", st, 0], ["list", listHead, 64], ["name", b.array(char, int, 56), 192], ["core_layout", layout, 640],
    ["init_layout", layout, 768], ["kallsyms", b.ptr(mk), 896]]);
  const btf = Btf.parse(b.build());

  const m = new Arena();
  const sym = new Map<string, bigint>([
    ["_stext", KB], ["_etext", KB + 0x10000n], ["nr_cpu_ids", KB + 0x20000n], ["__cpu_online_mask", KB + 0x20010n],
    ["__per_cpu_offset", KB + 0x20020n], ["panic_cpu", KB + 0x20040n], ["runqueues", 0x3000n], ["modules", KB + 0x20100n],
    ["__start_init_task", KB + 0x30000n], ["__end_init_task", KB + 0x34000n],
  ]);
  const core: [string, bigint][] = [["_stext", KB], ["do_thing", KB + 0x100n], ["panic", KB + 0x800n], ["_etext", KB + 0x10000n]];
  m.map(KB + 0x20000n, 0x200);
  m.u32(sym.get("nr_cpu_ids")!, 2);
  m.u64(sym.get("__cpu_online_mask")!, 3n);
  m.u64(sym.get("__per_cpu_offset")!, PERCPU(0));
  m.u64(sym.get("__per_cpu_offset")! + 8n, PERCPU(1));
  m.u32(sym.get("panic_cpu")!, 1);
  for (const c of [0, 1]) {
    m.map(PERCPU(c) + 0x3000n, 16);
    m.u64(PERCPU(c) + 0x3000n, TASK(c + 1));
    m.map(TASK(c + 1), 64);
    m.u32(TASK(c + 1), c === 0 ? 0 : 77);
    m.set(TASK(c + 1) + 8n, Buffer.from(c === 0 ? "swapper/0" : "crasher"));
    m.u64(TASK(c + 1) + 24n, STACK(c + 1));
    m.map(STACK(c + 1), 0x4000);
  }
  // CPU 1's stack: a core text address, data, a module text address, a module data address.
  const top = STACK(2) + 0x4000n;
  m.u64(top - 0x100n, KB + 0x804n);
  m.u64(top - 0xf8n, 0xffff888000001234n);
  m.u64(top - 0xf0n, MOD + 0x45n);
  m.u64(top - 0xe8n, MOD + 0x300n);
  m.u64(top - 0x10n, KB + 0x120n);
  // The module: text 0x100 bytes of a 0x1000 core; symbols as a .ko's symtab.
  const modules = sym.get("modules")!;
  m.map(MOD - 0x1000n, 160);
  m.u64(modules, MOD - 0x1000n + 8n);
  m.u64(modules + 8n, MOD - 0x1000n + 8n);
  m.u64(MOD - 0x1000n + 8n, modules);
  m.u64(MOD - 0x1000n + 16n, modules);
  m.set(MOD - 0x1000n + 24n, Buffer.from("crashmod\0"));
  m.u64(MOD - 0x1000n + 80n, MOD);
  m.u32(MOD - 0x1000n + 88n, 0x1000);
  m.u32(MOD - 0x1000n + 92n, 0x100);
  m.u64(MOD - 0x1000n + 112n, MOD - 0x800n);
  const syms: [string, bigint, number][] = [["", 0n, 0], ["$x", MOD + 0x10n, 1], ["foo", MOD, 1], ["", MOD + 0x30n, 1], ["bar", MOD + 0x40n, 1],
    ["ext", MOD + 0x50n, 0], ["baz", MOD + 0x80n, 1], ["table", MOD + 0x200n, 2]];
  const strtab = MOD - 0x400n;
  m.map(strtab, 64 + (crowd ? 512 : 0));
  if (crowd) m.set(strtab + 64n, Buffer.from("A".repeat(511) + "\0"));
  for (let i = 0; i < crowd; i++) syms.push([`crowd${i}`, MOD + 0x800n + BigInt(i), 1]);
  let so = 1;
  const symtab = Buffer.alloc(syms.length * 24);
  const symtabAt = crowd ? 0xffff888000400000n : MOD - 0x600n;
  syms.forEach(([name, value, shndx], i) => {
    const off = name.startsWith("crowd") ? 64 : name ? so : 0;
    if (name && off !== 64) {
      m.set(strtab + BigInt(so), Buffer.from(name + "\0"));
      so += name.length + 1;
    }
    symtab.writeUInt32LE(off, i * 24);
    symtab.writeUInt16LE(shndx, i * 24 + 6);
    symtab.writeBigUInt64LE(value, i * 24 + 8);
  });
  m.map(symtabAt, symtab.length);
  m.set(symtabAt, symtab);
  m.map(MOD - 0x800n, 24);
  m.u64(MOD - 0x800n, symtabAt);
  m.u32(MOD - 0x800n + 8n, numSymtab ?? syms.length);
  m.u64(MOD - 0x800n + 16n, strtab);
  m.map(MOD, 0x1000);
  const symbols = {
    lookup: (n: string) => sym.get(n),
    locate: (a: bigint) => {
      if (a < KB || a >= KB + 0x10000n) return undefined;
      let i = 0;
      while (i + 1 < core.length && core[i + 1][1] <= a) i++;
      return { name: core[i][0], type: "T", address: core[i][1], offset: a - core[i][1], size: core[i + 1][1] - core[i][1] };
    },
  };
  return new TypedKernel(btf, symbols, m);
}

test("module symbols as find_kallsyms_symbol(): mapping, unnamed and undefined symbols passed over; sizes to the next symbol or the text's end", () => {
  const k = cpuKernel();
  const s = new KernelSymbols(k);
  assert.equal(s.format(MOD + 0x20n), "foo+0x20/0x40 [crashmod]");
  assert.equal(s.format(MOD + 0x45n), "bar+0x5/0x40 [crashmod]");
  assert.equal(s.format(MOD + 0x90n), "baz+0x10/0x80 [crashmod]");
  // Module data: sized to the end of the module, not to the text's end below it.
  assert.equal(s.format(MOD + 0x300n), "table+0x100/0xe00 [crashmod]");
  assert.equal(s.format(KB + 0x804n), "panic+0x4/0xf800");
  assert.equal(s.format(0xffff888000001234n), undefined);
  assert.ok(s.isText(MOD + 0x45n) && !s.isText(MOD + 0x300n) && s.isText(KB + 0x120n) && !s.isText(KB + 0x10000n));
  assert.equal(s.moduleOf(MOD + 0x300n)?.name, "crashmod");
  const hostile = new KernelSymbols(cpuKernel(1 << 20));
  assert.throws(() => hostile.format(MOD + 0x20n), oneLineError(/num_symtab 1048576 \(at most 524288\)/));
});

test("a module symbol table of ascending symbols with 511-byte names: each costs one short read, only the answer's name is read whole", () => {
  const crowd = 2000;
  const k = cpuKernel(undefined, crowd);
  let reads = 0;
  let bytes = 0;
  const read = k.read.bind(k);
  k.read = (va, len, what) => {
    reads++;
    bytes += len;
    return read(va, len, what);
  };
  const s = new KernelSymbols(k);
  assert.equal(s.format(MOD + 0xfffn), `${"A".repeat(511)}+0x${(0xfff - 0x800 - crowd + 1).toString(16)}/0x${(0x1000 - 0x800 - crowd + 1).toString(16)} [crashmod]`);
  // Every symbol from the crowd on improves the best match: one read of 3 bytes each, then the winner's name.
  assert.ok(reads < crowd + 100, `${reads} reads`);
  assert.ok(bytes < 24 * (crowd + 8) + 3 * (crowd + 8) + 4096 + 4096, `${bytes} bytes read`);
  // A stack scan or 8192 CPU notes look up many addresses: the table is indexed once, each lookup is a name read.
  const before = reads;
  for (let a = 0x800; a < 0x800 + crowd; a += 7) assert.equal(s.locate(MOD + BigInt(a))?.name, "A".repeat(511));
  const lookups = Math.ceil(crowd / 7);
  assert.ok(reads - before <= 2 * lookups, `${reads - before} reads for ${lookups} lookups`);
});

test("kernel-written notes on two CPUs: CPU by note order (GS base is the user's), task by pid, the panicking CPU's stack text", () => {
  const k = cpuKernel();
  const syms = new KernelSymbols(k);
  const notes = [prstatus(0, { cs: 0x10n, gs_base: 0n, rsp: STACK(1) + 0x3f00n, rip: KB + 0x104n }),
    prstatus(77, { cs: 0x10n, gs_base: 0n, rsp: STACK(2) + 0x3f00n, rip: MOD + 0x45n })];
  const r = crashRegisters(k, notes, syms);
  assert.equal(r.writer, "kernel");
  assert.equal(r.panicCpu, 1);
  assert.deepEqual(r.cpus.map((c) => [c.cpu, c.cpuFrom, c.task?.pid, c.task?.comm, c.pidAgrees, c.ripSymbol]), [
    [0, "order", 0, "swapper/0", true, "do_thing+0x4/0x700"],
    [1, "order", 77, "crasher", true, "bar+0x5/0x40 [crashmod]"],
  ]);
  const p = r.panicking!;
  assert.deepEqual(p.stack, { base: STACK(2), top: STACK(2) + 0x4000n, onTaskStack: true });
  assert.deepEqual(stackText(k, syms, p.note.regs.rsp, p.stack!.top).map((s) => [s.slot - STACK(2), s.symbol]),
    [[0x3f00n, "panic"], [0x3f10n, "bar [crashmod]"], [0x3ff0n, "do_thing"]]);
  // QEMU's notes: the CPU from GS base when it is a per-CPU offset, the task from that CPU's runqueue, whatever pr_pid says.
  const q = crashRegisters(k, [prstatus(1, { cs: 0x10n, gs_base: PERCPU(1), rsp: 0xffffc90000100000n, rip: KB }), { name: "QEMU", type: 0, desc: new Uint8Array(8) }], syms);
  assert.deepEqual([q.cpus[0].cpu, q.cpus[0].cpuFrom, q.cpus[0].task?.pid], [1, "gs_base", 77]);
  assert.equal(q.panicking, q.cpus[0]);
  // RSP off the task's stack (an IRQ stack): flagged, bounded to a THREAD_SIZE-aligned block.
  assert.deepEqual(q.cpus[0].stack, { base: 0xffffc90000100000n, top: 0xffffc90000104000n, onTaskStack: false });
  const none = crashRegisters(k, [], syms);
  assert.deepEqual([none.cpus.length, none.panicCpu], [0, 1]);
  assert.match(none.missing!, /no PRSTATUS notes/);
  assert.throws(() => stackText(k, syms, STACK(1), STACK(1) + (2n << 20n)), oneLineError(/a stack of 2097152 bytes/));
});

const MNT = (i: number) => 0xffff888000400000n + BigInt(i) * 0x100n;
const DEN = (i: number) => 0xffff888000500000n + BigInt(i) * 0x40n;
const STR = (i: number) => 0xffff888000600000n + BigInt(i) * 0x40n;

/** init's namespace with /, /proc, /proc/sys, /mnt/data; 6.1's list or 6.8's rbtree. */
function mountKernel(rb: boolean, tweak?: (m: Arena) => void) {
  const b = new BtfBuilder();
  const { int, uint, char, u64, listHead } = b.basics();
  const charPtr = b.ptr(char);
  const qstr = b.struct("qstr", 16, [["len", uint, 0], ["name", charPtr, 64]]);
  const dentry = b.next;
  b.struct("dentry", 32, [["d_parent", dentry + 1, 0], ["d_name", qstr, 64]]);
  const dentryPtr = b.ptr(dentry);
  const fst = b.ptr(b.struct("file_system_type", 8, [["name", charPtr, 0]]));
  const sbPtr = b.ptr(b.struct("super_block", 16, [["s_type", fst, 0], ["s_subtype", charPtr, 64]]));
  const vfsmount = b.struct("vfsmount", 16, [["mnt_root", dentryPtr, 0], ["mnt_sb", sbPtr, 64]]);
  const rbNode = b.next;
  b.struct("rb_node", 24, [["__rb_parent_color", u64, 0], ["rb_right", rbNode + 1, 64], ["rb_left", rbNode + 1, 128]]);
  const rbPtr = b.ptr(rbNode);
  const rbRoot = b.struct("rb_root", 8, [["rb_node", rbPtr, 0]]);
  const mount = b.next;
  b.struct("mount", 96, [["mnt_parent", mount + 1, 0], ["mnt_mountpoint", dentryPtr, 64], ["mnt", vfsmount, 128], ["mnt_devname", charPtr, 256],
    ["mnt_list", listHead, 320], ["mnt_id", int, 448], ["mnt_node", rbNode, 512]]);
  b.ptr(mount);
  const nsPtr = b.ptr(b.struct("mnt_namespace", 16, rb ? [["mounts", rbRoot, 0]] : [["list", listHead, 0]]));
  const nsproxyPtr = b.ptr(b.struct("nsproxy", 8, [["mnt_ns", nsPtr, 0]]));
  b.struct("task_struct", 32, [["tasks", listHead, 0], ["pid", int, 128], ["nsproxy", nsproxyPtr, 192]]);
  const btf = Btf.parse(b.build());

  const m = new Arena();
  const init = KB + 0x1000n;
  const ns = KB + 0x2000n;
  const nsproxy = KB + 0x3000n;
  m.map(init, 32);
  m.u64(init, init);
  m.u64(init + 8n, init);
  m.u64(init + 24n, nsproxy);
  m.map(nsproxy, 8);
  m.u64(nsproxy, ns);
  m.map(ns, 16);
  // Dentries: 0 rootfs "/", 1 "proc" under 0, 2 proc's root "/", 3 "sys" under 2, 4 sysctl root "/", 5 "mnt" under 0, 6 "data" under 5, 7 ext4 root "/".
  const dentries: [string, number][] = [["/", 0], ["proc", 0], ["/", 2], ["sys", 2], ["/", 4], ["mnt", 0], ["data", 5], ["/", 7]];
  dentries.forEach(([name, parent], i) => {
    m.map(DEN(i), 32);
    m.u64(DEN(i), DEN(parent));
    m.u64(DEN(i) + 16n, m.cstr(STR(i), name));
  });
  const fs = ["rootfs", "proc", "sysctl", "ext4"].map((n, i) => {
    const t = 0xffff888000700000n + BigInt(i) * 0x100n;
    m.map(t, 32);
    m.u64(t, m.cstr(t + 0x40n, n));
    m.u64(t + 8n, t);
    return t + 8n;
  });
  // Mounts: id, parent, mountpoint dentry, root dentry, superblock, device.
  const mounts: [number, number, number, number, number, string][] = [[1, 0, 0, 0, 0, "rootfs"], [20, 0, 1, 2, 1, "proc"], [21, 1, 3, 4, 2, "sysctl"], [30, 0, 6, 7, 3, "/dev/vda"]];
  mounts.forEach(([id, parent, mp, root, sb, dev], i) => {
    m.map(MNT(i), 96);
    m.u64(MNT(i), MNT(parent));
    m.u64(MNT(i) + 8n, DEN(mp));
    m.u64(MNT(i) + 16n, DEN(root));
    m.u64(MNT(i) + 24n, fs[sb]);
    m.u64(MNT(i) + 32n, m.cstr(STR(20 + i), dev));
    m.u32(MNT(i) + 56n, id);
  });
  if (rb) {
    // In order 0,1,2,3: 1 at the root, 0 on its left, 2 on its right, 3 right of 2.
    const node = (i: number) => MNT(i) + 64n;
    m.u64(ns, node(1));
    m.u64(node(1) + 16n, node(0));
    m.u64(node(1) + 8n, node(2));
    m.u64(node(2) + 8n, node(3));
  } else {
    const all = [ns, ...mounts.map((_, i) => MNT(i) + 40n)];
    all.forEach((n, i) => {
      m.u64(n, all[(i + 1) % all.length]);
      m.u64(n + 8n, all[(i + all.length - 1) % all.length]);
    });
  }
  tweak?.(m);
  return new TypedKernel(btf, { lookup: (n) => (n === "init_task" ? init : undefined) }, m);
}

test("mounts: paths across mount points, 6.1's list and 6.8's rbtree; cycles end in one-line errors", () => {
  const want = [
    { id: 1, device: "rootfs", path: "/", fstype: "rootfs", mountpoint: "/", root: "/", parentId: 1 },
    { id: 20, device: "proc", path: "/proc", fstype: "proc", mountpoint: "proc", root: "/", parentId: 1 },
    { id: 21, device: "sysctl", path: "/proc/sys", fstype: "sysctl", mountpoint: "sys", root: "/", parentId: 20 },
    { id: 30, device: "/dev/vda", path: "/mnt/data", fstype: "ext4", mountpoint: "data", root: "/", parentId: 1 },
  ];
  for (const rb of [false, true]) {
    const got = listMounts(mountKernel(rb)).map(({ address: _a, superblock: _s, ...rest }) => rest);
    assert.deepEqual(got, want, rb ? "rbtree" : "list");
  }
  // "data" and "mnt" each other's d_parent: a path that never reaches the root.
  const dcycle = mountKernel(false, (m) => m.u64(DEN(5), DEN(6)));
  assert.throws(() => listMounts(dcycle), oneLineError(/more than 8192 steps \(a d_parent or mnt_parent cycle\)/));
  // The rbtree's last node points back at the root.
  const rcycle = mountKernel(true, (m) => m.u64(MNT(3) + 64n + 8n, MNT(1) + 64n));
  assert.throws(() => listMounts(rcycle), oneLineError(/reached twice/));
  assert.throws(() => listMounts(mountKernel(false), { budget: 2 }), oneLineError(/more than 2 entries/));
  assert.throws(() => listMounts(mountKernel(true), { budget: 3 }), oneLineError(/more than 3 nodes/));
});

test("ClassBins: windows split across bins, totals, dominant class; bins must be sorted and disjoint", () => {
  // CLASS_NAMES follows the class bytes of src/filter/classes.ts.
  assert.deepEqual(CLASS_NAMES.map((_, i) => i), [CLASS.KEEP, CLASS.ZERO, CLASS.CACHE, CLASS.CACHE_PRIVATE, CLASS.USER, CLASS.FREE, CLASS.HWPOISON, CLASS.OFFLINE, CLASS.HOLE]);
  const bins = ClassBins.uniform(10, 4);
  assert.deepEqual([bins.starts, bins.ends], [[0, 4, 8], [4, 8, 10]]);
  const cls = Uint8Array.from([CLASS.KEEP, CLASS.FREE, CLASS.FREE, CLASS.ZERO, CLASS.USER, CLASS.USER, CLASS.CACHE, CLASS.HOLE]);
  bins.add({ pfnStart: 0, count: 6, cls: cls.subarray(0, 6) });
  bins.add({ pfnStart: 6, count: 4, cls: Uint8Array.from([CLASS.CACHE, CLASS.HOLE, CLASS.HOLE, CLASS.HOLE]) });
  assert.deepEqual(bins.bin(0), { kernel: 1, zero: 1, cache: 0, cachePrivate: 0, user: 0, free: 2, hwpoison: 0, offline: 0, hole: 0 });
  assert.deepEqual([0, 1, 2].map((b) => bins.dominant(b)), [CLASS.FREE, CLASS.USER, CLASS.HOLE]);
  assert.deepEqual(bins.total(), { kernel: 1, zero: 1, cache: 1, cachePrivate: 0, user: 2, free: 2, hwpoison: 0, offline: 0, hole: 3 });
  // A zone-like bin set with a gap: pfns 4-5 are counted nowhere.
  const gap = new ClassBins([0, 6], [4, 8]);
  gap.add({ pfnStart: 0, count: 8, cls });
  assert.equal(Object.values(gap.total()).reduce((a, b) => a + b, 0), 6);
  assert.throws(() => new ClassBins([4, 0], [8, 2]), oneLineError(/not sorted and disjoint/));
});

test("hexdumpLines equals util-linux hexdump -C (and -v) on the same bytes", (t) => {
  const dir = tempDir(t);
  try {
    const cases: Buffer[] = [Buffer.from("a"), Buffer.from("0123456789abcde"), Buffer.alloc(16, 0x41), Buffer.alloc(17, 0x7f)];
    // Runs of equal lines, a partial line equal to the start of the last full one, bytes 0-255.
    const mixed = Buffer.concat([Buffer.alloc(64), Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.alloc(48, 0xff), Buffer.alloc(40, 0xff), Buffer.from("tail")]);
    cases.push(mixed, Buffer.concat([Buffer.alloc(4096), Buffer.from([1])]));
    for (const [i, bytes] of cases.entries()) {
      const f = writeTemp(dir, `b${i}`, bytes);
      assert.equal(hexdumpLines(bytes, 0n), execFileSync("hexdump", ["-C", f], { encoding: "utf8" }), `case ${i}`);
      assert.equal(hexdumpLines(bytes, 0n, { squeeze: false }), execFileSync("hexdump", ["-v", "-C", f], { encoding: "utf8" }), `case ${i} -v`);
    }
    // Addresses: at least `width` digits, counted from the start given.
    assert.equal(hexdumpLines(Buffer.from("Linux"), 0xffffffff969fb000n, { width: 16 }),
      "ffffffff969fb000  4c 69 6e 75 78                                    |Linux|\nffffffff969fb005\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
