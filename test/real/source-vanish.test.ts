// The source vanishes in the middle of a dump. A real pvpanic-paused QEMU
// guest (one boot, two QMP monitors) is dumped through --qmp twice at
// once, kdump and ELF, and QEMU is SIGKILLed while both are writing; a
// live Xen domain (the fake libxenforeignmemory over the real capture) is
// destroyed after N foreign mappings, while the kernel is being examined
// and while pages are being written. Each dump fails with one line that
// says what vanished, exits 2, and leaves neither a final file nor a
// temporary.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Codecs } from "../../src/codecs/codec.js";
import { GuestImage } from "../../src/image.js";
import { dump } from "../../src/pipeline/dump.js";
import { openXenDomain } from "../../src/sources/xen-live.js";
import { assertOneLineExit } from "../helpers/errors.js";
import { launchGuest } from "../helpers/qemu-guest.js";
import { realFixture } from "../helpers/real.js";
import { scratchDir } from "../helpers/synthetic.js";
import { temporaries, waitForTemporary } from "../helpers/temporaries.js";
import { fakeStats, useFakeXen } from "../helpers/xen.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));

interface Child { proc: ChildProcess; stderr: () => string; exit: Promise<number | null> }

function start(args: string[], env: NodeJS.ProcessEnv = process.env): Child {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "ignore", "pipe"], env });
  let err = "";
  proc.stderr!.on("data", (d) => (err += d));
  return { proc, stderr: () => err, exit: new Promise((r) => proc.on("exit", (c) => r(c))) };
}

test("QEMU killed while two dumps (kdump, ELF) read its paused guest through QMP: one line each, no output", { timeout: 240_000 }, async (t) => {
  const probe = mkdtempSync("/tmp/gc-qmp2-");
  const sock2 = join(probe, "qmp2.sock");
  const guest = launchGuest({ memMiB: 256, machine: "q35", profile: "vanish-q35-256m", extraArgs: ["-qmp", `unix:${sock2},server=on,wait=off`] });
  const dirs = { kdump: scratchDir(), elf: scratchDir() };
  try {
    await guest.waitPanicked(150_000);
    const dumps = {
      // 8 MB/s keeps the kdump writing for about two seconds.
      kdump: start(["dump", "--qmp", guest.sock, "-o", join(dirs.kdump, "vmcore"), "-d", "31", "--rate-limit", "8M"]),
      elf: start(["dump", "--qmp", sock2, "-o", join(dirs.elf, "vmcore.elf"), "-E", "-d", "31"]),
    };
    // Each dump is frozen as soon as it writes its output, so that QEMU
    // dies while both are mid-way, whatever the machine's speed.
    await Promise.all((["kdump", "elf"] as const).map(async (f) => {
      await waitForTemporary(dirs[f], 1, 120_000);
      dumps[f].proc.kill("SIGSTOP");
    }));
    for (const f of ["kdump", "elf"] as const) {
      assert.equal(temporaries(dirs[f]).length, 1, `${f}: writing when QEMU is killed`);
      assert.equal(existsSync(join(dirs[f], f === "kdump" ? "vmcore" : "vmcore.elf")), false);
    }
    const qemuExit = new Promise((r) => guest.proc.once("exit", r));
    guest.proc.kill("SIGKILL");
    await qemuExit;
    for (const f of ["kdump", "elf"] as const) dumps[f].proc.kill("SIGCONT");
    for (const f of ["kdump", "elf"] as const) {
      const code = await dumps[f].exit;
      assertOneLineExit(code, dumps[f].stderr(), /QEMU behind \S+ went away while its guest's memory was being read, so the dump is not made final: a QEMU started again on \S+ would write into it; dump the file itself \(--layout 0x0:0x10000000@0x0\) if nothing else uses it$/, f);
      assert.deepEqual(readdirSync(dirs[f]), [], `${f}: neither the dump nor its temporary`);
    }
    // What the line advises works: the memory file outlived QEMU.
    const r = spawnSync(process.execPath, [CLI, "dump", guest.shm!, "--layout", "0x0:0x10000000@0x0", "-o", join(dirs.kdump, "from-file"), "-d", "31"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    t.diagnostic("both dumps refused to finish after QEMU was killed; the memory file dumped as a file");
  } finally {
    await guest.stop();
    rmSync(probe, { recursive: true, force: true });
    for (const d of Object.values(dirs)) rmSync(d, { recursive: true, force: true });
  }
});

test("a live Xen domain destroyed mid-dump (while examining the kernel, while writing): one line, no output", async (t) => {
  const fx = realFixture("q35-256m");
  const dir = scratchDir();
  try {
    // How many foreign mappings an undisturbed dump makes, and how many of them probe.
    let restore = useFakeXen({ mem: fx.raw, domid: 7 });
    let probeCalls: number;
    let total: number;
    try {
      const src = openXenDomain(7);
      probeCalls = src.stats.probeMapCalls;
      const img = GuestImage.open(src.path, { source: src, codecs: await Codecs.load() });
      try {
        await dump(img, join(dir, "undisturbed"), { level: 31 });
      } finally {
        img.close();
      }
      total = fakeStats().mapCalls;
      rmSync(join(dir, "undisturbed"));
    } finally {
      restore();
    }
    t.diagnostic(`an undisturbed dump maps ${total} times, ${probeCalls} of them probing`);
    for (const [when, after] of [["examining the kernel", probeCalls + 1], ["writing pages", probeCalls + Math.floor((total - probeCalls) * 0.8)]] as const) {
      restore = useFakeXen({ mem: fx.raw, domid: 7, destroyAfterMaps: after });
      try {
        const c = start(["dump", "--xen", "7", "-o", join(dir, "dom7.kdump"), "-d", "31"], { ...process.env });
        assertOneLineExit(await c.exit, c.stderr(), /Xen domain 7 was destroyed while its memory was being read \(page 0x[0-9a-f]+ could not be mapped \(ESRCH\)\): the dump cannot be completed$/, when);
        assert.deepEqual(readdirSync(dir), [], `${when}: neither the dump nor its temporary`);
      } finally {
        restore();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
