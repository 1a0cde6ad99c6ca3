// `guestcore view`: the analysis in a browser tab. A static server on
// 127.0.0.1 for dist/web/, cross-origin isolated (COOP same-origin, COEP
// require-corp) because the Wasm core's memory is shared, and a
// SharedArrayBuffer exists only on such a page. The dump never leaves the
// tab: the page reads the file the user picks, in slices.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { existsSync, readFileSync, statSync } from "node:fs";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";
import type { Command } from "commander";
import { GuestcoreError } from "../core/errors.js";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".map": "application/json",
};

const HEADERS = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
  // Scripts from this server only. The core and zstd-codec instantiate Wasm
  // from bytes ('wasm-unsafe-eval'), and zstd-codec's embind glue makes its
  // classes with new Function ('unsafe-eval').
  "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval'; worker-src 'self'; img-src 'self' data:; style-src 'self'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-cache",
};

/** dist/web/, where `npm run build` puts the bundled page (dist/src/cli/ -> dist/web/). */
export function webRoot(): string {
  return fileURLToPath(new URL("../../web/", import.meta.url));
}

export interface ViewServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/** Serve the viewer on 127.0.0.1:`port` (0: any free port). */
export async function serveView(port: number, root = webRoot()): Promise<ViewServer> {
  if (!existsSync(join(root, "index.html")) || !existsSync(join(root, "worker.js"))) {
    throw new GuestcoreError(`the viewer's files are missing in ${root}: run 'npm run build'`);
  }
  const server = createServer((req, res) => handle(root, req, res, server));
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => reject(new GuestcoreError(`cannot listen on 127.0.0.1:${port}: ${e.code ?? e.message}`)));
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const addr = server.address();
  const actual = typeof addr === "object" && addr ? addr.port : port;
  return {
    server, url: `http://127.0.0.1:${actual}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function handle(root: string, req: IncomingMessage, res: ServerResponse, server: Server): void {
  const send = (code: number, body: string) => {
    res.writeHead(code, { ...HEADERS, "Content-Type": "text/plain; charset=utf-8" });
    res.end(body + "\n");
  };
  if (req.method !== "GET" && req.method !== "HEAD") return send(405, "only GET and HEAD");
  // Another site's page resolving its name to 127.0.0.1 (DNS rebinding)
  // sends its own Host: only our address is served.
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  if (req.headers.host !== `127.0.0.1:${port}` && req.headers.host !== `localhost:${port}`) return send(421, "wrong Host");
  let path: string;
  try {
    path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
  } catch {
    return send(400, "bad path");
  }
  if (path === "/") path = "/index.html";
  const file = normalize(join(root, path));
  if (!file.startsWith(root.endsWith(sep) ? root : root + sep)) return send(403, "outside the viewer");
  const type = TYPES[extname(file)];
  if (!type || !existsSync(file) || !statSync(file).isFile()) return send(404, "not found");
  const body = readFileSync(file);
  res.writeHead(200, { ...HEADERS, "Content-Type": type, "Content-Length": body.length });
  res.end(req.method === "HEAD" ? undefined : body);
}

function openBrowser(url: string): void {
  const cmd = process.env.BROWSER || (process.platform === "darwin" ? "open" : "xdg-open");
  try {
    const child = spawn(cmd, [url], { detached: true, stdio: "ignore" });
    child.on("error", () => process.stderr.write(`guestcore: could not start ${cmd}; open ${url} yourself\n`));
    child.unref();
  } catch {
    process.stderr.write(`guestcore: could not start ${cmd}; open ${url} yourself\n`);
  }
}

export function registerView(program: Command): void {
  program
    .command("view")
    .description("serve the analysis viewer on 127.0.0.1: pick a dump in the browser tab and see its kernel, kernel log, tasks, modules and memory map")
    .option("--port <n>", "port to listen on (0: any free one)", "8470")
    .option("--open", "open the page in the default browser ($BROWSER, else xdg-open)")
    .addHelpText("after", [
      "",
      "The page is cross-origin isolated (COOP same-origin, COEP require-corp), so the Wasm",
      "core runs there on shared memory. The dump is read in the tab, in slices, by a worker:",
      "it is never uploaded, nor read whole into memory. Stop the server with Ctrl-C.",
      "",
      "Examples:",
      "  guestcore view --open",
      "  guestcore view --port 9000",
    ].join("\n"))
    .action(async (o: { port: string; open?: boolean }) => {
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new GuestcoreError(`--port takes 0 to 65535, not "${o.port}"`);
      const v = await serveView(port);
      console.log(`guestcore view: ${v.url}`);
      if (o.open) openBrowser(v.url);
    });
}
