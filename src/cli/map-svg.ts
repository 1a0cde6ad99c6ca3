// A picture of the guest's physical memory: a grid of cells, each a run
// of pfns coloured by the class most of its pages have, a legend with the
// totals per class, and the guest's name and kernel in the title. Plain
// SVG (horizontal runs of one colour are one rect), and PNG through
// librsvg's rsvg-convert.
import { execFileSync } from "node:child_process";
import { GuestcoreError } from "../core/errors.js";
import type { ClassBins, ClassCounts, ClassName, ZoneInfo } from "../analysis/memory.js";

/** What the legend shows, each a set of class bytes. */
export const MAP_GROUPS: readonly { key: string; label: string; color: string; classes: readonly ClassName[] }[] = [
  { key: "kernel", label: "kernel and other kept pages", color: "#c8463b", classes: ["kernel"] },
  { key: "cache", label: "page cache", color: "#3b7dc8", classes: ["cache"] },
  { key: "cachePrivate", label: "private cache (buffers)", color: "#8a63c9", classes: ["cachePrivate"] },
  { key: "user", label: "user (anon)", color: "#e59a2f", classes: ["user"] },
  { key: "free", label: "free", color: "#5fb760", classes: ["free"] },
  { key: "zero", label: "zero-filled", color: "#dcdcdc", classes: ["zero"] },
  { key: "other", label: "other (hwpoison, offline)", color: "#4d4d4d", classes: ["hwpoison", "offline"] },
  { key: "hole", label: "hole (no RAM)", color: "#ffffff", classes: ["hole"] },
];

const COLS = 64;
const CELL = 12;
const LEFT = 78;
const TOP = 62;
const PAGE = 4096;
const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);

export function mib(pages: number): string {
  const m = (pages * PAGE) / 2 ** 20;
  return m >= 100 ? m.toFixed(0) : m >= 10 ? m.toFixed(1) : m.toFixed(2);
}

function sizeLabel(bytes: number): string {
  if (bytes >= 2 ** 30 && bytes % 2 ** 30 === 0) return `${bytes / 2 ** 30} GiB`;
  if (bytes >= 2 ** 20) return `${+(bytes / 2 ** 20).toFixed(1)} MiB`;
  return `${+(bytes / 1024).toFixed(1)} KiB`;
}

export interface MapInput {
  bins: ClassBins;
  pfnsPerCell: number;
  maxPfn: number;
  /** The guest: its node name and kernel release. */
  title: string;
  zones?: readonly ZoneInfo[];
  level: number;
}

export interface MapTotals {
  key: string;
  label: string;
  pages: number;
  percent: number;
}

const groupPages = (c: ClassCounts, g: (typeof MAP_GROUPS)[number]) => g.classes.reduce((s, k) => s + c[k], 0);

export function mapTotals(m: MapInput): MapTotals[] {
  const t = m.bins.total();
  return MAP_GROUPS.map((g) => {
    const pages = groupPages(t, g);
    return { key: g.key, label: g.label, pages, percent: m.maxPfn ? (100 * pages) / m.maxPfn : 0 };
  });
}

/** The group most of a cell's pages belong to (the first in MAP_GROUPS order on a tie). */
function cellGroup(bins: ClassBins, b: number): number {
  const c = bins.bin(b);
  let best = 0;
  MAP_GROUPS.forEach((g, i) => {
    if (groupPages(c, g) > groupPages(c, MAP_GROUPS[best])) best = i;
  });
  return best;
}

export function memoryMapSvg(m: MapInput): string {
  const cells = m.bins.starts.length;
  const rows = Math.ceil(cells / COLS);
  const gridW = COLS * CELL;
  const legendTop = TOP + rows * CELL + 28;
  const W = LEFT + gridW + 24;
  const H = legendTop + Math.ceil(MAP_GROUPS.length / 2) * 20 + 36;
  const cellBytes = m.pfnsPerCell * PAGE;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${LEFT}" y="20" font-size="15" font-weight="bold">${esc(m.title)}</text>`);
  const zones = (m.zones ?? []).filter((z) => z.spanned > 0)
    .map((z) => `${z.name} ${sizeLabel(z.startPfn * PAGE)}–${sizeLabel((z.startPfn + z.spanned) * PAGE)}`).join(", ");
  out.push(`<text x="${LEFT}" y="37">${esc(`physical memory 0–${sizeLabel(m.maxPfn * PAGE)}, one cell = ${sizeLabel(cellBytes)} (${m.pfnsPerCell} pages), coloured by the class most of its pages have (dump level ${m.level})`)}</text>`);
  if (zones) out.push(`<text x="${LEFT}" y="52" fill="#555">${esc(`zones: ${zones}`)}</text>`);
  const group = Array.from({ length: cells }, (_, b) => cellGroup(m.bins, b));
  out.push(`<g shape-rendering="crispEdges">`);
  for (let r = 0; r < rows; r++) {
    const y = TOP + r * CELL;
    let c = 0;
    while (c < COLS && r * COLS + c < cells) {
      const g = group[r * COLS + c];
      let e = c + 1;
      while (e < COLS && r * COLS + e < cells && group[r * COLS + e] === g) e++;
      out.push(`<rect x="${LEFT + c * CELL}" y="${y}" width="${(e - c) * CELL}" height="${CELL}" fill="${MAP_GROUPS[g].color}"/>`);
      c = e;
    }
  }
  out.push(`</g>`);
  // A grid outline over the cells, and the rows' start addresses.
  out.push(`<rect x="${LEFT}" y="${TOP}" width="${gridW}" height="${rows * CELL}" fill="none" stroke="#888"/>`);
  const every = Math.max(1, Math.ceil(rows / 32));
  for (let r = 0; r < rows; r += every) {
    out.push(`<text x="${LEFT - 6}" y="${TOP + r * CELL + CELL - 2}" text-anchor="end" font-size="10">${sizeLabel(r * COLS * cellBytes).replace(/^0 KiB$/, "0")}</text>`);
  }
  mapTotals(m).forEach((t, i) => {
    const g = MAP_GROUPS[i];
    const x = LEFT + (i % 2) * (gridW / 2);
    const y = legendTop + Math.floor(i / 2) * 20;
    out.push(`<g class="legend" data-class="${g.key}" data-pages="${t.pages}">`);
    out.push(`<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${g.color}" stroke="#888"/>`);
    out.push(`<text x="${x + 18}" y="${y}">${esc(`${t.label}: ${mib(t.pages)} MiB (${t.percent.toFixed(1)}%)`)}</text>`);
    out.push(`</g>`);
  });
  out.push(`<text x="${LEFT}" y="${H - 12}" fill="#555">${esc(`classes as makedumpfile's page filter: ${m.maxPfn} pages, ${mib(m.maxPfn)} MiB in all`)}</text>`);
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** PNG from SVG text through rsvg-convert (Debian: librsvg2-bin), at the SVG's own size. */
export function svgToPng(svg: string): Buffer {
  try {
    return execFileSync("rsvg-convert", ["--format", "png"], { input: svg, maxBuffer: 256 << 20 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw new GuestcoreError("PNG output needs rsvg-convert, which is not installed (Debian: apt-get install librsvg2-bin); the SVG needs nothing");
    }
    throw new GuestcoreError(`rsvg-convert failed: ${(e as Error).message.split("\n")[0]}`);
  }
}
