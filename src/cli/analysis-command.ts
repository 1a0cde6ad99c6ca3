// `guestcore dmesg` and `guestcore sym`: the kernel log and kernel symbols
// from the dump alone, through VMCOREINFO (no vmlinux); `ps`, `mod` and
// `sys` through the kernel's own BTF as well.
import type { Command } from "commander";
import { GuestcoreError } from "../core/errors.js";
import type { Codecs } from "../codecs/codec.js";
import { GuestImage } from "../image.js";
import { Kallsyms, type KernelSymbol } from "../introspect/kallsyms.js";
import { formatKernelLog, readKernelLog, recordsUpTo, type PrintkRecord } from "../analysis/printk.js";
import { progressReporter } from "./progress.js";
import { TypedKernel } from "../analysis/typed.js";
import { listTasks, type TaskInfo } from "../analysis/tasks.js";
import { listModules } from "../analysis/modules.js";
import { kernelTimes, panicInfo } from "../analysis/system.js";
import { inputFormatOption } from "./input-format.js";

export interface InputOpts {
  vmcoreinfo?: string;
  layout?: string;
  inputFormat?: string;
  json?: boolean;
  /** Set by the program's preAction hook (src/cli.ts). */
  codecs?: Codecs;
}

const INPUT = "raw RAM image, QEMU memory-backend file, ELF vmcore, kdump-compressed or flattened file";

export function withInput(cmd: Command): Command {
  return cmd
    .argument("<input>", INPUT)
    .option("--json", "print machine-readable output")
    .option("--vmcoreinfo <file>", "use this VMCOREINFO text instead of the ELF note or a memory scan")
    .option("--layout <spec>", "physical layout of a raw image: PADDR:SIZE@FILEOFFSET,... (e.g. 0:2G@0,4G:2G@2G)")
    .addOption(inputFormatOption());
}

export function withImage<T>(input: string, o: InputOpts, use: (img: GuestImage) => T): T {
  const img = GuestImage.open(input, {
    vmcoreinfo: o.vmcoreinfo, layout: o.layout, format: o.inputFormat, codecs: o.codecs, onProgress: progressReporter(!o.json),
  });
  try {
    return use(img);
  } finally {
    img.close();
  }
}

function recordJson(r: PrintkRecord) {
  const ns = r.tsNsec <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(r.tsNsec) : r.tsNsec.toString();
  return {
    seq: r.seq, tsNsec: ns, time: `${r.tsNsec / 1_000_000_000n}.${(r.tsNsec % 1_000_000_000n).toString().padStart(9, "0")}`,
    level: r.level, facility: r.facility, caller: r.caller, text: r.text, subsystem: r.subsystem, device: r.device,
  };
}

/** 0x-prefixed, or 16 hex digits as kernel addresses print; anything else is a name, optionally NAME+OFFSET. */
export function parseQuery(q: string): { address: bigint } | { name: string; plus: bigint } {
  if (/^0x[0-9a-f]{1,16}$/i.test(q) || /^[0-9a-f]{16}$/i.test(q)) return { address: BigInt(q.startsWith("0x") || q.startsWith("0X") ? q : "0x" + q) };
  const m = /^([^+\s]+)(?:\+(0x[0-9a-f]{1,16}|\d{1,19}))?$/i.exec(q);
  if (!m) throw new GuestcoreError(`"${q}" is neither a symbol name, NAME+OFFSET, nor an address`);
  return { name: m[1], plus: m[2] ? BigInt(m[2]) : 0n };
}

export const addr = (a: bigint) => a.toString(16).padStart(16, "0");

