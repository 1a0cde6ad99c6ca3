// `guestcore read` against other readers of the same memory: hexdump -C
// of the raw memory file at the physical offset (and the file offset QEMU
// maps RAM above 4 GiB to), drgn's prog.read by its own DWARF symbols;
// `guestcore map` against an XML parser (python's), the page filter's
// counts and the PNG's own header.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, openSync, readFileSync, readSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GuestImage } from "../../src/image.js";
import { CLASS } from "../../src/filter/classes.js";
import { realFixture, REAL_PROFILES } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";
import { drgnOracle } from "../helpers/inspect-oracle.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const gc = (...args: string[]) => execFileSync(process.execPath, [CLI, ...args], { encoding: "utf8", maxBuffer: 256 << 20 });
const gcFail = (args: string[], env?: NodeJS.ProcessEnv) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: env ?? process.env });

function fileBytes(path: string, offset: number, len: number): Buffer {
  const fd = openSync(path, "r");
  try {
    const b = Buffer.alloc(len);
    assert.equal(readSync(fd, b, 0, len, offset), len);
    return b;
  } finally {
    closeSync(fd);
  }
}

for (const profile of REAL_PROFILES) {
  test(`${profile}: read --phys equals hexdump -C of the raw file; every input form gives the same bytes`, () => {
    const fx = realFixture(profile);
    // Below the PCI hole the raw memory file is physical memory itself.
    for (const [at, len] of [["0x9f000", "0x2000"], ["0x1000000", "64K"], ["0x100", "5"]]) {
      const mine = gc("read", fx.raw, at, len, "--phys");
      const theirs = execFileSync("hexdump", ["-C", "-s", at, "-n", String(parseLen(len)), fx.raw], { encoding: "utf8" });
      assert.equal(mine, theirs, `${at} ${len}`);
      const v = execFileSync("hexdump", ["-v", "-C", "-s", at, "-n", String(parseLen(len)), fx.raw], { encoding: "utf8" });
      assert.equal(gc("read", fx.raw, at, len, "--phys", "--no-squeeze"), v, `${at} ${len} -v`);
      for (const input of [fx.elf, join(fx.dir, "vmcore.kdump-zlib")]) {
        assert.equal(JSON.parse(gc("read", input, at, len, "--json")).hex, fileBytes(fx.raw, Number(BigInt(at)), parseLen(len)).toString("hex"), input);
      }
    }
  });
}

function parseLen(s: string): number {
  const m = /^(0x[0-9a-f]+|\d+)(K?)$/i.exec(s)!;
  return Number(BigInt(m[1])) * (m[2] ? 1024 : 1);
}

test("q35-4g: read --phys above 4 GiB comes from the raw file's offset 2 GiB (QEMU's q35 split); errors are one line", () => {
  const fx = realFixture("q35-4g");
  const j = JSON.parse(gc("read", fx.raw, "0x100000000", "16K", "--json"));
  assert.equal(j.space, "physical");
  assert.equal(j.hex, fileBytes(fx.raw, 2 ** 31, 16384).toString("hex"));
  assert.equal(JSON.parse(gc("read", fx.elf, "0x100000000", "16K", "--json")).hex, j.hex);
  // The PCI hole (2 to 4 GiB) is not RAM.
  const hole = gcFail(["read", fx.elf, "0x90000000", "16"]);
  assert.equal(hole.status, 2);
  assert.match(hole.stderr, /^guestcore: physical address 0x90000000 is not in the elf image\n$/);
});

