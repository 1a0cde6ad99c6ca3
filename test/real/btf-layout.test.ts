// The kernel's BTF, read through the guest's page tables on every capture,
// agrees with the kernel's own VMCOREINFO on every OFFSET(), SIZE() and
// LENGTH(struct.member) it prints, and is byte for byte the .BTF section
// of the debug vmlinux where there is one (objcopy extracts it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { GuestImage } from "../../src/image.js";
import { Kallsyms } from "../../src/introspect/kallsyms.js";
import { readKernelBtf } from "../../src/introspect/btf.js";
import { checkLayouts } from "../../src/introspect/btf-vmcoreinfo.js";
import { TypedKernel } from "../../src/analysis/typed.js";
import { listTasks } from "../../src/analysis/tasks.js";
import { listModules } from "../../src/analysis/modules.js";
import { CACHE, REAL_PROFILES, realFixture } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";

const SHAPES = (process.env.GUESTCORE_SHAPES ?? "q35-256m-la57,q35-256m-nokaslr,pc-256m-cloud,q35-4g,pc-4g").split(",").filter(Boolean);

for (const profile of [...new Set([...REAL_PROFILES, ...SHAPES])]) {
  test(`${profile}: BTF from memory agrees with every VMCOREINFO layout entry, and with the vmlinux's .BTF`, (t) => {
    const fx = realFixture(profile);
    const img = GuestImage.open(fx.elf);
    try {
      const ks = Kallsyms.load(img.kernel)!;
      const t0 = performance.now();
      const btf = readKernelBtf(img.kernel.as, (n) => ks.lookup(n));
      const ms = performance.now() - t0;
      assert.ok(btf, "kallsyms has __start_BTF");
      assert.ok(btf.count > 50_000, `${btf.count} types`);
      const r = checkLayouts(btf, img.kernel.info);
      assert.deepEqual(r.mismatched, []);
      assert.deepEqual(r.unresolved, []);
      // Every OFFSET/SIZE/LENGTH entry is either checked or a variable's or macro's LENGTH.
      const layoutKeys = [...img.kernel.info.entries.keys()].filter((key) => /^(OFFSET|SIZE|LENGTH)\(/.test(key));
      assert.equal(r.agreed.length + r.notInBtf.length, layoutKeys.length);
      assert.ok(r.agreed.length >= 60, `${r.agreed.length} entries agree`);
      assert.ok(r.notInBtf.every((key) => /^LENGTH\([^.]+\)$/.test(key)), r.notInBtf.join(", "));

      const vmlinux = join(CACHE, "vmlinux", `vmlinux-${fx.release}`);
      if (existsSync(vmlinux)) {
        const dir = tempDir(t);
        try {
          const out = join(dir, "btf.bin");
          execFileSync("objcopy", ["-O", "binary", "--only-section=.BTF", vmlinux, out]);
          assert.ok(Buffer.from(btf.raw).equals(readFileSync(out)), "the BTF in memory is the vmlinux's .BTF section");
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      } else {
        // Only the cloud flavour lacks a debug vmlinux here; the generic one must have it.
        assert.match(fx.release, /cloud/, `missing ${vmlinux}`);
      }

      // The helpers run on every shape (the cloud kernel included).
      const k = new TypedKernel(btf, ks, img.kernel.as);
      const tasks = listTasks(k);
      assert.ok(tasks.some((t) => t.pid === 1) && tasks.some((t) => t.idle), "init and an idle task");
      assert.ok(tasks.filter((t) => t.active).length === k.onlineCpus().length, "one running task per online CPU");
      assert.ok(listModules(k).length >= 1);
      console.log(`${profile}: ${btf.count} types read and parsed in ${ms.toFixed(0)} ms; ${r.agreed.length} VMCOREINFO entries agree`);
    } finally {
      img.close();
    }
  });
}
