// The fuzz regression corpus: every minimised finding in fuzz/corpus/NAME/
// goes through its target again, in a child under the budgets (2 s,
// 256 MiB), and must now parse or fail with one GuestcoreError line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CORPUS_DIR, judgeInputs, listTargets } from "../../fuzz/harness.js";

const targets = await listTargets();
const dirs = existsSync(CORPUS_DIR) ? readdirSync(CORPUS_DIR).filter((d) => readdirSync(join(CORPUS_DIR, d)).some((f) => f.endsWith(".bin"))) : [];

test("every corpus directory belongs to a target", () => {
  const names = new Set(targets.map((t) => t.name));
  assert.ok(names.size > 0, "no fuzz targets were built");
  // The corpus is in the repository: none found means this file replays nothing.
  assert.ok(dirs.length > 0, `no findings under ${CORPUS_DIR}`);
  for (const d of dirs) assert.ok(names.has(d), `fuzz/corpus/${d} has no target fuzz/targets/${d}.ts`);
});

for (const d of dirs) {
  test(`fuzz/corpus/${d}: every file keeps the contract`, async () => {
    const t = targets.find((x) => x.name === d);
    assert.ok(t, `no target ${d}`);
    const files = readdirSync(join(CORPUS_DIR, d)).filter((f) => f.endsWith(".bin")).sort();
    const verdicts = await judgeInputs(t, files.map((f) => new Uint8Array(readFileSync(join(CORPUS_DIR, d, f)))));
    const broken = files.map((f, i) => [f, verdicts[i]] as const).filter(([, v]) => v !== null);
    assert.deepEqual(broken.map(([f, v]) => `${f}: ${v!.cls}: ${v!.message}`), []);
  });
}
