// kallsyms both ways against the kernel's symbol table as nm reads it from
// the debug vmlinux (the System.map), slid by KASLR's offset: the table
// guestcore decodes from memory holds exactly the symbols scripts/kallsyms
// keeps, at the same addresses; and addresses resolve to name+offset/size
// as the kernel's kallsyms_lookup_size_offset() computes them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GuestImage } from "../../src/image.js";
import { Kallsyms } from "../../src/introspect/kallsyms.js";
import { CACHE, realFixture } from "../helpers/real.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));

interface NmSym { address: bigint; type: string; name: string }

function nmOf(vmlinux: string): NmSym[] {
  const out = execFileSync("nm", [vmlinux], { encoding: "latin1", maxBuffer: 256 << 20 });
  return out.trim().split("\n").map((l) => {
    const [a, type, name] = l.split(" ");
    return { address: BigInt("0x" + a), type, name };
  });
}

/**
 * What the kernel's table leaves out of nm's list (scripts/kallsyms and
 * the link): absolute symbols (the per-cpu ones are data symbols at small
 * addresses), .L local labels, the export tables' __crc_/__kstrtab_/
 * __kstrtabns_ entries, and kallsyms' own arrays (scripts/kallsyms'
 * ignored_symbols).
 */
function inKallsyms(s: NmSym): boolean {
  return s.type !== "a" && s.type !== "A" && !/^(\.L|__crc_|__kstrtab_|__kstrtabns_)/.test(s.name)
    && !/^kallsyms_(addresses|offsets|relative_base|num_syms|names|markers|token_table|token_index|seqs_of_names)$/.test(s.name);
}

// A seeded xorshift: the same samples every run.
function sampler(seed: number) {
  let x = seed;
  return (n: number) => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) % n);
}

for (const profile of ["q35-256m", "q35-256m-nokaslr"]) {
  test(`${profile}: kallsyms name -> address and address -> name+off/size agree with nm on the debug vmlinux`, () => {
    const fx = realFixture(profile);
    const vmlinux = join(CACHE, "vmlinux", `vmlinux-${fx.release}`);
    if (!existsSync(vmlinux)) throw new Error(`missing ${vmlinux}: run 'bash fixtures/check-tools.sh ${fx.elf} "${fx.marker}"' once, it extracts it`);
    const img = GuestImage.open(fx.elf);
    let ks: Kallsyms;
    let slide: bigint;
    try {
      ks = Kallsyms.load(img.kernel)!;
      slide = img.kernel.kaslrOffset;
    } finally {
      img.close();
    }
    assert.ok(ks, "the kernel's table");
    if (profile.endsWith("nokaslr")) assert.equal(slide, 0n);
    else assert.notEqual(slide, 0n);
    // Per-cpu symbols are offsets into the per-cpu area: KASLR does not move them.
    const slid = (s: NmSym) => (s.address < 0xffffffff00000000n ? s.address : s.address + slide);
    const nm = nmOf(vmlinux).filter(inKallsyms).map((s) => ({ ...s, address: slid(s) }));

    // The whole table, as a multiset of (name, address): both ways at once.
    const key = (name: string, a: bigint) => `${name} ${a.toString(16)}`;
    const theirs = nm.map((s) => key(s.name, s.address)).sort();
    const ours = [...ks.entries()].map((s) => key(s.name, s.address)).sort();
    assert.equal(ours.length, theirs.length, "as many symbols as nm lists");
    assert.deepEqual(ours, theirs);

    // name -> address on random names that nm lists once.
    const counts = new Map<string, number>();
    for (const s of nm) counts.set(s.name, (counts.get(s.name) ?? 0) + 1);
    const unique = nm.filter((s) => counts.get(s.name) === 1);
    const pick = sampler(0x5eed1234);
    for (let i = 0; i < 3000; i++) {
      const s = unique[pick(unique.length)];
      assert.equal(ks.lookup(s.name), s.address, s.name);
    }

    // address -> name+off/size: the last nm symbol at or below, any of its
    // aliases, sized to the next higher address (the last one to _end).
    const sorted = [...nm].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    const stext = nm.find((s) => s.name === "_stext")!.address;
    const end = nm.find((s) => s.name === "_end")!.address;
    const inImage = sorted.filter((s) => s.address >= stext && s.address < end);
    const distinct = [...new Set(inImage.map((s) => s.address))];
    const aliases = new Map<bigint, string[]>();
    for (const s of inImage) aliases.set(s.address, [...(aliases.get(s.address) ?? []), s.name]);
    for (let i = 0; i < 3000; i++) {
      const k = pick(distinct.length);
      const start = distinct[k];
      const next = k + 1 < distinct.length ? distinct[k + 1] : end;
      const size = next - start;
      // The symbol's start, its last byte, or a random byte inside.
      const offset = i % 3 === 0 ? 0n : i % 3 === 1 ? size - 1n : BigInt(pick(Number(size)));
      const where = ks.locate(start + offset);
      assert.ok(where, `0x${(start + offset).toString(16)}`);
      assert.ok(aliases.get(start)!.includes(where.name), `${where.name} is one of ${aliases.get(start)!.slice(0, 5).join(", ")}`);
      assert.deepEqual([where.address, where.offset, where.size], [start, offset, size], where.name);
      assert.equal(ks.format(start + offset), `${where.name}+0x${offset.toString(16)}/0x${size.toString(16)}`);
    }
    // The kernel's own bounds: [_stext, _end).
    assert.equal(ks.locate(stext - 1n), undefined);
    assert.equal(ks.locate(end), undefined);
    assert.ok(ks.locate(end - 1n));
    // Of the aliases at _stext, the kernel prints the one scripts/kallsyms
    // sorts first: not the linker script's _stext/_text but the code.
    assert.equal(ks.format(stext), `startup_64+0x0/0x${(distinct[1] - stext).toString(16)}`);

    // The command: both ways, and a miss is exit status 1.
    const panic = nm.find((s) => s.name === "panic")!.address;
    const out = execFileSync(process.execPath, [CLI, "sym", fx.elf, "panic", `0x${(panic + 0x10n).toString(16)}`, "panic+0x10"], { encoding: "utf8" });
    const hex16 = (a: bigint) => a.toString(16).padStart(16, "0");
    const size = ks.locate(panic)!.size.toString(16);
    assert.equal(out, `${hex16(panic)} T panic\n${hex16(panic + 0x10n)} T panic+0x10/0x${size}\n${hex16(panic + 0x10n)} T panic+0x10/0x${size}\n`);
    assert.throws(() => execFileSync(process.execPath, [CLI, "sym", fx.elf, "no_such_symbol_here"], { stdio: "pipe" }),
      (e: { status: number; stderr: Buffer }) => e.status === 1 && /no symbol no_such_symbol_here/.test(e.stderr.toString()));
  });
}
