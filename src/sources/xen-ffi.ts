// FFI bindings (koffi) to the two Xen tool libraries a live domain is read
// through, with only the calls guestcore makes. Declarations follow Xen
// 4.17's public headers (Debian bookworm: libxenforeignmemory.so.1, ABI
// VERS_1.0 symbols; libxenctrl.so.4.17):
//
//   xenforeignmemory_handle *xenforeignmemory_open(struct xentoollog_logger *logger, unsigned open_flags);
//   int   xenforeignmemory_close(xenforeignmemory_handle *fmem);
//   void *xenforeignmemory_map(xenforeignmemory_handle *fmem, uint32_t dom, int prot,
//                              size_t pages, const xen_pfn_t arr[], int err[]);
//   int   xenforeignmemory_unmap(xenforeignmemory_handle *fmem, void *addr, size_t pages);
//   xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger, unsigned open_flags);
//   int   xc_interface_close(xc_interface *xch);
//   int   xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains,
//                               xc_domaininfo_t *info);   /* = struct xen_domctl_getdomaininfo */
//   int   xc_domain_maximum_gpfn(xc_interface *xch, uint32_t domid, xen_pfn_t *gpfns);
//   int   xc_domain_decrease_reservation_exact(xc_interface *xch, uint32_t domid, unsigned long nr_extents,
//                                              unsigned int extent_order, xen_pfn_t *extent_start);
//
// xen_pfn_t is unsigned long (64 bits on x86-64). Both libraries log
// through a xentoollog_logger; by default they print to stderr. We pass
// our own logger (a struct of three function pointers, built once per
// process with koffi callbacks) that formats each message with libc's
// vsnprintf and keeps it, so a failure becomes one GuestcoreError line
// carrying the library's own words instead of stray stderr output.
//
// Libraries are loaded lazily, and so is koffi itself: importing this
// module costs nothing on a machine that never reads a live domain.
// Library paths can be injected (option or environment) so tests can load
// a fake with the same ABI.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { GuestcoreError } from "../core/errors.js";
import { errnoName, requireKoffi } from "../core/libc.js";

type Koffi = typeof import("koffi");
type KoffiFn = (...args: unknown[]) => unknown;

export interface XenLibPaths {
  /** libxenforeignmemory to load (default: $GUESTCORE_XEN_FOREIGNMEMORY_LIB, else libxenforeignmemory.so.1). */
  foreignMemoryLib?: string;
  /** libxenctrl to load (default: $GUESTCORE_XENCTRL_LIB, else libxenctrl.so or the newest libxenctrl.so.X.Y found). */
  xenctrlLib?: string;
}

export interface ForeignMemoryApi {
  path: string;
  open(logger: unknown, flags: number): unknown;
  close(h: unknown): number;
  map(h: unknown, dom: number, prot: number, pages: number, arr: BigUint64Array, err: Int32Array): unknown;
  unmap(h: unknown, addr: unknown, pages: number): number;
}

export interface XenctrlApi {
  path: string;
  open(logger: unknown, dombuildLogger: unknown, flags: number): unknown;
  close(h: unknown): number;
  getinfolist(h: unknown, first: number, max: number, info: Uint8Array): number;
  maximumGpfn(h: unknown, domid: number, out: BigUint64Array): number;
  /**
   * Take extents[0..n) (gpfns, each the base of 2^order pages) away from
   * the domain: 0 when all n were freed, else -1 with errno (EINVAL when
   * Xen freed fewer than n, without saying how many).
   */
  decreaseReservationExact(h: unknown, domid: number, n: number, order: number, extents: BigUint64Array): number;
}

export interface XenLogMessage {
  level: number;
  errno: number;
  context: string;
  text: string;
}

export const PROT_READ = 1;
/** xentoollog levels (xentoollog.h): XTL_NONE 0 … XTL_WARN 7, XTL_ERROR 8, XTL_CRITICAL 9. */
export const XTL_WARN = 7;
export const XTL_ERROR = 8;

let koffiMod: Koffi | undefined;

export function koffi(): Koffi {
  koffiMod ??= requireKoffi("reading a live Xen domain");
  return koffiMod;
}

