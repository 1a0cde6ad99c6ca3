// What `guestcore watch` watches: guests named in a JSON config file, and
// the QMP sockets of a directory, each with the arguments its `recover`
// gets. Everything an operator writes is validated here, with one-line
// messages that name the file and the key, before the watcher starts.
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { GuestcoreError } from "../core/errors.js";
import { readSmallFile } from "../core/file.js";

export interface WatchGuest {
  /** Used in events and as the log file's name (`<name>.log`). */
  name: string;
  /** The QMP socket, absolute. */
  qmp: string;
  /**
   * Arguments after `recover --qmp SOCK --panicked-at MS`. Undefined for a
   * directory's socket: its `<name>.args.json` is read when it panics, so
   * an edit applies without restarting watch.
   */
  args?: string[];
}

export interface WatchConfig {
  /** Replaces `node dist/src/cli.js` (the guestcore to run `recover` with). */
  command?: string[];
  /** For guests without their own args. */
  defaultArgs: string[];
  guests: WatchGuest[];
}

/** Config files are a few KiB; this only refuses to parse something else. */
const MAX_CONFIG_BYTES = 1 << 20;
const MAX_GUESTS = 1024;
const MAX_ARGS = 256;
const MAX_ARG_CHARS = 4096;
/** A log file name and a word in an event line: no slashes, no spaces. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const SOCKET_SUFFIXES = [".qmp", ".sock"];
const ARGS_SUFFIX = ".args.json";

/** Read and validate a watch config file. */
export function loadWatchConfig(file: string): WatchConfig {
  return parseWatchConfig(readSmallJson(file), file);
}

/**
 * Validate a parsed config. Relative `qmp` paths are taken from the
 * config file's directory, so a config and its sockets can move together.
 */
export function parseWatchConfig(json: unknown, file: string): WatchConfig {
  const bad = (what: string): never => { throw new GuestcoreError(`${file}: ${what}`); };
  if (!isObject(json)) bad("must hold a JSON object");
  const top = json as Record<string, unknown>;
  onlyKeys(top, ["command", "defaults", "guests"], "", bad);
  const command = top.command === undefined ? undefined : stringArray(top.command, "command", bad);
  if (command && command.length === 0) bad("command must name a program");
  let defaultArgs: string[] = [];
  if (top.defaults !== undefined) {
    if (!isObject(top.defaults)) bad("defaults must be an object");
    const d = top.defaults as Record<string, unknown>;
    onlyKeys(d, ["args"], "defaults.", bad);
    if (d.args !== undefined) defaultArgs = stringArray(d.args, "defaults.args", bad);
  }
  const guests: WatchGuest[] = [];
  if (top.guests !== undefined) {
    if (!Array.isArray(top.guests)) bad("guests must be an array");
    const list = top.guests as unknown[];
    if (list.length > MAX_GUESTS) bad(`more than ${MAX_GUESTS} guests`);
    const base = path.dirname(path.resolve(file));
    for (let i = 0; i < list.length; i++) {
      const at = `guests[${i}]`;
      const g = list[i];
      if (!isObject(g)) bad(`${at} must be an object`);
      const o = g as Record<string, unknown>;
      onlyKeys(o, ["name", "qmp", "args"], `${at}.`, bad);
      if (typeof o.name !== "string" || !NAME_RE.test(o.name)) bad(`${at}.name must be a name of letters, digits and ._+- (it names the log file)`);
      if (typeof o.qmp !== "string" || o.qmp === "") bad(`${at}.qmp must be the path of a QMP socket`);
      const name = o.name as string;
      const qmp = path.resolve(base, o.qmp as string);
      const dupName = guests.find((x) => x.name === name);
      if (dupName) bad(`${at}: the name "${name}" is used twice`);
      const dupSock = guests.find((x) => x.qmp === qmp);
      if (dupSock) bad(`${at}: ${qmp} is also guest "${dupSock.name}"'s socket (QEMU serves one QMP client per socket)`);
      guests.push({ name, qmp, args: o.args === undefined ? undefined : stringArray(o.args, `${at}.args`, bad) });
    }
  }
  return { command, defaultArgs, guests };
}

