// `guestcore dump`: open the input, classify its pages at the dump level
// and write a filtered dump, ELF or kdump-compressed.
import { GuestImage, type GuestImageOptions } from "../image.js";
import { writeElfDump } from "../writers/elf-writer.js";
import { kernelImage } from "../introspect/kernel-image.js";
import { FileSink, FlatSink, type DumpSink } from "../writers/sinks.js";
import { writeKdump, type KdumpWriteOptions } from "./kdump-dump.js";
import { Codecs, type CodecName } from "../codecs/codec.js";
import type { ExclusionCounts } from "../filter/classes.js";
import type { PfnBitmap } from "../core/pfn-bitmap.js";

export type OutputFormat = "elf" | "kdump";

export interface DumpOptions extends GuestImageOptions, Omit<KdumpWriteOptions, "level" | "codec"> {
  level: number;
  /**
   * Runs just before the dump is made final: a live source checks that the
   * guest is still stopped (a resumed guest's memory would be torn).
   */
  beforeCommit?: () => Promise<void>;
  /** Write ELF (makedumpfile -E) instead of kdump-compressed, the default. */
  elf?: boolean;
  codec?: CodecName;
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
  format: OutputFormat;
  codec?: CodecName;
  codecImpl?: string;
  workers?: number;
  flattened: boolean;
  level: number;
  kernelRelease?: string;
  table: ExclusionTable;
  /** ELF: PT_LOADs written. */
  loads?: number;
  bytes: number;
  seconds: number;
}

function table(present: number, counts: ExclusionCounts, maxPfn: number): ExclusionTable {
  const excluded = Object.values(counts).reduce((a, b) => a + b, 0);
  return { original: present, excluded, counts, remaining: present - excluded, memoryHole: maxPfn - present, total: maxPfn };
}

/**
 * Dump `input` to `output`; an output of "-" (or a file descriptor)
 * writes the flattened form of a kdump-compressed file to it.
 */
export async function dump(input: string | GuestImage, output: string | number, opts: DumpOptions): Promise<DumpReport> {
  const t0 = performance.now();
  const format: OutputFormat = opts.elf ? "elf" : "kdump";
  // An image the caller opened stays the caller's to close.
  const owned = typeof input === "string";
  const codecs = opts.codecs ?? (await Codecs.load());
  const img = typeof input === "string" ? GuestImage.open(input, { ...opts, codecs }) : input;
  const inputName = typeof input === "string" ? input : img.source.path;
  img.onProgress = opts.onProgress;
  const outName = typeof output === "number" ? `<fd ${output}>` : output === "-" ? "<stdout>" : output;
  const flattened = typeof output === "number" || output === "-";
  try {
    if (format === "elf") {
      if (flattened) throw new Error("the flattened form is for kdump-compressed output; ELF needs a file");
      const r = img.pageStats(opts.level);
      const image = kernelImage(img.kernel);
      const w = await writeElfDump(output as string, img.source, img.outputNotes(), r.kept, zeroPages(r), r.maxPfn, {
        mappings: image ? [image] : [],
        onProgress: (d, t) => opts.onProgress?.("writing", d, t),
        beforeCommit: opts.beforeCommit,
      });
      return {
        input: inputName, output: outName, format, flattened, level: opts.level, kernelRelease: img.vmcoreinfo.osrelease,
        table: table(r.present, r.counts, r.maxPfn), loads: w.loads, bytes: w.bytes, seconds: (performance.now() - t0) / 1000,
      };
    }
    const codec = opts.codec ?? "zstd";
    const sink: DumpSink = flattened ? new FlatSink(typeof output === "number" ? output : 1) : new FileSink(output as string);
    try {
      const r = await writeKdump(img, sink, { ...opts, level: opts.level, codec, codecs });
      await opts.beforeCommit?.();
      sink.commit();
      return {
        input: inputName, output: outName, format, codec, codecImpl: r.codecImpl, workers: r.workers, flattened, level: opts.level,
        kernelRelease: img.vmcoreinfo.osrelease, table: table(r.present, r.counts, r.maxPfn), bytes: r.bytes,
        seconds: (performance.now() - t0) / 1000,
      };
    } catch (e) {
      sink.abort();
      throw e;
    }
  } finally {
    if (owned) img.close();
  }
}

/** Zero pages: dumpable (bitmap 2) but not kept with data. */
export function zeroPages(r: { kept: PfnBitmap; dumpable: PfnBitmap }): PfnBitmap {
  return r.dumpable.andNot(r.kept);
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
