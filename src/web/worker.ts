// The viewer's analysis worker: guestcore's readers, the Wasm core on
// shared memory and zstd-codec, over the file the page hands it, read
// synchronously in slices (FileReaderSync is synchronous only in workers).
import { useFiles } from "./shims/fs.js";
import { WebFiles } from "./files.js";
import { GuestImage } from "../image.js";
import { hex } from "../core/errors.js";
import { isKdumpSource } from "../sources/kdump.js";
import { Codecs } from "../codecs/codec.js";
import { formatKernelLog, readKernelLog } from "../analysis/printk.js";
import { TypedKernel } from "../analysis/typed.js";
import { listTasks } from "../analysis/tasks.js";
import { listModules } from "../analysis/modules.js";
import { kernelTimes, panicInfo } from "../analysis/system.js";
import { GuestPageUse } from "../analysis/page-use.js";
import { addWindow, newMemoryMap } from "./memory-map.js";
import type { FromWorker, ToWorker } from "./protocol.js";

interface WorkerScope {
  postMessage(m: FromWorker): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  crossOriginIsolated: boolean;
}
const scope = globalThis as unknown as WorkerScope;
const post = (m: FromWorker) => scope.postMessage(m);

const files = new WebFiles();
useFiles(files);
// The core is compiled synchronously where it is first needed (GuestImage);
// fetch it before any file is opened.
const wasm = await fetch(new URL("core.wasm", import.meta.url));
if (!wasm.ok) throw new Error(`core.wasm: HTTP ${wasm.status}`);
files.addAsset("core.wasm", new Uint8Array(await wasm.arrayBuffer()));
// zstd-codec (no zstd-napi in a browser) loads asynchronously: once, here.
const codecs = await Codecs.load();

const addr = (a: bigint) => a.toString(16).padStart(16, "0");

/** One section of the analysis, timed; a failure is shown in its place and the others go on. */
function section(timings: Record<string, number>, name: string, f: () => void): void {
  const t0 = performance.now();
  try {
    f();
  } catch (e) {
    post({ type: "error", section: name, message: e instanceof Error ? e.message : String(e) });
  }
  timings[name] = (performance.now() - t0) / 1000;
}

function analyse(file: File, codecs: Codecs): void {
  const t0 = performance.now();
  const path = `/picked/${file.name}`;
  files.add(path, file);
  const onProgress = (what: string, done: number, total: number) => post({ type: "progress", what, done, total });
  const timings: Record<string, number> = {};
  const done = () => post({ type: "done", seconds: (performance.now() - t0) / 1000, timings });
  let img: GuestImage;
  try {
    img = GuestImage.open(path, { onProgress, codecs });
  } catch (e) {
    post({ type: "error", section: "open", message: e instanceof Error ? e.message : String(e) });
    done();
    return;
  }
  timings.open = (performance.now() - t0) / 1000;
  try {
    const k = img.kernel;
    const info: Record<string, string | number | boolean> = {
      file: file.name, bytes: file.size, format: img.source.format, kernelRelease: k.info.osrelease ?? "unknown",
      pageSize: k.info.pageSize, kaslrOffset: hex(k.kaslrOffset), physBase: hex(k.physBase), pagingLevels: k.as.form.levels,
      vmcoreinfoFrom: k.origin,
    };
    const src = img.source;
    if (isKdumpSource(src)) Object.assign(info, { dumpLevel: src.dumpLevel, compression: src.compression, dumpedPages: src.dumpedPages });
    let typed: TypedKernel | undefined;
    section(timings, "info", () => {
      typed = TypedKernel.load(k);
      const times = kernelTimes(typed);
      let log;
      try {
        log = readKernelLog(k);
      } catch {
        log = undefined;
      }
      const panic = panicInfo(typed, log);
      Object.assign(info, { cpus: typed.nrCpuIds, crashTime: times.crashTime.iso, uptime: `${(Number(times.uptimeNs) / 1e9).toFixed(3)} s` });
      if (panic.message !== undefined) info.panic = panic.message;
      if (panic.task) info.panicTask = `${panic.task.pid} (${panic.task.comm}) on CPU ${panic.cpu}`;
    });
    Object.assign(info, { zstd: codecs.zstdImpl, crossOriginIsolated: scope.crossOriginIsolated });
    post({ type: "info", info });
    section(timings, "log", () => {
      const log = readKernelLog(k);
      post({ type: "log", text: formatKernelLog(log.records), records: log.records.length, warnings: log.warnings });
    });
    section(timings, "tasks", () => {
      typed ??= TypedKernel.load(k);
      const tasks = listTasks(typed).map((t) => ({
        pid: t.pid, tgid: t.tgid, ppid: t.ppid, cpu: t.cpu, state: t.state, comm: t.comm, active: t.active, address: addr(t.address),
      }));
      post({ type: "tasks", tasks });
    });
    section(timings, "modules", () => {
      typed ??= TypedKernel.load(k);
      post({ type: "modules", modules: listModules(typed).map((m) => ({ name: m.name, size: m.size, base: addr(m.base), state: m.state.replace(/^MODULE_STATE_/, "") })) });
    });
    section(timings, "map", () => {
      const use = new GuestPageUse(src, k, img.core);
      const map = newMemoryMap(use.maxPfn);
      use.run(31, (w) => addWindow(map, w), (d, t) => onProgress("classifying pages", d, t));
      post({ type: "map", map });
    });
  } finally {
    img.close();
  }
  done();
}

scope.onmessage = (e) => {
  if (e.data.type === "open") analyse(e.data.file, codecs);
};
post({ type: "ready", crossOriginIsolated: scope.crossOriginIsolated, zstd: codecs.zstdImpl });
