// Time to find the kernel: GuestImage.open (VMCOREINFO scanned for,
// validated against the page tables, the raw file's layout decided and
// checked) on raw memory images, and GuestImage.fromSource on a source laid
// out as `--qmp` builds one from QEMU's memory map (the memory-backend
// file with QMP's layout; QemuGuestSource's reads go straight to it).
//
//   node dist/bench/find-kernel.js [--runs 5] [--baseline OTHER/dist] [--out bench/results/find-kernel]
//
// Each run is a fresh node process that loads the build, then times the
// open alone (performance.now() around it: no process start, no module
// loading) and counts the bytes it read (/proc/self/io rchar). With
// --baseline, the runs alternate between this build and the other one (a
// dist/ of another checkout), and both must find the same kernel at the
// same place. Inputs are read once untimed first, so both builds meet a
// warm page cache. Needs the q35-4g, pc-4g and q35-256m fixtures and the
// 32 GiB synthetic image (fixtures/build-synthetic-large.sh 32) and the
// sparse one (fixtures/build-synthetic-large.sh --span=1024 16).
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { arg, flag, log, median, writeResults } from "./warm-common.js";

const CACHE = process.env.GUESTCORE_CACHE ?? "/var/cache/guestcore";
const HERE = fileURLToPath(new URL("./find-kernel.js", import.meta.url));
const DIST = resolve(fileURLToPath(new URL("..", import.meta.url)));

interface Input {
  name: string;
  path: string;
  /** "raw": GuestImage.open(path); "qmp": fromSource over the file with QMP's layout. */
  via: "raw" | "qmp";
  layout?: string;
}

const fx = (p: string) => join(CACHE, "fixtures", p, "mem.raw");
const INPUTS: Input[] = [
  { name: "q35-4g", path: fx("q35-4g"), via: "raw" },
  { name: "pc-4g", path: fx("pc-4g"), via: "raw" },
  { name: "q35-256m", path: fx("q35-256m"), via: "raw" },
  { name: "synthetic-32g", path: fx("synthetic-32g"), via: "raw" },
  // RAM at both ends of a 1 TiB span: the raw image is 1 TiB of file.
  { name: "synthetic-16g-in-1024g", path: fx("synthetic-16g-in-1024g"), via: "raw" },
  { name: "q35-4g", path: fx("q35-4g"), via: "qmp", layout: "0:2G@0,4G:2G@2G" },
  { name: "pc-4g", path: fx("pc-4g"), via: "qmp", layout: "0:3G@0,4G:1G@3G" },
];

interface Run {
  ms: number;
  readMiB: number;
  found: string;
}

function rchar(): number {
  return Number(/rchar: (\d+)/.exec(readFileSync("/proc/self/io", "utf8"))![1]);
}

/** One run, in this process: `node find-kernel.js --child DIST VIA PATH [LAYOUT]`. */
async function child(dist: string, via: string, path: string, layout?: string): Promise<void> {
  const { GuestImage } = await import(join(dist, "src/image.js"));
  const { FileBackedSource, checkSegments, openReadOnly } = await import(join(dist, "src/sources/file-backed.js"));
  const { parseLayout } = await import(join(dist, "src/sources/raw.js"));
  const r0 = rchar();
  const t0 = performance.now();
  let img;
  if (via === "qmp") {
    // What openQemuGuest hands GuestImage.fromSource, without the QMP socket.
    const { fd, size } = openReadOnly(path);
    try {
      img = GuestImage.fromSource(new FileBackedSource("qemu", path, fd, checkSegments(parseLayout(layout!), size, path), []));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  } else {
    img = GuestImage.open(path);
  }
  const ms = performance.now() - t0;
  const s = img.summary();
  img.close();
  const run: Run = { ms, readMiB: (rchar() - r0) / 2 ** 20, found: `${s.vmcoreinfoFrom} phys_base ${s.physBase} ${JSON.stringify(s.physicalRanges)}` };
  process.stdout.write(JSON.stringify(run) + "\n");
}

function runOnce(dist: string, input: Input): Run {
  const r = spawnSync(process.execPath, [HERE, "--child", dist, input.via, input.path, ...(input.layout ? [input.layout] : [])], { encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${dist} on ${input.name} (${input.via}) failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

async function main(): Promise<void> {
  if (flag("--child")) {
    const at = process.argv.indexOf("--child");
    const [dist, via, path, layout] = process.argv.slice(at + 1);
    return child(dist, via, path, layout);
  }
  const runs = Number(arg("--runs", "5"));
  const baseline = process.argv.includes("--baseline") ? resolve(arg("--baseline", "")) : undefined;
  const out = arg("--out", "bench/results/find-kernel");
  for (const i of INPUTS) if (!existsSync(i.path)) throw new Error(`missing ${i.path}: build the fixtures first (see this file's header)`);
  const builds = baseline ? [DIST, baseline] : [DIST];
  const rows = [];
  for (const input of INPUTS) {
    for (const b of builds) runOnce(b, input);
    const got: Run[][] = builds.map(() => []);
    for (let k = 0; k < runs; k++) builds.forEach((b, j) => got[j].push(runOnce(b, input)));
    const found = got.map((g) => g[0].found);
    if (found.some((f) => f !== found[0])) throw new Error(`${input.name}: the builds disagree:\n${found.join("\n")}`);
    const ms = got.map((g) => median(g.map((r) => r.ms)));
    const readMiB = got.map((g) => median(g.map((r) => r.readMiB)));
    const row = { input: input.name, via: input.via, size: sizeText(input.path), found: found[0], ms, readMiB, all: got.map((g) => g.map((r) => r.ms)) };
    log(`${input.name} ${input.via}: ${ms.map((m) => m.toFixed(1)).join(" / ")} ms`);
    rows.push(row);
  }
  const head = baseline
    ? "| input | path | guest | this build, ms | baseline, ms | ratio | read, MiB (this / baseline) | VMCOREINFO |\n|---|---|---:|---:|---:|---:|---:|---|"
    : "| input | path | guest | ms | read, MiB | VMCOREINFO |\n|---|---|---:|---:|---:|---|";
  const lines = rows.map((r) => {
    const where = r.found.split(" phys_base")[0];
    const path = r.via === "raw" ? "GuestImage.open (raw, no --layout)" : "GuestImage.fromSource (QMP layout)";
    return baseline
      ? `| ${r.input} | ${path} | ${r.size} | ${r.ms[0].toFixed(1)} | ${r.ms[1].toFixed(1)} | ${(r.ms[1] / r.ms[0]).toFixed(1)}x faster | ${r.readMiB[0].toFixed(0)} / ${r.readMiB[1].toFixed(0)} | ${where} |`
      : `| ${r.input} | ${path} | ${r.size} | ${r.ms[0].toFixed(1)} | ${r.readMiB[0].toFixed(0)} | ${where} |`;
  });
  const note = `Time to find the kernel, median of ${runs} runs (a fresh process each, the open alone timed${baseline ? ", alternating with the baseline" : ""}); page cache warm. ${new Date().toISOString()}, load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]}.`;
  const md = [note, "", head, ...lines].join("\n");
  console.log(md);
  writeResults(out, { runs, baseline, rows }, md);
}

function sizeText(path: string): string {
  const { size } = statSync(path);
  return size >= 2 ** 30 ? `${size / 2 ** 30} GiB` : `${size / 2 ** 20} MiB`;
}

await main();
