// Typed access and the task helpers on a crafted kernel: BTF written by
// test/helpers/btf-build.ts, memory a sparse map of pages. It covers what
// the real captures (one CPU, no multi-threaded process) do not: two CPUs'
// per-CPU runqueues, thread groups, every state letter, the layouts of
// kernels before 5.14/5.16 (task->state, task->cpu, thread_group), and
// broken lists.
import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestcoreError } from "../../src/core/errors.js";
import { Btf } from "../../src/introspect/btf.js";
import { TypedKernel, listEntries } from "../../src/analysis/typed.js";
import { listTasks, stateLetter, stateTable } from "../../src/analysis/tasks.js";
import { listModules } from "../../src/analysis/modules.js";
import { oneLineError } from "../helpers/errors.js";
import { BtfBuilder } from "../helpers/btf-build.js";

class FakeMemory {
  readonly pages = new Map<bigint, Uint8Array>();
  private page(va: bigint, create: boolean): Uint8Array | undefined {
    const key = va & ~0xfffn;
    let p = this.pages.get(key);
    if (!p && create) this.pages.set(key, (p = new Uint8Array(4096)));
    return p;
  }
  write(va: bigint, bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) this.page(va + BigInt(i), true)![Number((va + BigInt(i)) & 0xfffn)] = bytes[i];
  }
  u64(va: bigint, v: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, v));
    this.write(va, b);
  }
  u32(va: bigint, v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.write(va, b);
  }
  str(va: bigint, s: string): void {
    this.write(va, Buffer.from(s + "\0", "latin1"));
  }
  read(vaddr: bigint, len: number, what: string): Uint8Array {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      const va = BigInt.asUintN(64, vaddr + BigInt(i));
      const p = this.page(va, false);
      if (!p) throw new GuestcoreError(`${what}: virtual address 0x${va.toString(16)} is not mapped`);
      out[i] = p[Number(va & 0xfffn)];
    }
    return out;
  }
}

// Offsets of the crafted task_struct (not the real kernel's: the helpers read them from BTF).
const T = { state: 16, tasks: 24, pid: 40, tgid: 44, parent: 48, comm: 56, exit: 72, signal: 80, thread: 88, cpu: 8, size: 256 };

/** BTF of a 6.1-like kernel, or (old) one before 5.14: task->state, task->cpu, thread_group. */
function kernelBtf(old: boolean) {
  const b = new BtfBuilder();
  const { int, uint, char, u64: ulong, listHead } = b.basics();
  const task = b.next;
  const taskPtr = b.next + 1;
  const signalPtr = b.next + 2;
  const threadInfo = b.next + 3;
  const comm = b.next + 4;
  const members: [string, number, number][] = [
    [old ? "state" : "__state", uint, T.state * 8], ["tasks", listHead, T.tasks * 8], ["pid", int, T.pid * 8], ["tgid", int, T.tgid * 8],
    ["real_parent", taskPtr, T.parent * 8], ["comm", comm, T.comm * 8], ["exit_state", int, T.exit * 8], ["signal", signalPtr, T.signal * 8],
    [old ? "thread_group" : "thread_node", listHead, T.thread * 8],
    old ? ["cpu", uint, T.cpu * 8] : ["thread_info", threadInfo, 0],
  ];
  b.struct("task_struct", T.size, members);
  b.ptr(task);
  const signal = b.next + 1;
  b.ptr(signal);
  b.struct("thread_info", 16, [["flags", ulong, 0], ["cpu", uint, 64]]);
  b.array(char, int, 16);
  b.struct("signal_struct", 24, old ? [["nr_threads", int, 0]] : [["nr_threads", int, 0], ["thread_head", listHead, 64]]);
  const rq = b.struct("rq", 24, [["nr_running", uint, 0], ["curr", taskPtr, 64], ["idle", taskPtr, 128]]);
  const v = b.variable("runqueues", rq);
  b.datasec(".data..percpu", 24, [[v, 0x2000, 24]]);
  const counter = b.struct("", 4, [["counter", int, 0]]);
  b.typedef("atomic_t", counter);
  // For the Obj tests: bitfields, an enum, a char pointer, an array.
  const st = b.enum("module_state", 4, [["MODULE_STATE_LIVE", 0], ["MODULE_STATE_COMING", 1], ["MODULE_STATE_GOING", 2]]);
  const charPtr = b.ptr(char);
  const layout = b.struct("module_layout", 16, [["base", b.ptr(0), 0], ["size", uint, 64]]);
  b.struct("module", 128, [["state", st, 0], ["list", listHead, 64], ["name", b.array(char, int, 56), 192], ["core_layout", layout, 640], ["version", charPtr, 768]]);
  b.struct("bits", 8, [["lo", uint, 0, 3], ["neg", int, 3, 5], ["flag", uint, 8, 1], ["wide", ulong, 9, 40]], { kflag: true });
  b.struct("nums", 16, [["xs", b.array(int, int, 3), 0]]);
  return Btf.parse(b.build());
}

