// Builds dist/web/: the viewer page and its worker bundled from src/ by
// esbuild, Node's modules replaced by the small adapters in src/web/shims,
// with the Wasm core beside them. Run after tsc (npm run build).
import { build, type Plugin } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

// dist/src/web/bundle.js -> the package root
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const SRC = join(ROOT, "src", "web");
const OUT = join(ROOT, "dist", "web");
const shim = (f: string) => join(SRC, "shims", f);

const NODE: Record<string, string> = {
  fs: shim("fs.ts"), module: shim("module.ts"), zlib: shim("zlib.ts"),
  url: shim("node-misc.ts"), os: shim("node-misc.ts"), path: shim("node-misc.ts"),
  // zstd-codec's Emscripten glue names these on its Node path only.
  crypto: shim("node-misc.ts"),
};

/** node:X (and bare X, as zstd-codec's glue asks) to the browser adapters; anything else Node-only fails the build. */
const nodeShims: Plugin = {
  name: "node-shims",
  setup(b) {
    b.onResolve({ filter: /^(node:)?(fs|module|zlib|url|os|path|crypto|child_process|worker_threads|net|stream|events|util)$/ }, (a) => {
      const name = a.path.replace(/^node:/, "");
      const to = NODE[name];
      if (!to) return { errors: [{ text: `node:${name} has no browser adapter (imported by ${a.importer})` }] };
      return { path: to };
    });
  },
};

export async function bundleWeb(): Promise<void> {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  await build({
    entryPoints: [join(SRC, "page.ts"), join(SRC, "worker.ts")],
    outdir: OUT,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome110",
    sourcemap: true,
    minify: false,
    logLevel: "warning",
    plugins: [nodeShims],
    inject: [shim("globals.ts")],
    // guestcore reads a few variables of its environment; the browser has none.
    define: { "process.env": "{}" },
  });
  copyFileSync(join(SRC, "index.html"), join(OUT, "index.html"));
  copyFileSync(join(SRC, "view.css"), join(OUT, "view.css"));
  copyFileSync(join(ROOT, "build", "core.wasm"), join(OUT, "core.wasm"));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await bundleWeb();
