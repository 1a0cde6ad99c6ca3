#!/usr/bin/env node
// The guestcore command line.
import { Command, Option } from "commander";
import { GuestcoreError } from "./core/errors.js";
import { parseDumpLevel, describeLevel } from "./filter/classes.js";
import { dump, formatTable } from "./pipeline/dump.js";
import { GuestImage } from "./image.js";
import { AtomicFile } from "./writers/atomic-file.js";
import { progressReporter } from "./cli/progress.js";

function inputOptions(cmd: Command): Command {
  return cmd
    .option("--vmcoreinfo <file>", "use this VMCOREINFO text instead of the ELF note or a memory scan")
    .option("--layout <spec>", "physical layout of a raw image: PADDR:SIZE@FILEOFFSET,... (e.g. 0:2G@0,4G:2G@2G)")
    .addOption(new Option("--format <fmt>", "input format instead of sniffing it").choices(["raw", "elf"]));
}

const program = new Command();
program
  .name("guestcore")
  .description("Dump and inspect a crashed Linux guest's memory without vmlinux.")
  .version("0.1.0")
  .showHelpAfterError();

inputOptions(
  program
    .command("dump")
    .description("write a filtered ELF dump that keeps exactly the pages makedumpfile keeps at the same level")
    .argument("<input>", "raw RAM image, QEMU memory-backend file, or ELF vmcore")
    .requiredOption("-o, --output <file>", "output ELF core (written to a temporary name, renamed when complete)")
    .option("-d, --dump-level <n>", "makedumpfile dump level 0-31: 1 zero, 2 cache, 4 private cache, 8 user, 16 free", "31")
    .option("--json", "print a machine-readable summary on stdout")
    .addHelpText("after", "\nExample:\n  guestcore dump /tmp/guest.raw -o /tmp/guest.elf -d 31   (the README unpacks the bundled example there)\n  guestcore dump vmcore.elf -o small.elf -d 17 --json"),
).action((input: string, o: { output: string; dumpLevel: string; json?: boolean; vmcoreinfo?: string; layout?: string; format?: string }) => {
  const level = parseDumpLevel(o.dumpLevel);
  const report = dump(input, o.output, { level, vmcoreinfo: o.vmcoreinfo, layout: o.layout, format: o.format, onProgress: progressReporter(!o.json) });
  if (o.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  console.log(`${input} -> ${o.output} (ELF, dump level ${level}: ${describeLevel(level)})`);
  console.log(formatTable(report.table));
  console.log(`Wrote ${report.loads} PT_LOAD segments, ${report.bytes} bytes in ${report.seconds.toFixed(2)} s`);
});

inputOptions(
  program
    .command("info")
    .description("show the guest kernel, its address translation and page-class counts")
    .argument("<input>", "raw RAM image, QEMU memory-backend file, or ELF vmcore")
    .option("--json", "print machine-readable output")
    .option("--no-pages", "skip classifying pages (faster)")
    .addHelpText("after", "\nExample:\n  guestcore info vmcore.elf\n  guestcore info --json guest.raw | jq .pages"),
).action((input: string, o: { json?: boolean; pages: boolean; vmcoreinfo?: string; layout?: string; format?: string }) => {
  const img = GuestImage.open(input, { vmcoreinfo: o.vmcoreinfo, layout: o.layout, format: o.format, onProgress: progressReporter(!o.json) });
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

function die(e: unknown): never {
  AtomicFile.abortAll();
  if (e instanceof GuestcoreError) {
    process.stderr.write(`guestcore: ${e.message}\n`);
    process.exit(e.exitCode);
  }
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`guestcore: internal error: ${msg}${process.env.GUESTCORE_DEBUG ? "\n" + (e as Error).stack : " (GUESTCORE_DEBUG=1 shows the stack)"}\n`);
  process.exit(1);
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    AtomicFile.abortAll();
    process.stderr.write(`guestcore: interrupted, partial output removed\n`);
    process.exit(sig === "SIGINT" ? 130 : 143);
  });
}

try {
  program.parse();
} catch (e) {
  die(e);
}
