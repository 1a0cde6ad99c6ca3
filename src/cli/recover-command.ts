// `guestcore recover`: the crashed guest's dump and its replacement's
// boot, in parallel (see src/recovery/recover.ts).
import { Option, type Command } from "commander";
import { GuestcoreError } from "../core/errors.js";
import { parseDumpLevel, describeLevel } from "../filter/classes.js";
import type { CodecName, Codecs } from "../codecs/codec.js";
import { parseSize } from "../sources/raw.js";
import { recover, type RecoverReport } from "../recovery/recover.js";
import { parseProbe } from "../recovery/readiness.js";
import { defaultPolicies } from "../recovery/rate-policy.js";
import { Timeline } from "../recovery/timeline.js";
import { progressReporter } from "./progress.js";
import { writeFileAtomic } from "../writers/atomic-file.js";
import { timelineSvg } from "./timeline-svg.js";
import { warmCacheHook } from "../warmcache/recover-hook.js";

interface RecoverCliOpts {
  qmp?: string;
  memPath?: string;
  xen?: string;
  layout?: string;
  output: string;
  dumpLevel: string;
  elf?: boolean;
  c?: boolean;
  codec: CodecName;
  /** Set by the program's preAction hook (src/cli.ts). */
  codecs: Codecs;
  workers?: string;
  vmcoreinfo?: string;
  replacement?: string;
  replacementQmp?: string;
  replacementLog?: string;
  ready?: string;
  readyTimeout: string;
  startWhenRoom?: string;
  rate: string;
  quitCrashed: "early" | "end" | "never";
  removeBacking?: boolean;
  dumpNice: string;
  panickedAt?: string;
  timeline?: string;
  timelineSvg?: string;
  json?: boolean;
  warmCache?: string;
  warmCacheBudget?: string;
  warmCacheTtl: string;
  warmCachePreload?: string;
}

