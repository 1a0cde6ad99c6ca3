#!/usr/bin/env -S node --max-semi-space-size=1
// The guestcore command line.
//
// The flag on the first line keeps V8's young generation at 1 MiB per
// semi-space: a dump's main thread makes garbage steadily, and V8 would
// otherwise grow that space to 32 MiB, a quarter of the dump's peak RSS
// on a 32 GiB guest, for no measurable speed (bench/memory-bound.ts).
import { dirname } from "node:path";
import { Command, Option } from "commander";
import { GuestcoreError } from "./core/errors.js";
import { parseDumpLevel, describeLevel } from "./filter/classes.js";
import { dump, formatTable, type DumpOptions, type DumpReport } from "./pipeline/dump.js";
import { GuestImage } from "./image.js";
import { progressReporter } from "./cli/progress.js";
import { TokenBucket } from "./pipeline/rate-limit.js";
import { parseSize } from "./sources/raw.js";
import { Codecs, type CodecName } from "./codecs/codec.js";
import { rearrange } from "./writers/rearrange.js";
import { sweepBeforeWriting } from "./cli/clean-command.js";
import { inputFormatOption } from "./cli/input-format.js";

interface InputOpts {
  vmcoreinfo?: string;
  layout?: string;
  inputFormat?: string;
  /** Set by the preAction hook. */
  codecs: Codecs;
}

function inputOptions(cmd: Command): Command {
  return cmd
    .option("--vmcoreinfo <file>", "use this VMCOREINFO text instead of the ELF note or a memory scan")
    .option("--layout <spec>", "physical layout of a raw image: PADDR:SIZE@FILEOFFSET,... (e.g. 0:2G@0,4G:2G@2G)")
    .addOption(inputFormatOption());
}

function openOpts(o: InputOpts) {
  return { vmcoreinfo: o.vmcoreinfo, layout: o.layout, format: o.inputFormat, codecs: o.codecs };
}

/** makedumpfile's "-d 11,31": try each level in turn while the disk is full. */
export function parseDumpLevels(s: string): number[] {
  const levels = s.split(",").map((x) => parseDumpLevel(x.trim()));
  if (levels.length > 8) throw new GuestcoreError("at most 8 dump levels");
  return levels;
}

const program = new Command();
program
  .name("guestcore")
  .description("Dump and inspect a crashed Linux guest's memory without vmlinux.")
  .version("0.1.0")
  .showHelpAfterError()
  // The codecs load once, before whichever command runs (never for --help),
  // and reach it as the `codecs` option.
  .hook("preAction", async (_program, command) => {
    command.setOptionValue("codecs", await Codecs.load());
  });

interface DumpCliOpts extends InputOpts {
  qmp?: string;
  xen?: string;
  output?: string;
  flatten?: boolean;
  dumpLevel: string;
  elf?: boolean;
  c?: boolean;
  z?: boolean;
  codec: CodecName;
  workers?: string;
  rateLimit?: string;
  json?: boolean;
}

