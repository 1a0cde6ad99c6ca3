// Xen test helpers: the fake libxenforeignmemory/libxenctrl built from
// test/native/fakexen.c, its counters, the one-line error check, and the
// cached dump-core files repacked from a real fixture's mem.raw.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { repackXenDumpCore } from "../../fixtures/xen-dumpcore.js";
import { GuestcoreError } from "../../src/core/errors.js";
import { koffi } from "../../src/sources/xen-ffi.js";
import type { RealFixture } from "./real.js";

const FAKE_SRC = fileURLToPath(new URL("../../../test/native/fakexen.c", import.meta.url));
let fakeLib: string | undefined;

/** Build libfakexen.so once per process (into a temporary directory removed at exit). */
export function fakeXenLib(): string {
  if (fakeLib) return fakeLib;
  const dir = mkdtempSync(join(tmpdir(), "guestcore-fakexen-"));
  const out = join(dir, "libfakexen.so");
  execFileSync("cc", ["-shared", "-fPIC", "-O2", "-Wall", "-o", out, FAKE_SRC], { stdio: "pipe" });
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  fakeLib = out;
  return out;
}

/** `fn` throws a GuestcoreError of one line matching `pattern` (what the CLI would print). */
export function throwsGuestcore(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof GuestcoreError, `${e.name}: ${e.message}`);
    assert.match(e.message, pattern);
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });
}

export interface FakeXenEnv {
  mem: string;
  domid?: number;
  errPfns?: string;
  latePfns?: string;
  flags?: number;
  maxGpfn?: number;
  /** Highest extent order decrease_reservation accepts (Xen's memop-max-order). */
  maxOrder?: number;
  /**
   * A file holding the released set, so that it outlives the process (as
   * Xen's p2m outlives a dom0 tool killed mid-way) and child processes
   * given this environment share it.
   */
  state?: string;
  /** The domain is destroyed after this many map calls of the process (GUESTCORE_FAKEXEN_DESTROY_AFTER_MAPS). */
  destroyAfterMaps?: number;
}

const ENV_KEYS = ["GUESTCORE_FAKEXEN_MEM", "GUESTCORE_FAKEXEN_DOMID", "GUESTCORE_FAKEXEN_ERR_PFNS", "GUESTCORE_FAKEXEN_LATE_PFNS",
  "GUESTCORE_FAKEXEN_FLAGS", "GUESTCORE_FAKEXEN_MAX_GPFN", "GUESTCORE_FAKEXEN_MAX_ORDER", "GUESTCORE_FAKEXEN_STATE", "GUESTCORE_FAKEXEN_DESTROY_AFTER_MAPS",
  "GUESTCORE_XEN_FOREIGNMEMORY_LIB", "GUESTCORE_XENCTRL_LIB"];

/** Point the Xen libraries at the fake and configure it; returns a function restoring the environment. */
export function useFakeXen(env: FakeXenEnv | undefined): () => void {
  const saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  const lib = fakeXenLib();
  for (const k of ENV_KEYS) delete process.env[k];
  process.env.GUESTCORE_XEN_FOREIGNMEMORY_LIB = lib;
  process.env.GUESTCORE_XENCTRL_LIB = lib;
  if (env) {
    process.env.GUESTCORE_FAKEXEN_MEM = env.mem;
    if (env.domid !== undefined) process.env.GUESTCORE_FAKEXEN_DOMID = String(env.domid);
    if (env.errPfns) process.env.GUESTCORE_FAKEXEN_ERR_PFNS = env.errPfns;
    if (env.latePfns) process.env.GUESTCORE_FAKEXEN_LATE_PFNS = env.latePfns;
    if (env.flags !== undefined) process.env.GUESTCORE_FAKEXEN_FLAGS = String(env.flags);
    if (env.maxGpfn !== undefined) process.env.GUESTCORE_FAKEXEN_MAX_GPFN = String(env.maxGpfn);
    if (env.maxOrder !== undefined) process.env.GUESTCORE_FAKEXEN_MAX_ORDER = String(env.maxOrder);
    if (env.state) process.env.GUESTCORE_FAKEXEN_STATE = env.state;
    if (env.destroyAfterMaps !== undefined) process.env.GUESTCORE_FAKEXEN_DESTROY_AFTER_MAPS = String(env.destroyAfterMaps);
  }
  fakeStats(true);
  return () => {
    for (const k of ENV_KEYS) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  };
}

export interface FakeStats {
  mapCalls: number;
  pagesMapped: number;
  unmapCalls: number;
  outstanding: number;
  opens: number;
  closes: number;
}

/** The fake's counters (since the last reset); reset them when asked. */
export function fakeStats(reset = false): FakeStats {
  const lib = koffi().load(fakeXenLib());
  const out = new BigUint64Array(6);
  (lib.func("void fakexen_stats(uint64_t *out)") as (o: BigUint64Array) => void)(out);
  if (reset) (lib.func("void fakexen_reset(void)") as () => void)();
  const n = [...out].map((x) => Number(BigInt.asIntN(64, x)));
  return { mapCalls: n[0], pagesMapped: n[1], unmapCalls: n[2], outstanding: n[3], opens: n[4], closes: n[5] };
}

export interface FakeReleaseStats {
  /** xc_domain_decrease_reservation_exact calls. */
  calls: number;
  /** Extents wholly freed. */
  extents: number;
  /** Pages freed (those of a failed extent included). */
  pages: number;
  /** Pages released now (kept across handle closes, zeroed by a reset). */
  released: number;
  xcOpens: number;
  xcCloses: number;
}

/** The fake's decrease_reservation counters (since the last reset). */
export function fakeReleaseStats(): FakeReleaseStats {
  const lib = koffi().load(fakeXenLib());
  const out = new BigUint64Array(6);
  (lib.func("void fakexen_release_stats(uint64_t *out)") as (o: BigUint64Array) => void)(out);
  const n = [...out].map(Number);
  return { calls: n[0], extents: n[1], pages: n[2], released: n[3], xcOpens: n[4], xcCloses: n[5] };
}

/**
 * xenforeignmemory_map requests of a pfn that was released at the time
 * (since the last reset): the fake refuses each with EINVAL, and a reader
 * that counts none never came back for a page it had given away.
 */
export function fakeReleasedMaps(): number {
  const lib = koffi().load(fakeXenLib());
  return Number((lib.func("uint64_t fakexen_released_maps(void)") as () => bigint)());
}

/**
 * The fixture's mem.raw repacked as Xen dump-cores (HVM and PV), cached
 * beside it and rebuilt when the fixture's marker changes (a rebuilt
 * fixture is a new boot).
 */
export function xenCores(fx: RealFixture): { hvm: string; pv: string } {
  const hvm = join(fx.dir, "xen-hvm.core");
  const pv = join(fx.dir, "xen-pv.core");
  const stamp = join(fx.dir, "xen-cores.json");
  const current = existsSync(stamp) && existsSync(hvm) && existsSync(pv) && JSON.parse(readFileSync(stamp, "utf8")).marker === fx.marker;
  if (!current) {
    rmSync(stamp, { force: true });
    repackXenDumpCore(fx.raw, hvm, { kind: "hvm" });
    repackXenDumpCore(fx.raw, pv, { kind: "pv" });
    writeFileSync(`${stamp}.tmp`, JSON.stringify({ marker: fx.marker, hvm: "xen-hvm.core", pv: "xen-pv.core" }) + "\n");
    renameSync(`${stamp}.tmp`, stamp);
  }
  return { hvm, pv };
}
