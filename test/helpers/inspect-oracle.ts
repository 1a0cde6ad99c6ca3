// crash 8.0.2 and drgn 0.0.22 (with the debug vmlinux) on a real capture,
// for the registers, mounts, zones and reads guestcore finds without
// vmlinux: run once per capture and script, kept beside the capture's
// other oracles (the build's random token names the capture).
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CACHE, oracleDir, type OracleTool, type RealFixture } from "./real.js";
import { scratchDir } from "./synthetic.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));

/** Kernel-data ranges drgn reads by its own (DWARF/ELF) symbols, for `guestcore read`. */
export const READS: [string, number][] = [["init_uts_ns", 0x90], ["linux_banner", 160], ["init_task", 9000], ["jiffies_64", 8]];

const DRGN = String.raw`
import json, sys, drgn
from drgn.helpers.linux.fs import for_each_mount, mount_src, mount_dst, mount_fstype
from drgn.helpers.linux.sched import task_cpu
vmlinux, core, reads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
prog = drgn.Program()
prog.set_core_dump(core)
prog.load_debug_info([vmlinux])
t = prog.crashed_thread()
task = t.object
regs = t.stack_trace()[0].registers()
out = {"crashed": dict(tid=t.tid, comm=task.comm.string_().decode(), cpu=task_cpu(task), address=task.value_(),
    regs={k: str(v) for k, v in regs.items()})}
out["mounts"] = [dict(address=m.value_(), src=mount_src(m).decode(), dst=mount_dst(m).decode(), fstype=mount_fstype(m).decode(),
    id=m.mnt_id.value_()) for m in for_each_mount(prog)]
pgdat = prog["node_data"][0]
out["zones"] = [dict(name=z.name.string_().decode(), start=z.zone_start_pfn.value_(), spanned=z.spanned_pages.value_(),
    present=z.present_pages.value_(), managed=z.managed_pages.counter.value_(),
    nr_free=[z.free_area[o].nr_free.value_() for o in range(len(z.free_area))],
    vm_stat=[x.counter.value_() for x in z.vm_stat]) for z in pgdat.node_zones]
out["totalram"] = prog["_totalram_pages"].counter.value_()
out["reads"] = [dict(name=n, address=prog.symbol(n).address, hex=prog.read(prog.symbol(n).address, l).hex()) for n, l in reads]
print(json.dumps(out))
`;

export interface DrgnOut {
  crashed: { tid: number; comm: string; cpu: number; address: bigint; regs: Record<string, string> };
  mounts: { address: bigint; src: string; dst: string; fstype: string; id: number }[];
  zones: { name: string; start: number; spanned: number; present: number; managed: number; nr_free: number[]; vm_stat: number[] }[];
  totalram: number;
  reads: { name: string; address: bigint; hex: string }[];
}

/** The capture's debug vmlinux, which crash and drgn need. */
export function vmlinuxOf(fx: RealFixture): string {
  const v = join(CACHE, "vmlinux", `vmlinux-${fx.release}`);
  if (!existsSync(v)) throw new Error(`missing ${v}: run 'bash fixtures/check-tools.sh ${fx.elf} "${fx.marker}"' once, it extracts it`);
  return v;
}

const parseExact = <T>(text: string): T =>
  JSON.parse(text.replace(/([:\[,]\s*)(\d{16,})/g, '$1"#$2"'), (_k, v) => (typeof v === "string" && v.startsWith("#") ? BigInt(v.slice(1)) : v));

/** Run once per capture and script; kept beside the capture's other oracles. */
function cached(fx: RealFixture, tool: OracleTool, name: string, key: string, run: () => string): { text: string; ran: boolean } {
  const file = join(oracleDir(fx, tool), `${name}-${createHash("sha256").update(key).digest("hex").slice(0, 12)}.txt`);
  if (existsSync(file)) return { text: readFileSync(file, "utf8"), ran: false };
  const text = run();
  writeFileSync(file + ".tmp", text);
  execFileSync("mv", [file + ".tmp", file]);
  return { text, ran: true };
}

export function drgnOracle(fx: RealFixture): DrgnOut {
  const { text } = cached(fx, "drgn", "drgn-inspect", DRGN + JSON.stringify(READS), () => {
    const dir = scratchDir();
    try {
      const elf = join(dir, "d31.elf");
      execFileSync(process.execPath, [CLI, "dump", fx.elf, "-E", "-d", "31", "-o", elf], { stdio: ["ignore", "ignore", "pipe"] });
      return execFileSync("/usr/bin/python3", ["-c", DRGN, vmlinuxOf(fx), elf, JSON.stringify(READS)], { encoding: "utf8", maxBuffer: 64 << 20, timeout: 300_000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  return parseExact<DrgnOut>(text);
}

const CRASH_PARTS = ["bt", "bt -t", "bt -T", "mount", "kmem -z", "kmem -i"];

/** crash's answers, one file a command, on the QEMU ELF; `sym` of the RIP drgn read. */
export function crashOracle(fx: RealFixture, rip: string): Record<string, string> {
  const parts = [...CRASH_PARTS, `sym ${rip}`];
  const { text } = cached(fx, "crash", "crash-inspect", parts.join("\n"), () => {
    const dir = scratchDir();
    try {
      const cmds = parts.map((c, i) => `${c} > ${join(dir, `${i}.txt`)}`).join("\n") + "\nquit\n";
      writeFileSync(join(dir, "cmds"), cmds);
      execFileSync("crash", ["-s", vmlinuxOf(fx), fx.elf, "-i", join(dir, "cmds")], { stdio: ["ignore", "ignore", "ignore"], timeout: 300_000, env: { ...process.env, TZ: "UTC" } });
      return JSON.stringify(Object.fromEntries(parts.map((c, i) => [c, readFileSync(join(dir, `${i}.txt`), "utf8")])));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  const out = JSON.parse(text) as Record<string, string>;
  out.sym = out[`sym ${rip}`];
  return out;
}

/** crash's `bt -t`/`bt -T` lines: [slot] name at value [module]. */
export function crashStack(text: string): { slot: bigint; value: bigint; symbol: string }[] {
  return [...text.matchAll(/^\s+\[([0-9a-f]{16})\] (\S+) at ([0-9a-f]{16})(?: \[(\S+)\])?\s*$/gm)]
    .map((m) => ({ slot: BigInt("0x" + m[1]), value: BigInt("0x" + m[3]), symbol: m[2] + (m[4] ? ` [${m[4]}]` : "") }));
}

export interface CrashZone { name: string; size: number; present: number; min: number; low: number; high: number; stats: Record<string, number>; populated: boolean }

export function crashZones(text: string): CrashZone[] {
  return text.split(/(?=^NODE: )/m).filter((b) => b.startsWith("NODE:")).map((b) => {
    const name = /NAME: "([^"]*)"/.exec(b)![1];
    if (b.includes("[unpopulated]")) return { name, size: 0, present: 0, min: 0, low: 0, high: 0, stats: {}, populated: false };
    const size = Number(/SIZE: (\d+)/.exec(b)![1]);
    // crash prints PRESENT only where it differs from SIZE.
    const present = Number(/PRESENT: (\d+)/.exec(b)?.[1] ?? size);
    const [min, low, high] = /MIN\/LOW\/HIGH: (\d+)\/(\d+)\/(\d+)/.exec(b)!.slice(1).map(Number);
    const stats = Object.fromEntries([...b.matchAll(/^\s*(NR_\w+): (-?\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
    return { name, size, present, min, low, high, stats, populated: true };
  });
}