inputOptions(
  program
    .command("dump")
    .description("write a filtered dump (kdump-compressed, or ELF with -E) that keeps exactly the pages makedumpfile keeps at the same level")
    .argument("[input]", "raw RAM image, QEMU memory-backend file, ELF vmcore, kdump-compressed or flattened file")
    .option("--qmp <socket>", "dump a QEMU guest paused by pvpanic, reading its memory-backend file (QEMU writes nothing)")
    .option("--xen <domid>", "dump a live Xen HVM domain through libxenforeignmemory (run in dom0; pause the domain first)")
    .option("-o, --output <file>", "output file (written to a temporary name, renamed when complete)")
    .option("-F, --flatten", "write the flattened form to stdout (makedumpfile -F); turn it into a file with 'guestcore rearrange'")
    .option("-d, --dump-level <n[,n...]>", "makedumpfile dump level 0-31: 1 zero, 2 cache, 4 private cache, 8 user, 16 free; with a list, the next level is tried when the disk is full", "31")
    .option("-E, --elf", "write an ELF core instead of kdump-compressed")
    .option("-c", "compress pages with zlib (as makedumpfile -c)")
    .option("-z", "compress pages with zstd (as makedumpfile -z)")
    .addOption(new Option("--codec <codec>", "page compression for kdump-compressed output").choices(["zstd", "zlib", "none"]).default("zstd"))
    .option("--workers <n>", "compression threads (default: one per core; 0 compresses inline)")
    .option("--rate-limit <bytes>", "limit disk writes to this many bytes per second (K/M/G suffixes), to leave I/O to a booting VM")
    .option("--json", "print a machine-readable summary on stdout")
    .addHelpText("after", [
      "",
      "Output: kdump-compressed with zstd pages unless -E, -c or --codec say otherwise. An",
      "interrupted or failed dump to a file leaves no file behind; a flattened stream that",
      "stops early has no end record, which 'guestcore rearrange' rejects. A dump killed",
      "outright (SIGKILL) leaves its hidden .OUT.guestcore-PID.tmp, which the next dump into",
      "the directory or 'guestcore clean DIR' removes.",
      "",
      "Examples:",
      "  guestcore dump /tmp/guest.raw -o /tmp/guest.kdump -d 31",
      "  guestcore dump vmcore.elf -o small.elf -E -d 17 --json",
      "  guestcore dump mem.raw -F -c -d 31 | ssh host 'guestcore rearrange -o /var/crash/vmcore'",
      "  guestcore dump mem.raw -o /var/crash/vmcore -d 11,31 --rate-limit 50M",
      "  guestcore dump --qmp /run/qemu/vm1.qmp -o /var/crash/vm1.kdump -c",
      "  xl pause 7 && guestcore dump --xen 7 -o /var/crash/dom7.kdump",
    ].join("\n")),
).action(async (input: string | undefined, o: DumpCliOpts) => {
  if ([input, o.qmp, o.xen].filter(Boolean).length !== 1) throw new GuestcoreError("give one of: an INPUT file, --qmp SOCKET, --xen DOMID");
  if ((o.qmp || o.xen) && (o.layout || o.inputFormat)) throw new GuestcoreError("--layout and --input-format apply to files, not to --qmp or --xen");
  if (!o.output && !o.flatten) throw new GuestcoreError("give an output file (-o FILE) or -F for the flattened form on stdout");
  if (o.output && o.flatten) throw new GuestcoreError("-o and -F exclude each other");
  if (o.flatten && o.elf) throw new GuestcoreError("-F writes kdump-compressed data; it cannot be combined with -E");
  if (o.flatten && process.stdout.isTTY) throw new GuestcoreError("refusing to write a binary dump to a terminal; redirect stdout");
  const levels = parseDumpLevels(o.dumpLevel);
  const codec: CodecName = o.c ? "zlib" : o.z ? "zstd" : o.codec;
  const workers = o.workers === undefined ? undefined : Number(o.workers);
  if (workers !== undefined && (!Number.isInteger(workers) || workers < 0 || workers > 256)) throw new GuestcoreError(`--workers must be 0 to 256, not "${o.workers}"`);
  const rate = o.rateLimit ? parseSize(o.rateLimit) : undefined;
  const swept = o.output ? sweepBeforeWriting(dirname(o.output)) : [];
  const base: Omit<DumpOptions, "level"> = {
    ...openOpts(o), elf: o.elf, codec, workers,
    limiter: rate ? new TokenBucket(rate) : undefined,
    onProgress: progressReporter(!o.json),
  };
  let report: DumpReport | undefined;
  const tried: number[] = [];
  for (const level of levels) {
    tried.push(level);
    try {
      const out = o.flatten ? "-" : o.output!;
      if (o.qmp) {
        const { openQemuGuest } = await import("./sources/qemu-guest.js");
        const src = await openQemuGuest(o.qmp);
        const img = GuestImage.fromSource(src, { vmcoreinfo: o.vmcoreinfo, onProgress: base.onProgress });
        try {
          report = await dump(img, out, { ...base, level, beforeCommit: () => src.verifyStillStopped() });
        } finally {
          img.close();
        }
      } else if (o.xen) {
        const domid = Number(o.xen);
        if (!Number.isInteger(domid) || domid < 0 || domid >= 0x7ff0) throw new GuestcoreError(`--xen takes a domain id, not "${o.xen}"`);
        const { openXenDomain } = await import("./sources/xen-live.js");
        const src = openXenDomain(domid, {});
        for (const w of src.warnings) process.stderr.write(`guestcore: warning: ${w}\n`);
        report = await dump(src.path, out, { ...base, level, source: src });
      } else {
        report = await dump(input!, out, { ...base, level });
      }
      break;
    } catch (e) {
      if (e instanceof GuestcoreError && e.code === "ENOSPC" && level !== levels[levels.length - 1] && !o.flatten) {
        process.stderr.write(`guestcore: no space left at dump level ${level}; retrying at ${levels[tried.length]}\n`);
        continue;
      }
      throw e;
    }
  }
  const r = report!;
  if (o.json) {
    console.log(JSON.stringify({ ...r, levelsTried: tried, removedTemporaries: swept.map((e) => e.path) }, null, 2));
    return;
  }
  const say = (s: string) => (o.flatten ? process.stderr.write(s + "\n") : console.log(s));
  const what = r.format === "elf" ? "ELF" : `kdump-compressed, ${r.codec} (${r.codecImpl}, ${r.workers} workers)${r.flattened ? ", flattened" : ""}`;
  say(`${r.input} -> ${r.output} (${what}, dump level ${r.level}: ${describeLevel(r.level)})`);
  say(formatTable(r.table));
  say(`Wrote ${r.bytes} bytes${r.loads !== undefined ? ` in ${r.loads} PT_LOAD segments` : ""} in ${r.seconds.toFixed(2)} s`);
});