const KBASE = 0xffffffff81000000n;
const SYM = { initTask: KBASE + 0x10000n, perCpuOffset: KBASE + 0x20000n, nrCpuIds: KBASE + 0x20100n, online: KBASE + 0x20200n,
  stateArray: KBASE + 0x21000n, stateStrings: KBASE + 0x22000n, modules: KBASE + 0x23000n, runqueues: 0x2000n, panicCpu: KBASE + 0x20300n };
const PERCPU = (cpu: number) => 0xffff888000100000n + BigInt(cpu) * 0x10000n;
const TASK = (i: number) => 0xffff888000200000n + BigInt(i) * 0x400n;
const STATES = ["R (running)", "S (sleeping)", "D (disk sleep)", "T (stopped)", "t (tracing stop)", "X (dead)", "Z (zombie)", "P (parked)", "I (idle)"];

interface TaskSpec { at: bigint; pid: number; tgid: number; parent: bigint; comm: string; state: number; exit?: number; cpu: number; signal?: bigint }

/** Two CPUs; init with threads 5 and 6; kthreadd; a zombie; CPU 1's idle task; CPU 1 runs thread 5. */
function kernel(old = false, tweak?: (m: FakeMemory) => void) {
  const m = new FakeMemory();
  const btf = kernelBtf(old);
  const list = (node: bigint, next: bigint, prev: bigint) => {
    m.u64(node, next);
    m.u64(node + 8n, prev);
  };
  const ring = (head: bigint, nodes: bigint[]) => {
    const all = [head, ...nodes];
    all.forEach((n, i) => list(n, all[(i + 1) % all.length], all[(i + all.length - 1) % all.length]));
  };
  const sig = 0xffff888000300000n;
  const tasks: TaskSpec[] = [
    { at: SYM.initTask, pid: 0, tgid: 0, parent: SYM.initTask, comm: "swapper/0", state: 0, cpu: 0 },
    { at: TASK(1), pid: 1, tgid: 1, parent: SYM.initTask, comm: "init", state: 1, cpu: 0, signal: sig },
    { at: TASK(5), pid: 5, tgid: 1, parent: SYM.initTask, comm: "init-worker", state: 0, cpu: 1, signal: sig },
    { at: TASK(6), pid: 6, tgid: 1, parent: SYM.initTask, comm: "init-idle", state: 0x402, cpu: 0, signal: sig },
    { at: TASK(2), pid: 2, tgid: 2, parent: SYM.initTask, comm: "kthreadd", state: 0x1000, cpu: 0, signal: sig + 0x100n },
    { at: TASK(7), pid: 7, tgid: 7, parent: TASK(5), comm: "zombie", state: 0x80, exit: 0x20, cpu: 1, signal: sig + 0x200n },
    { at: TASK(9), pid: 0, tgid: 0, parent: TASK(9), comm: "swapper/1", state: 0, cpu: 1 },
  ];
  for (const t of tasks) {
    m.u32(t.at + BigInt(T.state), t.state);
    m.u32(t.at + BigInt(T.pid), t.pid);
    m.u32(t.at + BigInt(T.tgid), t.tgid);
    m.u64(t.at + BigInt(T.parent), t.parent);
    m.write(t.at + BigInt(T.comm), Buffer.alloc(16));
    m.str(t.at + BigInt(T.comm), t.comm);
    m.u32(t.at + BigInt(T.exit), t.exit ?? 0);
    m.u64(t.at + BigInt(T.signal), t.signal ?? 0n);
    m.u32(t.at + BigInt(T.cpu), t.cpu);
    list(t.at + BigInt(T.thread), t.at + BigInt(T.thread), t.at + BigInt(T.thread));
  }
  const tasksNode = (a: bigint) => a + BigInt(T.tasks);
  const threadNode = (a: bigint) => a + BigInt(T.thread);
  ring(tasksNode(SYM.initTask), [TASK(1), TASK(2), TASK(7)].map(tasksNode));
  if (old) {
    ring(threadNode(TASK(1)), [TASK(5), TASK(6)].map(threadNode));
  } else {
    ring(sig + 8n, [TASK(1), TASK(5), TASK(6)].map(threadNode));
    ring(sig + 0x108n, [threadNode(TASK(2))]);
    ring(sig + 0x208n, [threadNode(TASK(7))]);
  }
  m.u32(SYM.nrCpuIds, 2);
  m.u64(SYM.online, 3n);
  m.u64(SYM.perCpuOffset, PERCPU(0));
  m.u64(SYM.perCpuOffset + 8n, PERCPU(1));
  for (const [cpu, curr, idle] of [[0, TASK(2), SYM.initTask], [1, TASK(5), TASK(9)]] as const) {
    m.u64(PERCPU(cpu) + SYM.runqueues + 8n, curr);
    m.u64(PERCPU(cpu) + SYM.runqueues + 16n, idle);
  }
  STATES.forEach((s, i) => {
    m.u64(SYM.stateArray + BigInt(i * 8), SYM.stateStrings + BigInt(i * 32));
    m.str(SYM.stateStrings + BigInt(i * 32), s);
  });
  m.u64(SYM.stateArray + 72n, 0n);
  // One module.
  const mod = 0xffffffffc0001000n;
  ring(SYM.modules, [mod + 8n]);
  m.u32(mod, 2);
  m.write(mod + 24n, Buffer.alloc(56));
  m.str(mod + 24n, "loop");
  m.u64(mod + 80n, 0xffffffffc0000000n);
  m.u32(mod + 88n, 32768);
  m.u64(mod + 96n, mod + 0x200n);
  m.str(mod + 0x200n, "1.2.3");
  tweak?.(m);
  const symbols = new Map<string, bigint>([
    ["init_task", SYM.initTask], ["__per_cpu_offset", SYM.perCpuOffset], ["nr_cpu_ids", SYM.nrCpuIds], ["__cpu_online_mask", SYM.online],
    ["task_state_array", SYM.stateArray], ["modules", SYM.modules], ["runqueues", SYM.runqueues], ["panic_cpu", SYM.panicCpu],
  ]);
  const table = {
    lookup: (n: string) => symbols.get(n),
    locate: (a: bigint) => (a === SYM.stateArray ? { name: "task_state_array", offset: 0n, size: 72n } : undefined),
  };
  return { k: new TypedKernel(btf, table, m), m };
}

