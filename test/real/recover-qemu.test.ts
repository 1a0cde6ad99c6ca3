// End to end: a real guest panics under QEMU and pvpanic pauses it;
// `guestcore recover` releases the memory its dump will not keep, boots a
// replacement guest, and dumps the kept pages while the replacement boots.
//
// The judges are other programs: makedumpfile's page set on QEMU's own
// ELF of the crashed guest (taken before anything was released),
// libkdumpfile reading every page against a copy of the memory, crash
// with the debug vmlinux, the replacement's own console, and the
// backing file's allocated blocks as the kernel reports them (stat).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { QmpClient } from "../../src/sources/qmp.js";
import { allocatedBytes } from "../../src/recovery/hole-punch.js";
import { launchGuest, replacementArgv, shellQuote } from "../helpers/qemu-guest.js";
import { firstDifference, makedumpfileOracleOf, readKdumpBitmaps } from "../helpers/real.js";
import { FIXTURES, libkdumpfile, tools } from "../helpers/oracles.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const PAGE = 4096;

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("exit", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

test("recover: the replacement is ready before the dump of the crashed guest completes, the dump is makedumpfile's, memory goes back", { timeout: 300_000 }, async (t) => {
  const guest = launchGuest({ memMiB: 256, machine: "q35", profile: "recover-q35-256m" });
  const work = mkdtempSync(join(tmpdir(), "gc-recover-"));
  const copy = `/dev/shm/guestcore-test-recover-copy.${process.pid}.ram`;
  const replMem = `/dev/shm/guestcore-test-replacement.${process.pid}.ram`;
  let replPid: number | undefined;
  try {
    await guest.waitPanicked(120_000);
    const shm = guest.shm!;
    // Before anything is released: QEMU's own ELF (the makedumpfile oracle) and a copy of the memory.
    const qemuElf = join(work, "qemu.elf");
    const q = await QmpClient.connect(guest.sock, { connectTimeoutMs: 5000, commandTimeoutMs: 60_000 });
    await q.execute("dump-guest-memory", { paging: false, protocol: `file:${qemuElf}` });
    q.close();
    execFileSync(process.execPath, [join(FIXTURES, "elf-mdf.mjs"), qemuElf, join(work, "qemu.mdf.elf")]);
    copyFileSync(shm, copy);
    const heldBefore = allocatedBytes(shm);

    const token = randomBytes(4).toString("hex");
    const replLog = join(work, "replacement-console.log");
    const heldAtStartFile = join(work, "held-at-start");
    // The replacement's first act records how much of the crashed guest's memory the host still holds.
    const cmd = `stat -c %b ${shellQuote([shm])} > ${shellQuote([heldAtStartFile])}; exec ${shellQuote(replacementArgv({ memPath: replMem, consoleLog: replLog, token }))}`;
    const out = join(work, "vmcore.kdump");
    const svg = join(work, "timeline.svg");
    // 1 MB/s stretches the ~17 MB dump well past the replacement's boot.
    const r = await run(["recover", "--qmp", guest.sock, "-o", out, "-d", "31", "--rate", "fixed:1M", "--quit-crashed", "early",
      "--replacement", cmd, "--ready", `serial:${replLog}:GUESTCORE-READY replacement ${token}`, "--timeline-svg", svg, "--json"], 240_000);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    replPid = report.replacement.pid;
    const phases = report.timeline.phases;
    t.diagnostic(`phases (s): ${Object.entries(phases).map(([k, v]) => `${k} ${(v as { s: number }).s}`).join(", ")}`);

    // The replacement said it was ready on its console before the dump was complete.
    assert.match(readFileSync(replLog, "latin1"), new RegExp(`GUESTCORE-READY replacement ${token}`));
    assert.ok(phases["replacement-ready"].t < phases["dump-complete"].t, "ready before the dump completed");
    assert.ok(phases["replacement-started"].t < phases["dump-complete"].t);
    // The crashed QEMU quit early (its disk and memory go to the replacement) and has exited.
    assert.ok(phases["crashed-vm-gone"].t <= phases["classified"].t);
    await new Promise<void>((res) => (guest.proc.exitCode !== null || guest.proc.signalCode !== null ? res() : guest.proc.once("exit", () => res())));

    // Page set: makedumpfile's on QEMU's ELF of the memory before any release.
    const want = makedumpfileOracleOf(join(work, "qemu.mdf.elf"), 31, join(work, "oracle"));
    const got = readKdumpBitmaps(out);
    assert.equal(got.maxMapnr, want.maxMapnr);
    assert.equal(firstDifference(got.bitmap2, want.bitmap2, got.maxMapnr), -1, "bitmap 2 equals makedumpfile's");
    assert.equal(firstDifference(got.nonZero, want.nonZero, got.maxMapnr), -1, "zero pages equal makedumpfile's");
    // Every page as the guest had it (libkdumpfile against the copy), and crash shows the marker.
    assert.match(libkdumpfile(out, copy), /^ok libkdumpfile \d+ pages/m);
    assert.match(tools(out, guest.marker, "crash"), /^ok crash/m);

    // Memory: when the replacement started, only the kept pages were still held.
    // makedumpfile counts zero pages among the excluded: "remaining" is what the dump holds data for.
  const keptPages = want.remaining;
    const heldAtStart = Number(readFileSync(heldAtStartFile, "utf8").trim()) * 512;
    t.diagnostic(`held: ${heldBefore >> 20} MiB before, ${heldAtStart >> 20} MiB at the replacement's start (kept pages ${(keptPages * PAGE) >> 20} MiB), ${allocatedBytes(shm)} bytes at the end`);
    const excluded = want.original - keptPages;
    assert.ok(heldAtStart <= keptPages * PAGE, `held ${heldAtStart} at start > kept ${keptPages * PAGE}`);
    assert.ok(heldBefore - heldAtStart >= heldBefore - keptPages * PAGE, `the excluded share (${excluded} pages) was given back`);
    assert.equal(allocatedBytes(shm), 0, "nothing held at the end");
    assert.equal(report.heldBytes.atEnd, 0);
    // The journal and the partial dump are gone; the timeline picture was drawn.
    assert.deepEqual(readdirSync(dirname(out)).filter((f) => f.startsWith(`.${basename(out)}`)), []);
    assert.match(readFileSync(svg, "utf8"), /<svg[^]*replacement-ready[^]*<\/svg>/);
  } finally {
    if (replPid) try { process.kill(-replPid, "SIGKILL"); } catch { /* gone */ }
    await guest.stop();
    rmSync(work, { recursive: true, force: true });
    rmSync(copy, { force: true });
    rmSync(replMem, { force: true });
  }
});

test("recover: a guest whose RAM is a memfd is reached through QEMU's descriptor, released as it is dumped, and QEMU quits only at the end", { timeout: 200_000 }, async (t) => {
  const guest = launchGuest({ memMiB: 256, machine: "q35", profile: "recover-memfd", backend: "memfd" });
  const work = mkdtempSync(join(tmpdir(), "gc-recover-memfd-"));
  try {
    await guest.waitPanicked(120_000);
    const qemuElf = join(work, "qemu.elf");
    const q = await QmpClient.connect(guest.sock, { connectTimeoutMs: 5000, commandTimeoutMs: 60_000 });
    await q.execute("dump-guest-memory", { paging: false, protocol: `file:${qemuElf}` });
    q.close();
    execFileSync(process.execPath, [join(FIXTURES, "elf-mdf.mjs"), qemuElf, join(work, "qemu.mdf.elf")]);
    const out = join(work, "vmcore.kdump");
    const r = await run(["recover", "--qmp", guest.sock, "-o", out, "-d", "31", "-c", "--quit-crashed", "early", "--json"], 120_000);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    // The memory is QEMU's memfd, seen as /proc/PID/fd/N of the QEMU process.
    assert.equal(report.memPath.replace(/\d+/g, "N"), "/proc/N/fd/N");
    assert.ok(report.memPath.startsWith(`/proc/${guest.proc.pid}/fd/`), `${report.memPath} is QEMU's (pid ${guest.proc.pid})`);
    // "early" is refused for a memfd: its memory would go with QEMU. QEMU quits after the dump.
    const phases = report.timeline.phases;
    assert.ok(phases["crashed-vm-gone"].t >= phases["dump-complete"].t, "QEMU quit after the dump");
    assert.ok(report.timeline.events.some((e: { note?: string }) => /memfd, which goes with QEMU/.test(e.note ?? "")));
    assert.ok(report.heldBytes.afterPrerelease <= report.pages.kept * PAGE, "only kept pages were held after the first release");
    assert.equal(report.heldBytes.atEnd, 0);
    const want = makedumpfileOracleOf(join(work, "qemu.mdf.elf"), 31, join(work, "oracle"));
    const got = readKdumpBitmaps(out);
    assert.equal(firstDifference(got.bitmap2, want.bitmap2, got.maxMapnr), -1, "bitmap 2 equals makedumpfile's");
    assert.equal(firstDifference(got.nonZero, want.nonZero, got.maxMapnr), -1, "zero pages equal makedumpfile's");
    assert.match(tools(out, guest.marker, "makedumpfile-dmesg"), /^ok makedumpfile-dmesg/m);
    t.diagnostic(`memfd ${report.memPath}: held ${report.heldBytes.atAttach >> 20} MiB at attach, ${report.heldBytes.afterPrerelease >> 20} MiB after the first release`);
  } finally {
    await guest.stop();
    rmSync(work, { recursive: true, force: true });
  }
});
