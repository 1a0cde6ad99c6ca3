// CI's short fuzz campaign: at least 10 000 mutated inputs for every target
// in fuzz/targets/ (seeds from the real captures), two targets at a time,
// and not one finding: no exception outside the one-line GuestcoreError
// contract, no input past 2 s, none past 256 MiB. Findings are minimised
// into a temporary directory named in the failure, to be copied into
// fuzz/corpus/ with the fix. bench/fuzz-campaign.ts runs the long one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatTable, listTargets, runTargets } from "../../fuzz/harness.js";

const INPUTS = 10_000;
const SEED = Number(process.env.GUESTCORE_FUZZ_SEED ?? 20261202);

test(`fuzz campaign: ${INPUTS} inputs per target, no findings`, async () => {
  const targets = await listTargets();
  assert.ok(targets.length >= 9, `only ${targets.length} targets built: ${targets.map((t) => t.name).join(", ")}`);
  const findings = mkdtempSync(join(tmpdir(), "guestcore-fuzz-findings-"));
  let keep = false;
  try {
    const results = await runTargets(targets, { inputs: INPUTS, seed: SEED, findingsDir: findings, jobs: 2 });
    process.stderr.write(`${formatTable(results)}\n`);
    for (const r of results) assert.ok(r.mutated >= INPUTS, `${r.name}: only ${r.mutated} mutated inputs ran`);
    const found = results.flatMap((r) => r.details.map((d) => `${r.name}: ${d.cls} x${d.count}: ${d.message} (${d.file})`));
    keep = found.length > 0;
    assert.deepEqual(found, [], `findings, minimised in ${findings}`);
  } finally {
    if (!keep) rmSync(findings, { recursive: true, force: true });
  }
});
