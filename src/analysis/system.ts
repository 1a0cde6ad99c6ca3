// When the kernel died and how long it had run, from its timekeeper, and
// why, from panic_cpu and the kernel log.
import { GuestcoreError } from "../core/errors.js";
import type { KernelLog } from "./printk.js";
import { cpuCurrent } from "./tasks.js";
import type { Obj, TypedKernel } from "./typed.js";

export interface KernelTimes {
  /** CLOCK_REALTIME at the last timekeeping update (the last tick before the dump). */
  crashTime: { sec: bigint; nsec: number; iso: string };
  /** CLOCK_BOOTTIME at the same moment: uptime, suspend included. */
  uptimeNs: bigint;
  /** jiffies_64, where kallsyms has it. */
  jiffies?: bigint;
  /** The clocksource's name (tsc, kvm-clock, ...). */
  clocksource?: string;
}

/**
 * tk_core (kernel/time/timekeeping.c) is an anonymous struct, { seq;
 * struct timekeeper timekeeper; } cacheline-aligned, so BTF has no type
 * for it: the timekeeper starts after the sequence counter, rounded up to
 * the timekeeper's 8-byte alignment. The counter is a
 * seqcount_raw_spinlock_t since 5.10 (commit 025e82bcbc34, "timekeeping:
 * Use sequence counter with associated raw spinlock"), a seqcount_t before.
 */
function timekeeper(k: TypedKernel): Obj {
  const seqType = k.has("seqcount_raw_spinlock_t") ? "seqcount_raw_spinlock_t" : "seqcount_t";
  const off = Math.ceil(k.btf.sizeOf(k.type(seqType)) / 8) * 8;
  const tk = k.obj("struct timekeeper", k.symbol("tk_core") + BigInt(off));
  const shift = tk.member("tkr_mono.shift").number();
  if (tk.member("tkr_mono.clock").ptr() === 0n || shift >= 64) {
    throw new GuestcoreError(`tk_core's timekeeper (at +${off}) has no clocksource or a shift of ${shift}: not a timekeeper`);
  }
  return tk;
}

export function kernelTimes(k: TypedKernel): KernelTimes {
  const tk = timekeeper(k);
  const shift = BigInt(tk.member("tkr_mono.shift").number());
  // xtime_nsec is shifted nanoseconds (tk_read_base's fixed point).
  const fracNs = tk.member("tkr_mono.xtime_nsec").u64() >> shift;
  const xtimeSec = tk.member("xtime_sec").value();
  const realNs = xtimeSec * 1_000_000_000n + fracNs;
  // CLOCK_MONOTONIC = xtime + wall_to_monotonic; CLOCK_BOOTTIME adds offs_boot.
  const wtm = tk.member("wall_to_monotonic");
  const monoNs = realNs + wtm.member("tv_sec").value() * 1_000_000_000n + wtm.member("tv_nsec").value();
  const uptimeNs = monoNs + tk.member("offs_boot").value();
  const sec = realNs / 1_000_000_000n;
  const nsec = Number(realNs % 1_000_000_000n);
  const ms = Number(realNs / 1_000_000n);
  const iso = Number.isSafeInteger(ms) && Math.abs(ms) < 8.64e15 ? new Date(ms).toISOString() : `${sec} s`;
  const j = k.symbols.lookup("jiffies_64");
  let clocksource: string | undefined;
  try {
    clocksource = tk.member("tkr_mono.clock").deref().member("name").string(64);
  } catch {
    clocksource = undefined;
  }
  return {
    crashTime: { sec, nsec, iso }, uptimeNs,
    jiffies: j === undefined ? undefined : k.obj("u64", j).u64(), clocksource,
  };
}

export interface PanicInfo {
  /** The text after "Kernel panic - not syncing: ", from the last such log record. */
  message?: string;
  /** panic_cpu, when a CPU entered panic(). */
  cpu?: number;
  /** The task that CPU was running. */
  task?: { pid: number; comm: string; address: bigint };
}

const PANIC_PREFIX = "Kernel panic - not syncing: ";

export function panicInfo(k: TypedKernel, log?: KernelLog): PanicInfo {
  const out: PanicInfo = {};
  if (log) {
    for (let i = log.records.length - 1; i >= 0; i--) {
      const t = log.records[i].text;
      if (t.startsWith(PANIC_PREFIX)) {
        out.message = t.slice(PANIC_PREFIX.length);
        break;
      }
    }
  }
  // panic_cpu is PANIC_CPU_INVALID (-1) until a CPU enters panic() (4.5+;
  // before that, no such variable).
  if (k.symbols.lookup("panic_cpu") !== undefined) {
    const cpu = k.global("panic_cpu", "atomic_t").member("counter").number();
    if (cpu >= 0 && cpu < k.nrCpuIds) {
      out.cpu = cpu;
      const t = cpuCurrent(k, cpu);
      out.task = { pid: t.member("pid").number(), comm: t.member("comm").string(), address: t.address };
    }
  }
  return out;
}
