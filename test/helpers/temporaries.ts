// The temporaries a dump writes beside its output (.NAME.guestcore-PID.tmp),
// seen from outside: which are there, and waiting for one to grow.
import { readdirSync, statSync, watch } from "node:fs";
import { join } from "node:path";

const TEMPORARY = /^\.(.+)\.guestcore-(\d+)\.tmp$/;

export function temporaries(dir: string): { name: string; final: string; pid: number }[] {
  return readdirSync(dir).flatMap((name) => {
    const m = TEMPORARY.exec(name);
    return m ? [{ name, final: m[1], pid: Number(m[2]) }] : [];
  });
}

/**
 * Resolves with the path of a temporary in `dir` once it holds at least
 * `minBytes` (woken by inotify, not by polling); rejects after `timeoutMs`.
 */
export function waitForTemporary(dir: string, minBytes: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const watcher = watch(dir);
    const finish = (err?: Error, path?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      watcher.close();
      if (err) reject(err);
      else resolve(path!);
    };
    const check = () => {
      for (const t of temporaries(dir)) {
        const path = join(dir, t.name);
        if ((statSync(path, { throwIfNoEntry: false })?.size ?? 0) >= minBytes) return finish(undefined, path);
      }
    };
    const timer = setTimeout(() => finish(new Error(`no temporary of ${minBytes} bytes in ${dir} within ${timeoutMs} ms`)), timeoutMs);
    watcher.on("change", check);
    watcher.on("error", (e) => finish(e));
    check();
  });
}
