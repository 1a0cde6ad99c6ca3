// Tasks, modules, per-CPU runqueues and the kernel's clock, read by
// guestcore through the kernel's own BTF and kallsyms (no vmlinux), against
// drgn 0.0.22 with the debug vmlinux on the same capture (guestcore's -d 31
// ELF output: drgn cannot read QEMU's ELF), and against crash 8's `mod` and
// `sys`. drgn also gives the type oracle: struct layouts, typedef sizes and
// enumerators from DWARF, against what guestcore parses from BTF.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GuestImage } from "../../src/image.js";
import { TypedKernel } from "../../src/analysis/typed.js";
import { listTasks, type TaskInfo } from "../../src/analysis/tasks.js";
import { listModules, type ModuleInfo } from "../../src/analysis/modules.js";
import { kernelTimes, panicInfo } from "../../src/analysis/system.js";
import { readKernelLog } from "../../src/analysis/printk.js";
import { BTF_KIND, type Btf } from "../../src/introspect/btf.js";
import { oracleDir, REAL_PROFILES, realFixture, type RealFixture } from "../helpers/real.js";
import { scratchDir } from "../helpers/synthetic.js";
import { vmlinuxOf } from "../helpers/inspect-oracle.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
// The shapes CI builds besides the defaults; .ci/run extracts the debug
// vmlinux of both kernel flavours (generic and cloud) for drgn and crash.
const EXTRA = ["q35-256m-la57", "q35-256m-nokaslr", "pc-256m-cloud", "q35-4g", "pc-4g"];
const PROFILES = [...new Set([...REAL_PROFILES, ...(process.env.GUESTCORE_SHAPES ?? EXTRA.join(",")).split(",").filter((p) => EXTRA.includes(p))])];

const DRGN = String.raw`
import json, sys, drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.sched import task_cpu, task_state_to_char, idle_task
from drgn.helpers.linux.percpu import per_cpu
from drgn.helpers.linux.cpumask import for_each_online_cpu
vmlinux, core, queries = sys.argv[1:4]
q = json.load(open(queries))
prog = drgn.Program()
prog.set_core_dump(core)
prog.load_debug_info([vmlinux])
out = {"tasks": [], "modules": [], "cpus": [], "structs": {}, "typedefs": {}, "enums": {}}
for t in for_each_task(prog):
    out["tasks"].append(dict(pid=t.pid.value_(), tgid=t.tgid.value_(), comm=t.comm.string_().decode("latin1"),
        ppid=t.real_parent.tgid.value_(), cpu=task_cpu(t), state=task_state_to_char(t), address=t.value_()))
for cpu in for_each_online_cpu(prog):
    rq = per_cpu(prog["runqueues"], cpu)
    out["cpus"].append(dict(cpu=cpu, idle=idle_task(prog, cpu).value_(), curr=rq.curr.value_()))
for m in list_for_each_entry("struct module", prog["modules"].address_of_(), "list"):
    out["modules"].append(dict(name=m.name.string_().decode(), address=m.value_(), base=m.core_layout.base.value_(), size=m.core_layout.size.value_()))
def size_or_none(t):
    try:
        return drgn.sizeof(t)
    except Exception:
        return None
for name in q["structs"]:
    try:
        t = prog.type(name)
    except LookupError:
        out["structs"][name] = None
        continue
    out["structs"][name] = dict(size=t.size, members=[dict(name=m.name or "", bitOffset=m.bit_offset, bitSize=m.bit_field_size or 0,
        size=size_or_none(m.type)) for m in t.members])
for name in q["typedefs"]:
    try:
        out["typedefs"][name] = size_or_none(prog.type(name))
    except LookupError:
        out["typedefs"][name] = None
for name in q["enums"]:
    try:
        out["enums"][name] = [[e.name, str(e.value)] for e in prog.type("enum " + name).enumerators]
    except LookupError:
        out["enums"][name] = None
print(json.dumps(out))
`;

interface DrgnTask { pid: number; tgid: number; comm: string; ppid: number; cpu: number; state: string; address: number | bigint }
interface DrgnMember { name: string; bitOffset: number; bitSize: number; size: number | null }
interface DrgnOracle {
  tasks: DrgnTask[];
  modules: { name: string; address: bigint; base: bigint; size: number }[];
  cpus: { cpu: number; idle: bigint; curr: bigint }[];
  structs: Record<string, { size: number; members: DrgnMember[] } | null>;
  typedefs: Record<string, number | null>;
  enums: Record<string, [string, string][] | null>;
}
interface Queries { structs: string[]; typedefs: string[]; enums: string[] }


