// Loaded modules from the kernel's `modules` list (kernel/module/main.c),
// as lsmod and crash's mod show them: name, where the module's core lies
// and how large it is. The layout is found in BTF, drgn style.
import { GuestcoreError } from "../core/errors.js";
import { listEntries, type Obj, type TypedKernel } from "./typed.js";

export interface ModuleInfo {
  name: string;
  /** Address of the struct module. */
  address: bigint;
  /** Start of the module's core (text first). */
  base: bigint;
  /** Bytes of the module's core, as lsmod's size. */
  size: number;
  /** MODULE_STATE_LIVE, MODULE_STATE_COMING, ... */
  state: string;
}

/**
 * Base and size of a module's core:
 * - 6.4+ (commit ac3b43283923, "module: replace module_layout with
 *   module_memory"): mem[] by enum mod_mem_type; the core is every type
 *   not named MOD_INIT_*, the base that of MOD_TEXT;
 * - 4.5 to 6.3 (commit 7523e4dc5057, "module: use a structure to
 *   encapsulate layout"): core_layout.base and .size;
 * - before: module_core and core_size.
 */
export function moduleCore(k: TypedKernel, m: Obj): { base: bigint; size: number } {
  if (m.hasMember("mem")) {
    const types = k.btf.enumerators(k.type("enum mod_mem_type"));
    const text = types.find((e) => e.name === "MOD_TEXT");
    if (!text) throw new GuestcoreError("enum mod_mem_type has no MOD_TEXT");
    const mem = m.member("mem");
    let size = 0;
    for (const e of types) {
      if (e.name.startsWith("MOD_INIT_") || e.value < 0n || e.value >= BigInt(mem.length)) continue;
      size += mem.array(Number(e.value)).member("size").number();
    }
    return { base: mem.array(Number(text.value)).member("base").ptr(), size };
  }
  if (m.hasMember("core_layout")) {
    return { base: m.member("core_layout.base").ptr(), size: m.member("core_layout.size").number() };
  }
  return { base: m.member("module_core").ptr(), size: m.member("core_size").number() };
}

export function listModules(k: TypedKernel): ModuleInfo[] {
  const head = k.symbol("modules");
  return listEntries(k, head, "struct module", "list").map((m) => {
    const core = moduleCore(k, m);
    const state = m.member("state");
    return { name: m.member("name").string(), address: m.address, ...core, state: state.enumName() ?? String(state.value()) };
  });
}