export function registerAnalysis(program: Command): void {
  withInput(program.command("dmesg"))
    .description("print the kernel log from the dump's printk ring buffer (through VMCOREINFO, no vmlinux), as makedumpfile --dump-dmesg writes it")
    .option("--level <n>", "only records of syslog level N or more urgent (0 emerg, 3 err, 4 warning, 6 info, 7 debug)")
    .addHelpText("after", [
      "",
      "The text equals `makedumpfile --dump-dmesg` (1.7.2) byte for byte: \"[%5d.%06d] \" timestamps,",
      "continuation lines indented, unprintable bytes as \\xNN. --json adds each record's",
      "sequence number, level, facility, caller id and device (dev_printk) info.",
      "",
      "Examples:",
      "  guestcore dmesg vmcore.elf",
      "  guestcore dmesg mem.raw --level 3",
      "  guestcore dmesg vmcore.kdump --json | jq -r '.records[] | select(.subsystem == \"pci\") | .text'",
    ].join("\n"))
    .action((input: string, o: InputOpts & { level?: string }) => {
      const max = o.level === undefined ? undefined : Number(o.level);
      if (max !== undefined && !(Number.isInteger(max) && max >= 0 && max <= 7)) throw new GuestcoreError(`--level takes 0 to 7, not "${o.level}"`);
      const log = withImage(input, o, (img) => readKernelLog(img.kernel));
      const records = max === undefined ? log.records : recordsUpTo(log.records, max);
      for (const w of log.warnings) process.stderr.write(`guestcore: warning: ${w}\n`);
      if (o.json) {
        console.log(JSON.stringify({ form: log.form, warnings: log.warnings, records: records.map(recordJson) }, null, 2));
        return;
      }
      process.stdout.write(formatKernelLog(records));
    });

  withInput(program.command("sym"))
    .description("look kernel symbols up both ways in the kernel's own kallsyms table (through VMCOREINFO, Linux 6.0+): NAME -> address, ADDRESS -> name+offset/size")
    .argument("<query...>", "symbol NAME, NAME+OFFSET, or ADDRESS (0x-prefixed, or 16 hex digits)")
    .addHelpText("after", [
      "",
      "Addresses resolve as the kernel's %pS prints them (name+0xoffset/0xsize), inside the",
      "core kernel image [_stext, _end). An unknown name or an address outside it is reported",
      "on stderr and makes the exit status 1.",
      "",
      "Examples:",
      "  guestcore sym vmcore.elf schedule panic+0x10",
      "  guestcore sym mem.raw 0xffffffff96a1b2c5 --json",
    ].join("\n"))
    .action((input: string, qs: string[], o: InputOpts) => {
      const parsed = qs.map(parseQuery);
      const out = withImage(input, o, (img) => {
        const ks = Kallsyms.load(img.kernel);
        if (!ks) throw new GuestcoreError("VMCOREINFO has no kallsyms symbols (Linux 6.0+ exports them): no symbol table to look in");
        return parsed.map((p, i) => lookupOne(ks, qs[i], p));
      });
      const missing = out.filter((r) => r.error);
      if (o.json) console.log(JSON.stringify(out, null, 2));
      else {
        for (const r of out) {
          if (r.error) process.stderr.write(`guestcore: ${r.error}\n`);
          else if (r.offset === undefined) console.log(`${r.address} ${r.type} ${r.name}`);
          else console.log(`${r.address} ${r.type} ${r.symbol}`);
        }
      }
      if (missing.length) process.exitCode = 1;
    });

  registerTypedCommands(program);
}

interface SymAnswer {
  query: string;
  address?: string;
  name?: string;
  type?: string;
  offset?: string;
  size?: string;
  /** name+0xoff/0xsize */
  symbol?: string;
  error?: string;
}

function lookupOne(ks: Kallsyms, query: string, p: ReturnType<typeof parseQuery>): SymAnswer {
  if ("name" in p) {
    const s: KernelSymbol | undefined = ks.symbol(p.name);
    if (!s) return { query, error: `no symbol ${p.name}` };
    if (p.plus === 0n) return { query, address: addr(s.address), name: s.name, type: s.type };
    return located(ks, query, BigInt.asUintN(64, s.address + p.plus));
  }
  return located(ks, query, p.address);
}

function located(ks: Kallsyms, query: string, a: bigint): SymAnswer {
  const l = ks.locate(a);
  if (!l) return { query, address: addr(a), error: `${addr(a)} is not inside the kernel image's symbols` };
  return {
    query, address: addr(a), name: l.name, type: l.type, offset: "0x" + l.offset.toString(16), size: "0x" + l.size.toString(16),
    symbol: ks.format(a),
  };
}

// `guestcore ps`, `mod` and `sys`: kernel objects read through the kernel's
// own BTF and kallsyms (no vmlinux).

export function withTyped<T>(input: string, o: InputOpts, use: (k: TypedKernel, img: GuestImage) => T): T {
  return withImage(input, o, (img) => use(TypedKernel.load(img.kernel), img));
}

function taskJson(t: TaskInfo) {
  return { ...t, address: addr(t.address) };
}

