// recover --xen end to end: the real q35-256m capture served as Xen domain
// 7 by the fake libxenforeignmemory/libxenctrl (test/native/fakexen.c,
// Xen 4.17's ABI), read with the live-domain source and handed back with
// xc_domain_decrease_reservation_exact as the dump goes.
//
// Judges: makedumpfile's bitmap 2 and zero pages on the fixture's ELF;
// libkdumpfile reading every page of the dump against mem.raw; and the
// fake's own p2m: which gpfns it gave up (once each: it refuses a second
// release of a gpfn, as Xen does, and the release would fail the run), its
// tot_pages, and every map request of a gpfn released at the time (it
// refuses those with EINVAL, as Xen does, and the read would fail the
// run; counting them says so outright).
//
// The kills: recover in a child process with the fake's released set in
// a state file (it outlives the process, as Xen's p2m outlives a dom0
// tool), SIGKILLed right after its first release, or once it has released
// kept pages after the first durable stretch of the dump. The rerun finds
// those gpfns gone from the domain: it must take the pages present when
// the recovery began from the journal, read the released kept ones back
// from the dead run's partial dump, and release only what is left.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { hex } from "../../src/core/errors.js";
import { readJournal } from "../../src/recovery/journal.js";
import { recover, type RecoverReport } from "../../src/recovery/recover.js";
import { firstDifference, makedumpfileOracle, popcount, readKdumpBitmaps, realFixture, type OracleResult, type RealFixture } from "../helpers/real.js";
import { libkdumpfile } from "../helpers/oracles.js";
import { scratchDir } from "../helpers/synthetic.js";
import { fakeReleasedMaps, fakeReleaseStats, useFakeXen } from "../helpers/xen.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const PAGE = 4096;
const DOMID = 7;

interface Judged {
  fx: RealFixture;
  mdf: OracleResult;
  /** Pages of the domain (mem.raw, no holes). */
  present: number;
  /** Pages the dump holds data for (makedumpfile's bitmap 2 minus its zero pages). */
  kept: number;
}

function judges(): Judged {
  const fx = realFixture("q35-256m");
  const mdf = makedumpfileOracle(fx, 31);
  return { fx, mdf, present: statSync(fx.raw).size / PAGE, kept: popcount(mdf.nonZero, mdf.maxMapnr) };
}

/** The dump at `out` is makedumpfile's page set, and every page libkdumpfile reads is mem.raw's. */
function assertDumpRight(j: Judged, out: string, what: string): void {
  const bm = readKdumpBitmaps(out);
  assert.equal(bm.maxMapnr, j.mdf.maxMapnr, `${what}: max_mapnr`);
  assert.equal(firstDifference(bm.bitmap2, j.mdf.bitmap2, bm.maxMapnr), -1, `${what}: bitmap 2 equals makedumpfile's`);
  assert.equal(firstDifference(bm.nonZero, j.mdf.nonZero, bm.maxMapnr), -1, `${what}: zero pages equal makedumpfile's`);
  const pages = popcount(j.mdf.bitmap2, j.mdf.maxMapnr);
  assert.match(libkdumpfile(out, j.fx.raw, pages), new RegExp(`^ok libkdumpfile ${pages} pages`, "m"), what);
}

/** Nothing of the recover is left beside the dump: no journal, no partial. */
function assertNoLeftovers(out: string, what: string): void {
  assert.deepEqual(readdirSync(dirname(out)).filter((f) => f.startsWith(`.${basename(out)}`)), [], `${what}: no journal or partial left`);
}

/** Pages a fake state file marks released (one bit per pfn). */
function releasedInState(state: string, pages: number): number {
  return existsSync(state) ? popcount(readFileSync(state), pages) : 0;
}

const notes = (r: RecoverReport) => (r.timeline.events as { note?: string }[]).flatMap((e) => (e.note ? [e.note] : []));
const phases = (r: RecoverReport) => Object.keys(r.timeline.phases as Record<string, unknown>);

/**
 * Run with PATH holding no xl: on a real dom0 an `xl destroy 7` must never
 * reach a real domain 7, and here it shows recover's answer to a toolstack
 * that cannot run.
 */
async function withoutXl<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.PATH;
  process.env.PATH = dir;
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

interface Domain {
  j: Judged;
  dir: string;
  /** The fake's released set. */
  state: string;
  /** Where the dump goes. */
  out: string;
}

