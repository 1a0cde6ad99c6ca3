// The crashed guest as recover sees it: where its memory is read, how it
// goes back to the host, what names it in the journal, and how the VM is
// ended. QEMU (over QMP, or its memory file alone once QEMU is gone) and
// Xen (a paused domain read from dom0) fit the same shape.
//
// A Xen domain's layout, in the journal, is the set of pages present when
// its recovery began, as identity stretches (PADDR:SIZE@PADDR): a gfn
// released by a run that died is gone from the p2m, a hole like any
// other, and a rerun tells the two apart only by that record.
import { execFile } from "node:child_process";
import { statSync, unlinkSync } from "node:fs";
import { GuestcoreError, hex } from "../core/errors.js";
import { openQemuGuest, type QemuGuestSource } from "../sources/qemu-guest.js";
import { openRaw, parseLayout } from "../sources/raw.js";
import type { MemorySource, PhysSegment } from "../sources/source.js";
import type { FileSegment } from "../sources/file-backed.js";
import { openXenDomain, type XenDomainSource } from "../sources/xen-live.js";
import type { XenLibPaths } from "../sources/xen-ffi.js";
import { FileReleaser } from "./hole-punch.js";
import { XenReleaser } from "./xen-release.js";
import type { MemoryReleaser } from "./release.js";

const PAGE = 4096;
/**
 * Most stretches a Xen layout records: ~45 bytes each at most, well
 * inside the journal's 64 KiB. A domain ballooned into more pieces gets
 * no layout, and a rerun after a death cannot tell its released pages
 * from its holes.
 */
const MAX_XEN_LAYOUT_STRETCHES = 1024;

export interface GuestIdentity {
  /** The memory file, or "xen:DOMID". */
  memPath: string;
  layout: string;
  memSize: number;
  /** The file's inode (a domain's id for Xen): a journal must match it. */
  memIno: number;
}

export interface CrashedGuest {
  readonly via: "qmp" | "file" | "xen";
  readonly source: MemorySource;
  readonly identity: GuestIdentity;
  readonly releaser: MemoryReleaser;
  /** True once the crashed VM is ended (or was gone from the start). */
  readonly gone: boolean;
  /** Its memory goes when the VM is ended (a QEMU memfd): no early end. */
  readonly volatileBacking?: boolean;
  /** End the crashed VM; its memory stays readable where the backend allows (a named file). */
  end?(): Promise<string>;
  /** Before the dump is final: the guest must not have run meanwhile. */
  verifyStopped(): Promise<void>;
  /** Remove the backing file, once the VM is gone (false: nothing to remove). */
  removeBacking(): boolean;
}

const layoutOf = (segs: readonly FileSegment[]) => segs.map((s) => `${hex(s.start)}:${hex(s.end - s.start)}@${hex(s.fileOffset)}`).join(",");

function fileIdentity(path: string, segs: readonly FileSegment[]): GuestIdentity {
  const st = statSync(path);
  return { memPath: path, layout: layoutOf(segs), memSize: st.size, memIno: st.ino };
}

class QemuCrashedGuest implements CrashedGuest {
  readonly via = "qmp";
  readonly identity: GuestIdentity;
  readonly releaser: FileReleaser;
  constructor(readonly source: QemuGuestSource) {
    this.identity = fileIdentity(source.qemu.backend.memPath, source.segments);
    this.releaser = new FileReleaser(this.identity.memPath, source.segments);
  }
  get gone(): boolean {
    return this.source.quitted;
  }
  /** A memfd's memory goes with QEMU: it may quit only once everything is dumped. */
  get volatileBacking(): boolean {
    return this.source.qemu.backend.volatile;
  }
  async end(): Promise<string> {
    await this.source.quit();
    return "QMP quit";
  }
  async verifyStopped(): Promise<void> {
    if (!this.gone) await this.source.verifyStillStopped();
  }
  removeBacking(): boolean {
    if (!this.gone || this.volatileBacking) return false;
    unlinkSync(this.identity.memPath);
    return true;
  }
}