const row = (t: { pid: number; tgid: number; ppid: number; comm: string; state: string; cpu: number; active: boolean; idle: boolean }) =>
  `${t.pid}/${t.tgid} ppid ${t.ppid} ${t.comm} ${t.state} cpu${t.cpu}${t.active ? " active" : ""}${t.idle ? " idle" : ""}`;

for (const old of [false, true]) {
  test(`tasks on two CPUs with a thread group (${old ? "before 5.14: state, task->cpu, thread_group" : "6.1: __state, thread_info.cpu, signal->thread_head"})`, () => {
    const { k } = kernel(old);
    assert.equal(stateTable(k).field, old ? "state" : "__state");
    assert.deepEqual(listTasks(k).map(row), [
      "0/0 ppid 0 swapper/0 R cpu0 idle",
      "0/0 ppid 0 swapper/1 R cpu1 idle",
      "1/1 ppid 0 init S cpu0",
      "5/1 ppid 0 init-worker R cpu1 active",
      "6/1 ppid 0 init-idle I cpu0",
      "2/2 ppid 0 kthreadd D cpu0 active",
      "7/7 ppid 1 zombie Z cpu1",
    ]);
  });
}

test("state letters as the kernel's task_state_index", () => {
  const { k } = kernel();
  const t = stateTable(k);
  assert.equal(t.letters, "RSDTtXZPI");
  assert.equal(t.report, 0x7f);
  const cases: [number, number, string][] = [[0, 0, "R"], [1, 0, "S"], [2, 0, "D"], [4, 0, "T"], [8, 0, "t"], [0, 0x10, "X"], [0, 0x20, "Z"],
    [0x40, 0, "P"], [0x402, 0, "I"], [0x1000, 0, "D"], [0x101, 0, "S"], [0x82, 0x20, "Z"]];
  for (const [s, e, want] of cases) assert.equal(stateLetter(t, s, e), want, `state ${s.toString(16)} exit ${e.toString(16)}`);
});

