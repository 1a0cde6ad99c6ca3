// The independent programs that judge our dumps: libkdumpfile (every page
// against the guest's memory) and crash, drgn, makedumpfile --dump-dmesg
// (fixtures/check-tools.sh).
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const FIXTURES = fileURLToPath(new URL("../../../fixtures/", import.meta.url));

/** libkdumpfile reads every page of a kdump file equal to the raw memory; "ok libkdumpfile N pages". */
export function libkdumpfile(dumpPath: string, raw: string, pages?: number): string {
  return execFileSync("/usr/bin/python3", [join(FIXTURES, "check-kdump-pages.py"), dumpPath, raw, ...(pages === undefined ? [] : [String(pages)])],
    { encoding: "utf8", timeout: 600_000 });
}

/** fixtures/check-tools.sh with only these checks ("crash", "drgn", "makedumpfile-dmesg"). */
export function tools(dumpPath: string, marker: string, only: string): string {
  return execFileSync("bash", [join(FIXTURES, "check-tools.sh"), dumpPath, marker], {
    encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 900_000, env: { ...process.env, CHECK_TOOLS_ONLY: only },
  });
}
