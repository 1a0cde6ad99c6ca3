// Memory pressure: the crashed guest and its replacement together need
// more than the host has (a cgroup v1 memory limit stands for the host).
// Started on its own, the replacement (prealloc=on: it touches all its RAM
// at once, as hugepage and real-time setups do) does not fit and is
// OOM-killed; started by recover, after the first release, it fits and
// boots. tmpfs pages are charged to the process that first touched them
// (the crashed QEMU), and a hole punch gives the charge back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { launchGuest, replacementArgv, shellQuote } from "../helpers/qemu-guest.js";
import { tempDir } from "../helpers/synthetic.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const MiB = 2 ** 20;
const CG_ROOT = "/sys/fs/cgroup/memory";

const cgNumber = (cg: string, f: string) => Number(readFileSync(join(cg, f), "utf8").trim());
const oomKills = (cg: string) => Number(/oom_kill (\d+)/.exec(readFileSync(join(cg, "memory.oom_control"), "utf8"))?.[1] ?? 0);

function sh(cmd: string, timeoutMs: number): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve) => {
    const p = spawn("/bin/sh", ["-c", cmd], { stdio: "ignore" });
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("exit", (code, signal) => { clearTimeout(t); resolve({ code, signal }); });
  });
}

test("memory pressure: the replacement does not fit beside the crashed guest, and fits once recover releases", { timeout: 300_000 }, async (t) => {
  assert.ok(existsSync(join(CG_ROOT, "cgroup.procs")), `cgroup v1 memory controller not mounted at ${CG_ROOT}`);
  const cg = join(CG_ROOT, `guestcore-test-pressure-${process.pid}`);
  mkdirSync(cg);
  // Removed also when what follows fails before the try below.
  const work = tempDir(t);
  const replMem = `/dev/shm/guestcore-test-pressure-repl.${process.pid}.ram`;
  const guest = launchGuest({ memMiB: 256, profile: "pressure-q35-256m", cgroup: cg });
  let replPid: number | undefined;
  try {
    await guest.waitPanicked(120_000);
    const used = cgNumber(cg, "memory.usage_in_bytes");
    // The host: what the crashed guest uses now, plus three quarters of what the replacement alone needs.
    const limit = used + 192 * MiB;
    writeFileSync(join(cg, "memory.limit_in_bytes"), String(limit));
    t.diagnostic(`cgroup: crashed guest uses ${(used / MiB).toFixed(0)} MiB; limit ${(limit / MiB).toFixed(0)} MiB; the replacement preallocates 256 MiB`);

    const token = randomBytes(4).toString("hex");
    const replLog = join(work, "replacement.log");
    const argv = replacementArgv({ memPath: replMem, consoleLog: replLog, token, prealloc: true });
    // The OOM killer must pick the newcomer, not the crashed guest (lowering
    // the crashed QEMU's score needs CAP_SYS_RESOURCE; raising ours does not).
    const inCgroup = `echo 1000 > /proc/self/oom_score_adj && echo $$ > ${shellQuote([join(cg, "cgroup.procs")])} && exec ${shellQuote(argv)}`;

    // Without release: the replacement is killed before it boots.
    const killsBefore = oomKills(cg);
    const alone = await sh(inCgroup, 120_000);
    t.diagnostic(`replacement alone: exit ${alone.code ?? alone.signal}`);
    assert.ok(alone.signal === "SIGKILL" || alone.code !== 0, "the replacement alone does not survive");
    assert.ok(oomKills(cg) > killsBefore, "the memory cgroup OOM-killed it");
    assert.ok(!existsSync(replLog) || !readFileSync(replLog, "latin1").includes(`GUESTCORE-READY replacement ${token}`), "it never became ready");
    rmSync(replLog, { force: true });
    rmSync(replMem, { force: true });

    // With recover: the first release makes room; the replacement boots while the dump runs.
    const killsMid = oomKills(cg);
    const out = join(work, "vmcore.kdump");
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [CLI, "recover", "--qmp", guest.sock, "-o", out, "-d", "31", "--quit-crashed", "early",
        "--rate", "fixed:2M", "--replacement", inCgroup, "--ready", `serial:${replLog}:GUESTCORE-READY replacement ${token}`, "--json"],
      { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      p.stdout.on("data", (d) => (stdout += d));
      p.stderr.on("data", (d) => (stderr += d));
      p.on("exit", (code) => resolve({ code, stdout, stderr }));
    });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    replPid = report.replacement.pid;
    assert.match(readFileSync(replLog, "latin1"), new RegExp(`GUESTCORE-READY replacement ${token}`));
    assert.equal(oomKills(cg), killsMid, "nothing was OOM-killed this time");
    assert.ok(cgNumber(cg, "memory.max_usage_in_bytes") <= limit);
    t.diagnostic(`with recover: held ${(report.heldBytes.atAttach / MiB).toFixed(0)} MiB at attach, ${(report.heldBytes.atReplacementStart / MiB).toFixed(0)} MiB when the replacement started; downtime ${report.timeline.downtimeSeconds ?? "n/a"} s`);
  } finally {
    if (replPid) try { process.kill(-replPid, "SIGKILL"); } catch { /* gone */ }
    await guest.stop();
    rmSync(replMem, { force: true });
    // The cgroup goes once its processes have.
    for (let i = 0; i < 50 && existsSync(cg); i++) {
      try {
        rmdirSync(cg);
      } catch {
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  }
});
