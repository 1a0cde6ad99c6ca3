// node:fs in the browser bundle: the read-only calls guestcore's readers
// make, over the picked files of a WebFiles. The table is one per worker,
// as a process has one descriptor table; the worker installs it first.
import { ErrnoError, type WebFiles } from "../files.js";

let files: WebFiles | undefined;

export function useFiles(f: WebFiles): void {
  files = f;
}

function table(): WebFiles {
  if (!files) throw new ErrnoError("ENOENT", "no files in this worker");
  return files;
}

/** The open flags guestcore's readers pass (Linux values); only reading ones are accepted. */
export const constants = { O_RDONLY: 0, O_NONBLOCK: 0o4000 };

export function openSync(path: string, flags: string | number = "r"): number {
  if (flags !== "r" && (typeof flags !== "number" || (flags & ~constants.O_NONBLOCK) !== constants.O_RDONLY)) throw new ErrnoError("EROFS", `the browser's files are read-only, open '${path}'`);
  return table().openFd(path);
}

export function fstatSync(fd: number) {
  const size = table().file(fd).size;
  return { size, isFile: () => true, isBlockDevice: () => false, isDirectory: () => false };
}

export function readSync(fd: number, buf: Uint8Array, off: number, len: number, pos: number | null): number {
  if (pos === null) throw new ErrnoError("ESPIPE", "reads need a position");
  return table().file(fd).read(buf, off, len, pos);
}

export function closeSync(fd: number): void {
  table().closeFd(fd);
}

export function readFileSync(path: string | URL): Uint8Array {
  const p = String(path);
  const a = table().asset(p);
  if (!a) throw new ErrnoError("ENOENT", `no such asset, open '${p}'`);
  return a;
}

function readOnly(name: string): () => never {
  return () => {
    throw new ErrnoError("EROFS", `${name} is not available in the browser`);
  };
}

export const writeSync = readOnly("writeSync");
export const mkdtempSync = readOnly("mkdtempSync");
export const rmdirSync = readOnly("rmdirSync");
export const unlinkSync = readOnly("unlinkSync");
export const createReadStream = readOnly("createReadStream");
export const renameSync = readOnly("renameSync");
export const fsyncSync = readOnly("fsyncSync");
export const fdatasyncSync = readOnly("fdatasyncSync");
export const readdirSync = readOnly("readdirSync");
export const lstatSync = readOnly("lstatSync");
