// The bundled example image is what the generator makes, and dumps.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { buildSynthetic } from "../../fixtures/synthetic.js";

test("fixtures/example/synthetic-64m.raw.gz matches the synthetic generator", () => {
  const path = fileURLToPath(new URL("../../../fixtures/example/synthetic-64m.raw.gz", import.meta.url));
  const committed = gunzipSync(readFileSync(path));
  assert.ok(Buffer.compare(committed, buildSynthetic({ memMiB: 64 }).image) === 0,
    "regenerate it: node dist/fixtures/synthetic.js /tmp/ex.raw 64 && gzip -9c /tmp/ex.raw > fixtures/example/synthetic-64m.raw.gz");
});
