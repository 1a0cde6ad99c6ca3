// The house's rooms (docs in /work/shared/notes/style.md, README "Layout"):
// a module imports only from its own room or rooms below it. Every
// src/**/*.ts is read, its relative imports (type-only ones too: a type is
// a dependency) resolved to files, and each edge checked against the order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const SRC = fileURLToPath(new URL("../../../src/", import.meta.url));

/**
 * Low to high. codecs sits under sources because the kdump reader decodes
 * its pages through it (it needs nothing but core and format); image.ts,
 * GuestImage, joins a source, its kernel and the page filter, and the
 * writers, pipeline and everything above take one, so it sits between
 * filter and writers. src/cli.ts and src/index.ts are the top.
 */
export const ROOMS = [
  "core", "format", "codecs", "sources", "introspect", "filter", "image", "writers", "pipeline",
  "recovery", "warmcache", "analysis", "fixture", "web", "cli", "top",
] as const;

/** The room of a file, by its path below src/ ("sources/kdump.ts"). */
export function roomOf(rel: string): string | undefined {
  const parts = rel.split("/");
  if (parts.length === 1) {
    if (rel === "image.ts") return "image";
    if (rel === "cli.ts" || rel === "index.ts") return "top";
    return undefined;
  }
  return (ROOMS as readonly string[]).includes(parts[0]) && parts[0] !== "image" && parts[0] !== "top" ? parts[0] : undefined;
}

/** Relative imports of a module's text, as written. */
function importsOf(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName).filter((f) => f.startsWith("."));
}

/** Every edge from a room to a higher one, and every file in no room; paths below src/. */
export function violations(files: ReadonlyMap<string, string>): string[] {
  const rank = (room: string) => ROOMS.indexOf(room as (typeof ROOMS)[number]);
  const out: string[] = [];
  for (const [rel, text] of files) {
    const from = roomOf(rel);
    if (!from) {
      out.push(`${rel} is in no room`);
      continue;
    }
    for (const spec of importsOf(text)) {
      const target = relative("/src", resolve("/src", dirname(rel), spec)).split(sep).join("/").replace(/\.js$/, ".ts");
      if (target.startsWith("..")) continue; // outside src/ (none today)
      const to = roomOf(target);
      if (!to) out.push(`${rel} imports ${target}, which is in no room`);
      else if (rank(to) > rank(from)) out.push(`${rel} (${from}) imports ${target} (${to}), a higher room`);
    }
  }
  return out;
}

function sourceTree(): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) files.set(relative(SRC, p).split(sep).join("/"), readFileSync(p, "utf8"));
    }
  };
  walk(SRC);
  return files;
}

test("no module of src/ imports from a higher room", () => {
  const files = sourceTree();
  assert.ok(files.size > 100, `read ${files.size} modules of ${SRC}`);
  assert.ok(files.has("sources/kdump.ts") && files.has("image.ts") && files.has("cli.ts"));
  assert.deepEqual(violations(files), []);
});

test("the check finds an import from a higher room, type-only too, and files in no room", () => {
  const files = new Map([
    ["format/a.ts", 'import { x } from "../sources/b.js";\nimport type { Y } from "../codecs/c.js";\n'],
    ["sources/b.ts", 'export { z } from "../image.js";\nimport "./d.js";\n'],
    ["sources/d.ts", "// import { no } from '../cli.js' is a comment\n"],
    ["codecs/c.ts", 'import { e } from "../core/errors.js";\n'],
    ["cli/e.ts", 'import { GuestImage } from "../image.js";\nimport { w } from "../web/worker.js";\n'],
    ["stray.ts", ""],
    ["mystery/f.ts", ""],
  ]);
  assert.deepEqual(violations(files), [
    "format/a.ts (format) imports sources/b.ts (sources), a higher room",
    "format/a.ts (format) imports codecs/c.ts (codecs), a higher room",
    "sources/b.ts (sources) imports image.ts (image), a higher room",
    "stray.ts is in no room",
    "mystery/f.ts is in no room",
  ]);
});