function registerTypedCommands(program: Command): void {
  withInput(program.command("ps"))
    .description("list the tasks (threads included, and each CPU's idle task) from the dump, through the kernel's BTF and kallsyms (no vmlinux)")
    .addHelpText("after", [
      "",
      "Columns: PID, PPID (the real parent's tgid, as /proc shows it), TGID, the CPU it last",
      "ran on, the task_struct's address, ps's state letter (R S D T t X Z P I) and the",
      "command. \">\" marks the task each CPU was running when the dump was taken.",
      "",
      "Examples:",
      "  guestcore ps vmcore.elf",
      "  guestcore ps mem.raw --json | jq '.[] | select(.state == \"D\")'",
    ].join("\n"))
    .action((input: string, o: InputOpts) => {
      const tasks = withTyped(input, o, (k) => listTasks(k));
      if (o.json) {
        console.log(JSON.stringify(tasks.map(taskJson), null, 2));
        return;
      }
      console.log("    PID    PPID    TGID  CPU        TASK        ST  COMM");
      for (const t of tasks) {
        const n = (v: number, w: number) => String(v).padStart(w);
        console.log(`${t.active ? ">" : " "}${n(t.pid, 6)}  ${n(t.ppid, 6)}  ${n(t.tgid, 6)}  ${n(t.cpu, 3)}  ${addr(t.address)}  ${t.state}   ${t.comm}`);
      }
    });

  withInput(program.command("mod"))
    .description("list the loaded modules (struct module address, name, core base and size) from the kernel's modules list, through its BTF (no vmlinux)")
    .addHelpText("after", [
      "",
      "In list order, most recently loaded first, as lsmod prints them. SIZE is the module's",
      "core (core_layout on 4.5-6.3, the non-init mem[] regions on 6.4+), as crash's mod shows it.",
      "",
      "Examples:",
      "  guestcore mod vmcore.elf",
      "  guestcore mod vmcore.kdump --json | jq -r '.[].name'",
    ].join("\n"))
    .action((input: string, o: InputOpts) => {
      const mods = withTyped(input, o, (k) => listModules(k));
      if (o.json) {
        console.log(JSON.stringify(mods.map((m) => ({ ...m, address: addr(m.address), base: addr(m.base) })), null, 2));
        return;
      }
      const w = Math.max(4, ...mods.map((m) => m.name.length));
      console.log(`${"MODULE".padEnd(16)}  ${"NAME".padEnd(w)}  ${"BASE".padEnd(16)}  ${"SIZE".padStart(8)}  STATE`);
      for (const m of mods) console.log(`${addr(m.address)}  ${m.name.padEnd(w)}  ${addr(m.base)}  ${String(m.size).padStart(8)}  ${m.state.replace(/^MODULE_STATE_/, "")}`);
    });

  withInput(program.command("sys"))
    .description("when the kernel died and how long it had run (its timekeeper), the panic message, the panicking CPU and task")
    .addHelpText("after", [
      "",
      "DATE is CLOCK_REALTIME and UPTIME CLOCK_BOOTTIME at the last timekeeping update",
      "before the dump (the last tick), in UTC. PANIC is the last \"Kernel panic - not",
      "syncing\" line of the kernel log; the task is what panic_cpu was running.",
      "",
      "Examples:",
      "  guestcore sys vmcore.elf",
      "  guestcore sys mem.raw --json",
    ].join("\n"))
    .action((input: string, o: InputOpts) => {
      const out = withTyped(input, o, (k, img) => {
        let log;
        try {
          log = readKernelLog(img.kernel);
        } catch {
          log = undefined;
        }
        const times = kernelTimes(k);
        const panic = panicInfo(k, log);
        return {
          release: img.kernel.info.osrelease, cpus: k.nrCpuIds, online: k.onlineCpus(),
          date: times.crashTime.iso, crashTime: { sec: Number(times.crashTime.sec), nsec: times.crashTime.nsec },
          uptimeNs: Number(times.uptimeNs), jiffies: times.jiffies?.toString(), clocksource: times.clocksource,
          panic: { ...panic, task: panic.task && { ...panic.task, address: addr(panic.task.address) } },
        };
      });
      if (o.json) {
        console.log(JSON.stringify(out, null, 2));
        return;
      }
      const up = out.uptimeNs / 1e9;
      const hms = [Math.floor(up / 3600), Math.floor(up / 60) % 60, Math.floor(up) % 60].map((v) => String(v).padStart(2, "0")).join(":");
      const rows: [string, string | undefined][] = [
        ["RELEASE", out.release], ["CPUS", `${out.cpus} (online: ${out.online.join(",")})`], ["DATE", out.date],
        ["UPTIME", `${hms} (${up.toFixed(3)} s)`], ["CLOCKSOURCE", out.clocksource],
        ["PANIC", out.panic.message === undefined ? undefined : JSON.stringify(out.panic.message)],
        ["PANIC CPU", out.panic.cpu === undefined ? undefined : String(out.panic.cpu)],
        ["PANIC TASK", out.panic.task && `${out.panic.task.pid} (${out.panic.task.comm}) at ${out.panic.task.address}`],
      ];
      for (const [k, v] of rows) if (v !== undefined) console.log(`${k.padStart(12)}: ${v}`);
    });
}
