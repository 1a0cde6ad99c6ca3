// `guestcore watch`: the command line over recovery/watch.ts. Events are
// printed one per line on stdout (JSON lines with --json); recover's own
// output goes to the per-guest log files, never to stdout.
import { Command } from "commander";
import { GuestcoreError } from "../core/errors.js";
import { loadWatchConfig, type WatchConfig } from "../recovery/watch-config.js";
import { shellQuote, Watcher, type WatchEvent } from "../recovery/watch.js";

interface WatchCliOpts {
  config?: string;
  maxParallel?: string;
  logDir?: string;
  json?: boolean;
  once?: boolean;
}

/** One event as a line for an operator's terminal or journal. */
export function formatWatchEvent(ev: WatchEvent): string {
  const who = "guest" in ev && ev.guest ? `${ev.guest}: ` : "";
  const text = (() => {
    switch (ev.type) {
      case "added": return `new socket ${ev.qmp}`;
      case "removed": return `socket ${ev.qmp} is gone; no longer watched`;
      case "watching": return `watching ${ev.qmp} (status ${ev.status})`;
      case "unreachable": return `cannot connect: ${ev.error}; retrying (backoff up to ${ev.retryMs / 1000} s)`;
      case "disconnected": return `QMP connection lost (${ev.reason}); reconnecting`;
      case "panicked":
        return ev.from === "status"
          ? `already panicked when watch connected; panic time unknown, passing the connect time (--panicked-at ${ev.panickedAt})`
          : `GUEST_PANICKED (action ${ev.action}) at ${new Date(ev.panickedAt).toISOString()} (--panicked-at ${ev.panickedAt})${ev.stopped === false ? "; no STOP followed (recover checks the state)" : ""}`;
      case "ignored": return ev.reason;
      case "queued": return `waiting for a recover slot (${ev.running} of ${ev.limit} running)`;
      case "recover-started": return `recover started (pid ${ev.pid ?? "?"}${ev.log ? `, log ${ev.log}` : ""}): ${shellQuote(ev.argv)}`;
      case "recover-exited": {
        const how = ev.error ?? (ev.signal ? `killed by ${ev.signal}` : `exited with code ${ev.code}`);
        return `recover ${how} after ${ev.seconds.toFixed(1)} s${ev.log ? ` (log ${ev.log})` : ""}`;
      }
      case "error": return `error: ${ev.message}`;
    }
  })();
  return `${ev.time} ${who}${text}`;
}

export function parseMaxParallel(s: string | undefined): number {
  if (s === undefined) return 1;
  const n = Number(s);
  if (!/^\d+$/.test(s) || !Number.isInteger(n) || n < 1 || n > 64) throw new GuestcoreError(`--max-parallel must be 1 to 64, not "${s}"`);
  return n;
}

export function registerWatch(program: Command): Command {
  return program
    .command("watch")
    .description("watch QEMU guests' QMP sockets; when one reports GUEST_PANICKED, run 'guestcore recover' for it")
    .argument("[dir]", "a directory of QMP sockets: every *.qmp or *.sock socket in it, new ones found within a second")
    .option("--config <file>", "a JSON file naming guests, their recover arguments, defaults and the command (see below)")
    .option("--max-parallel <n>", "recovers running at once (default 1: one dump already keeps a disk busy)")
    .option("--log-dir <dir>", "append each recover's output to DIR/<guest>.log (default: watch's stderr)")
    .option("--json", "print events as JSON lines")
    .option("--once", "exit after the first recover has finished, with its exit code")
    .addHelpText("after", [
      "",
      "For each panicked guest, watch closes its QMP connection (QEMU serves one client",
      "per socket) and runs:",
      "  guestcore recover --qmp SOCKET --panicked-at EPOCH_MS ARGS...",
      "EPOCH_MS is GUEST_PANICKED's timestamp; for a guest already panicked when watch",
      "connects, it is the connect time. ARGS come from, in order: the guest's \"args\" in",
      "the config, DIR/<name>.args.json (a JSON array of strings) beside a socket, the",
      "config's defaults.args. \"{name}\" in an argument becomes the guest's name.",
      "",
      "Config file:",
      '  {"defaults": {"args": ["-o", "/var/crash/{name}.kdump", "-d", "31"]},',
      '   "guests": [{"name": "vm1", "qmp": "/run/vm1.qmp", "args": ["-o", "/var/crash/vm1.kdump"]}],',
      '   "command": ["/usr/bin/guestcore"]}',
      "Relative qmp paths are taken from the config file's directory. With both DIR and",
      "--config, the config's defaults and command apply to DIR's sockets too.",
      "",
      "Guests need pvpanic with -action panic=pause (libvirt: <on_crash>preserve</on_crash>).",
      "",
      "Examples:",
      "  guestcore watch /run/guestcore/qmp --log-dir /var/log/guestcore",
      "  guestcore watch --config /etc/guestcore/watch.json --max-parallel 2 --json",
      "  guestcore watch /run/guestcore/qmp --config defaults.json --once",
    ].join("\n"))
    .action(async (dir: string | undefined, o: WatchCliOpts) => {
      if (dir === undefined && o.config === undefined) throw new GuestcoreError("give a directory of QMP sockets, --config FILE, or both");
      const maxParallel = parseMaxParallel(o.maxParallel);
      const config: WatchConfig | undefined = o.config !== undefined ? loadWatchConfig(o.config) : undefined;
      const print = o.json
        ? (ev: WatchEvent) => process.stdout.write(JSON.stringify(ev) + "\n")
        : (ev: WatchEvent) => process.stdout.write(formatWatchEvent(ev) + "\n");
      const watcher = new Watcher({ dir, config, maxParallel, logDir: o.logDir, once: o.once, onEvent: print });
      await watcher.start();
      await watcher.finished;
      if (o.once) {
        const r = watcher.exits[0];
        process.exitCode = r ? (r.code ?? 1) : 1;
      }
    });
}