/** The real capture as fake Xen domain 7, with its released set in a state file, for `fn`. */
async function withFakeDomain(fn: (d: Domain) => Promise<void>): Promise<void> {
  const j = judges();
  const dir = scratchDir();
  const state = join(dir, "fakexen.state");
  const restore = useFakeXen({ mem: j.fx.raw, domid: DOMID, state });
  try {
    await fn({ j, dir, state, out: join(dir, "dom7.kdump") });
  } finally {
    restore();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("recover --xen 7 -d 31 on a fake domain holding the real capture: makedumpfile's dump, every page released once and never mapped after", { timeout: 300_000 }, () => withFakeDomain(async ({ j, dir, state, out }) => {
  let atOnce: Uint8Array | undefined;
  const report = await withoutXl(dir, () => recover({
    xen: DOMID, output: out, level: 31, quitCrashed: "never",
    // The gpfns the fake had given up when recover said its first release was done.
    onPhase: (p) => { if (p === "released") atOnce = readFileSync(state); },
  }));
  assert.equal(report.memPath, `xen:${DOMID}`);
  assert.equal(report.format, "kdump");
  assert.equal(report.resumed, false);
  assert.equal(report.kernelRelease, j.fx.release);
  assertDumpRight(j, out, "recover --xen");
  assertNoLeftovers(out, "recover --xen");

  // Before the dump began: exactly the pages the dump keeps no data for
  // (excluded and zero pages), as makedumpfile counts them.
  const notKept = j.mdf.original - j.mdf.remaining;
  assert.equal(notKept, Object.values(j.mdf.counts).reduce((a, b) => a + b, 0));
  assert.equal(report.pages.present, j.present);
  assert.equal(report.pages.kept, j.kept);
  assert.equal(report.pages.releasedAtOnce, notKept, "released at once = makedumpfile's excluded and zero pages");
  assert.ok(atOnce, "the first release was reported");
  const notKeptSet = j.mdf.nonZero.map((b) => ~b & 0xff);
  assert.equal(firstDifference(atOnce, notKeptSet, j.present), -1, "the fake had given up exactly those pages when the dump began");
  assert.equal(report.heldBytes.atAttach, j.present * PAGE, "tot_pages at attach: the whole domain");
  assert.equal(report.heldBytes.afterPrerelease, (j.present - notKept) * PAGE, "tot_pages after the first release: the kept pages");

  // Every present page went back exactly once: the fake freed as many
  // pages as it holds released (a second release of a gpfn fails, and
  // would have failed the run), and its tot_pages is 0.
  const f = fakeReleaseStats();
  assert.equal(f.released, j.present, "every page of the domain released");
  assert.equal(f.pages, j.present, "no page released twice");
  assert.equal(report.heldBytes.atEnd, 0, "tot_pages at the end: 0");
  assert.equal(f.xcCloses, f.xcOpens, "every libxenctrl handle closed");
  // The dump never asked for a page it had given back.
  assert.equal(fakeReleasedMaps(), 0, "no map request of a released gpfn");
}));

test("recover --xen 7 with the default --quit-crashed end and no xl: the dump succeeds, the timeline says xl destroy could not run", { timeout: 300_000 }, () => withFakeDomain(async ({ j, dir, out }) => {
  const seen: string[] = [];
  const report = await withoutXl(dir, () => recover({ xen: DOMID, output: out, level: 31, onNote: (n) => seen.push(n) }));
  const n = notes(report).filter((x) => /xl destroy/.test(x));
  assert.equal(n.length, 1, `one note of the failed xl destroy: ${JSON.stringify(notes(report))}`);
  assert.match(n[0], new RegExp(`^could not end the crashed VM: xl destroy ${DOMID}: .*ENOENT`));
  assert.ok(seen.includes(n[0]), "the note went to onNote too");
  assert.ok(!phases(report).includes("crashed-vm-gone"), "the crashed VM is not reported gone");
  assert.ok(phases(report).includes("done"));
  assertDumpRight(j, out, "recover --xen, xl destroy failing");
  assertNoLeftovers(out, "recover --xen, xl destroy failing");
  assert.equal(fakeReleaseStats().released, j.present, "every page released all the same");
  assert.equal(report.heldBytes.atEnd, 0);
}));

/**
 * Run `recover --xen 7` in a child and SIGKILL it as soon as the fake's
 * state file holds at least `killAt` released pages; resolves once it died.
 */
function recoverKilled(out: string, state: string, pages: number, killAt: number, path: string): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    // Never an xl of the host's own: --quit-crashed never, and a PATH without xl.
    const p = spawn(process.execPath, [CLI, "recover", "--xen", String(DOMID), "-o", out, "-d", "31", "--rate", "fixed:4M", "--quit-crashed", "never"],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, PATH: path } });
    let stderr = "";
    let sent = false;
    p.stderr.on("data", (d) => (stderr += d));
    const poll = setInterval(() => {
      if (!sent && releasedInState(state, pages) >= killAt) {
        sent = true;
        p.kill("SIGKILL");
      }
    }, 10);
    p.on("exit", (code, signal) => {
      clearInterval(poll);
      resolve({ code, signal, stderr });
    });
  });
}

