// `guestcore dump`: open, classify at the dump level, write the ELF.
import { GuestImage, type GuestImageOptions } from "../image.js";
import { writeElfDump } from "../writers/elf-writer.js";
import { kernelImage } from "../introspect/kernel-image.js";
import type { ExclusionCounts } from "../filter/classes.js";

export interface DumpOptions extends GuestImageOptions {
  level: number;
}

export interface ExclusionTable {
  original: number;
  excluded: number;
  counts: ExclusionCounts;
  remaining: number;
  memoryHole: number;
  total: number;
}

export interface DumpReport {
  input: string;
  output: string;
  format: "elf";
  level: number;
  kernelRelease?: string;
  table: ExclusionTable;
  loads: number;
  bytes: number;
  seconds: number;
}

export function dump(input: string, output: string, opts: DumpOptions): DumpReport {
  const t0 = performance.now();
  const img = GuestImage.open(input, opts);
  img.onProgress = opts.onProgress;
  try {
    const r = img.pageStats(opts.level);
    const image = kernelImage(img.kernel);
    const w = writeElfDump(output, img.source, img.outputNotes(), r.kept, zeroPages(r), r.maxPfn, {
      mappings: image ? [image] : [],
      onProgress: (d, t) => opts.onProgress?.("writing", d, t),
    });
    const excluded = Object.values(r.counts).reduce((a, b) => a + b, 0);
    return {
      input, output, format: "elf", level: opts.level,
      kernelRelease: img.vmcoreinfo.osrelease,
      table: {
        original: r.present, excluded, counts: r.counts, remaining: r.present - excluded,
        memoryHole: r.maxPfn - r.present, total: r.maxPfn,
      },
      loads: w.loads, bytes: w.bytes, seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    img.close();
  }
}

/** Zero pages: dumpable (bitmap 2) but not kept with data. */
export function zeroPages(r: { kept: Uint8Array; dumpable: Uint8Array }): Uint8Array {
  return r.dumpable.map((d, i) => d & ~r.kept[i]);
}

const LABELS: [keyof ExclusionCounts, string][] = [
  ["zero", "Pages filled with zero "],
  ["cache", "Non-private cache pages"],
  ["cachePrivate", "Private cache pages    "],
  ["user", "User process data pages"],
  ["free", "Free pages             "],
  ["hwpoison", "Hwpoison pages         "],
  ["offline", "Offline pages          "],
];

/** The exclusion table, laid out as makedumpfile --message-level 31 prints it. */
export function formatTable(t: ExclusionTable): string {
  const h = (n: number) => "0x" + n.toString(16).padStart(16, "0") + `  (${n})`;
  const lines = [
    `Original pages  : ${h(t.original)}`,
    `  Excluded pages   : ${h(t.excluded)}`,
    ...LABELS.map(([k, label]) => `    ${label} : ${h(t.counts[k])}`),
    `  Remaining pages  : ${h(t.remaining)}`,
  ];
  if (t.original) lines.push(`  (The number of pages is reduced to ${Math.floor((t.remaining * 100) / t.original)}%.)`);
  lines.push(`Memory Hole     : ${h(t.memoryHole)}`, "-".repeat(50), `Total pages     : ${h(t.total)}`);
  return lines.join("\n");
}