test("q35-256m: read by symbol equals drgn's prog.read; bad ranges fail clearly; a filtered dump says a page is excluded", (t) => {
  const fx = realFixture("q35-256m");
  const dir = tempDir(t);
  try {
    const drgnReads = drgnOracle(fx).reads;
    for (const r of drgnReads) {
      const j = JSON.parse(gc("read", fx.elf, r.name, String(r.hex.length / 2), "--json"));
      assert.equal(BigInt("0x" + j.address), BigInt(r.address), `${r.name}'s address`);
      assert.equal(j.space, "virtual");
      assert.equal(j.hex, r.hex, r.name);
    }
    // NAME+OFFSET and the text form.
    const banner = drgnReads.find((r) => r.name === "linux_banner")!;
    const off = JSON.parse(gc("read", fx.elf, "linux_banner+0x10", "32", "--json"));
    assert.equal(off.hex, banner.hex.slice(32, 96));
    const text = gc("read", fx.elf, "linux_banner", "32");
    const base = BigInt(banner.address).toString(16).padStart(16, "0");
    assert.match(text, new RegExp(`^${base}  4c 69 6e 75 78 20 76 65  72 73 69 6f 6e 20 36 2e  \\|Linux version 6\\.\\|\n`));
    assert.ok(text.endsWith(`${(BigInt(banner.address) + 32n).toString(16).padStart(16, "0")}\n`));

    for (const [args, re] of [
      [["read", fx.elf, "0xffffffffff600000", "16"], /^guestcore: virtual address 0xffffffffff600000 is not mapped by the kernel's page tables\n$/],
      [["read", fx.elf, "0x0", "17M"], /^guestcore: length 17825792: give 1 to 16777216 bytes\n$/],
      [["read", fx.elf, "no_such_symbol_x"], /^guestcore: no symbol no_such_symbol_x\n$/],
      [["read", fx.elf, "init_uts_ns", "16", "--phys"], /^guestcore: init_uts_ns is a virtual address: leave out --phys\n$/],
      [["read", fx.elf, "0x10000000", "16", "--phys"], /^guestcore: physical address 0x10000000 is not in the elf image\n$/],
    ] as [string[], RegExp][]) {
      const r = gcFail(args);
      assert.equal(r.status, 2, args.join(" "));
      assert.match(r.stderr, re);
    }
    // A free page is not in a -d 31 kdump.
    const kd = join(dir, "d31.kdump");
    gc("dump", fx.elf, "-d", "31", "-o", kd);
    const img = GuestImage.open(fx.elf);
    let freePfn = -1;
    try {
      img.pageStats(31, (w) => {
        if (freePfn < 0) {
          const i = w.cls.indexOf(CLASS.FREE);
          if (i >= 0) freePfn = w.pfnStart + i;
        }
      });
    } finally {
      img.close();
    }
    const r = gcFail(["read", kd, "0x" + (freePfn * 4096).toString(16), "16", "--phys"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /is excluded from the dump\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const SVG_CHECK = String.raw`
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
legend = {g.get("data-class"): int(g.get("data-pages")) for g in root.iter(ns + "g") if g.get("class") == "legend"}
texts = [t.text for t in root.iter(ns + "text")]
print(json.dumps(dict(width=root.get("width"), height=root.get("height"), legend=legend, rects=len(list(root.iter(ns + "rect"))), title=texts[0])))
`;

for (const profile of ["q35-256m", "q35-4g"]) {
  test(`${profile}: map writes an SVG that parses, whose totals are pageStats' counts, and a PNG of its size`, (t) => {
    const fx = realFixture(profile);
    const dir = tempDir(t);
    try {
      const svg = join(dir, "map.svg");
      const t0 = performance.now();
      const j = JSON.parse(gc("map", fx.elf, "-o", svg, "--png", "--json"));
      const ms = performance.now() - t0;
      const parsed = JSON.parse(execFileSync("/usr/bin/python3", ["-c", SVG_CHECK, svg], { encoding: "utf8" }));
      const img = GuestImage.open(fx.elf);
      let r;
      try {
        r = img.pageStats(31);
      } finally {
        img.close();
      }
      assert.deepEqual(parsed.legend, {
        kernel: r.keptCount, cache: r.counts.cache, cachePrivate: r.counts.cachePrivate, user: r.counts.user, free: r.counts.free,
        zero: r.counts.zero, other: r.counts.hwpoison + r.counts.offline, hole: r.maxPfn - r.present,
      });
      assert.match(parsed.title, new RegExp(`Linux ${fx.release.replace(/\./g, "\\.")} \\(x86_64\\)`));
      assert.ok(parsed.rects > 20, `${parsed.rects} rects`);
      const png = readFileSync(join(dir, "map.png"));
      assert.equal(png.subarray(1, 4).toString("latin1"), "PNG");
      assert.equal(png.subarray(12, 16).toString("latin1"), "IHDR");
      assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [Number(parsed.width), Number(parsed.height)]);
      assert.equal(j.png, join(dir, "map.png"));
      // A -d 31 kdump of the capture draws the same totals: its bitmap 1 and mem_map say what every page was.
      if (profile === "q35-256m") {
        const kd = join(dir, "d31.kdump");
        gc("dump", fx.elf, "-d", "31", "-o", kd);
        const fromKdump = JSON.parse(gc("map", kd, "-o", join(dir, "kd.svg"), "--json"));
        assert.deepEqual(fromKdump.totals, j.totals);
        assert.equal(fromKdump.unreadable, 0);
      }
      // Without rsvg-convert: one line that names the package, and no PNG left behind.
      rmSync(join(dir, "map.png"));
      const noRenderer = gcFail(["map", fx.elf, "-o", svg, "--png"], { ...process.env, PATH: "/nonexistent" });
      assert.equal(noRenderer.status, 2);
      assert.match(noRenderer.stderr, /^guestcore: PNG output needs rsvg-convert, which is not installed \(Debian: apt-get install librsvg2-bin\)[^\n]*\n$/);
      assert.throws(() => readFileSync(join(dir, "map.png")));
      console.log(`${profile}: map of ${r.maxPfn} pages, ${j.pfnsPerCell} a cell, ${parsed.rects} rects, SVG+PNG in ${ms.toFixed(0)} ms`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
