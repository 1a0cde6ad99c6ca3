// `guestcore fixture record` and `guestcore fixture replay`: a library of
// real crashes, checked again on every change, with TAP and JUnit for CI.
import type { Command } from "commander";
import { DEFAULT_MARKER } from "../analysis/log-markers.js";
import { recordFixture, replayFixture, replayOk, type ReplayResult } from "../fixture/fixture.js";
import { formatReplay, junitReport, tapReport } from "../fixture/report.js";
import { progressReporter } from "./progress.js";
import type { Codecs } from "../codecs/codec.js";
import { writeFileAtomic } from "../writers/atomic-file.js";
import { inputFormatOption } from "./input-format.js";

export function registerFixture(program: Command): void {
  const fixture = program
    .command("fixture")
    .description("record real crashes as compact fixtures (a -d 31 zstd kdump and a manifest of what guestcore derives), and replay them in CI");

  fixture
    .command("record")
    .description("write a fixture of DUMP into DIR: vmcore.kdump (-d 31, zstd) and manifest.json (kernel release, page classes, kernel-log digest and marker lines, tasks, modules)")
    .argument("<dump>", "raw RAM image, QEMU memory-backend file, ELF vmcore, kdump-compressed or flattened file")
    .requiredOption("-o, --output <dir>", "the fixture directory (created if needed)")
    .option("--marker <regex>", "kernel-log lines to keep in the manifest (JavaScript regular expression)", DEFAULT_MARKER)
    .option("--name <name>", "the fixture's name in reports (default: the directory's name)")
    .option("--vmcoreinfo <file>", "use this VMCOREINFO text instead of the ELF note or a memory scan")
    .option("--layout <spec>", "physical layout of a raw image: PADDR:SIZE@FILEOFFSET,...")
    .addOption(inputFormatOption())
    .option("--json", "print the manifest")
    .addHelpText("after", [
      "",
      "The expectations are derived from the kdump just written, by the code replay runs.",
      "Edit manifest.json by hand to state what a crash must show (a task, a marker line).",
      "",
      "Examples:",
      "  guestcore fixture record /var/crash/vmcore -o fixtures/oops-2024-05",
      "  guestcore fixture record mem.raw -o fx/boot-hang --marker 'BUG:|hung_task'",
    ].join("\n"))
    .action(async (dump: string, o: { output: string; marker: string; name?: string; vmcoreinfo?: string; layout?: string; inputFormat?: string; json?: boolean; codecs: Codecs }) => {
      const r = await recordFixture(dump, o.output, {
        marker: o.marker, name: o.name, vmcoreinfo: o.vmcoreinfo, layout: o.layout, format: o.inputFormat, codecs: o.codecs, onProgress: progressReporter(!o.json),
      });
      if (o.json) {
        console.log(JSON.stringify(r.manifest, null, 2));
        return;
      }
      const e = r.manifest.expect;
      console.log(`${dump} -> ${o.output}: ${r.dumpBytes} bytes of kdump, ${r.seconds.toFixed(2)} s`);
      console.log(`  kernel ${e.kernelRelease}; ${e.tasks?.length ?? "no"} tasks, ${e.modules?.length ?? "no"} modules, ${e.kernelLog?.records ?? "no"} log records, ${e.kernelLog?.markers.length ?? 0} marker lines`);
      for (const [k, why] of Object.entries(e.unavailable ?? {})) console.log(`  not recorded: ${k}: ${why}`);
    });

  fixture
    .command("replay")
    .description("derive everything again from each fixture's kdump, report each difference, and exit 1 on any drift")
    .argument("<dir...>", "fixture directories (each with manifest.json)")
    .option("--tap <file>", "also write TAP version 13")
    .option("--junit <file>", "also write JUnit XML")
    .option("--json", "print the results as JSON")
    .addHelpText("after", [
      "",
      "Each manifest section (kernelRelease, pageSize, pages, kernelLog, tasks, modules) of",
      "each fixture is one test. Exit status: 0 when all hold, 1 on drift or an unreadable fixture.",
      "",
      "Examples:",
      "  guestcore fixture replay fixtures/*/",
      "  guestcore fixture replay fx/a fx/b --junit replay.xml --tap replay.tap",
    ].join("\n"))
    .action((dirs: string[], o: { tap?: string; junit?: string; json?: boolean; codecs: Codecs }) => {
      const results: ReplayResult[] = dirs.map((d) => replayFixture(d, { onProgress: progressReporter(!o.json), codecs: o.codecs }));
      if (o.tap) writeFileAtomic(o.tap, tapReport(results));
      if (o.junit) writeFileAtomic(o.junit, junitReport(results));
      if (o.json) console.log(JSON.stringify(results, null, 2));
      else process.stdout.write(formatReplay(results));
      if (!results.every(replayOk)) process.exitCode = 1;
    });
}