test("typed objects: members, bitfields, enums, strings, arrays, container_of, per-CPU", () => {
  const { k, m } = kernel();
  const at = 0xffff888000400000n;
  // lo=5 (3 bits), neg=-3 (5 bits), flag=1, wide=0xab_cdef_0123 (40 bits from bit 9).
  const raw = 5n | (BigInt.asUintN(5, -3n) << 3n) | (1n << 8n) | (0xabcdef0123n << 9n);
  m.u64(at, raw);
  const bits = k.obj("struct bits", at);
  assert.equal(bits.member("lo").value(), 5n);
  assert.equal(bits.member("neg").value(), -3n);
  assert.equal(bits.member("flag").value(), 1n);
  assert.equal(bits.member("wide").value(), 0xabcdef0123n);
  assert.throws(() => bits.member("lo").member("x"), oneLineError(/a bitfield has no member/));

  const mod = listEntries(k, SYM.modules, "struct module", "list")[0];
  assert.equal(mod.member("state").enumName(), "MODULE_STATE_GOING");
  assert.equal(mod.member("name").string(), "loop");
  assert.equal(mod.member("version").string(), "1.2.3");
  assert.equal(mod.member("core_layout.size").number(), 32768);
  assert.equal(mod.member("list").containerOf("struct module", "list").address, mod.address);
  assert.deepEqual(listModules(k).map((x) => [x.name, x.base, x.size, x.state]), [["loop", 0xffffffffc0000000n, 32768, "MODULE_STATE_GOING"]]);

  const nums = 0xffff888000401000n;
  [10, -20, 30].forEach((v, i) => m.u32(nums + BigInt(i * 4), v));
  const xs = k.obj("struct nums", nums).member("xs");
  assert.equal(xs.length, 3);
  assert.deepEqual([0, 1, 2].map((i) => xs.array(i).value()), [10n, -20n, 30n]);
  assert.throws(() => xs.array(3), oneLineError(/index 3 is past its 3 elements/));
  assert.throws(() => xs.ptr(), oneLineError(/is not a pointer/));
  assert.throws(() => k.obj("struct nums", nums).member("ys"), oneLineError(/no member ys/));

  assert.equal(k.nrCpuIds, 2);
  assert.deepEqual(k.onlineCpus(), [0, 1]);
  assert.equal(k.perCpu("runqueues", 1).address, PERCPU(1) + SYM.runqueues);
  assert.equal(k.perCpu("runqueues", 1).member("curr").deref().member("comm").string(), "init-worker");
  assert.throws(() => k.perCpu("runqueues", 2), oneLineError(/CPU 2 is not a possible CPU/));
  assert.throws(() => k.global("init_task"), oneLineError(/BTF has no variable init_task: give its type/));
  assert.equal(k.global("init_task", "struct task_struct").member("pid").number(), 0);
  assert.throws(() => k.obj("struct nope", 0n), oneLineError(/BTF has no type "struct nope"/));
  assert.throws(() => k.obj("struct task_struct", 0x1000n).member("pid").value(), oneLineError(/not mapped/));
});

test("broken lists end in errors: a cycle that skips the head, a NULL link, a walk past its budget", () => {
  const head = SYM.initTask + BigInt(T.tasks);
  const node = (i: number) => TASK(i) + BigInt(T.tasks);
  {
    // init -> kthreadd -> init ...: never back to the head.
    const { k } = kernel(false, (m) => m.u64(node(2), node(1)));
    assert.throws(() => listTasks(k), oneLineError(/comes round again without the head \(a cycle\)/));
  }
  {
    const { k } = kernel(false, (m) => m.u64(node(2), 0n));
    assert.throws(() => listEntries(k, head, "struct task_struct", "tasks"), oneLineError(/NULL next pointer after 2 entries/));
  }
  {
    const { k } = kernel();
    assert.equal(listEntries(k, head, "struct task_struct", "tasks").length, 3);
    assert.throws(() => listEntries(k, head, "struct task_struct", "tasks", { budget: 2 }), oneLineError(/more than 2 entries/));
    assert.throws(() => listTasks(k, { budget: 4 }), oneLineError(/list at 0x[0-9a-f]+: more than 1 entries/));
  }
  {
    const { k } = kernel(false, (m) => m.u32(SYM.nrCpuIds, 100000));
    assert.throws(() => k.nrCpuIds, oneLineError(/nr_cpu_ids is 100000/));
  }
  {
    // task_state_array with its strings gone: not the kernel's letters.
    const { k } = kernel(false, (m) => m.u64(SYM.stateArray, 0x1234n));
    assert.throws(() => stateTable(k), oneLineError(/task_state_array reads ""/));
  }
});
