// The long fuzz campaign (issue 10): at least 1 000 000 mutated inputs
// across every target in fuzz/targets/, on one core by default, each input
// under the budgets of the short CI campaign (2 s, 256 MiB). Findings are
// minimised into fuzz/corpus/ (the regression corpus the tests replay).
//
//   node dist/bench/fuzz-campaign.js [--total 1000000] [--jobs 1] [--seed K] [--out bench/results/fuzz]
//
// Inputs are split evenly over the targets. Results: campaign.json (per
// target: inputs, wall and CPU seconds, inputs per second and per CPU
// second, corpus, covered blocks, findings) and campaign.md (the table for
// the README), with the host's load average, since other work on the
// machine slows the wall-clock figures but not the per-CPU-second ones.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cpus, loadavg } from "node:os";
import { listTargets, runTargets, type TargetResult } from "../fuzz/harness.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const total = Number(arg("total", "1000000"));
const jobs = Number(arg("jobs", "1"));
const seed = Number(arg("seed", String(Date.UTC(2026, 11, 2) / 1000)));
const out = arg("out", "bench/results/fuzz");

const targets = await listTargets();
if (!targets.length) throw new Error("no fuzz targets: npm run build first");
const perTarget = Math.ceil(total / targets.length);
const load0 = loadavg();
const t0 = Date.now();
const printed = new Map<string, number>();
process.stderr.write(`fuzz campaign: ${targets.length} targets x ${perTarget} inputs, ${jobs} at a time, seed ${seed}\n`);
const results: TargetResult[] = await runTargets(targets, {
  inputs: perTarget, seed, jobs,
  onProgress: (p) => {
    const bucket = Math.floor(p.next / 10_000);
    if (bucket === printed.get(p.target)) return;
    printed.set(p.target, bucket);
    process.stderr.write(`  ${p.target}: ${p.next}/${p.of}, corpus ${p.corpus}, blocks ${p.covered}, findings ${p.findings}\n`);
  },
});
const wall = (Date.now() - t0) / 1000;
const sum = (f: (r: TargetResult) => number) => results.reduce((n, r) => n + f(r), 0);
const summary = {
  date: new Date().toISOString(),
  seed, jobs, cpu: cpus()[0]?.model, loadavgBefore: load0, loadavgAfter: loadavg(),
  targets: results.length, inputsPerTarget: perTarget,
  inputs: sum((r) => r.inputs), mutated: sum((r) => r.mutated), wallSeconds: wall, cpuSeconds: sum((r) => r.cpuSeconds),
  findings: { crash: sum((r) => r.findings.crash), hang: sum((r) => r.findings.hang), memory: sum((r) => r.findings.memory) },
  unconfirmedHangs: sum((r) => r.unconfirmedHangs),
  results,
};

const rows = results.map((r) => `| ${r.name} | ${r.describes} | ${r.inputs} | ${r.inputsPerSecond.toFixed(0)} | ${r.inputsPerCpuSecond.toFixed(0)} | ${r.corpus} | ${r.coveredBlocks} | ${r.findings.crash} | ${r.findings.hang} | ${r.findings.memory} |`);
const md = [
  `Fuzz campaign of ${summary.date.slice(0, 10)}: ${summary.inputs} inputs (${summary.mutated} mutated) across ${results.length} targets in ${(wall / 60).toFixed(1)} min, ${jobs} target(s) at a time, seed ${seed}; load average ${load0.map((x) => x.toFixed(1)).join(" ")} before, ${summary.loadavgAfter.map((x) => x.toFixed(1)).join(" ")} after.`,
  `Findings: ${summary.findings.crash} crashes, ${summary.findings.hang} hangs, ${summary.findings.memory} budget overruns; ${summary.unconfirmedHangs} input(s) over the time budget only under coverage (rerun without it, within budget: not findings).`,
  "",
  "| target | parses | inputs | inputs/s | inputs/CPU-s | corpus | blocks | crash | hang | memory |",
  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ...rows,
  "",
].join("\n");
mkdirSync(out, { recursive: true });
writeFileSync(join(out, "campaign.json"), JSON.stringify(summary, null, 2) + "\n");
writeFileSync(join(out, "campaign.md"), md);
process.stdout.write(md);
for (const r of results) for (const d of r.details) process.stderr.write(`${r.name}: ${d.cls} x${d.count}: ${d.message} -> ${d.file}\n`);
if (summary.findings.crash + summary.findings.hang + summary.findings.memory > 0) process.exitCode = 1;
