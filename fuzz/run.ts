// guestcore's fuzzer, from the command line:
//   node dist/fuzz/run.js --target NAME|all --inputs N [--seconds S] [--seed K] [--json]
import { Command, InvalidArgumentError } from "commander";
import { formatTable, listTargets, runTargets, type Progress, type TargetResult } from "./harness.js";

function int(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError("not a non-negative integer");
  return n;
}

const program = new Command("fuzz")
  .description("fuzz guestcore's parsers: structure-aware mutation of real captures, V8 coverage feedback, per-input budgets (2 s, 256 MiB)")
  .option("--target <name>", "a target in fuzz/targets/, or \"all\"")
  .option("--inputs <n>", "mutated inputs per target", int, 10_000)
  .option("--seconds <s>", "stop each target after this many seconds (0: no limit)", int, 0)
  .option("--seed <k>", "campaign seed: the same seed runs the same inputs", int, 1)
  .option("--jobs <j>", "targets fuzzed at the same time (one child process each)", int, 1)
  .option("--replay", "only replay the seeds and the regression corpus (fuzz/corpus/NAME/)")
  .option("--no-record", "do not minimise findings into fuzz/corpus/")
  .option("--list", "list the targets and exit")
  .option("--json", "print machine-readable results")
  .addHelpText("after", `
Findings (an exception that is not a one-line GuestcoreError, a hang past 2 s,
memory past 256 MiB) are minimised and written to fuzz/corpus/NAME/CLASS-SHA1.bin.
Exit status: 0 with no findings, 1 with findings.

Example:
  npm run build && node dist/fuzz/run.js --target kdump --inputs 20000 --seed 7
  node dist/fuzz/run.js --target all --inputs 10000 --json > fuzz.json`);

program.action(async (o: { target?: string; inputs: number; seconds: number; seed: number; jobs: number; replay?: boolean; record: boolean; list?: boolean; json?: boolean }) => {
  const all = await listTargets();
  if (o.list) {
    for (const t of all) console.log(`${t.name.padEnd(16)} ${t.describes}`);
    return;
  }
  if (!o.target) program.error("error: --target NAME|all is required (--list shows the targets)");
  const chosen = o.target === "all" ? all : all.filter((t) => t.name === o.target);
  if (!chosen.length) {
    process.stderr.write(`fuzz: no target "${o.target}" (have: ${all.map((t) => t.name).join(", ") || "none; build first"})\n`);
    process.exit(2);
  }
  const tty = process.stderr.isTTY;
  const show = (p: Progress) => {
    if (!tty) return;
    process.stderr.write(`\r\x1b[K${p.target}: ${p.next}/${p.of} inputs, ${(p.ran / Math.max(p.seconds, 1e-3)).toFixed(0)}/s, corpus ${p.corpus}, blocks ${p.covered}, findings ${p.findings}`);
  };
  const results: TargetResult[] = await runTargets(chosen, {
    inputs: o.inputs, seconds: o.seconds, seed: o.seed, jobs: o.jobs, replayOnly: o.replay, record: o.record, onProgress: o.jobs > 1 ? undefined : show,
  });
  if (tty) process.stderr.write("\r\x1b[K");
  if (!o.json) {
    for (const r of results) {
      process.stderr.write(`${r.name}: ${r.inputs} inputs in ${r.seconds.toFixed(1)} s, ${r.details.length} distinct findings\n`);
      for (const d of r.details) process.stderr.write(`  ${d.cls} x${d.count}: ${d.message}${d.file ? ` -> ${d.file} (${d.bytes} bytes)` : ""}\n`);
    }
  }
  if (o.json) console.log(JSON.stringify({ seed: o.seed, inputsPerTarget: o.inputs, targets: results }, null, 2));
  else console.log(formatTable(results));
  if (results.some((r) => r.details.length)) process.exitCode = 1;
});

await program.parseAsync();