/** A directory's socket, as found by scanSocketDir. */
export interface DirSocket {
  name: string;
  qmp: string;
}

/**
 * The QMP sockets in `dir`: every `*.qmp` or `*.sock` that is a socket
 * (regular files of that name are skipped). Throws when `dir` cannot be read.
 */
export function scanSocketDir(dir: string): DirSocket[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new GuestcoreError(code === "ENOENT" ? `no directory ${dir}` : code === "ENOTDIR" ? `${dir} is not a directory` : `cannot read ${dir}: ${code ?? (e as Error).message}`);
  }
  const out: DirSocket[] = [];
  const taken = new Set<string>();
  // Sorted, so a name clash (vm1.qmp and vm1.sock) resolves the same way
  // every scan. Only socket names count toward the bound: other files
  // sorting first must not push the guests out.
  const candidates = names.filter((entry) => SOCKET_SUFFIXES.some((s) => entry.endsWith(s) && entry.length > s.length));
  for (const entry of candidates.sort().slice(0, 4 * MAX_GUESTS)) {
    const suffix = SOCKET_SUFFIXES.find((s) => entry.endsWith(s) && entry.length > s.length)!;
    const qmp = path.join(dir, entry);
    // stat, not the entry type: a symlink to a socket (e.g. into /var/lib/libvirt) counts.
    const st = statSync(qmp, { throwIfNoEntry: false });
    if (!st?.isSocket()) continue;
    let name = entry.slice(0, -suffix.length);
    if (!NAME_RE.test(name) || taken.has(name)) name = entry;
    if (!NAME_RE.test(name)) continue;
    taken.add(name);
    out.push({ name, qmp });
    if (out.length >= MAX_GUESTS) break;
  }
  return out;
}

/**
 * A directory socket's recover arguments: `<name>.args.json` beside it (a
 * JSON array of strings), else undefined (the defaults apply).
 */
export function readArgsFile(dir: string, name: string): string[] | undefined {
  const file = path.join(dir, name + ARGS_SUFFIX);
  if (!statSync(file, { throwIfNoEntry: false })) return undefined;
  return stringArray(readSmallJson(file), "the file", (what) => { throw new GuestcoreError(`${file}: ${what}`); });
}

/** `{name}` in an argument becomes the guest's name (e.g. -o /var/crash/{name}.kdump). */
export function expandArgs(args: readonly string[], name: string): string[] {
  return args.map((a) => a.replaceAll("{name}", name));
}

function readSmallJson(file: string): unknown {
  let text: string;
  try {
    text = readSmallFile(file, MAX_CONFIG_BYTES, file, { regular: true }).toString("utf8");
  } catch (e) {
    if (e instanceof GuestcoreError) throw new GuestcoreError(`${e.message}; not a watch config`);
    const code = (e as NodeJS.ErrnoException).code;
    throw new GuestcoreError(code === "ENOENT" ? `no file ${file}` : `cannot read ${file}: ${code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    // V8's message is one line ("Unexpected token } in JSON at position 42").
    throw new GuestcoreError(`${file}: not JSON (${(e as Error).message.split("\n")[0]})`);
  }
}

function isObject(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Record<string, unknown>, allowed: string[], at: string, bad: (what: string) => never): void {
  // A misspelt key ("arg", "socket") would otherwise be ignored silently.
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) bad(`unknown key ${at}${k} (expected ${allowed.map((a) => at + a).join(", ")})`);
  }
}

function stringArray(v: unknown, what: string, bad: (what: string) => never): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) return bad(`${what} must be an array of strings`);
  if (v.length > MAX_ARGS) bad(`${what} has more than ${MAX_ARGS} entries`);
  const long = v.findIndex((x: string) => x.length > MAX_ARG_CHARS || x.includes("\0"));
  if (long >= 0) bad(`${what}[${long}] is longer than ${MAX_ARG_CHARS} characters or holds a NUL`);
  return v as string[];
}
