// `guestcore disk serve` as a child process, as an operator runs it: the
// guests' disk and the control socket, and its final counters.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { controlRequest } from "../../src/warmcache/control.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));

export interface DiskServer {
  socket: string;
  control: string;
  proc: ChildProcess;
  stats(): Promise<Record<string, any>>;
  stop(): Promise<Record<string, any> | undefined>;
  output(): string;
}

export async function startDiskServer(image: string, socket: string, args: string[] = [], wrap: string[] = []): Promise<DiskServer> {
  const argv = [process.execPath, CLI, "disk", "serve", image, "--socket", socket, "--json", "-v", ...args];
  const proc = wrap.length ? spawn(wrap[0], [...wrap.slice(1), ...argv], { stdio: ["ignore", "pipe", "pipe"] })
    : spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const control = `${socket}.ctl`;
  // Started when it says it listens; an exit or 20 s without that line fails with what it printed.
  await new Promise<void>((resolve, reject) => {
    const fail = (why: string) => { clearTimeout(timer); reject(new Error(`disk serve did not start (${why}): ${out}`)); };
    const timer = setTimeout(() => fail("20 s"), 20_000);
    const onData = (d: string) => {
      out += d;
      if (/"event":"listening"/.test(out)) { clearTimeout(timer); proc.off("exit", onExit); resolve(); }
    };
    const onExit = (code: number | null) => fail(`exit ${code}`);
    proc.stdout!.setEncoding("utf8").on("data", onData);
    proc.stderr!.setEncoding("utf8").on("data", onData);
    proc.once("exit", onExit);
  });
  return {
    socket, control, proc,
    stats: () => controlRequest(control, { op: "stats" }) as Promise<Record<string, any>>,
    output: () => out,
    stop: async () => {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        await new Promise((r) => proc.once("exit", r));
      }
      const line = out.split("\n").find((l) => l.includes('"event":"stopped"'));
      return line ? JSON.parse(line) : undefined;
    },
  };
}
