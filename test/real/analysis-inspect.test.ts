// The panicking CPU's registers, mounts, zones and memory totals, read by
// guestcore from the dump alone (BTF, kallsyms, the PRSTATUS notes),
// against crash 8.0.2 (`bt`, `bt -t`, `bt -T`, `sym`, `mount`, `kmem -z`,
// `kmem -i`) on the QEMU ELF, and drgn 0.0.22 with the debug vmlinux
// (crashed_thread's registers, for_each_mount/mount_src/mount_dst/
// mount_fstype, the zones' DWARF-typed fields, prog.read) on guestcore's
// -d 31 ELF output, which drgn can read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GuestImage } from "../../src/image.js";
import { TypedKernel } from "../../src/analysis/typed.js";
import { KernelSymbols } from "../../src/analysis/symbols.js";
import { crashRegisters, stackText, taskStack, X86_64_REGS, type CrashRegisters, type StackSlot } from "../../src/analysis/registers.js";
import { listMounts, type MountInfo } from "../../src/analysis/mounts.js";
import { ClassBins, listZones, memoryCounters, zoneBins, type ZoneInfo } from "../../src/analysis/memory.js";
import { panicInfo } from "../../src/analysis/system.js";
import { REAL_PROFILES, realFixture } from "../helpers/real.js";
import { crashOracle, crashStack, crashZones, drgnOracle } from "../helpers/inspect-oracle.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const EXTRA = ["q35-256m-la57", "q35-256m-nokaslr", "pc-256m-cloud", "q35-4g", "pc-4g"];
const PROFILES = [...new Set([...REAL_PROFILES, ...(process.env.GUESTCORE_SHAPES ?? EXTRA.join(",")).split(",").filter((p) => EXTRA.includes(p))])];

interface Ours {
  regs: CrashRegisters;
  stack?: StackSlot[];
  wholeStack: StackSlot[];
  panicTask?: { pid: number; comm: string; address: bigint };
  mounts: MountInfo[];
  zones: ZoneInfo[];
  counters: ReturnType<typeof memoryCounters>;
  ms: Record<string, number>;
}

function ours(input: string): Ours {
  const img = GuestImage.open(input);
  try {
    const ms: Record<string, number> = {};
    const time = <T>(name: string, f: () => T): T => {
      const t0 = performance.now();
      const r = f();
      ms[name] = performance.now() - t0;
      return r;
    };
    const k = TypedKernel.load(img.kernel);
    const syms = new KernelSymbols(k);
    const regs = time("registers", () => crashRegisters(k, img.source.notes, syms));
    const p = regs.panicking;
    const stack = time("stack", () => (p?.stack ? stackText(k, syms, p.note.regs.rsp, p.stack.top) : undefined));
    const panicTask = panicInfo(k).task;
    const s = taskStack(k, k.obj("struct task_struct", panicTask!.address));
    const wholeStack = stackText(k, syms, s.base, s.top);
    const mounts = time("mounts", () => listMounts(k));
    const zones = time("zones", () => listZones(k));
    const counters = memoryCounters(k);
    return { regs, stack, wholeStack, panicTask, mounts, zones, counters, ms };
  } finally {
    img.close();
  }
}

const fmt = (ms: Record<string, number>) => Object.entries(ms).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(", ");