// Two deaths: right after the first release (the domain has lost its
// excluded and zero pages, the dump has kept nothing yet), and once kept
// pages went back after their first durable stretch of the dump (the
// domain has lost pages only the partial holds, VMCOREINFO's among them).
for (const when of ["after the first release", "after releasing kept pages"] as const) {
  test(`recover --xen 7 killed with SIGKILL ${when}, then rerun: the dump is makedumpfile's, every page released once`, { timeout: 600_000 }, (t) => withFakeDomain(async ({ j, dir, state, out }) => {
    const notKept = j.mdf.original - j.mdf.remaining;
    // 4 MB/s stretches the ~17 MB dump over seconds; the first release
    // gives up notKept pages at once, and any page beyond is a kept one.
    const keptGone = when === "after releasing kept pages";
    const killed = await recoverKilled(out, state, j.present, keptGone ? notKept + 1 : notKept, dir);
    assert.equal(killed.signal, "SIGKILL", `the first run was to be killed mid-dump, it ended with ${killed.code}: ${killed.stderr}`);
    assert.ok(!existsSync(out), "the final name is absent after the kill");
    const journal = readJournal(out);
    assert.ok(journal, "the dead run's journal is left");
    assert.equal(journal.memPath, `xen:${DOMID}`);
    assert.equal(journal.layout, `0x0:${hex(j.present * PAGE)}@0x0`, "the journal records the pages present when the recovery began");
    const releasedByDead = releasedInState(state, j.present);
    if (keptGone) assert.ok(releasedByDead > notKept && releasedByDead < j.present, `the dead run released ${releasedByDead} pages: some kept ones, not all`);
    else assert.ok(releasedByDead >= notKept && releasedByDead < j.present, `the dead run released ${releasedByDead} pages`);
    t.diagnostic(`killed after releasing ${releasedByDead} pages (${releasedByDead - notKept} of them kept pages)`);

    const report = await withoutXl(dir, () => recover({ xen: DOMID, output: out, level: 31, quitCrashed: "never" }));
    assert.equal(report.resumed, true);
    assert.equal(report.heldBytes.atAttach, (j.present - releasedByDead) * PAGE, "tot_pages at the rerun's attach: what the dead run left");
    assert.equal(report.pages.present, j.present, "the released pages are present still, as they were when the recovery began");
    if (keptGone) {
      const resumed = notes(report).map((x) => /^resuming: (\d+) partial dump\(s\) hold (\d+) released pages/.exec(x)).find((m) => m);
      assert.ok(resumed, `a resuming note: ${JSON.stringify(notes(report))}`);
      assert.equal(Number(resumed[1]), 1, "one partial");
      assert.ok(Number(resumed[2]) >= releasedByDead - notKept, `the partial holds the ${releasedByDead - notKept} kept pages the dead run released`);
    }
    assertDumpRight(j, out, `after the rerun (killed ${when})`);
    assertNoLeftovers(out, "after the rerun");

    // Each page went back once over both runs: the rerun released exactly
    // what the dead run had not (the fake refuses a gpfn twice, and the
    // run would have failed), and now none is left.
    assert.equal(releasedInState(state, j.present), j.present, "every page of the domain released");
    const f = fakeReleaseStats();
    assert.equal(f.released, j.present);
    assert.equal(f.pages, j.present - releasedByDead, "the rerun released only what the dead run had not");
    assert.equal(report.heldBytes.atEnd, 0, "tot_pages at the end: 0");
    // The rerun's only contact with the gpfns the dead run had released is
    // its probe of the domain (one map request each); the dump read them
    // from the partial or as the zeros they were released as.
    assert.equal(fakeReleasedMaps(), releasedByDead, "released gpfns requested once each, by the probe, never by a read");
  }));
}
