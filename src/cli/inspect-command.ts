// `guestcore bt`, `mounts`, `mem`, `read` and `map`: the panicking CPU's
// registers, the mount table, memory by zone and by page class, raw
// memory as a hexdump, and a picture of physical memory, from the dump
// alone (VMCOREINFO, kallsyms and the kernel's BTF; no vmlinux).
import type { Command } from "commander";
import { GuestcoreError, hex } from "../core/errors.js";
import type { GuestImage } from "../image.js";
import { Kallsyms } from "../introspect/kallsyms.js";
import { parseSize } from "../sources/raw.js";
import { writeFileAtomic } from "../writers/atomic-file.js";
import { TypedKernel } from "../analysis/typed.js";
import { KernelSymbols } from "../analysis/symbols.js";
import { crashRegisters, stackText, taskStack, X86_64_REGS, type CpuState, type StackSlot } from "../analysis/registers.js";
import { listMounts } from "../analysis/mounts.js";
import { ClassBins, listZones, memoryCounters, zoneBins, CLASS_NAMES, type ZoneInfo } from "../analysis/memory.js";
import { utsName } from "../analysis/utsname.js";
import { GuestPageUse } from "../analysis/page-use.js";
import { panicInfo } from "../analysis/system.js";
import { addr, parseQuery, withImage, withInput, withTyped, type InputOpts } from "./analysis-command.js";
import { hexdumpLines } from "./hexdump.js";
import { mapTotals, memoryMapSvg, mib, svgToPng } from "./map-svg.js";

/** `guestcore read` reads at most this much (a hexdump of 16 MiB is already 70 MiB of text). */
export const READ_MAX = 16 << 20;
const KERNEL_HALF = 0xffff800000000000n;

const h16 = (v: bigint) => v.toString(16).padStart(16, "0");

function cpuJson(c: CpuState, stack?: StackSlot[]) {
  return {
    note: c.note.index, cpu: c.cpu, cpuFrom: c.cpuFrom, notePid: c.note.pid, kernelMode: c.kernelMode,
    task: c.task && { ...c.task, address: addr(c.task.address) }, pidAgrees: c.pidAgrees,
    rip: h16(c.note.regs.rip), ripSymbol: c.ripSymbol,
    registers: Object.fromEntries(X86_64_REGS.map((r) => [r, h16(c.note.regs[r])])),
    stack: c.stack && { base: addr(c.stack.base), top: addr(c.stack.top), onTaskStack: c.stack.onTaskStack },
    stackText: stack?.map((s) => ({ slot: addr(s.slot), value: addr(s.value), symbol: s.symbol })),
  };
}

/** Registers three to a line, as crash's bt prints an exception frame. */
function registerLines(c: CpuState): string[] {
  const r = c.note.regs;
  const f = (n: string, v: bigint) => `${n.toUpperCase().padStart(3)}: ${h16(v)}`;
  const rows = [
    [["rip", r.rip], ["rsp", r.rsp], ["rflags", r.eflags]],
    [["rax", r.rax], ["rbx", r.rbx], ["rcx", r.rcx]], [["rdx", r.rdx], ["rsi", r.rsi], ["rdi", r.rdi]],
    [["rbp", r.rbp], ["r8", r.r8], ["r9", r.r9]], [["r10", r.r10], ["r11", r.r11], ["r12", r.r12]],
    [["r13", r.r13], ["r14", r.r14], ["r15", r.r15]],
  ] as [string, bigint][][];
  const out = rows.map((row) => "    " + row.map(([n, v]) => f(n, v)).join("  "));
  out.push(`    ORIG_RAX: ${h16(r.orig_rax)}  CS: ${h16(r.cs).slice(-4)}  SS: ${h16(r.ss).slice(-4)}  FS_BASE: ${h16(r.fs_base)}  GS_BASE: ${h16(r.gs_base)}`);
  return out;
}

function scan(k: TypedKernel, syms: KernelSymbols, c: CpuState): StackSlot[] | undefined {
  if (!c.kernelMode || !c.stack) return undefined;
  return stackText(k, syms, c.note.regs.rsp, c.stack.top);
}