// ---- logger ---------------------------------------------------------------

const MAX_MESSAGES = 32;
const messages: XenLogMessage[] = [];
let loggerPtr: unknown;

/** The process-wide xentoollog_logger that records messages instead of printing them. */
export function quietLogger(): unknown {
  if (loggerPtr) return loggerPtr;
  const k = koffi();
  const libc = k.load("libc.so.6");
  const vsnprintf = libc.func("int vsnprintf(_Out_ uint8_t *buf, size_t n, const char *fmt, void *ap)") as KoffiFn;
  const VMessage = k.proto("void guestcore_xtl_vmessage(void *logger, int level, int errnoval, const char *context, const char *format, void *ap)");
  const Destroy = k.proto("void guestcore_xtl_destroy(void *logger)");
  const Logger = k.struct("guestcore_xentoollog_logger", {
    vmessage: k.pointer(VMessage),
    progress: "void *",
    destroy: k.pointer(Destroy),
  });
  const buf = Buffer.alloc(1024);
  const onMessage = (_lg: unknown, level: number, errnoval: number, context: string | null, format: string | null, ap: unknown) => {
    let text = format ?? "";
    try {
      // ap is the va_list (on x86-64 a pointer to __va_list_tag), passed on as it came.
      const n = vsnprintf(buf, buf.length, format, ap) as number;
      if (n >= 0) text = buf.toString("utf8", 0, Math.min(n, buf.length - 1));
    } catch {
      // keep the unformatted text
    }
    messages.push({ level, errno: errnoval, context: context ?? "", text: text.replace(/\s+$/, "") });
    if (messages.length > MAX_MESSAGES) messages.shift();
  };
  // Registered for the life of the process: the libraries keep the
  // logger pointer in their handles.
  const vmessage = k.register(onMessage, k.pointer(VMessage));
  const destroy = k.register(() => {}, k.pointer(Destroy));
  const mem = k.alloc(Logger, 1);
  k.encode(mem, Logger, { vmessage, progress: null, destroy });
  loggerPtr = mem;
  return loggerPtr;
}

/** Messages logged since the last call (oldest first), and forget them. */
export function takeXenMessages(): XenLogMessage[] {
  return messages.splice(0, messages.length);
}

/** The most telling logged message, as "context: text", or undefined. */
export function lastXenError(msgs: XenLogMessage[]): string | undefined {
  const errs = msgs.filter((m) => m.level >= XTL_WARN);
  const m = (errs.length ? errs : msgs)[(errs.length ? errs : msgs).length - 1];
  return m ? (m.context ? `${m.context}: ${m.text}` : m.text) : undefined;
}

// ---- errno ----------------------------------------------------------------

export { errnoName };

export function lastErrno(): number {
  return koffi().errno();
}

// ---- libraries --------------------------------------------------------------

const LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib", "/usr/local/lib64"];

/** libxenctrl's soname carries the Xen release (libxenctrl.so.4.17): find the installed ones, newest first. */
function versionedLibs(stem: string): string[] {
  const found: { name: string; ver: number[] }[] = [];
  for (const dir of LIB_DIRS) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      const m = new RegExp(`^${stem.replace(/\./g, "\\.")}\\.so\\.(\\d+)\\.(\\d+)$`).exec(n);
      if (m) found.push({ name: join(dir, n), ver: [Number(m[1]), Number(m[2])] });
    }
  }
  found.sort((a, b) => b.ver[0] - a.ver[0] || b.ver[1] - a.ver[1]);
  return found.map((f) => f.name);
}

const loaded = new Map<string, { lib: ReturnType<Koffi["load"]>; fns: Map<string, KoffiFn> }>();

function loadLib(candidates: string[], what: string, hint: string): { path: string; func(decl: string, name: string): KoffiFn } {
  const k = koffi();
  const errors: string[] = [];
  for (const path of candidates) {
    let entry = loaded.get(path);
    if (!entry) {
      try {
        entry = { lib: k.load(path), fns: new Map() };
      } catch (e) {
        errors.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
        continue;
      }
      loaded.set(path, entry);
    }
    const e = entry;
    return {
      path,
      func(decl: string, name: string): KoffiFn {
        let f = e.fns.get(name);
        if (!f) {
          try {
            f = e.lib.func(decl) as KoffiFn;
          } catch (err) {
            throw new GuestcoreError(`${path} lacks ${name} (${(err as Error).message.split("\n")[0]}): not a ${what} with the Xen 4.x ABI`);
          }
          e.fns.set(name, f);
        }
        return f;
      },
    };
  }
  throw new GuestcoreError(`cannot load ${what} (${errors.join("; ")}): ${hint}`);
}

