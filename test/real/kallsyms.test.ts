// The kallsyms resolver, without vmlinux: every symbol VMCOREINFO also
// names resolves to the same address, on 4- and 5-level guests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestImage } from "../../src/image.js";
import { Kallsyms } from "../../src/introspect/kallsyms.js";
import { realFixture } from "../helpers/real.js";

for (const profile of ["q35-256m", "q35-256m-la57"]) {
  test(`${profile}: kallsyms agrees with VMCOREINFO and finds what it lacks`, () => {
    const img = GuestImage.open(realFixture(profile).elf);
    try {
      const ks = Kallsyms.load(img.kernel);
      assert.ok(ks && ks.size > 50_000, "a full symbol table");
      let compared = 0;
      for (const [key] of img.vmcoreinfo.entries) {
        const m = /^SYMBOL\((\w+)\)$/.exec(key);
        // mem_section is the value of a pointer there, not the symbol's
        // address; node_online_map and swapper_pg_dir are macros.
        if (!m || m[1] === "mem_section" || ks!.lookup(m[1]) === undefined) continue;
        assert.equal(ks!.lookup(m[1]), img.vmcoreinfo.symbol(m[1]), m[1]);
        compared++;
      }
      assert.ok(compared >= 8, `${compared} symbols compared`);
      for (const must of ["init_uts_ns", "_stext", "init_top_pgt", "prb"]) {
        assert.equal(ks!.lookup(must), img.vmcoreinfo.symbol(must), must);
      }
      // Symbols VMCOREINFO lacks: the kernel's own end of RAM and direct-map base.
      const u64 = (name: string) => new DataView(img.readVirt(ks!.lookup(name)!, 8).buffer).getBigUint64(0, true);
      // max_pfn ends the last usable e820 range; firmware keeps a few pages above it.
      const maxPfn = Number(u64("max_pfn"));
      const mapped = img.pageStats(0).maxPfn;
      assert.ok(maxPfn <= mapped && maxPfn > mapped - 1024, `max_pfn ${maxPfn} vs mem_map end ${mapped}`);
      const pageOffset = u64("page_offset_base");
      assert.equal(img.translate(pageOffset + 0x1000n), 0x1000);
      assert.equal(ks!.symbol("_stext")?.type, "T");
    } finally {
      img.close();
    }
  });
}