export function registerInspect(program: Command): void {
  withInput(program.command("bt"))
    .description("the panicking CPU's registers from the dump's PRSTATUS notes, its task, RIP as a symbol (modules too), and the text addresses on its kernel stack")
    .option("--all", "every CPU's note, not only the panicking CPU's")
    .option("--no-stack", "leave out the stack's text addresses")
    .addHelpText("after", [
      "",
      "ELF vmcores and kdump files carry one NT_PRSTATUS note per CPU. QEMU writes the vCPU",
      "index + 1 as the note's pid, the kernel (kdump) the running task's pid; guestcore matches",
      "each note to its CPU by GS base (the CPU's per-CPU area in kernel mode) or note order,",
      "and to the task that CPU's runqueue ran. Raw memory images and QMP sources have no notes:",
      "bt then names panic_cpu's task and lists the text addresses on its whole stack.",
      "The stack list is crash's `bt -t` (every text address from RSP up), not an unwind.",
      "",
      "Examples:",
      "  guestcore bt vmcore.elf",
      "  guestcore bt vmcore.kdump --all --json | jq '.cpus[].ripSymbol'",
    ].join("\n"))
    .action((input: string, o: InputOpts & { all?: boolean; stack: boolean }) => {
      const out = withTyped(input, o, (k, img) => {
        const syms = new KernelSymbols(k);
        const regs = crashRegisters(k, img.source.notes, syms);
        const panic = panicInfo(k);
        const shown = o.all ? regs.cpus : regs.panicking ? [regs.panicking] : [];
        const stacks = shown.map((c) => (o.stack ? scan(k, syms, c) : undefined));
        let taskStackText: StackSlot[] | undefined;
        if (regs.missing && panic.task && o.stack) {
          const s = taskStack(k, k.obj("struct task_struct", panic.task.address));
          taskStackText = stackText(k, syms, s.base, s.top);
        }
        return { regs, panic, shown, stacks, taskStackText };
      });
      const { regs, panic } = out;
      if (o.json) {
        console.log(JSON.stringify({
          writer: regs.writer, missing: regs.missing, panicCpu: regs.panicCpu,
          panicTask: panic.task && { ...panic.task, address: addr(panic.task.address) },
          cpus: out.shown.map((c, i) => cpuJson(c, out.stacks[i])),
          taskStackText: out.taskStackText?.map((s) => ({ slot: addr(s.slot), value: addr(s.value), symbol: s.symbol })),
        }, null, 2));
        return;
      }
      if (panic.task) console.log(`PANIC CPU: ${panic.cpu}  PID: ${panic.task.pid}  TASK: ${addr(panic.task.address)}  COMMAND: "${panic.task.comm}"`);
      else console.log("no CPU entered panic() (panic_cpu is unset)");
      if (regs.missing) {
        console.log(`no registers: ${regs.missing}`);
        if (out.taskStackText) {
          console.log("text addresses on the panic task's whole stack (as crash's bt -T):");
          for (const s of out.taskStackText) console.log(`  [${addr(s.slot)}] ${s.symbol} at ${addr(s.value)}`);
        }
        return;
      }
      if (!out.shown.length) {
        console.log(regs.panicCpu === undefined ? `${regs.cpus.length} PRSTATUS notes; --all shows them`
          : `no PRSTATUS note belongs to CPU ${regs.panicCpu} (${regs.cpus.length} notes; --all shows them)`);
      }
      out.shown.forEach((c, i) => {
        const who = c.task ? `PID: ${c.task.pid}  TASK: ${addr(c.task.address)}  COMMAND: "${c.task.comm}"` : "task unknown";
        const from = `${regs.writer === "qemu" ? "QEMU's" : "the kernel's"} note ${c.note.index}${c.cpuFrom ? `, CPU by ${c.cpuFrom === "gs_base" ? "GS base" : "note order"}` : ""}`;
        console.log(`\nCPU: ${c.cpu ?? "?"}  ${who}  (${from}${c.kernelMode ? "" : ", user mode"})`);
        console.log(`    RIP is ${c.ripSymbol ?? "not a kernel symbol"}`);
        for (const l of registerLines(c)) console.log(l);
        const st = out.stacks[i];
        if (st) {
          const where = c.stack!.onTaskStack ? "the task's stack" : "a stack other than the task's (IRQ or exception stack)";
          console.log(`  text addresses from RSP up, on ${where} [${addr(c.stack!.base)}, ${addr(c.stack!.top)}):`);
          for (const s of st) console.log(`  [${addr(s.slot)}] ${s.symbol} at ${addr(s.value)}`);
        }
      });
    });

  withInput(program.command("mounts"))
    .description("the mount table of init's mount namespace (or a task's): device, filesystem type, mount point, through the kernel's BTF (no vmlinux)")
    .option("--pid <pid>", "the mount namespace of this process instead of init_task's")
    .addHelpText("after", [
      "",
      "In the namespace's order, as crash's `mount` and /proc/mounts list them. Paths are",
      "built as drgn's d_path() does, across mount points; MOUNT and SUPERBLK are addresses.",
      "",
      "Examples:",
      "  guestcore mounts vmcore.elf",
      "  guestcore mounts mem.raw --json | jq -r '.[] | select(.fstype == \"tmpfs\") | .path'",
    ].join("\n"))
    .action((input: string, o: InputOpts & { pid?: string }) => {
      const pid = o.pid === undefined ? undefined : Number(o.pid);
      if (pid !== undefined && !(Number.isInteger(pid) && pid >= 0)) throw new GuestcoreError(`--pid takes a process id, not "${o.pid}"`);
      const mounts = withTyped(input, o, (k) => listMounts(k, { pid }));
      if (o.json) {
        console.log(JSON.stringify(mounts.map((m) => ({ ...m, address: addr(m.address), superblock: addr(m.superblock) })), null, 2));
        return;
      }
      const tw = Math.max(4, ...mounts.map((m) => m.fstype.length));
      const dw = Math.max(7, ...mounts.map((m) => m.device.length));
      console.log(`${"MOUNT".padEnd(16)}  ${"SUPERBLK".padEnd(16)}  ${"TYPE".padEnd(tw)}  ${"DEVNAME".padEnd(dw)}  DIRNAME`);
      for (const m of mounts) console.log(`${addr(m.address)}  ${addr(m.superblock)}  ${m.fstype.padEnd(tw)}  ${m.device.padEnd(dw)}  ${m.path}`);
    });

  withInput(program.command("mem"))
    .description("memory by zone (spanned, present, managed, free pages, watermarks, from the kernel's BTF) and by page class (makedumpfile's classes, per zone)")
    .option("--no-pages", "leave out the page classes (no pass over mem_map)")
    .option("--level <n>", "dump level whose classes to count", "31")
    .addHelpText("after", [
      "",
      "ZONES is crash's `kmem -z`: SPANNED (its SIZE), PRESENT, MANAGED, FREE (vm_stat",
      "NR_FREE_PAGES) and BUDDY (the free lists, sum of nr_free << order). TOTAL MEM and FREE",
      "are `kmem -i`'s. CLASSES counts every pfn of each zone's span by the class the page",
      "filter gives it at the dump level (kernel = kept; hole = no RAM in the dump).",
      "",
      "Examples:",
      "  guestcore mem vmcore.elf",
      "  guestcore mem mem.raw --json | jq '.zones[] | {name, managed, free}'",
    ].join("\n"))
    .action((input: string, o: InputOpts & { pages: boolean; level: string }) => {
      const level = Number(o.level);
      if (!(Number.isInteger(level) && level >= 0 && level <= 31)) throw new GuestcoreError(`--level takes 0 to 31, not "${o.level}"`);
      const out = withTyped(input, o, (k, img) => {
        const zones = listZones(k);
        const counters = memoryCounters(k);
        let classes;
        if (o.pages) {
          const { zones: spanned, bins } = zoneBins(zones);
          const use = new GuestPageUse(img.source, img.kernel, img.core);
          const all = ClassBins.uniform(use.maxPfn, use.maxPfn || 1);
          const r = use.run(level, (w) => {
            bins.add(w);
            all.add(w);
          });
          classes = { level, maxPfn: use.maxPfn, unreadable: r.unreadable, all: all.total(), zones: spanned.map((z, i) => ({ node: z.node, zone: z.name, ...bins.bin(i) })) };
        }
        return { zones, counters, classes };
      });
      if (o.json) {
        console.log(JSON.stringify({ ...out, zones: out.zones.map((z) => ({ ...z, address: addr(z.address) })) }, null, 2));
        return;
      }
      printMem(out.zones, out.counters, out.classes);
    });

  withInput(program.command("read"))
    .description("hexdump physical or kernel-virtual memory of the dump, as hexdump -C prints it; ADDRESS may be a symbol")
    .argument("<address>", "0x-prefixed address, 16 hex digits, a kallsyms NAME or NAME+OFFSET")
    .argument("[length]", `bytes to read (decimal, 0x hex, or with K/M; at most ${READ_MAX / 2 ** 20} MiB)`, "256")
    .option("--phys", "ADDRESS is physical")
    .option("--virt", "ADDRESS is kernel virtual (through the kernel's page tables)")
    .option("--no-squeeze", "print repeated lines instead of one \"*\" (hexdump -v)")
    .addHelpText("after", [
      "",
      "A symbol or an address in the kernel half (0xffff8...) is virtual, anything else",
      "physical, unless --phys or --virt says otherwise. The output equals `hexdump -C`",
      "of the same bytes (addresses 16 hex digits for virtual reads). A range that is not",
      "mapped, or not in the dump (a filtered dump lacks excluded pages), is an error.",
      "",
      "Examples:",
      "  guestcore read vmcore.elf init_uts_ns 0x90",
      "  guestcore read mem.raw 0x1000 4K --phys",
      "  guestcore read vmcore.elf jiffies_64 8 --json",
    ].join("\n"))
    .action((input: string, address: string, length: string, o: InputOpts & { phys?: boolean; virt?: boolean; squeeze: boolean }) => {
      if (o.phys && o.virt) throw new GuestcoreError("give --phys or --virt, not both");
      const len = parseSize(length);
      if (len < 1 || len > READ_MAX) throw new GuestcoreError(`length ${len}: give 1 to ${READ_MAX} bytes`);
      const q = parseQuery(address);
      const out = withImage(input, o, (img) => readMemory(img, q, len, o.phys ? "phys" : o.virt ? "virt" : undefined));
      if (o.json) {
        console.log(JSON.stringify({
          address: addr(out.address), space: out.space, length: len, symbol: out.symbol,
          physical: out.physical === undefined ? undefined : hex(out.physical), hex: Buffer.from(out.bytes).toString("hex"),
        }, null, 2));
        return;
      }
      process.stdout.write(hexdumpLines(out.bytes, out.address, { width: out.space === "virtual" ? 16 : 8, squeeze: o.squeeze }));
    });

  withInput(program.command("map"))
    .description("draw the guest's physical memory as an SVG (or PNG) grid: each cell a pfn range coloured by its pages' dominant class, with a legend and totals")
    .requiredOption("-o, --output <file>", "the SVG to write")
    .option("--png", "also write a PNG beside it (FILE with .png), through rsvg-convert (librsvg2-bin)")
    .option("--level <n>", "dump level whose classes to draw", "31")
    .option("--cells <n>", "at most this many cells (each a power-of-two number of pages)", "4096")
    .addHelpText("after", [
      "",
      "Classes are the page filter's (makedumpfile's): kernel (kept), page cache, private",
      "cache, user, free, zero-filled, hwpoison/offline, hole. The legend's totals are the",
      "page counts `guestcore info` reports; the title has the guest's node name and kernel.",
      "",
      "Examples:",
      "  guestcore map vmcore.elf -o map.svg",
      "  guestcore map mem.raw -o map.svg --png --cells 8192",
    ].join("\n"))
    .action((input: string, o: InputOpts & { output: string; png?: boolean; level: string; cells: string }) => {
      const level = Number(o.level);
      const maxCells = Number(o.cells);
      if (!(Number.isInteger(level) && level >= 0 && level <= 31)) throw new GuestcoreError(`--level takes 0 to 31, not "${o.level}"`);
      if (!(Number.isInteger(maxCells) && maxCells >= 64 && maxCells <= 1 << 16)) throw new GuestcoreError(`--cells takes 64 to 65536, not "${o.cells}"`);
      const r = withImage(input, o, (img) => drawMap(img, level, maxCells));
      writeFileAtomic(o.output, Buffer.from(r.svg));
      let png: string | undefined;
      if (o.png) {
        png = o.output.replace(/\.svg$/i, "") + ".png";
        writeFileAtomic(png, svgToPng(r.svg));
      }
      if (o.json) {
        console.log(JSON.stringify({ svg: o.output, png, title: r.title, maxPfn: r.maxPfn, pfnsPerCell: r.pfnsPerCell, unreadable: r.unreadable, totals: r.totals }, null, 2));
        return;
      }
      console.log(`${o.output}${png ? ` and ${png}` : ""}: ${r.title}, ${r.maxPfn} pages, ${r.pfnsPerCell} a cell`);
      for (const t of r.totals) console.log(`  ${t.label.padEnd(28)} ${mib(t.pages).padStart(8)} MiB  ${t.percent.toFixed(1).padStart(5)}%`);
      if (r.unreadable) console.log(`  (${r.unreadable} kept pages have no data in this dump: drawn as kernel pages, not checked for zeros)`);
    });
}

