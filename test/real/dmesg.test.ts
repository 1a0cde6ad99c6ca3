// The kernel log of real crashed guests, read by guestcore from every
// input form (raw memory file, QEMU ELF, QEMU's flattened kdump-zlib, and a
// guestcore -d 31 kdump), equals what makedumpfile --dump-dmesg prints:
// once from the QEMU ELF (made acceptable to it), once from the kdump.
// Levels and dev_printk info agree with crash 8's `log -m` and `log -d`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GuestImage } from "../../src/image.js";
import { dump } from "../../src/pipeline/dump.js";
import { formatKernelLog, readKernelLog, type KernelLog } from "../../src/analysis/printk.js";
import { makedumpfileDmesgOf, oracleDir, REAL_PROFILES, realFixture } from "../helpers/real.js";
import { vmlinuxOf } from "../helpers/inspect-oracle.js";
import { tempDir } from "../helpers/synthetic.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));


function makedumpfileDmesg(input: string, out: string): string {
  rmSync(out, { force: true });
  execFileSync("makedumpfile", ["--dump-dmesg", input, out], { stdio: ["ignore", "ignore", "pipe"] });
  return readFileSync(out, "latin1");
}


function logOf(input: string): { log: KernelLog; ms: number } {
  const img = GuestImage.open(input);
  try {
    const t0 = performance.now();
    const log = readKernelLog(img.kernel);
    return { log, ms: performance.now() - t0 };
  } finally {
    img.close();
  }
}

for (const profile of REAL_PROFILES) {
  test(`${profile}: guestcore's kernel log from raw, ELF, flattened and kdump equals makedumpfile --dump-dmesg`, async (t) => {
    const fx = realFixture(profile);
    const want = makedumpfileDmesgOf(fx).toString("latin1");
    assert.ok(want.includes(fx.marker), "makedumpfile's log has the marker");
    const flattened = join(fx.dir, "vmcore.kdump-zlib");
    for (const input of [fx.elf, fx.raw, flattened]) {
      const { log, ms } = logOf(input);
      assert.deepEqual(log.warnings, [], input);
      assert.equal(log.form, "prb");
      // assert.equal on 25 KiB strings shows a useless diff: say where they part.
      const got = formatKernelLog(log.records);
      assert.ok(got === want, `${input}: differs from makedumpfile at byte ${firstDiff(got, want)}`);
      t.diagnostic(`${input}: read in ${ms.toFixed(0)} ms`);
    }

    // Both ways through a kdump-compressed file guestcore writes (zlib:
    // this makedumpfile has no zstd): makedumpfile reads the same log from it.
    const dir = tempDir(t);
    try {
      const kd = join(dir, "d31.kdump");
      await dump(fx.elf, kd, { level: 31, codec: "zlib" });
      const fromKdump = makedumpfileDmesg(kd, join(dir, "dmesg.txt"));
      assert.ok(fromKdump === want, `makedumpfile on guestcore's kdump differs at byte ${firstDiff(fromKdump, want)}`);
      const got = formatKernelLog(logOf(kd).log.records);
      assert.ok(got === want, `guestcore on its kdump differs at byte ${firstDiff(got, want)}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    // The command prints the same bytes.
    const cli = execFileSync(process.execPath, [CLI, "dmesg", fx.elf], { encoding: "latin1", maxBuffer: 64 << 20 });
    assert.ok(cli === want, `guestcore dmesg differs at byte ${firstDiff(cli, want)}`);
    const json = JSON.parse(execFileSync(process.execPath, [CLI, "dmesg", fx.elf, "--json", "--level", "0"], { encoding: "utf8" }));
    assert.ok(json.records.length >= 1 && json.records.every((r: { level: number }) => r.level === 0));
    assert.ok(json.records.some((r: { text: string }) => r.text.startsWith("Kernel panic - not syncing")), "the panic is an emergency");
  });
}

function firstDiff(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i === a.length && i === b.length ? -1 : i;
}

test(`${REAL_PROFILES[0]}: levels and dev_printk info agree with crash's log -m and log -d`, () => {
  // crash needs the debug vmlinux of the generic amd64 flavour (fixtures/check-tools.sh extracts it).
  const fx = realFixture(REAL_PROFILES[0]);
  assert.match(fx.release, /^\d.*-amd64$/);
  assert.doesNotMatch(fx.release, /cloud/, `the first profile must run the generic kernel crash has a vmlinux for, not ${fx.release}`);
  const vmlinux = vmlinuxOf(fx);
  const dir = oracleDir(fx, "crash");
  const levels = join(dir, "crash-log-m.txt");
  const dicts = join(dir, "crash-log-d.txt");
  if (!existsSync(levels) || !existsSync(dicts)) {
    const cmds = join(dir, "crash-log.cmds");
    writeFileSync(cmds, `log -m > ${levels}.tmp\nlog -d > ${dicts}.tmp\nquit\n`);
    execFileSync("crash", ["-s", vmlinux, fx.elf, "-i", cmds], { stdio: ["ignore", "ignore", "ignore"], timeout: 300_000 });
    execFileSync("mv", [`${levels}.tmp`, levels]);
    execFileSync("mv", [`${dicts}.tmp`, dicts]);
  }
  // A record is a line that starts with its timestamp; continuation and
  // dictionary lines are indented.
  const crashLevels = [...readFileSync(levels, "latin1").matchAll(/^\[\s*\d+\.\d+\] <(\d)>/gm)].map((m) => Number(m[1]));
  const crashDev: string[][] = [];
  for (const line of readFileSync(dicts, "latin1").split("\n")) {
    if (line.startsWith("[")) crashDev.push([]);
    else if (crashDev.length && /^\s+(SUBSYSTEM|DEVICE)=/.test(line)) crashDev[crashDev.length - 1].push(line.trim());
  }
  const { log } = logOf(fx.elf);
  assert.equal(crashLevels.length, log.records.length, "the same records");
  assert.deepEqual(log.records.map((r) => r.level), crashLevels);
  const ours = log.records.map((r) => [...(r.subsystem ? [`SUBSYSTEM=${r.subsystem}`] : []), ...(r.device ? [`DEVICE=${r.device}`] : [])]);
  assert.deepEqual(ours, crashDev);
  assert.ok(ours.filter((d) => d.length).length > 20, "dev_printk records are there to compare");
  // Kernel messages have facility 0 (kern); the marker came through /dev/kmsg (1, user).
  const marker = log.records.find((r) => r.text.includes(fx.marker))!;
  assert.equal(marker.facility, 1);
  assert.equal(log.records[0].facility, 0);
});