class FileCrashedGuest implements CrashedGuest {
  readonly via = "file";
  readonly gone = true;
  readonly identity: GuestIdentity;
  readonly releaser: FileReleaser;
  constructor(readonly source: MemorySource & { segments: readonly FileSegment[] }, path: string) {
    this.identity = fileIdentity(path, source.segments);
    this.releaser = new FileReleaser(path, source.segments);
  }
  async verifyStopped(): Promise<void> {}
  removeBacking(): boolean {
    unlinkSync(this.identity.memPath);
    return true;
  }
}

class XenCrashedGuest implements CrashedGuest {
  readonly via = "xen";
  readonly identity: GuestIdentity;
  readonly releaser: XenReleaser;
  private ended = false;
  constructor(readonly source: XenDomainSource, readonly domid: number, libs: XenLibPaths) {
    // The highest gpfn, not the highest present page: a rerun after a
    // death finds the pages released before it gone from the p2m, the last
    // ones perhaps, while Xen's max_mapped_pfn (xc_domain_maximum_gpfn)
    // only ever grows.
    const size = (source.info.maxGpfn + 1) * PAGE;
    this.identity = { memPath: `xen:${domid}`, layout: xenLayout(source.segments), memSize: size, memIno: domid };
    this.releaser = new XenReleaser(domid, { ...libs, releasedBefore: source.released.map((s) => [s.start / PAGE, s.end / PAGE] as [number, number]) });
  }
  get gone(): boolean {
    return this.ended;
  }
  /** xl destroy: the toolstack's way to end a domain (libxl does the device teardown). */
  end(): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile("xl", ["destroy", String(this.domid)], { timeout: 30_000 }, (err, _o, stderr) => {
        if (err) reject(new GuestcoreError(`xl destroy ${this.domid}: ${(stderr || err.message).trim().split("\n")[0]}`));
        else {
          this.ended = true;
          resolve("xl destroy");
        }
      });
    });
  }
  async verifyStopped(): Promise<void> {}
  removeBacking(): boolean {
    return false;
  }
}

export interface AttachOptions {
  qmp?: string;
  memPath?: string;
  /** With memPath: how the file maps to physical memory. With xen: the layout a journal recorded (the pages present then). */
  layout?: string;
  xen?: number;
  xenLibs?: XenLibPaths;
}

export async function attachCrashedGuest(o: AttachOptions): Promise<CrashedGuest> {
  if (o.qmp) return new QemuCrashedGuest(await openQemuGuest(o.qmp, { requireQemu: false }));
  if (o.xen !== undefined) {
    const src = openXenDomain(o.xen, { ...o.xenLibs, presentBefore: o.layout ? xenPresentBefore(o.xen, o.layout) : undefined });
    try {
      return new XenCrashedGuest(src, o.xen, o.xenLibs ?? {});
    } catch (e) {
      src.close();
      throw e;
    }
  }
  if (!o.memPath) throw new GuestcoreError("give the crashed guest's --qmp SOCKET, --mem-path FILE or --xen DOMID");
  const raw = openRaw(o.memPath, o.layout || undefined);
  try {
    return new FileCrashedGuest(raw, o.memPath);
  } catch (e) {
    raw.close();
    throw e;
  }
}

function xenLayout(segs: readonly PhysSegment[]): string {
  if (segs.length > MAX_XEN_LAYOUT_STRETCHES) return "";
  return segs.map((s) => `${hex(s.start)}:${hex(s.end - s.start)}@${hex(s.start)}`).join(",");
}

/** The pfn ranges of a Xen layout (identity stretches of whole pages). */
function xenPresentBefore(domid: number, layout: string): [number, number][] {
  return parseLayout(layout).map((s) => {
    if (s.fileOffset !== s.start || s.start % PAGE !== 0 || s.end % PAGE !== 0) {
      throw new GuestcoreError(`the journal's layout of Xen domain ${domid} is not whole pages of the domain: ${hex(s.start)}:${hex(s.end - s.start)}@${hex(s.fileOffset)}`);
    }
    return [s.start / PAGE, s.end / PAGE];
  });
}
