// A recovery's timeline as a picture: when each phase happened, the host
// memory the crashed guest still held, and the dump's write rate. Plain
// SVG, no dependencies; opens in any browser.
import type { TimelineEvent, TimelineSample } from "../recovery/timeline.js";

interface TimelineJson {
  origin: number;
  phases: Record<string, { t: number; s: number }>;
  samples: TimelineSample[];
  events?: TimelineEvent[];
}

const W = 900;
const PAD_L = 70;
const PAD_R = 20;
const PLOT_H = 150;
const esc = (s: string) => s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

export function timelineSvg(tl: TimelineJson, title = "guestcore recover"): string {
  const t0 = tl.origin;
  const samples = tl.samples ?? [];
  const phases = Object.entries(tl.phases ?? {}).sort((a, b) => a[1].t - b[1].t);
  const tEnd = Math.max(...phases.map(([, p]) => p.t), ...samples.map((s) => s.t), t0 + 1000);
  const span = (tEnd - t0) / 1000;
  const sx = (t: number) => PAD_L + ((t - t0) / 1000 / span) * (W - PAD_L - PAD_R);
  const top1 = 40 + phases.length * 14;
  const top2 = top1 + PLOT_H + 40;
  const H = top2 + PLOT_H + 50;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${PAD_L}" y="18" font-size="14" font-weight="bold">${esc(title)}</text>`);
  const plot = (top: number, label: string, values: [number, number][], color: string, unit: number, unitName: string) => {
    const max = niceMax(Math.max(0, ...values.map((v) => v[1] / unit)));
    const sy = (v: number) => top + PLOT_H - (v / unit / max) * PLOT_H;
    out.push(`<text x="${PAD_L}" y="${top - 6}" font-weight="bold">${esc(label)}</text>`);
    out.push(`<rect x="${PAD_L}" y="${top}" width="${W - PAD_L - PAD_R}" height="${PLOT_H}" fill="none" stroke="#999"/>`);
    for (const f of [0, 0.5, 1]) {
      out.push(`<text x="${PAD_L - 6}" y="${top + PLOT_H - f * PLOT_H + 4}" text-anchor="end">${+(max * f).toFixed(1)} ${unitName}</text>`);
    }
    if (values.length) {
      const pts = values.map(([t, v]) => `${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join(" ");
      out.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    }
  };
  plot(top1, "host memory held by the crashed guest", samples.filter((s) => s.heldBytes !== undefined).map((s) => [s.t, s.heldBytes!]), "#c0392b", 2 ** 20, "MiB");
  plot(top2, "dump write rate", samples.map((s) => [s.t, s.writeBps]), "#2471a3", 1e6, "MB/s");
  const allowed = samples.filter((s) => s.allowedBps !== null).map((s) => [s.t, s.allowedBps!] as [number, number]);
  if (allowed.length) {
    const max = niceMax(Math.max(0, ...samples.map((s) => s.writeBps / 1e6)));
    const pts = allowed.map(([t, v]) => `${sx(t).toFixed(1)},${(top2 + PLOT_H - Math.min(1, v / 1e6 / max) * PLOT_H).toFixed(1)}`).join(" ");
    out.push(`<polyline points="${pts}" fill="none" stroke="#2471a3" stroke-dasharray="4 3" stroke-width="1"/>`);
    out.push(`<text x="${W - PAD_R - 4}" y="${top2 + 12}" text-anchor="end" fill="#2471a3">dashed: rate the policy allows</text>`);
  }
  // Phases: a vertical line each, labels stacked above the plots.
  phases.forEach(([name, p], i) => {
    const x = sx(p.t).toFixed(1);
    const y = 34 + i * 14;
    out.push(`<line x1="${x}" y1="${y + 2}" x2="${x}" y2="${top2 + PLOT_H}" stroke="#555" stroke-dasharray="2 3"/>`);
    out.push(`<text x="${x}" y="${y}" ${sx(p.t) > W * 0.7 ? 'text-anchor="end"' : ""}>${esc(name)} +${p.s.toFixed(1)} s</text>`);
  });
  for (let k = 0; k <= 5; k++) {
    const t = t0 + (span * 1000 * k) / 5;
    out.push(`<text x="${sx(t).toFixed(1)}" y="${top2 + PLOT_H + 16}" text-anchor="middle">${((t - t0) / 1000).toFixed(1)} s</text>`);
  }
  out.push(`<text x="${(W + PAD_L) / 2}" y="${top2 + PLOT_H + 34}" text-anchor="middle">seconds since ${tl.phases.panic ? "the panic" : "attach"}</text>`);
  out.push("</svg>");
  return out.join("\n") + "\n";
}
