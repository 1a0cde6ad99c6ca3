// Our ELF output of real guests: exactly the kept pages, byte for byte,
// and real tools read it (makedumpfile --dump-dmesg here; crash and drgn
// through fixtures/check-tools.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GuestImage } from "../../src/image.js";
import { dump, zeroPages } from "../../src/pipeline/dump.js";
import { openSource } from "../../src/sources/open.js";
import { assertElfHoldsExactly } from "../helpers/elf-check.js";
import { REAL_PROFILES, realFixture } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";

const CHECK_TOOLS = fileURLToPath(new URL("../../../fixtures/check-tools.sh", import.meta.url));

for (const profile of REAL_PROFILES) {
  for (const input of ["elf", "raw"] as const) {
    test(`${profile} ${input} -> ELF -d 31: kept pages byte for byte, dmesg readable by makedumpfile`, async (t) => {
      const fx = realFixture(profile);
      const dir = tempDir(t);
      const out = join(dir, "dump.elf");
      const path = input === "elf" ? fx.elf : fx.raw;
      try {
        await dump(path, out, { level: 31, elf: true });
        const img = GuestImage.open(path);
        const r = img.pageStats(31);
        img.close();
        const src = openSource(path);
        assertElfHoldsExactly(out, src, r.kept, zeroPages(r), r.maxPfn);
        src.close();
        const dmesg = join(dir, "dmesg.txt");
        execFileSync("makedumpfile", ["--dump-dmesg", out, dmesg], { stdio: "pipe" });
        assert.ok(readFileSync(dmesg, "latin1").includes(fx.marker), "marker in makedumpfile --dump-dmesg output");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}

test("crash, drgn and makedumpfile open our ELF of the real 256 MiB guest", async (t) => {
  const fx = realFixture(REAL_PROFILES[0]);
  const dir = tempDir(t);
  const out = join(dir, "dump.elf");
  try {
    await dump(fx.raw, out, { level: 31, elf: true });
    const log = execFileSync("bash", [CHECK_TOOLS, out, fx.marker], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 900_000 });
    for (const tool of ["crash", "drgn", "makedumpfile-dmesg"]) assert.match(log, new RegExp(`^ok ${tool}`, "m"), log);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
