// node:url, node:os and node:path in the browser bundle: just what the
// readers' modules touch when they load (the Wasm core's URL) or name.
export function fileURLToPath(u: string | URL): string {
  return String(u);
}

export function tmpdir(): string {
  return "/tmp";
}

export const constants = { errno: {}, signals: {} };

export function join(...parts: string[]): string {
  return parts.join("/").replace(/\/+/g, "/");
}

export function basename(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

export function dirname(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? (i === 0 ? "/" : ".") : p.slice(0, i);
}
export default { fileURLToPath, tmpdir, constants, join, basename, dirname };
