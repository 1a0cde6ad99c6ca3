// VMCOREINFO text, and everything guestcore derives from it, on a real
// capture: the input is the ELF note's text and also both copies the
// kernel keeps in memory (vmcoreinfo_data at a page start, the note
// buffer after its header), so each run finds the kernel three ways, as
// the CLI can: from the note, by scanning memory, from a --vmcoreinfo
// file. Then phys_base (declared or searched), the page tables' self-map,
// init_uts_ns, SPARSEMEM geometry and mem_section, the page classifier's
// layout and flag bits, and the printk ring's layout.
//
// The memory is the pages a parse of the real text touches (and the two
// copies), so the scan and the phys_base search run over a few hundred
// KiB, not the whole guest.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { WasmCore } from "../../src/core/wasm.js";
import type { ElfNote } from "../../src/format/elf64.js";
import { PageFilter } from "../../src/filter/page-filter.js";
import { formatKernelLog, readKernelLog } from "../../src/analysis/printk.js";
import { kernelImage } from "../../src/introspect/kernel-image.js";
import { findKernel, type Kernel } from "../../src/introspect/kernel.js";
import { memMapRanges, sparseLayout } from "../../src/introspect/memmap.js";
import type { MemorySource } from "../../src/sources/source.js";
import type { Field, Seed, SeedContext } from "../target.js";
import { materialTarget, OverlaySource, pageSegments, RecordingSource, requireCapture, tolerate, type Capture, type Patch } from "../guest-memory.js";
import type { PhysSegment } from "../../src/sources/source.js";

const NEEDLE = Buffer.from("OSRELEASE=", "latin1");
const PAGE = 4096;
// The note buffer's text follows a 12-byte header and "VMCOREINFO\0" padded to 12.
const NOTE_TEXT = 24;

interface Material {
  cap: Capture;
  segments: PhysSegment[];
  /** Where the text goes in memory: page starts of vmcoreinfo_data, text starts in note buffers. */
  copies: { paddr: number; room: number }[];
  seeds: Seed[];
}

/** What the CLI derives from a kernel found with this VMCOREINFO; GuestcoreErrors end a step. */
function derive(src: MemorySource, k: Kernel, core: WasmCore): void {
  const info = k.info;
  void [info.kernelVersion, info.kernelOffset, info.pageSize, info.osrelease];
  const layout = tolerate(() => sparseLayout(k));
  const end = src.segments.reduce((m, s) => Math.max(m, s.end), 0);
  if (layout) tolerate(() => memMapRanges(k, layout, Math.ceil(end / PAGE)));
  tolerate(() => new PageFilter(src, k, core));
  tolerate(() => formatKernelLog(readKernelLog(k).records));
  tolerate(() => kernelImage(k));
}

function note(text: Uint8Array): ElfNote[] {
  return [{ name: "VMCOREINFO", type: 0, desc: text }];
}

/** Placements of VMCOREINFO text in the capture's memory that the scan accepts. */
function copiesIn(src: MemorySource): { paddr: number; room: number }[] {
  const out: { paddr: number; room: number }[] = [];
  const chunk = Buffer.alloc(8 << 20);
  for (const seg of src.segments) {
    for (let at = seg.start; at < seg.end; at += chunk.length) {
      const view = chunk.subarray(0, Math.min(chunk.length, seg.end - at));
      src.readBatch([{ paddr: at, dst: view }]);
      for (let i = view.indexOf(NEEDLE); i >= 0; i = view.indexOf(NEEDLE, i + 1)) {
        const inPage = (at + i) % PAGE;
        if (inPage === 0 || (inPage === NOTE_TEXT && view.toString("latin1", i - 12, i - 2) === "VMCOREINFO")) out.push({ paddr: at + i, room: PAGE - inPage - 1 });
      }
    }
  }
  return out;
}

function textFields(text: Uint8Array): Field[] {
  const fields: Field[] = [];
  const s = Buffer.from(text).toString("latin1");
  let at = 0;
  for (const line of s.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) fields.push({ offset: at + eq + 1, width: Math.min(8, Math.max(1, line.length - eq - 1)) as 1 | 2 | 4 | 8, kind: "bytes", name: line.slice(0, eq) });
    at += line.length + 1;
  }
  return fields.filter((f) => [1, 2, 4, 8].includes(f.width));
}

function build(ctx: SeedContext): Material {
  const cap = requireCapture(ctx.cacheDir, ["q35-256m", "q35-512m"]);
  const text = cap.image.source.notes.find((n) => n.name === "VMCOREINFO")?.desc;
  if (!text) throw new Error(`${cap.profile}: the capture has no VMCOREINFO note`);
  const copies = copiesIn(cap.image.source);
  const rec = new RecordingSource(cap.image.source);
  const k = findKernel(rec, cap.core);
  derive(rec, k, cap.core);
  const pages = [...rec.pages, ...copies.map((c) => Math.floor(c.paddr / PAGE))];
  // The real text, and edits of it that take the paths other kernels take.
  const real = Buffer.from(text).toString("latin1");
  const variants: [string, string][] = [
    ["VMCOREINFO note", real],
    ["VMCOREINFO without NUMBER(phys_base) (the phys_base search)", real.replace(/^NUMBER\(phys_base\)=.*\n/m, "")],
    ["VMCOREINFO with a flat mem_section (LENGTH = NR_MEM_SECTIONS)", real.replace(/^LENGTH\(mem_section\)=.*$/m, "LENGTH(mem_section)=524288")],
    ["VMCOREINFO of a 4.14 kernel without init_uts_ns", real.replace(/^OSRELEASE=.*$/m, "OSRELEASE=4.14.0-3-amd64").replace(/^SYMBOL\(init_uts_ns\)=.*\n/m, "")],
  ];
  const seeds: Seed[] = variants.map(([what, t]) => {
    const bytes = new Uint8Array(Buffer.from(t, "latin1"));
    return { label: `${cap.profile} ${what}`, bytes, fields: textFields(bytes) };
  });
  return { cap, segments: pageSegments(pages), copies, seeds };
}

export default materialTarget({
  name: "vmcoreinfo",
  describes: "VMCOREINFO text from the note, a memory scan and a file, and what is derived from it (phys_base, SPARSEMEM, classifier, printk layout)",
  build,
  run(m, input, ctx) {
    const patches: Patch[] = m.copies.map((c) => {
      const bytes = new Uint8Array(Math.min(input.length, c.room) + 1);
      bytes.set(input.subarray(0, bytes.length - 1));
      return { paddr: c.paddr, bytes };
    });
    const core = m.cap.core;
    const opts = { segments: m.segments, strict: true };
    const noted = new OverlaySource(m.cap.image.source, patches, { ...opts, notes: note(input) });
    const k = tolerate(() => findKernel(noted, core));
    if (k) derive(noted, k, core);
    const scanned = new OverlaySource(m.cap.image.source, patches, { ...opts, notes: [] });
    const ks = tolerate(() => findKernel(scanned, core));
    if (ks && !k) derive(scanned, ks, core);
    let file = ctx.inputPath;
    if (!file) writeFileSync((file = join(ctx.scratchDir, "vmcoreinfo.txt")), input);
    tolerate(() => findKernel(scanned, core, { vmcoreinfoFile: file }));
  },
});