interface ReadResult {
  address: bigint;
  space: "physical" | "virtual";
  bytes: Uint8Array;
  symbol?: string;
  /** For a virtual read, where its first byte lies physically. */
  physical?: number;
}

/** Read `len` bytes at a parsed ADDRESS; `space` undefined means: symbols and the kernel half virtual, the rest physical. */
export function readMemory(img: GuestImage, q: ReturnType<typeof parseQuery>, len: number, space?: "phys" | "virt"): ReadResult {
  let address: bigint;
  let symbol: string | undefined;
  if ("name" in q) {
    const ks = Kallsyms.load(img.kernel);
    if (!ks) throw new GuestcoreError("VMCOREINFO has no kallsyms symbols (Linux 6.0+ exports them): give an address");
    const base = ks.lookup(q.name);
    if (base === undefined) throw new GuestcoreError(`no symbol ${q.name}`);
    address = BigInt.asUintN(64, base + q.plus);
    symbol = q.plus ? `${q.name}+0x${q.plus.toString(16)}` : q.name;
  } else {
    address = q.address;
  }
  const virt = space === "virt" || (space === undefined && (symbol !== undefined || address >= KERNEL_HALF));
  if (virt) {
    const t = img.translate(address);
    if (t === undefined) throw new GuestcoreError(`virtual address ${hex(address)} is not mapped by the kernel's page tables`);
    return { address, space: "virtual", bytes: img.readVirt(address, len), symbol, physical: t };
  }
  if (symbol) throw new GuestcoreError(`${symbol} is a virtual address: leave out --phys`);
  if (address + BigInt(len) > BigInt(Number.MAX_SAFE_INTEGER)) throw new GuestcoreError(`physical address ${hex(address)} is beyond any guest's memory`);
  return { address, space: "physical", bytes: img.readPhys(Number(address), len) };
}