program
  .command("rearrange")
  .description("turn a flattened dump (guestcore dump -F, makedumpfile -F, QEMU kdump-zlib) into a normal kdump-compressed file, as makedumpfile -R does")
  .argument("[input]", "flattened file; standard input when omitted")
  .requiredOption("-o, --output <file>", "the kdump-compressed file to write (temporary name, renamed when complete)")
  .option("--json", "print a machine-readable summary")
  .addHelpText("after", "\nExamples:\n  guestcore dump mem.raw -F -d 31 | guestcore rearrange -o vmcore\n  guestcore rearrange qemu-kdump-zlib.flat -o vmcore")
  .action(async (input: string | undefined, o: { output: string; json?: boolean }) => {
    if (!input && process.stdin.isTTY) throw new GuestcoreError("give a flattened file, or pipe one to standard input");
    sweepBeforeWriting(dirname(o.output));
    const r = await rearrange(input ?? process.stdin, o.output);
    if (o.json) console.log(JSON.stringify(r, null, 2));
    else console.log(`${input ?? "<stdin>"} -> ${o.output}: ${JSON.stringify(r)}`);
  });

inputOptions(
  program
    .command("info")
    .description("show the guest kernel, its address translation and page-class counts")
    .argument("<input>", "raw RAM image, QEMU memory-backend file, or ELF vmcore")
    .option("--json", "print machine-readable output")
    .option("--no-pages", "skip classifying pages (faster)")
    .addHelpText("after", "\nExample:\n  guestcore info vmcore.elf\n  guestcore info --json guest.raw | jq .pages"),
).action((input: string, o: InputOpts & { json?: boolean; pages: boolean }) => {
  const img = GuestImage.open(input, { ...openOpts(o), onProgress: progressReporter(!o.json) });
  try {
    img.onProgress = progressReporter(!o.json);
    const out: Record<string, unknown> = img.summary();
    if (o.pages) {
      const r = img.pageStats(31);
      out.pages = { total: r.maxPfn, present: r.present, kept: r.keptCount, ...r.counts, sections: r.sections };
    }
    if (o.json) {
      console.log(JSON.stringify(out, null, 2));
      return;
    }
    for (const [k, v] of Object.entries(out)) {
      const text = Array.isArray(v) ? v.map((x) => (Array.isArray(x) ? x.join("-") : String(x))).join(", ")
        : typeof v === "object" && v ? Object.entries(v).map(([a, b]) => `${a}=${b}`).join(" ") : String(v);
      console.log(`${k.padEnd(16)} ${text}`);
    }
  } finally {
    img.close();
  }
});

// The other commands' modules load only when one of them may run (or for
// the command list): a dump is on a crashed guest's critical path, and
// loading them all costs it 40 ms.
if (!["dump", "rearrange", "info"].includes(process.argv[2])) {
  const [recover, watch, disk, analysis, inspect, view, clean] = await Promise.all([
    import("./cli/recover-command.js"), import("./cli/watch-command.js"), import("./cli/disk-command.js"),
    import("./cli/analysis-command.js"), import("./cli/inspect-command.js"), import("./cli/view-fixture.js"),
    import("./cli/clean-command.js"),
  ]);
  recover.registerRecover(program);
  watch.registerWatch(program);
  disk.registerDisk(program);
  analysis.registerAnalysis(program);
  inspect.registerInspect(program);
  view.registerViewAndFixture(program);
  clean.registerClean(program);
}

// process.exit runs each open output's exit listener, which removes its temporary.
function die(e: unknown): never {
  if (e instanceof GuestcoreError) {
    process.stderr.write(`guestcore: ${e.message}\n`);
    process.exit(e.exitCode);
  }
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`guestcore: internal error: ${msg}${process.env.GUESTCORE_DEBUG ? "\n" + (e as Error).stack : " (GUESTCORE_DEBUG=1 shows the stack)"}\n`);
  process.exit(1);
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    process.stderr.write(`guestcore: interrupted, partial output removed (recover keeps its partial dump: rerun it to resume)\n`);
    process.exit(sig === "SIGINT" ? 130 : 143);
  });
}
// A reader that goes away (dump -F | head) is not an internal error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => die(new GuestcoreError(`stdout: ${e.code ?? e.message}`)));

program.parseAsync().catch(die);
