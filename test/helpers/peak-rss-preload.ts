// Loaded with `node --import` into a CLI child: at exit, the child's peak
// resident set (VmHWM) goes to fd 3, where the test reads it, so stderr
// stays the CLI's own.
import { readFileSync, writeSync } from "node:fs";

process.on("exit", () => {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/status", "utf8"));
  writeSync(3, `${m ? m[1] : -1}\n`);
});