/** JSON with addresses kept exact: integers past 2^53 become bigints. */
function parseExact(text: string): DrgnOracle {
  return JSON.parse(text.replace(/([:\[,]\s*)(\d{16,})/g, '$1"#$2"'), (_k, v) => (typeof v === "string" && v.startsWith("#") ? BigInt(v.slice(1)) : v));
}

/** drgn on guestcore's ELF output of the capture, run once per capture and query set. */
function drgnOracle(fx: RealFixture, q: Queries): { oracle: DrgnOracle; ran: boolean } {
  const key = createHash("sha256").update(DRGN).update(JSON.stringify(q)).digest("hex").slice(0, 12);
  const cached = join(oracleDir(fx, "drgn"), `drgn-analysis-${key}.json`);
  if (existsSync(cached)) return { oracle: parseExact(readFileSync(cached, "utf8")), ran: false };
  const dir = scratchDir();
  try {
    const elf = join(dir, "d31.elf");
    execFileSync(process.execPath, [CLI, "dump", fx.elf, "-E", "-d", "31", "-o", elf], { stdio: ["ignore", "ignore", "pipe"] });
    const qf = join(dir, "queries.json");
    writeFileSync(qf, JSON.stringify(q));
    const text = execFileSync("/usr/bin/python3", ["-c", DRGN, vmlinuxOf(fx), elf, qf], { encoding: "utf8", maxBuffer: 64 << 20, timeout: 300_000 });
    writeFileSync(cached + ".tmp", text);
    execFileSync("mv", [cached + ".tmp", cached]);
    return { oracle: parseExact(text), ran: true };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A fixed sample of BTF's named types: every 40th struct, 20th typedef and
 * 10th enum, skipping names BTF holds twice (two different definitions
 * in different files, where drgn and BTF may pick different ones), plus
 * the structs the helpers use.
 */
function queriesOf(btf: Btf): Queries {
  const by = new Map<string, number[]>();
  for (let id = 1; id <= btf.count; id++) {
    const kind = btf.kind(id);
    if (kind !== BTF_KIND.STRUCT && kind !== BTF_KIND.UNION && kind !== BTF_KIND.TYPEDEF && kind !== BTF_KIND.ENUM && kind !== BTF_KIND.ENUM64) continue;
    const name = btf.name(id);
    if (!name) continue;
    const prefix = kind === BTF_KIND.STRUCT ? "struct " : kind === BTF_KIND.UNION ? "union " : kind === BTF_KIND.TYPEDEF ? "" : "enum ";
    const key = prefix + name;
    by.set(key, [...(by.get(key) ?? []), id]);
  }
  const unique = [...by].filter(([, ids]) => ids.length === 1).map(([k]) => k);
  const every = (xs: string[], n: number) => xs.filter((_, i) => i % n === 0);
  const used = ["struct task_struct", "struct module", "struct rq", "struct timekeeper", "struct tk_read_base", "struct signal_struct",
    "struct list_head", "struct page", "struct module_layout", "struct thread_info", "struct mm_struct"];
  return {
    structs: [...new Set([...used, ...every(unique.filter((k) => /^(struct|union) /.test(k)), 40)])],
    typedefs: every(unique.filter((k) => !k.includes(" ")), 20),
    enums: every(unique.filter((k) => k.startsWith("enum ")), 10).map((k) => k.slice(5)),
  };
}

const comparable = (t: TaskInfo | DrgnTask) => ({ pid: t.pid, tgid: t.tgid, comm: t.comm, ppid: t.ppid, cpu: t.cpu, state: t.state, address: BigInt(t.address) });
const moduleRow = (m: ModuleInfo | DrgnOracle["modules"][number]) => ({ name: m.name, address: BigInt(m.address), base: BigInt(m.base), size: m.size });

interface Ours { tasks: TaskInfo[]; modules: ModuleInfo[]; btf: Btf; ms: { load: number; tasks: number; modules: number } }

function ours(input: string): Ours {
  const img = GuestImage.open(input);
  try {
    let t0 = performance.now();
    const k = TypedKernel.load(img.kernel);
    const load = performance.now() - t0;
    t0 = performance.now();
    const tasks = listTasks(k);
    const tms = performance.now() - t0;
    t0 = performance.now();
    const modules = listModules(k);
    return { tasks, modules, btf: k.btf, ms: { load, tasks: tms, modules: performance.now() - t0 } };
  } finally {
    img.close();
  }
}

for (const profile of PROFILES) {
  test(`${profile}: ps and mod equal drgn's for_each_task and modules list; BTF layouts equal drgn's DWARF`, () => {
    const fx = realFixture(profile);
    const got = ours(fx.elf);
    const q = queriesOf(got.btf);
    const t0 = performance.now();
    const { oracle, ran } = drgnOracle(fx, q);
    const drgnMs = performance.now() - t0;

    // drgn's for_each_task walks the pid namespace's idr: every task with a
    // pid, so not the idle tasks (pid 0), which guestcore lists as ps does.
    const mine = got.tasks.filter((t) => !t.idle).map(comparable).sort((a, b) => a.pid - b.pid);
    const theirs = oracle.tasks.map(comparable).sort((a, b) => a.pid - b.pid);
    assert.ok(theirs.length >= 50, `drgn lists ${theirs.length} tasks`);
    assert.deepEqual(mine, theirs);
    for (const c of oracle.cpus) {
      const idle = got.tasks.find((t) => t.idle && t.cpu === c.cpu);
      assert.equal(idle?.address, BigInt(c.idle), `CPU ${c.cpu}'s idle task`);
      assert.deepEqual(got.tasks.filter((t) => t.active && t.cpu === c.cpu).map((t) => t.address), [BigInt(c.curr)], `CPU ${c.cpu}'s rq->curr`);
    }
    assert.equal(got.tasks.filter((t) => t.idle).length, oracle.cpus.length);

    assert.ok(oracle.modules.length >= 1, "drgn lists modules");
    assert.deepEqual(got.modules.map(moduleRow), oracle.modules.map(moduleRow));

    // Types: BTF (pahole's output, read from guest memory) against DWARF.
    let members = 0;
    for (const [name, want] of Object.entries(oracle.structs)) {
      assert.ok(want, `drgn knows ${name}`);
      const id = got.btf.lookup(name)!;
      assert.equal(got.btf.sizeOf(id), want.size, `sizeof(${name})`);
      const have = got.btf.members(id).map((m, i) => ({
        name: m.name, bitOffset: m.bitOffset, bitSize: m.bitSize,
        // BTF writes a flexible array (DWARF: no size) like a zero-length one (size 0).
        size: flexible(got.btf, m.type) && want.members[i]?.size === null ? null : sizeOrNull(got.btf, m.type),
      }));
      assert.deepEqual(have, want.members, name);
      members += have.length;
    }
    for (const [name, want] of Object.entries(oracle.typedefs)) assert.equal(sizeOrNull(got.btf, got.btf.find("typedef", name)!), want, `sizeof(${name})`);
    for (const [name, want] of Object.entries(oracle.enums)) {
      assert.ok(want, `drgn knows enum ${name}`);
      assert.deepEqual(got.btf.enumerators(got.btf.find("enum", name)!).map((e) => [e.name, e.value.toString()]), want, `enum ${name}`);
    }
    assert.ok(q.structs.length > 100 && members > 1000 && q.typedefs.length > 50 && q.enums.length > 50, `a real sample: ${q.structs.length} structs, ${members} members`);
    console.log(`${profile}: ${mine.length + oracle.cpus.length} tasks, ${got.modules.length} modules; guestcore load ${got.ms.load.toFixed(0)} ms, ` +
      `tasks ${got.ms.tasks.toFixed(0)} ms, modules ${got.ms.modules.toFixed(0)} ms; drgn ${ran ? `ran in ${drgnMs.toFixed(0)} ms` : "cached"}; ` +
      `${q.structs.length} structs (${members} members), ${q.typedefs.length} typedefs, ${q.enums.length} enums checked`);
  });
}

function flexible(btf: Btf, id: number): boolean {
  const t = btf.type(btf.resolve(id));
  return t.kind === BTF_KIND.ARRAY && t.nelems === 0;
}

function sizeOrNull(btf: Btf, id: number): number | null {
  try {
    return btf.sizeOf(id);
  } catch {
    return null;
  }
}

for (const profile of REAL_PROFILES) {
  test(`${profile}: the same tasks and modules from the raw memory file and QEMU's flattened kdump; the CLI prints them`, () => {
    const fx = realFixture(profile);
    const ref = ours(fx.elf);
    for (const input of [fx.raw, join(fx.dir, "vmcore.kdump-zlib")]) {
      const o = ours(input);
      assert.deepEqual(o.tasks, ref.tasks, input);
      assert.deepEqual(o.modules, ref.modules, input);
    }
    const ps = JSON.parse(execFileSync(process.execPath, [CLI, "ps", fx.elf, "--json"], { encoding: "utf8" }));
    assert.deepEqual(ps.map((t: { pid: number; address: string }) => [t.pid, t.address]),
      ref.tasks.map((t) => [t.pid, t.address.toString(16).padStart(16, "0")]));
    const mod = JSON.parse(execFileSync(process.execPath, [CLI, "mod", fx.elf, "--json"], { encoding: "utf8" }));
    assert.deepEqual(mod.map((m: { name: string; size: number }) => [m.name, m.size]), ref.modules.map((m) => [m.name, m.size]));
    const text = execFileSync(process.execPath, [CLI, "ps", fx.elf], { encoding: "utf8" });
    assert.match(text, /^>\s+\d+\s+\d+\s+\d+\s+0\s+[0-9a-f]{16}\s+R\s+\S+$/m, "the running task is marked");
  });
}

test(`${REAL_PROFILES[0]}: mod, the date, the uptime and the panic message equal crash's mod and sys`, () => {
  const fx = realFixture(REAL_PROFILES[0]);
  const dir = oracleDir(fx, "crash");
  const out = join(dir, "crash-sys-mod.txt");
  if (!existsSync(out)) {
    const cmds = join(dir, "crash-sys-mod.cmds");
    writeFileSync(cmds, `sys > ${out}.tmp\nmod >> ${out}.tmp\nquit\n`);
    execFileSync("crash", ["-s", vmlinuxOf(fx), fx.elf, "-i", cmds], { stdio: ["ignore", "ignore", "ignore"], timeout: 300_000, env: { ...process.env, TZ: "UTC" } });
    execFileSync("mv", [`${out}.tmp`, out]);
  }
  const crash = readFileSync(out, "utf8");
  const field = (name: string) => new RegExp(`^\\s*${name}: (.*)$`, "m").exec(crash)?.[1];

  const img = GuestImage.open(fx.elf);
  try {
    const k = TypedKernel.load(img.kernel);
    const times = kernelTimes(k);
    const panic = panicInfo(k, readKernelLog(img.kernel));
    // crash prints the date from the timekeeper's xtime_sec in the local zone (TZ=UTC here).
    const d = new Date(Number(times.crashTime.sec) * 1000);
    const want = d.toUTCString().replace(/^(\w+), (\d+) (\w+) (\d+) ([\d:]+) GMT$/, (_m, wd, day, mon, y, hms) => `${wd} ${mon} ${day.replace(/^0/, " ")} ${hms} UTC ${y}`);
    assert.equal(field("DATE"), want);
    // crash's uptime counts jiffies since INITIAL_JIFFIES; guestcore reads CLOCK_BOOTTIME:
    // they agree to the second, or straddle one.
    const [h, m, s] = field("UPTIME")!.split(":").map(Number);
    const up = Number(times.uptimeNs) / 1e9;
    assert.ok(Math.abs(h * 3600 + m * 60 + s - up) < 1.5, `crash UPTIME ${field("UPTIME")}, guestcore ${up.toFixed(3)} s`);
    assert.equal(field("PANIC"), `"Kernel panic - not syncing: ${panic.message}"`);
    assert.equal(Number(field("CPUS")), k.nrCpuIds);

    const rows = [...crash.matchAll(/^([0-9a-f]{16})\s+(\S+)\s+([0-9a-f]{16})\s+(\d+)\s/gm)]
      .map((r) => ({ name: r[2], address: BigInt("0x" + r[1]), base: BigInt("0x" + r[3]), size: Number(r[4]) }));
    assert.ok(rows.length >= 1, "crash lists modules");
    const sortByAddress = (xs: { address: bigint }[]) => [...xs].sort((a, b) => (a.address < b.address ? -1 : 1));
    assert.deepEqual(sortByAddress(listModules(k).map(moduleRow)), sortByAddress(rows));
  } finally {
    img.close();
  }
});
