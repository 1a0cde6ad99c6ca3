// BTF against VMCOREINFO: both describe the running kernel's layouts, one
// written by pahole from DWARF at build time, the other by the kernel's own
// offsetof()/sizeof() (kernel/crash_core.c). Where both name a layout they
// must agree; a disagreement means the BTF (or VMCOREINFO) belongs to
// another kernel, or this reader is wrong.
import { BTF_KIND as K, type Btf } from "./btf.js";
import type { VmcoreInfo } from "./vmcoreinfo.js";

export interface LayoutCheck {
  key: string;
  vmcoreinfo: number;
  btf?: number;
}

export interface LayoutReport {
  /** Entries both describe and that agree. */
  agreed: LayoutCheck[];
  /** Entries both describe that do not agree. */
  mismatched: LayoutCheck[];
  /** OFFSET()/SIZE()/LENGTH(x.y) entries BTF cannot resolve. */
  unresolved: string[];
  /** LENGTH(name) entries of variables or macros, which vmlinux BTF does not describe. */
  notInBtf: string[];
}

function aggregate(btf: Btf, name: string): number | undefined {
  for (const k of ["struct", "union", "typedef", "enum"] as const) {
    const id = btf.find(k, name);
    if (id !== undefined) return id;
  }
  return undefined;
}

export function checkLayouts(btf: Btf, info: VmcoreInfo): LayoutReport {
  const r: LayoutReport = { agreed: [], mismatched: [], unresolved: [], notInBtf: [] };
  for (const [key, text] of info.entries) {
    const m = /^(OFFSET|SIZE|LENGTH)\((.+)\)$/.exec(key);
    if (!m || !/^\d+$/.test(text)) continue;
    const want = Number(text);
    const [what, name] = [m[1], m[2]];
    const dot = name.indexOf(".");
    let got: number | undefined;
    if (what === "SIZE") {
      const id = aggregate(btf, name);
      if (id !== undefined) got = btf.sizeOf(id);
    } else if (dot < 0) {
      // LENGTH(mem_section), LENGTH(printk_info_subsystem): a variable's
      // array length or a macro; vmlinux BTF has neither.
      r.notInBtf.push(key);
      continue;
    } else {
      const id = aggregate(btf, name.slice(0, dot));
      const loc = id === undefined ? undefined : btf.member(id, name.slice(dot + 1));
      if (loc && what === "OFFSET") got = loc.bitOffset / 8;
      if (loc && what === "LENGTH") {
        const t = btf.type(btf.resolve(loc.type));
        if (t.kind === K.ARRAY) got = t.nelems;
      }
    }
    if (got === undefined) r.unresolved.push(key);
    else (got === want ? r.agreed : r.mismatched).push({ key, vmcoreinfo: want, btf: got });
  }
  return r;
}