for (const profile of PROFILES) {
  test(`${profile}: the panicking task, CPU and registers equal crash's bt and drgn's crashed_thread; the RIP's symbol crash's sym; the stack's text crash's bt -t/-T`, () => {
    const fx = realFixture(profile);
    const got = ours(fx.elf);
    const drgn = drgnOracle(fx);
    const crash = crashOracle(fx, "0x" + BigInt(drgn.crashed.regs.rip).toString(16));
    const p = got.regs.panicking;
    assert.ok(p, "a note belongs to panic_cpu");
    assert.equal(got.regs.writer, "qemu");

    // crash's bt: PID, TASK, CPU, COMMAND of the panic task.
    const bt = /PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)\s+COMMAND: "([^"]*)"/.exec(crash.bt)!;
    assert.ok(bt, crash.bt);
    assert.deepEqual({ pid: p.task!.pid, task: p.task!.address, cpu: p.cpu, comm: p.task!.comm },
      { pid: Number(bt[1]), task: BigInt("0x" + bt[2]), cpu: Number(bt[3]), comm: bt[4] });
    assert.equal(p.cpu, got.regs.panicCpu);
    assert.equal(p.cpuFrom, "gs_base");
    // drgn's crashed thread: the same task, and the registers of its PRSTATUS.
    assert.deepEqual({ pid: p.task!.pid, comm: p.task!.comm, cpu: p.cpu, address: p.task!.address },
      { pid: drgn.crashed.tid, comm: drgn.crashed.comm, cpu: drgn.crashed.cpu, address: BigInt(drgn.crashed.address) });
    const rename: Record<string, string> = { eflags: "rflags", fs_base: "fs.base", gs_base: "gs.base" };
    let compared = 0;
    for (const r of X86_64_REGS) {
      const theirs = drgn.crashed.regs[rename[r] ?? r];
      if (theirs === undefined) continue;
      assert.equal(p.note.regs[r], BigInt(theirs), r);
      compared++;
    }
    assert.ok(compared >= 24, `${compared} registers compared`);

    // crash's sym of the RIP: "ADDR (t) name+DECIMAL [module]".
    const sym = /^[0-9a-f]+ \((\w)\) ([^+\s]+)\+(\d+)(?: \[(\S+)\])?/m.exec(crash.sym)!;
    assert.ok(sym, crash.sym);
    assert.match(p.ripSymbol!, new RegExp(`^${sym[2]}\\+0x${Number(sym[3]).toString(16)}/0x[0-9a-f]+${sym[4] ? ` \\[${sym[4]}\\]` : ""}$`));

    // crash's bt -t starts where its own search finds panic(); from there on
    // its list is ours, which starts at the note's RSP. bt -T lists the whole stack.
    const t = crashStack(crash["bt -t"]);
    assert.ok(t.length >= 5, crash["bt -t"]);
    const from = got.stack!.findIndex((s) => s.slot === t[0].slot);
    assert.ok(from >= 0, `crash's first slot ${t[0].slot.toString(16)} is in ours`);
    assert.deepEqual(got.stack!.slice(from), t);
    assert.ok(got.stack![0].slot >= p.note.regs.rsp);
    assert.deepEqual(got.wholeStack, crashStack(crash["bt -T"]));

    // The same from QEMU's kdump (its notes travel in the kdump header); none in the raw file.
    const kd = ours(join(fx.dir, "vmcore.kdump-zlib"));
    assert.deepEqual(kd.regs, got.regs);
    const raw = ours(fx.raw);
    assert.equal(raw.regs.cpus.length, 0);
    assert.match(raw.regs.missing!, /no PRSTATUS notes/);
    assert.deepEqual(raw.panicTask, got.panicTask);
    assert.deepEqual(raw.wholeStack, got.wholeStack);
    console.log(`${profile}: CPU ${p.cpu} pid ${p.task!.pid} (${p.task!.comm}), RIP ${p.ripSymbol}, ${got.stack!.length} stack text slots ` +
      `(crash bt -t ${t.length}); ${fmt(got.ms)}`);
  });

  test(`${profile}: mounts equal crash's mount and drgn's for_each_mount; zones crash's kmem -z and drgn's; totals kmem -i`, () => {
    const fx = realFixture(profile);
    const got = ours(fx.elf);
    const drgn = drgnOracle(fx);
    const crash = crashOracle(fx, "0x" + BigInt(drgn.crashed.regs.rip).toString(16));

    const rows = [...crash.mount.matchAll(/^([0-9a-f]{16}) ([0-9a-f]{16}) (\S+)\s+(\S+)\s+(\S+)\s*$/gm)]
      .map((m) => ({ address: BigInt("0x" + m[1]), superblock: BigInt("0x" + m[2]), fstype: m[3], device: m[4], path: m[5] }));
    assert.ok(rows.length >= 4, crash.mount);
    assert.deepEqual(got.mounts.map((m) => ({ address: m.address, superblock: m.superblock, fstype: m.fstype, device: m.device, path: m.path })), rows);
    assert.deepEqual(got.mounts.map((m) => ({ address: m.address, src: m.device, dst: m.path, fstype: m.fstype, id: m.id })),
      drgn.mounts.map((m) => ({ ...m, address: BigInt(m.address) })));

    const cz = crashZones(crash["kmem -z"]);
    assert.equal(got.zones.length, cz.length);
    got.zones.forEach((z, i) => {
      const c = cz[i];
      assert.equal(z.name, c.name);
      assert.equal(z.present > 0, c.populated, `${z.name} populated`);
      if (!c.populated) return;
      assert.deepEqual({ spanned: z.spanned, present: z.present, ...z.watermarks }, { spanned: c.size, present: c.present, min: c.min, low: c.low, high: c.high }, z.name);
      assert.deepEqual(Object.fromEntries(Object.keys(c.stats).map((s) => [s, z.stats[s]])), c.stats, `${z.name} VM_STAT`);
      // The buddy lists hold what NR_FREE_PAGES counts (the per-CPU lists are in neither).
      assert.equal(z.freeArea, z.free, `${z.name}: free lists and NR_FREE_PAGES`);
    });
    assert.deepEqual(got.zones.map((z) => ({ name: z.name, start: z.startPfn, spanned: z.spanned, present: z.present, managed: z.managed,
      nr_free: z.freeByOrder.map((p, o) => p / 2 ** o), vm_stat: Object.values(z.stats) })), drgn.zones);

    const field = (name: string) => Number(new RegExp(`^\\s*${name}\\s+(\\d+)`, "m").exec(crash["kmem -i"])![1]);
    assert.equal(got.counters.totalram, field("TOTAL MEM"));
    assert.equal(got.counters.totalram, drgn.totalram);
    assert.equal(got.counters.totalram, got.zones.reduce((s, z) => s + z.managed, 0));
    assert.equal(got.counters.zone.NR_FREE_PAGES, field("FREE"));
    // kmem -i's CACHED + BUFFERS is the file pages that are not swap cache.
    assert.equal(got.counters.node.NR_FILE_PAGES - (got.counters.node.NR_SWAPCACHE ?? 0), field("CACHED") + field("BUFFERS"));
    console.log(`${profile}: ${got.mounts.length} mounts, ${got.zones.filter((z) => z.present).length} populated zones; totalram ${got.counters.totalram}, free ${got.counters.zone.NR_FREE_PAGES}`);
  });
}

