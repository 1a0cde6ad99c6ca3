// Replaces dist/src/cli.js and the two worker scripts with one-file
// bundles of themselves, each at its own path. Run after tsc (npm run build).
//
// Why: Node's ESM loader spends about 1 ms per module resolving, reading
// and linking. The CLI's dump path loads some 60 modules, and each
// compression thread loads its own copy. On a small guest that is as long as
// makedumpfile's whole run (bench/speed.ts). A bundle is read and compiled once.
//
// Every module still finds its files (the Wasm core, the web viewer, the
// worker scripts, package.json, the native addons) as before: its
// `import.meta.url` is replaced by the URL of its own file under dist/src,
// which tsc left in place. Each bundle sits where its entry was, so that URL
// is relative to the bundle's own. The library (dist/src/index.js) still
// imports the unbundled modules.
import { build, type Plugin } from "esbuild";
import { readFile } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

// dist/src/cli/bundle-cli.js -> dist/src
const DIST_SRC = fileURLToPath(new URL("../", import.meta.url));

export const ENTRIES = ["cli.js", "pipeline/compress-worker.js", "warmcache/matcher-worker.js"];

/** Each module's import.meta.url, as its own file's URL relative to the bundle at `entry`. */
function ownUrls(entry: string): Plugin {
  const from = dirname(join(DIST_SRC, entry));
  return {
    name: "own-import-meta-url",
    setup(b) {
      b.onLoad({ filter: /\.js$/ }, async (a) => {
        if (!a.path.startsWith(DIST_SRC)) return undefined;
        const text = await readFile(a.path, "utf8");
        if (!text.includes("import.meta.url")) return { contents: text, loader: "js" };
        let rel = relative(from, a.path).split(sep).join("/");
        if (!rel.startsWith(".")) rel = `./${rel}`;
        const own = `new URL(${JSON.stringify(rel)}, import.meta.url).href`;
        return { contents: text.replaceAll("import.meta.url", own), loader: "js", resolveDir: dirname(a.path) };
      });
    },
  };
}

export async function bundleCli(): Promise<void> {
  for (const entry of ENTRIES) {
    const file = join(DIST_SRC, entry);
    await build({
      entryPoints: [file],
      outfile: file,
      allowOverwrite: true,
      bundle: true,
      format: "esm",
      platform: "node",
      target: "node20",
      // Native addons and the Emscripten zstd stay in node_modules, loaded
      // by Node's require as before; commander and cli-progress are CommonJS,
      // which an ESM bundle can only reach through a real require.
      packages: "external",
      logLevel: "warning",
      plugins: [ownUrls(entry)],
    });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await bundleCli();
