// Classification on synthetic images whose every page has a declared kind:
// counts and page sets at each dump level follow from the kinds.
import { test } from "node:test";
import { join } from "node:path";
import assert from "node:assert/strict";
import { buildSynthetic, syntheticElf } from "../../fixtures/synthetic.js";
import { GuestImage } from "../../src/image.js";
import { expected, tempDir, writeTemp } from "../helpers/synthetic.js";
import { firstDifference } from "../helpers/real.js";

const LEVELS = [0, 1, 2, 3, 4, 6, 8, 16, 17, 31];

for (const levels of [4, 5] as const) {
  for (const format of ["raw", "elf"] as const) {
    test(`synthetic ${levels}-level ${format}: counts and kept pages at levels ${LEVELS.join(",")}`, (t) => {
      const s = buildSynthetic({ memMiB: 64, levels });
      const dir = tempDir(t);
      const path = format === "raw" ? writeTemp(dir, "g.raw", s.image) : writeTemp(dir, "g.elf", syntheticElf(s));
      const inHole = (pfn: number) => format === "elf" && pfn >= s.elfHole[0] && pfn < s.elfHole[1];
      const img = GuestImage.open(path);
      try {
        assert.equal(img.kernel.as.form.levels, levels);
        assert.equal(img.kernel.origin, format === "raw" ? "scan" : "note");
        assert.equal(img.kernel.physBase, s.physBase);
        for (const level of LEVELS) {
          const want = expected(s, level, (p) => !inHole(p));
          const got = img.pageStats(level);
          assert.equal(got.present, want.present, `level ${level} present`);
          assert.deepEqual(got.counts, want.counts, `level ${level} counts`);
          const d = firstDifference(got.kept, want.kept, s.kinds.length);
          assert.equal(d, -1, `level ${level}: kept set differs at pfn ${d} (${s.kinds[d]})`);
        }
      } finally {
        img.close();
      }
    });
  }
}

for (const [name, spec] of [["SME C-bit in every page-table entry", { sme: true }], ["static SPARSEMEM mem_section", { staticMemSection: true }]] as const) {
  test(`synthetic with ${name}: same pages as the plain image`, (t) => {
    const plain = buildSynthetic({ memMiB: 32 });
    const s = buildSynthetic({ memMiB: 32, ...spec });
    const img = GuestImage.open(writeTemp(tempDir(t), "g.raw", s.image));
    try {
      const want = expected(plain, 31, () => true);
      const got = img.pageStats(31);
      assert.deepEqual(got.counts, want.counts);
      assert.equal(firstDifference(got.kept, want.kept, s.kinds.length), -1);
    } finally {
      img.close();
    }
  });
}

test("--vmcoreinfo supplies VMCOREINFO for an image that lacks it", (t) => {
  const s = buildSynthetic({ memMiB: 32, corrupt: "no-vmcoreinfo" });
  const dir = tempDir(t);
  const file = writeTemp(dir, "vmcoreinfo.txt", s.vmcoreinfo);
  const img = GuestImage.open(writeTemp(dir, "g.raw", s.image), { vmcoreinfo: file });
  try {
    assert.equal(img.kernel.origin, "file");
    assert.equal(img.pageStats(31).counts.user, expected(s, 31, () => true).counts.user);
  } finally {
    img.close();
  }
  // A VMCOREINFO of another kernel is refused, not trusted.
  const other = writeTemp(dir, "other.txt", s.vmcoreinfo.replace(/NUMBER\(phys_base\)=-?\d+/, "NUMBER(phys_base)=0").replace(/SYMBOL\(init_top_pgt\)=\w+/, "SYMBOL(init_top_pgt)=ffffffff81000000"));
  assert.throws(() => GuestImage.open(join(dir, "g.raw"), { vmcoreinfo: other }), /does not fit this image/);
});

test("library reads physical and virtual memory and VMCOREINFO", (t) => {
  const s = buildSynthetic({ memMiB: 32 });
  const img = GuestImage.open(writeTemp(tempDir(t), "g.raw", s.image));
  try {
    assert.equal(img.vmcoreinfo.osrelease, s.release);
    const pfn = 0x1234;
    const phys = img.readPhys(pfn * 4096, 16);
    assert.deepEqual(Buffer.from(phys), s.image.subarray(pfn * 4096, pfn * 4096 + 16));
    // The same bytes through the direct map (a 1 GiB leaf).
    const virt = img.readVirt(s.pageOffset + BigInt(pfn * 4096), 16);
    assert.deepEqual(virt, phys);
    assert.equal(img.translate(s.pageOffset + 0x123456n), 0x123456);
    assert.equal(img.translate(0x1000n), undefined);
  } finally {
    img.close();
  }
});

test("raw layout from max_pfn: QEMU's splits, and firmware pages below max_pfn", async () => {
  const { splitLayout } = await import("../../src/introspect/raw-layout.js");
  const G = 2 ** 30;
  assert.equal(splitLayout(256 << 20, 0xffe0), undefined);
  // q35, 4 GiB: low 2 GiB, high 2 GiB at 4 GiB; max_pfn exact or a little short.
  assert.equal(splitLayout(4 * G, 0x180000), `0:${2 * G}@0,${4 * G}:${2 * G}@${2 * G}`);
  assert.equal(splitLayout(4 * G, 0x180000 - 32), `0:${2 * G}@0,${4 * G}:${2 * G}@${2 * G}`);
  // pc, 6 GiB: low 3 GiB.
  assert.equal(splitLayout(6 * G, 0x1c0000), `0:${3 * G}@0,${4 * G}:${3 * G}@${3 * G}`);
  assert.throws(() => splitLayout(1 * G, 0x400000), /cannot hold RAM/);
});
