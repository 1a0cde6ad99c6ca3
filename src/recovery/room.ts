// How much memory the host can give the replacement now: MemAvailable,
// or less when this process sits in a memory cgroup with a limit (the
// replacement it starts is charged there too).
import { readFileSync } from "node:fs";

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** Bytes available to a process started by this one. */
export function hostRoom(): number {
  const meminfo = read("/proc/meminfo") ?? "";
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(meminfo);
  let room = m ? Number(m[1]) * 1024 : Infinity;
  const cg = cgroupLimit();
  if (cg) room = Math.min(room, Math.max(0, cg.limit - cg.usage));
  return room;
}

/** cgroup v1 memory controller or cgroup v2 memory.max of this process, when limited. */
export function cgroupLimit(): { limit: number; usage: number; path: string } | undefined {
  const lines = (read("/proc/self/cgroup") ?? "").split("\n");
  for (const line of lines) {
    const [, ctrls, rel] = line.split(":");
    if (rel === undefined) continue;
    if (ctrls.split(",").includes("memory")) {
      const dir = `/sys/fs/cgroup/memory${rel}`;
      const limit = Number(read(`${dir}/memory.limit_in_bytes`));
      const usage = Number(read(`${dir}/memory.usage_in_bytes`));
      // An unlimited v1 cgroup reports a huge page-rounded LONG_MAX.
      if (Number.isFinite(limit) && Number.isFinite(usage) && limit < 2 ** 60) return { limit, usage, path: dir };
    } else if (ctrls === "") {
      const dir = `/sys/fs/cgroup${rel}`;
      const max = read(`${dir}/memory.max`)?.trim();
      const cur = Number(read(`${dir}/memory.current`));
      if (max && max !== "max" && Number.isFinite(cur)) return { limit: Number(max), usage: cur, path: dir };
    }
  }
  return undefined;
}
