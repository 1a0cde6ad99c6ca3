// The task list from the dump alone, as ps would show it: every thread
// group leader on init_task.tasks, each followed by its other threads, and
// each CPU's idle task (pid 0), which never joins that list.
//
// Layout differences are found in BTF, each commented with the kernel that
// brought it. BTF in vmlinux exists from Linux 5.2 on, so the layouts
// before that (thread_info on the stack before 4.9) never meet this code.
import { GuestcoreError } from "../core/errors.js";
import { LIST_BUDGET, listEntries, type Obj, type TypedKernel } from "./typed.js";

export interface TaskInfo {
  /** Address of the task_struct. */
  address: bigint;
  pid: number;
  tgid: number;
  /** The real parent's tgid, as /proc/PID/status shows PPid. */
  ppid: number;
  comm: string;
  /** ps's state letter: R S D T t X Z P I. */
  state: string;
  cpu: number;
  /** The task its CPU's runqueue was running (rq->curr) when the dump was taken. */
  active: boolean;
  /** A CPU's idle task. */
  idle: boolean;
}

export interface TaskListOptions {
  /** Most tasks walked, over all lists, before giving up. */
  budget?: number;
}

// include/linux/sched.h since 4.14: TASK_IDLE is TASK_UNINTERRUPTIBLE |
// TASK_NOLOAD, reported as 'I'; 5.15 added TASK_RTLOCK_WAIT, reported as 'D'.
// These are #defines: BTF has no trace of them.
const TASK_UNINTERRUPTIBLE = 0x2;
const TASK_NOLOAD = 0x400;
const TASK_RTLOCK_WAIT = 0x1000;
// task_state_array has 9 entries since 4.14; a bound for reading it.
const MAX_STATES = 16;

/** How this kernel reports a state: the letters of task_state_array and the TASK_REPORT mask. */
export interface StateTable {
  letters: string;
  report: number;
  idleIndex: number;
  /** "__state" since 5.14 (commit 2f064a59a11f, "sched: Change task_struct::state"), "state" before. */
  field: string;
}

/**
 * task_state_array (fs/proc/array.c) from memory: its entries' first
 * letters, in state-bit order. As drgn's task_state_to_char does, the last
 * letter that is a real state bit ("RSDTtXZP") gives TASK_REPORT; an 'I'
 * after it is TASK_REPORT_IDLE (4.14+). The array's length is its kallsyms
 * size, checked entry by entry.
 */
export function stateTable(k: TypedKernel): StateTable {
  const arr = k.symbol("task_state_array");
  const sized = k.symbols.locate?.(arr);
  const n = Math.min(MAX_STATES, sized && sized.offset === 0n ? Number(sized.size / 8n) : MAX_STATES);
  const raw = k.read(arr, n * 8, "task_state_array");
  const v = new DataView(raw.buffer);
  let letters = "";
  for (let i = 0; i < n; i++) {
    const p = v.getBigUint64(i * 8, true);
    let s: Uint8Array;
    try {
      s = k.read(p, 4, "task_state_array entry");
    } catch {
      break;
    }
    // "R (running)", "t (tracing stop)": a letter, a space, a parenthesis.
    if (!/[A-Za-z]/.test(String.fromCharCode(s[0])) || s[1] !== 0x20 || s[2] !== 0x28) break;
    letters += String.fromCharCode(s[0]);
  }
  let last = -1;
  for (let i = letters.length - 1; i >= 0 && last < 0; i--) if ("RSDTtXZP".includes(letters[i])) last = i;
  if (last < 1) throw new GuestcoreError(`task_state_array reads "${letters}": not the kernel's state letters`);
  const field = k.hasMember("struct task_struct", "__state") ? "__state" : "state";
  return { letters, report: (1 << last) - 1, idleIndex: letters.indexOf("I", last), field };
}

