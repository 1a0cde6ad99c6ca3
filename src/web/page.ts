// The viewer page: hands the picked file to the analysis worker and
// draws what it sends back. Nothing of the dump leaves the tab.
import { cellCount, dominantClass, MAP_CLASSES, type MemoryMap } from "./memory-map.js";
import type { FromWorker, ModuleRow, TaskRow } from "./protocol.js";
import { DEFAULT_MARKER } from "../analysis/log-markers.js";

const MARKER = new RegExp(DEFAULT_MARKER);

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = (s: string) => ($("status").textContent = s);

function el(tag: string, text?: string | number, cls?: string): HTMLElement {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function showInfo(info: Record<string, string | number | boolean>): void {
  const dl = $("info");
  dl.replaceChildren();
  for (const [k, v] of Object.entries(info)) {
    const dd = el("dd", String(v));
    dd.dataset.key = k;
    dl.append(el("dt", k), dd);
  }
}

function showLog(text: string, records: number): void {
  const pre = $("log");
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  pre.replaceChildren(...lines.map((l) => el("div", l, MARKER.test(l) ? "marker" : undefined)));
  $("log-count").textContent = `(${records} records)`;
  const marker = pre.querySelector(".marker");
  marker?.scrollIntoView({ block: "nearest" });
}

function showTasks(tasks: TaskRow[]): void {
  const body = $("tasks").querySelector("tbody")!;
  body.replaceChildren(...tasks.map((t) => {
    const tr = el("tr", undefined, t.active ? "active" : undefined);
    tr.dataset.pid = String(t.pid);
    tr.title = `task_struct ${t.address}`;
    tr.append(el("td", t.active ? ">" : ""), el("td", t.pid), el("td", t.ppid), el("td", t.tgid), el("td", t.cpu), el("td", t.state), el("td", t.comm));
    return tr;
  }));
  $("task-count").textContent = `(${tasks.length})`;
  $("task-count").dataset.count = String(tasks.length);
}

function showModules(mods: ModuleRow[]): void {
  const body = $("modules").querySelector("tbody")!;
  body.replaceChildren(...mods.map((m) => {
    const tr = el("tr");
    tr.append(el("td", m.name), el("td", m.size), el("td", m.base), el("td", m.state));
    return tr;
  }));
  $("module-count").textContent = `(${mods.length})`;
}

const SVG = "http://www.w3.org/2000/svg";
const MIB = 1 << 20;

function showMap(m: MemoryMap): void {
  const cols = 64;
  const rows = Math.ceil(m.cells / cols);
  const size = 10;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${cols * size} ${rows * size}`);
  svg.setAttribute("role", "img");
  const bytesPerCell = m.pagesPerCell * 4096;
  for (let c = 0; c < m.cells; c++) {
    const cls = dominantClass(m, c);
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", String((c % cols) * size));
    r.setAttribute("y", String(Math.floor(c / cols) * size));
    r.setAttribute("width", String(size));
    r.setAttribute("height", String(size));
    r.setAttribute("fill", MAP_CLASSES[cls].color);
    const t = document.createElementNS(SVG, "title");
    const parts = MAP_CLASSES.map((k, i) => [k.name, cellCount(m, c, i)] as const).filter(([, n]) => n > 0).map(([n, v]) => `${n} ${v}`);
    const start = c * m.pagesPerCell;
    t.textContent = `pfn 0x${start.toString(16)}-0x${(start + m.pagesPerCell - 1).toString(16)}: ${parts.join(", ")}`;
    r.append(t);
    svg.append(r);
  }
  $("map").replaceChildren(svg);
  const total = m.totals.reduce((a, b) => a + b, 0);
  $("legend").replaceChildren(...MAP_CLASSES.map((k, i) => {
    const li = el("li");
    const sw = el("i");
    sw.style.background = k.color;
    li.append(sw, `${k.name}: ${m.totals[i]} pages (${((m.totals[i] * 4096) / MIB).toFixed(1)} MiB, ${((100 * m.totals[i]) / Math.max(1, total)).toFixed(1)}%)`);
    li.dataset.cls = k.name;
    li.dataset.pages = String(m.totals[i]);
    return li;
  }).filter((_, i) => m.totals[i] > 0));
  const cellSize = bytesPerCell >= MIB ? `${bytesPerCell / MIB} MiB` : `${bytesPerCell / 1024} KiB`;
  $("map-caption").textContent = `${m.cells} cells of ${m.pagesPerCell} pages (${cellSize}), ${cols} to a row from pfn 0 at the top left; each cell has the colour of its most common page class (hover for its counts).`;
}

function showError(section: string, message: string): void {
  $("errors-box").hidden = false;
  $("errors").append(el("li", `${section}: ${message}`));
}

const worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
let ready = false;
let pending: File | undefined;

function open(file: File): void {
  for (const id of ["info", "log", "errors", "map", "legend", "map-caption"]) $(id).replaceChildren();
  $("tasks").querySelector("tbody")!.replaceChildren();
  $("errors-box").hidden = true;
  document.body.dataset.state = "busy";
  status(`Reading ${file.name} (${(file.size / MIB).toFixed(1)} MiB)…`);
  worker.postMessage({ type: "open", file });
}

worker.onmessage = (e: MessageEvent<FromWorker>) => {
  const m = e.data;
  switch (m.type) {
    case "ready":
      ready = true;
      if (!m.crossOriginIsolated) showError("page", "not cross-origin isolated: SharedArrayBuffer (the Wasm core's shared memory) is unavailable");
      if (pending) open(pending);
      break;
    case "progress":
      status(`${m.what}: ${Math.round((100 * m.done) / Math.max(1, m.total))}%`);
      break;
    case "info":
      showInfo(m.info);
      break;
    case "log":
      showLog(m.text, m.records);
      for (const w of m.warnings) showError("log", w);
      break;
    case "tasks":
      showTasks(m.tasks);
      break;
    case "modules":
      showModules(m.modules);
      break;
    case "map":
      showMap(m.map);
      break;
    case "error":
      showError(m.section, m.message);
      break;
    case "done":
      status(`Done in ${m.seconds.toFixed(2)} s (${Object.entries(m.timings).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ")}).`);
      document.body.dataset.seconds = JSON.stringify(m.timings);
      document.body.dataset.state = "done";
      break;
  }
};
worker.onerror = (e) => {
  showError("worker", e.message || "the analysis worker failed to start");
  document.body.dataset.state = "failed";
};

$<HTMLInputElement>("file").addEventListener("change", (e) => {
  const f = (e.target as HTMLInputElement).files?.[0];
  if (!f) return;
  if (ready) open(f);
  else pending = f;
});

$<HTMLInputElement>("log-filter").addEventListener("input", (e) => {
  const q = (e.target as HTMLInputElement).value.toLowerCase();
  for (const d of $("log").children) (d as HTMLElement).hidden = q !== "" && !(d.textContent ?? "").toLowerCase().includes(q);
});
