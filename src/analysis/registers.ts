// The CPUs' registers at the crash, from the dump's NT_PRSTATUS notes, and
// the panicking task's: which task each CPU ran, where its RIP was, and
// the text addresses on its kernel stack (crash's `bt -t`, without an
// unwinder).
//
// Two writers make these notes, and they fill pr_pid differently:
// - the kernel itself (crash_save_cpu(), kernel/kexec_core.c), for kdump's
//   /proc/vmcore: pr_pid is the pid of the task the CPU ran, one note per
//   CPU in CPU order;
// - QEMU's dump-guest-memory (target/i386/arch_dump.c): pr_pid is the
//   vCPU index plus one (dump.c cpu_index()), whatever ran there, and each
//   PRSTATUS is followed by a "QEMU" note (QEMUCPUState).
// Raw memory files and live QMP sources have no notes at all.
import { GuestcoreError, hex } from "../core/errors.js";
import type { ElfNote } from "../format/elf64.js";
import type { KernelSymbols } from "./symbols.js";
import { listTasks } from "./tasks.js";
import type { Obj, TypedKernel } from "./typed.js";

const NT_PRSTATUS = 1;
/** struct elf_prstatus on x86-64 (include/linux/elfcore.h): pr_reg at 112, 27 registers, pr_fpvalid, padding. */
export const PRSTATUS_SIZE = 336;
const PR_REG = 112;
// x86-64's largest NR_CPUS (CONFIG_MAXSMP): more notes than that is not a dump.
const MAX_NOTES = 8192;
// THREAD_SIZE without KASAN on x86-64 (THREAD_SIZE_ORDER 2), where the linker symbols are missing.
const DEFAULT_THREAD_SIZE = 16384n;
const MAX_THREAD_SIZE = 1n << 20n;

/** user_regs_struct (arch/x86/include/asm/user_64.h), in its order. */
export const X86_64_REGS = ["r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
  "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"] as const;
export type X86Register = (typeof X86_64_REGS)[number];
export type X86Registers = Record<X86Register, bigint>;

export interface Prstatus {
  /** Position among the dump's PRSTATUS notes. */
  index: number;
  /** pr_cursig. */
  signal: number;
  pid: number;
  ppid: number;
  pgrp: number;
  sid: number;
  regs: X86Registers;
}

/** One x86-64 elf_prstatus; anything of another size (i386's 144 bytes, ARM's) is refused. */
export function decodePrstatus(desc: Uint8Array, index = 0): Prstatus {
  if (desc.length !== PRSTATUS_SIZE) {
    throw new GuestcoreError(`PRSTATUS note ${index} has ${desc.length} bytes: not an x86-64 elf_prstatus (${PRSTATUS_SIZE})`);
  }
  const v = new DataView(desc.buffer, desc.byteOffset, desc.byteLength);
  const regs = {} as X86Registers;
  X86_64_REGS.forEach((r, i) => (regs[r] = v.getBigUint64(PR_REG + i * 8, true)));
  return {
    index, signal: v.getInt16(12, true), pid: v.getInt32(32, true), ppid: v.getInt32(36, true), pgrp: v.getInt32(40, true),
    sid: v.getInt32(44, true), regs,
  };
}

export type NoteWriter = "qemu" | "kernel";

export interface PrstatusSet {
  writer: NoteWriter;
  notes: Prstatus[];
}

/** The PRSTATUS notes of a source, decoded, and who wrote them; undefined when there are none. */
export function prstatusNotes(notes: readonly ElfNote[]): PrstatusSet | undefined {
  const pr = notes.filter((n) => n.type === NT_PRSTATUS && n.name === "CORE");
  if (pr.length === 0) return undefined;
  if (pr.length > MAX_NOTES) throw new GuestcoreError(`${pr.length} PRSTATUS notes: more than ${MAX_NOTES} CPUs`);
  return { writer: notes.some((n) => n.name === "QEMU") ? "qemu" : "kernel", notes: pr.map((n, i) => decodePrstatus(n.desc, i)) };
}

export interface TaskRef {
  address: bigint;
  pid: number;
  comm: string;
}

export interface CpuState {
  note: Prstatus;
  /** The Linux CPU, when it can be told. */
  cpu?: number;
  /**
   * How: "gs_base" (in kernel mode GS base is that CPU's __per_cpu_offset),
   * "order" (the n-th note is the n-th online CPU, as both writers lay them out).
   */
  cpuFrom?: "gs_base" | "order";
  /** CS's privilege level 0: the CPU was in the kernel. */
  kernelMode: boolean;
  /** The task the CPU ran: its runqueue's curr, or the task with the note's pid (kernel-written notes). */
  task?: TaskRef;
  /** For kernel-written notes: the note's pid is that CPU's rq->curr's. */
  pidAgrees?: boolean;
  /** RIP as %pS prints it. */
  ripSymbol?: string;
  /** The kernel stack RSP lies on: the task's, or another (IRQ, exception) one. */
  stack?: { base: bigint; top: bigint; onTaskStack: boolean };
}

export interface CrashRegisters {
  /** Why there are no registers (raw image, QMP source). */
  missing?: string;
  writer?: NoteWriter;
  cpus: CpuState[];
  /** panic_cpu, when a CPU entered panic(). */
  panicCpu?: number;
  /** The CPU state of panic_cpu, when a note belongs to it. */
  panicking?: CpuState;
}

const taskRef = (t: Obj): TaskRef => ({ address: t.address, pid: t.member("pid").number(), comm: t.member("comm").string() });

/**
 * THREAD_SIZE from the init task's stack, which the linker script lays
 * out as INIT_TASK_DATA(THREAD_SIZE) between __start_init_task and
 * __end_init_task; 16 KiB without them.
 */