export function registerRecover(program: Command): void {
  const policies = defaultPolicies();
  program
    .command("recover")
    .description("dump a crashed QEMU guest while its replacement boots: release the memory the dump will not keep at once, start the replacement, stream the kept pages and release each range once durable")
    .option("--qmp <socket>", "the crashed QEMU's QMP socket (pvpanic-paused, RAM in a share=on memory-backend-file)")
    .option("--mem-path <file>", "or the crashed guest's memory file alone (its QEMU is gone)")
    .option("--xen <domid>", "or a crashed Xen HVM domain kept paused (on_crash=preserve), read and released from dom0")
    .option("--layout <spec>", "with --mem-path: PADDR:SIZE@FILEOFFSET,... when the file is not 1:1 (a 4 GiB q35 guest: 0:2G@0,4G:2G@2G)")
    .requiredOption("-o, --output <file>", "the dump (a hidden partial file and journal beside it until it is complete)")
    .option("-d, --dump-level <n>", "makedumpfile dump level 0-31", "31")
    .option("-E, --elf", "write an ELF core (kept pages are then released only once the file is complete)")
    .option("-c", "compress pages with zlib")
    .addOption(new Option("--codec <codec>", "page compression").choices(["zstd", "zlib", "none"]).default("zstd"))
    .option("--workers <n>", "compression threads (default: one per core on big guests)")
    .option("--vmcoreinfo <file>", "use this VMCOREINFO text instead of scanning memory")
    .option("--replacement <command>", "start the replacement VM with this shell command (its output goes to --replacement-log)")
    .option("--replacement-qmp <socket>", "the replacement's QMP socket (for --rate adaptive and --ready qmp:EVENT)")
    .option("--replacement-log <file>", "the replacement's stdout and stderr (default OUTPUT.replacement.log)")
    .option("--ready <probe>", "when the replacement is ready: serial:FILE:REGEX, log:REGEX, tcp:HOST:PORT or qmp:[SOCKET:]EVENT")
    .option("--ready-timeout <seconds>", "longest wait for readiness after the dump is complete", "600")
    .option("--start-when-room <bytes>", "start the replacement as soon as this much memory is available (MemAvailable, or the memory cgroup's headroom), before classifying if it is there already; default: right after the first release")
    .option("--rate <policy>", `dump write rate: ${policies.help()}`, "none")
    .addOption(new Option("--quit-crashed <when>", "when the crashed QEMU quits: early (once attached; frees its disk images for the replacement), end, never").choices(["early", "end", "never"]).default("end"))
    .option("--dump-nice <n>", "CPU nice value of the dump once the replacement runs, so its boot gets the CPU first (0 leaves it)", "19")
    .option("--remove-backing", "remove the crashed guest's memory file at the end (default: keep it, every page released)")
    .option("--panicked-at <epoch-ms>", "when the guest panicked (guestcore watch passes the GUEST_PANICKED time); downtime is measured from it")
    .option("--timeline <file>", "write the timeline (phases, held memory, write rate over time) as JSON")
    .option("--timeline-svg <file>", "draw the timeline as SVG")
    .option("--json", "print the report (with the timeline) as JSON")
    .option("--warm-cache <socket>", "keep the crashed guest's clean page-cache pages that equal the disk for the replacement: the control socket of the 'guestcore disk serve' that serves both guests' disk")
    .option("--warm-cache-budget <bytes>", "most memory kept for warm copies (default: every matched page)")
    .option("--warm-cache-ttl <seconds>", "copies not read by then go back to the host", "600")
    .option("--warm-cache-preload <file>", "write the paths of the cached files there, one per line, for the replacement to read first")
    .addHelpText("after", [
      "",
      "A rerun with the same -o after any failure (SIGKILL included) resumes: pages an earlier",
      "run released are read back from its partial dump, so the final file is complete and right.",
      "",
      "Examples:",
      "  guestcore recover --qmp /run/vm1.qmp -o /var/crash/vm1.kdump -d 31 \\",
      "      --quit-crashed early --replacement 'exec qemu-system-x86_64 ... -serial file:/run/vm1.log' \\",
      "      --ready 'serial:/run/vm1.log:login:' --rate fixed:70M --timeline-svg /var/crash/vm1.svg",
      "  guestcore recover --qmp vm1.qmp -o vm1.kdump --replacement-qmp vm1-new.qmp --rate adaptive \\",
      "      --replacement \"$(cat vm1.cmdline)\" --ready tcp:192.0.2.10:22 --json",
      "  guestcore recover --mem-path /dev/shm/vm1.ram -o vm1.kdump   # QEMU already gone",
      "  guestcore recover --xen 7 -o /var/crash/dom7.kdump --quit-crashed end   # xl destroy once dumped",
      "  guestcore recover --qmp vm1.qmp -o vm1.kdump --warm-cache /run/vm1.nbd.ctl \\",
      "      --warm-cache-preload /run/vm1.preload --replacement \"$(cat vm1-new.cmdline)\"",
    ].join("\n"))
    .action(async (o: RecoverCliOpts) => {
      if ([o.qmp, o.memPath, o.xen].filter((x) => x !== undefined).length !== 1) throw new GuestcoreError("give one of: the crashed guest's --qmp SOCKET, --mem-path FILE, --xen DOMID");
      const xen = o.xen === undefined ? undefined : Number(o.xen);
      if (xen !== undefined && (!Number.isInteger(xen) || xen < 1 || xen >= 0x7ff0)) throw new GuestcoreError(`--xen takes a domain id, not "${o.xen}"`);
      if (o.layout && !o.memPath) throw new GuestcoreError("--layout goes with --mem-path (over QMP the layout comes from QEMU)");
      if (o.ready && !o.replacement) throw new GuestcoreError("--ready probes the replacement: give --replacement too");
      const level = parseDumpLevel(o.dumpLevel);
      const workers = o.workers === undefined ? undefined : Number(o.workers);
      if (workers !== undefined && (!Number.isInteger(workers) || workers < 0 || workers > 256)) throw new GuestcoreError(`--workers must be 0 to 256, not "${o.workers}"`);
      const readyTimeout = Number(o.readyTimeout);
      if (!(readyTimeout > 0)) throw new GuestcoreError(`--ready-timeout must be a positive number of seconds, not "${o.readyTimeout}"`);
      const panickedAt = o.panickedAt === undefined ? undefined : Number(o.panickedAt);
      if (panickedAt !== undefined && !(Number.isSafeInteger(panickedAt) && panickedAt > 0)) throw new GuestcoreError(`--panicked-at takes milliseconds since the epoch, not "${o.panickedAt}"`);
      const rate = policies.parse(o.rate);
      const dumpNice = Number(o.dumpNice);
      if (!Number.isInteger(dumpNice) || dumpNice < 0 || dumpNice > 19) throw new GuestcoreError(`--dump-nice must be 0 to 19, not "${o.dumpNice}"`);
      const ready = o.ready ? parseProbe(o.ready) : undefined;
      if ((o.warmCacheBudget || o.warmCachePreload) && !o.warmCache) throw new GuestcoreError("--warm-cache-budget and --warm-cache-preload go with --warm-cache SOCKET");
      if (o.warmCache && xen !== undefined) throw new GuestcoreError("--warm-cache needs a QEMU guest whose disk 'guestcore disk serve' serves, not a Xen domain");
      const ttl = Number(o.warmCacheTtl);
      if (!(ttl > 0)) throw new GuestcoreError(`--warm-cache-ttl must be a positive number of seconds, not "${o.warmCacheTtl}"`);
      const beforeRelease = o.warmCache
        ? warmCacheHook({ control: o.warmCache, budgetBytes: o.warmCacheBudget ? parseSize(o.warmCacheBudget) : undefined, ttlSeconds: ttl, preloadList: o.warmCachePreload })
        : undefined;
      const tty = !o.json && process.stderr.isTTY;
      const say = (s: string) => { if (!o.json) process.stderr.write(`recover: ${s}\n`); };
      const timeline = new Timeline();
      let t0: number | undefined = panickedAt;
      const progress = progressReporter(tty);
      let report: RecoverReport;
      try {
        report = await recover({
          qmp: o.qmp, memPath: o.memPath, xen, layout: o.layout, output: o.output, level, elf: o.elf,
          codec: o.c ? "zlib" : o.codec, codecs: o.codecs, workers, vmcoreinfo: o.vmcoreinfo,
          replacement: o.replacement ? { command: o.replacement, qmpSocket: o.replacementQmp, logPath: o.replacementLog } : undefined,
          ready, readyTimeoutMs: readyTimeout * 1000,
          startWhenRoom: o.startWhenRoom ? parseSize(o.startWhenRoom) : undefined,
          rate, quitCrashed: o.quitCrashed, removeBacking: o.removeBacking, panickedAt, timeline, dumpNice, beforeRelease,
          onPhase: (p, t, data) => {
            t0 ??= t;
            const extra = data?.heldBytes !== undefined ? ` (crashed guest holds ${((data.heldBytes as number) / 2 ** 20).toFixed(0)} MiB)` : data?.by ? ` (${data.by})` : "";
            say(`+${((t - t0) / 1000).toFixed(2)} s ${p}${extra}`);
          },
          onNote: (n) => say(n),
          onProgress: progress,
        });
      } finally {
        if (o.timeline) writeFileAtomic(o.timeline, JSON.stringify(timeline.toJSON(), null, 1) + "\n");
        if (o.timelineSvg) writeFileAtomic(o.timelineSvg, timelineSvg(timeline.toJSON() as never, `guestcore recover -d ${o.dumpLevel} --rate ${o.rate}`));
      }
      if (o.json) {
        console.log(JSON.stringify(report, null, 1));
        return;
      }
      const tl = report.timeline as { downtimeSeconds: number | null };
      console.log(`${report.output}: ${report.format}, dump level ${report.level} (${describeLevel(report.level)}), ${report.dumpBytes} bytes${report.resumed ? ", resumed" : ""}`);
      console.log(`pages: ${report.pages.present} present, ${report.pages.dumpable} dumpable, ${report.pages.releasedAtOnce} released at once`);
      const mib = (b?: number) => (b === undefined ? "-" : `${(b / 2 ** 20).toFixed(0)} MiB`);
      console.log(`crashed guest's memory: ${mib(report.heldBytes.atAttach)} at attach, ${mib(report.heldBytes.afterPrerelease)} after the first release, ${mib(report.heldBytes.atEnd)} at the end`);
      if (report.replacement) console.log(`replacement: pid ${report.replacement.pid}, ready: ${report.replacement.readyBy ?? "no probe"}`);
      if (tl.downtimeSeconds !== null) console.log(`downtime (panic to ready): ${tl.downtimeSeconds.toFixed(2)} s`);
    });
}