/**
 * Every page the guest had, also from a filtered kdump (its bitmap 1 and
 * mem_map: GuestPageUse), so that a -d 31 dump draws the same picture as
 * the memory it came from.
 */
function drawMap(img: GuestImage, level: number, maxCells: number) {
  const use = new GuestPageUse(img.source, img.kernel, img.core);
  const maxPfn = use.maxPfn;
  let per = 1;
  while (Math.ceil(maxPfn / per) > maxCells) per *= 2;
  const bins = ClassBins.uniform(maxPfn, per);
  const r = use.run(level, bins.add);
  const uts = utsName(img.kernel);
  let zones: ZoneInfo[] | undefined;
  try {
    zones = listZones(TypedKernel.load(img.kernel));
  } catch {
    // Zones are a caption; a kernel without BTF still gets its map.
    zones = undefined;
  }
  const title = `guest "${uts.nodename}" — Linux ${uts.release} (${uts.machine})`;
  const input = { bins, pfnsPerCell: per, maxPfn, title, zones, level };
  return { svg: memoryMapSvg(input), title, maxPfn, pfnsPerCell: per, totals: mapTotals(input), unreadable: r.unreadable };
}

function printMem(zones: ZoneInfo[], c: ReturnType<typeof memoryCounters>,
  classes?: { level: number; maxPfn: number; unreadable: number; all: Record<string, number>; zones: Record<string, number | string>[] }) {
  const n = (v: number | undefined, w: number) => String(v ?? "-").padStart(w);
  console.log(`NODE ZONE ${"NAME".padEnd(8)} ${"ADDRESS".padEnd(16)} ${"START_PFN".padStart(10)} ${"SPANNED".padStart(9)} ${"PRESENT".padStart(9)} ${"MANAGED".padStart(9)} ${"FREE".padStart(9)} ${"BUDDY".padStart(9)}  MIN/LOW/HIGH`);
  for (const z of zones) {
    console.log(`${n(z.node, 4)} ${n(z.index, 4)} ${z.name.padEnd(8)} ${addr(z.address)} ${n(z.startPfn, 10)} ${n(z.spanned, 9)} ${n(z.present, 9)} ${n(z.managed, 9)} ${n(z.free, 9)} ${n(z.freeArea, 9)}  ${z.watermarks.min}/${z.watermarks.low}/${z.watermarks.high}`);
  }
  // Whole percents rounded down, as crash's kmem -i prints them.
  const pct = (v: number) => `${Math.floor((100 * v) / c.totalram)}%`;
  console.log("");
  console.log(`   TOTAL MEM ${n(c.totalram, 9)} pages ${mib(c.totalram).padStart(8)} MiB`);
  const free = c.zone.NR_FREE_PAGES;
  if (free !== undefined) console.log(`        FREE ${n(free, 9)} pages ${mib(free).padStart(8)} MiB  ${pct(free)} of TOTAL MEM`);
  const slab = (c.node.NR_SLAB_RECLAIMABLE_B ?? 0) + (c.node.NR_SLAB_UNRECLAIMABLE_B ?? 0);
  const rows: [string, number | undefined][] = [["FILE PAGES", c.node.NR_FILE_PAGES], ["SHMEM", c.node.NR_SHMEM], ["ANON", c.node.NR_ANON_MAPPED], ["SLAB", slab], ["PAGE TABLES", c.node.NR_PAGETABLE]];
  for (const [name, v] of rows) if (v !== undefined) console.log(`${name.padStart(12)} ${n(v, 9)} pages ${mib(v).padStart(8)} MiB  ${pct(v)} of TOTAL MEM`);
  if (!classes) return;
  console.log("");
  console.log(`page classes at dump level ${classes.level}, pages (all memory: ${classes.maxPfn} pfns):`);
  const cols = CLASS_NAMES.filter((k) => k !== "hwpoison" && k !== "offline" || classes.all[k] > 0);
  console.log(`${"".padEnd(13)}${cols.map((k) => k.padStart(13)).join("")}`);
  for (const z of classes.zones) console.log(`${String(`${z.node}:${z.zone}`).padEnd(13)}${cols.map((k) => n(z[k] as number, 13)).join("")}`);
  console.log(`${"all".padEnd(13)}${cols.map((k) => n(classes.all[k], 13)).join("")}`);
  if (classes.unreadable) console.log(`(${classes.unreadable} kept pages have no data in this dump: counted as kernel pages, not checked for zeros)`);
}