export function threadSize(k: TypedKernel): bigint {
  const a = k.symbols.lookup("__start_init_task");
  const b = k.symbols.lookup("__end_init_task");
  if (a === undefined || b === undefined) return DEFAULT_THREAD_SIZE;
  const n = b - a;
  // A power of two, at least a page and at most 1 MiB: else the symbols are not the stack's.
  if (n < 4096n || n > MAX_THREAD_SIZE || (n & (n - 1n)) !== 0n) return DEFAULT_THREAD_SIZE;
  return n;
}

/** The bounds of a task's kernel stack: task->stack, THREAD_SIZE long (THREAD_INFO_IN_TASK, 4.9+). */
export function taskStack(k: TypedKernel, task: Obj): { base: bigint; top: bigint } {
  const base = task.member("stack").ptr();
  if (base === 0n) throw new GuestcoreError(`task at ${hex(task.address)} has no stack (it has exited)`);
  return { base, top: base + threadSize(k) };
}

function panicCpuOf(k: TypedKernel): number | undefined {
  // PANIC_CPU_INVALID (-1) until a CPU enters panic(); the variable exists since 4.5.
  if (k.symbols.lookup("panic_cpu") === undefined) return undefined;
  const cpu = k.global("panic_cpu", "atomic_t").member("counter").number();
  return cpu >= 0 && cpu < k.nrCpuIds ? cpu : undefined;
}

/**
 * Each note matched to its CPU and task, and the panicking CPU's among
 * them. Without notes (a raw image, a QMP source) `missing` says so and
 * the caller still has panic_cpu and its runqueue's task.
 */
export function crashRegisters(k: TypedKernel, notes: readonly ElfNote[], symbols?: KernelSymbols): CrashRegisters {
  const panicCpu = panicCpuOf(k);
  const set = prstatusNotes(notes);
  if (!set) {
    return { missing: "the input has no PRSTATUS notes (a raw memory image or a live QMP source carries no CPU registers)", cpus: [], panicCpu };
  }
  const online = k.onlineCpus();
  const offsets = new Map<bigint, number>();
  for (const c of online) offsets.set(k.perCpuOffset(c), c);
  let byPid: Map<number, TaskRef> | undefined;
  const cpus = set.notes.map((note): CpuState => {
    const r = note.regs;
    const kernelMode = (r.cs & 3n) === 0n;
    const st: CpuState = { note, kernelMode };
    // In kernel mode GS base is this CPU's per-CPU area (x86-64 SMP).
    // QEMU's notes carry it; the kernel's carry the inactive (user) GS base
    // (ELF_CORE_COPY_REGS, x86_gsbase_read_cpu_inactive()), so their CPU comes from the order.
    const byGs = kernelMode ? offsets.get(r.gs_base) : undefined;
    if (byGs !== undefined && r.gs_base !== 0n) {
      st.cpu = byGs;
      st.cpuFrom = "gs_base";
    } else if (note.index < online.length) {
      st.cpu = online[note.index];
      st.cpuFrom = "order";
    }
    const curr = st.cpu === undefined ? undefined : k.perCpu("runqueues", st.cpu).member("curr").deref();
    if (set.writer === "qemu") {
      st.task = curr && taskRef(curr);
    } else {
      const currRef = curr && taskRef(curr);
      if (currRef && currRef.pid === note.pid) {
        st.task = currRef;
        st.pidAgrees = true;
      } else {
        byPid ??= new Map(listTasks(k).filter((t) => !t.idle).map((t) => [t.pid, { address: t.address, pid: t.pid, comm: t.comm }]));
        st.task = note.pid === 0 ? currRef : byPid.get(note.pid);
        st.pidAgrees = false;
      }
    }
    if (symbols) st.ripSymbol = symbols.format(r.rip);
    // An exiting task may have freed its stack (task->stack NULL): no stack then, not an error.
    const task = st.task && k.obj("struct task_struct", st.task.address);
    if (kernelMode && task && task.member("stack").ptr() !== 0n) {
      const s = taskStack(k, task);
      const on = r.rsp >= s.base && r.rsp < s.top;
      const size = s.top - s.base;
      const base = on ? s.base : r.rsp - (r.rsp % size);
      st.stack = { base, top: base + size, onTaskStack: on };
    }
    return st;
  });
  return { writer: set.writer, cpus, panicCpu, panicking: panicCpu === undefined ? undefined : cpus.find((c) => c.cpu === panicCpu) };
}

export interface StackSlot {
  /** Where on the stack. */
  slot: bigint;
  /** The text address stored there. */
  value: bigint;
  symbol: string;
}

/**
 * The text addresses stored on a stack between `from` and `top`, slot by
 * slot, as crash's `bt -t` lists them: candidates for return addresses,
 * not a verified unwind. Bounded by the stack's size.
 */
export function stackText(k: TypedKernel, symbols: KernelSymbols, from: bigint, top: bigint): StackSlot[] {
  const start = from - (from % 8n);
  if (top <= start) return [];
  if (top - start > MAX_THREAD_SIZE) throw new GuestcoreError(`a stack of ${top - start} bytes (at most ${MAX_THREAD_SIZE})`);
  const raw = k.read(start, Number(top - start), "kernel stack");
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out: StackSlot[] = [];
  for (let o = 0; o + 8 <= raw.length; o += 8) {
    const value = v.getBigUint64(o, true);
    if (!symbols.isText(value)) continue;
    const l = symbols.locate(value);
    if (l) out.push({ slot: start + BigInt(o), value, symbol: l.name + (l.module ? ` [${l.module}]` : "") });
  }
  return out;
}