export function foreignMemoryApi(paths: XenLibPaths = {}): ForeignMemoryApi {
  const explicit = paths.foreignMemoryLib ?? process.env.GUESTCORE_XEN_FOREIGNMEMORY_LIB;
  const lib = loadLib(explicit ? [explicit] : ["libxenforeignmemory.so.1", "libxenforeignmemory.so"], "libxenforeignmemory",
    "install it (Debian: apt-get install libxenforeignmemory1) or set GUESTCORE_XEN_FOREIGNMEMORY_LIB");
  const open = lib.func("void *xenforeignmemory_open(void *logger, unsigned int open_flags)", "xenforeignmemory_open");
  const close = lib.func("int xenforeignmemory_close(void *fmem)", "xenforeignmemory_close");
  const map = lib.func("void *xenforeignmemory_map(void *fmem, uint32_t dom, int prot, size_t pages, const uint64_t *arr, int *err)", "xenforeignmemory_map");
  const unmap = lib.func("int xenforeignmemory_unmap(void *fmem, void *addr, size_t pages)", "xenforeignmemory_unmap");
  return {
    path: lib.path,
    open: (logger, flags) => open(logger, flags),
    close: (h) => close(h) as number,
    map: (h, dom, prot, pages, arr, err) => map(h, dom, prot, pages, arr, err),
    unmap: (h, addr, pages) => unmap(h, addr, pages) as number,
  };
}

export function xenctrlApi(paths: XenLibPaths = {}): XenctrlApi {
  const explicit = paths.xenctrlLib ?? process.env.GUESTCORE_XENCTRL_LIB;
  const candidates = explicit ? [explicit] : ["libxenctrl.so", ...versionedLibs("libxenctrl")];
  const lib = loadLib(candidates, "libxenctrl",
    "install it (Debian bookworm: apt-get install libxenmisc4.17, which ships libxenctrl.so.4.17) or set GUESTCORE_XENCTRL_LIB");
  const open = lib.func("void *xc_interface_open(void *logger, void *dombuild_logger, unsigned int open_flags)", "xc_interface_open");
  const close = lib.func("int xc_interface_close(void *xch)", "xc_interface_close");
  const getinfolist = lib.func("int xc_domain_getinfolist(void *xch, uint32_t first_domain, unsigned int max_domains, uint8_t *info)", "xc_domain_getinfolist");
  const maximumGpfn = lib.func("int xc_domain_maximum_gpfn(void *xch, uint32_t domid, uint64_t *gpfns)", "xc_domain_maximum_gpfn");
  // Resolved on first use: reading a domain must not depend on a symbol only releasing needs.
  let decrease: KoffiFn | undefined;
  const decreaseDecl = "int xc_domain_decrease_reservation_exact(void *xch, uint32_t domid, unsigned long nr_extents, unsigned int extent_order, uint64_t *extent_start)";
  return {
    path: lib.path,
    open: (logger, dlogger, flags) => open(logger, dlogger, flags),
    close: (h) => close(h) as number,
    getinfolist: (h, first, max, info) => getinfolist(h, first, max, info) as number,
    maximumGpfn: (h, domid, out) => maximumGpfn(h, domid, out) as number,
    decreaseReservationExact: (h, domid, n, order, extents) =>
      (decrease ??= lib.func(decreaseDecl, "xc_domain_decrease_reservation_exact"))(h, domid, n, order, extents) as number,
  };
}

/** A view of native memory (a mapping) as bytes; valid until it is unmapped. */
export function nativeBytes(ptr: unknown, len: number): Uint8Array {
  return new Uint8Array(koffi().view(ptr, len));
}

export const PRIVCMD = "/dev/xen/privcmd";