/** The kernel's task_state_index() (include/linux/sched.h, 6.1), as a letter. */
export function stateLetter(t: StateTable, taskState: number, exitState: number): string {
  const fls = (x: number) => 32 - Math.clz32(x);
  let index = fls((taskState | exitState) & t.report);
  if (t.idleIndex >= 0 && (taskState & (TASK_UNINTERRUPTIBLE | TASK_NOLOAD)) === (TASK_UNINTERRUPTIBLE | TASK_NOLOAD)) index = t.idleIndex;
  if (taskState === TASK_RTLOCK_WAIT) index = fls(TASK_UNINTERRUPTIBLE);
  return t.letters[index] ?? "?";
}

/**
 * The CPU a task last ran on: thread_info.cpu since 5.16 (commit
 * bcf9033e5449, "sched: move CPU field back into thread_info if
 * THREAD_INFO_IN_TASK=y"), task_struct.cpu from 4.9 to 5.15.
 */
export function taskCpu(task: Obj): number {
  if (task.hasMember("thread_info.cpu")) return task.member("thread_info.cpu").number();
  return task.member("cpu").number();
}

/**
 * The other threads of a leader: signal->thread_head linked through
 * thread_node (3.14+, commit 0c740d0afc3b, "introduce for_each_thread() to
 * replace the buggy while_each_thread()"); the thread_group ring, which
 * 6.7 removed (commit 8e1f385104ac), where that is all there is.
 */
function threadsOf(k: TypedKernel, leader: Obj, budget: number): Obj[] {
  if (leader.hasMember("thread_node") && k.hasMember("struct signal_struct", "thread_head")) {
    const signal = leader.member("signal").ptr();
    if (signal === 0n) return [leader];
    const head = k.obj("struct signal_struct", signal).member("thread_head");
    return listEntries(k, head, "struct task_struct", "thread_node", { budget });
  }
  return [leader, ...listEntries(k, leader.member("thread_group"), "struct task_struct", "thread_group", { budget })];
}

export function listTasks(k: TypedKernel, opts: TaskListOptions = {}): TaskInfo[] {
  let budget = opts.budget ?? LIST_BUDGET;
  const states = stateTable(k);
  const initTask = k.global("init_task", "struct task_struct");
  const cpus = k.onlineCpus();
  const curr = new Set<bigint>();
  const idle = new Map<bigint, number>();
  for (const cpu of cpus) {
    const rq = k.perCpu("runqueues", cpu);
    curr.add(rq.member("curr").ptr());
    idle.set(rq.member("idle").ptr(), cpu);
  }

  const leaders = listEntries(k, initTask.member("tasks"), "struct task_struct", "tasks", { budget });
  budget -= leaders.length;
  const seen = new Set<bigint>();
  const out: TaskInfo[] = [];
  const add = (t: Obj) => {
    if (seen.has(t.address)) return;
    seen.add(t.address);
    const parent = t.member("real_parent").ptr();
    const isIdle = idle.has(t.address) || t.address === initTask.address;
    out.push({
      address: t.address,
      pid: t.member("pid").number(),
      tgid: t.member("tgid").number(),
      // init_task and the idle tasks are their own real parents: ps shows 0.
      ppid: parent === 0n || parent === t.address ? 0 : k.obj("struct task_struct", parent).member("tgid").number(),
      comm: t.member("comm").string(),
      state: stateLetter(states, t.member(states.field).u32(), t.member("exit_state").u32()),
      cpu: idle.get(t.address) ?? taskCpu(t),
      active: curr.has(t.address),
      idle: isIdle,
    });
  };
  add(initTask);
  for (const a of [...idle.keys()].sort((x, y) => idle.get(x)! - idle.get(y)!)) add(k.obj("struct task_struct", a));
  for (const leader of leaders) {
    const threads = threadsOf(k, leader, budget);
    budget -= threads.length;
    if (budget < 0) throw new GuestcoreError(`more than ${opts.budget ?? LIST_BUDGET} tasks: the task lists do not end`);
    // The leader first, then its threads in list order.
    add(leader);
    for (const t of threads) add(t);
  }
  return out;
}

/** The task a CPU was running: its runqueue's curr. */
export function cpuCurrent(k: TypedKernel, cpu: number): Obj {
  return k.perCpu("runqueues", cpu).member("curr").deref();
}