for (const profile of REAL_PROFILES) {
  test(`${profile}: page classes per zone add up to pageStats' counts, on every input form; the CLI prints them`, () => {
    const fx = realFixture(profile);
    for (const input of [fx.elf, fx.raw, join(fx.dir, "vmcore.kdump-zlib")]) {
      const img = GuestImage.open(input);
      try {
        const zones = listZones(TypedKernel.load(img.kernel));
        const { zones: spanned, bins } = zoneBins(zones);
        const all = ClassBins.uniform(img.filter.maxPfn, img.filter.maxPfn);
        const t0 = performance.now();
        const r = img.pageStats(31, (w) => {
          bins.add(w);
          all.add(w);
        });
        const ms = performance.now() - t0;
        const total = all.total();
        assert.deepEqual({ zero: total.zero, cache: total.cache, cachePrivate: total.cachePrivate, user: total.user, free: total.free, hwpoison: total.hwpoison, offline: total.offline }, r.counts);
        assert.equal(total.kernel, r.keptCount);
        assert.equal(total.hole, r.maxPfn - r.present);
        // Every page of a zone's span is counted once; the pfns outside every zone (pfn 0, the PCI hole) are holes or kernel pages.
        const inZones = spanned.reduce((s, z) => s + z.spanned, 0);
        const perZone = Object.values(bins.total()).reduce((a, b) => a + b, 0);
        assert.equal(perZone, inZones);
        for (const [i, z] of spanned.entries()) {
          const c = bins.bin(i);
          // A zone's free class (buddy pages not zero-filled) is at most its free lists.
          assert.ok(c.free <= z.freeArea, `${z.name}: ${c.free} free-class pages, ${z.freeArea} on the free lists`);
        }
        console.log(`${profile} ${input.split("/").pop()}: classes in ${ms.toFixed(0)} ms`);
      } finally {
        img.close();
      }
    }
    const j = JSON.parse(execFileSync(process.execPath, [CLI, "mem", fx.elf, "--json"], { encoding: "utf8" }));
    assert.ok(j.zones.length >= 2 && j.classes.all.kernel > 0);
    const text = execFileSync(process.execPath, [CLI, "mem", fx.elf], { encoding: "utf8" });
    assert.match(text, /^\s+TOTAL MEM\s+\d+ pages/m);
    const bt = execFileSync(process.execPath, [CLI, "bt", fx.elf], { encoding: "utf8" });
    assert.match(bt, /^PANIC CPU: 0  PID: \d+  TASK: [0-9a-f]{16}  COMMAND: "\S+"$/m);
    assert.match(bt, /RIP is \S+\+0x[0-9a-f]+\/0x[0-9a-f]+/);
    const btRaw = execFileSync(process.execPath, [CLI, "bt", fx.raw, "--json"], { encoding: "utf8" });
    assert.match(JSON.parse(btRaw).missing, /no PRSTATUS notes/);
    const mounts = JSON.parse(execFileSync(process.execPath, [CLI, "mounts", fx.raw, "--json"], { encoding: "utf8" }));
    assert.ok(mounts.some((m: { path: string; fstype: string }) => m.path === "/proc" && m.fstype === "proc"));
  });
}
