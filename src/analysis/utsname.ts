// The guest's uname: init_uts_ns.name, a struct new_utsname of six
// 65-byte strings (__NEW_UTS_LEN + 1), located by VMCOREINFO alone
// (SYMBOL(init_uts_ns), OFFSET(uts_namespace.name)), so no BTF is needed.
import { GuestcoreError } from "../core/errors.js";
import type { KernelMemory } from "./printk.js";

const FIELD = 65;
const FIELDS = ["sysname", "nodename", "release", "version", "machine", "domainname"] as const;
export type UtsName = Record<(typeof FIELDS)[number], string>;

export function utsName(k: KernelMemory): UtsName {
  const base = k.info.symbol("init_uts_ns");
  if (base === undefined) throw new GuestcoreError("VMCOREINFO has no SYMBOL(init_uts_ns)");
  const off = k.info.offset("uts_namespace.name") ?? 0;
  const raw = k.as.read(base + BigInt(off), FIELD * FIELDS.length, "init_uts_ns.name");
  const out = {} as UtsName;
  FIELDS.forEach((f, i) => {
    const b = raw.subarray(i * FIELD, (i + 1) * FIELD);
    const nul = b.indexOf(0);
    out[f] = Buffer.from(b.subarray(0, nul < 0 ? FIELD : nul)).toString("latin1");
  });
  return out;
}
