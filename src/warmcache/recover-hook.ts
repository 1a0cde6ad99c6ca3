// `recover --warm-cache`: before recover releases anything, the crashed
// guest's clean page-cache pages are offered to the disk server, which
// hashes them and keeps those equal to a consistent block of the disk.
// recover then releases everything but the kept pages; the disk server
// gives those back as the replacement reads them, or when its budget or
// time runs out.
import { GuestcoreError } from "../core/errors.js";
import { fileCachePages } from "../filter/file-cache.js";
import type { BeforeReleaseContext } from "../recovery/recover.js";
import { writeFileAtomic } from "../writers/atomic-file.js";
import { controlRequest } from "./control.js";

export interface WarmCacheOptions {
  /** The disk server's control socket. */
  control: string;
  /** Most memory kept for copies (bytes; default: no limit beyond the matched pages). */
  budgetBytes?: number;
  /** Copies not served by then go back to the host (default 600 s). */
  ttlSeconds?: number;
  /** Write the paths of the files the kept blocks belong to here, one per line (the replacement's preload list). */
  preloadList?: string;
}

export interface WarmCacheResult {
  candidates: number;
  hashedPages: number;
  keptPages: number;
  matchedBlocks: number;
  matchMs: number;
  preloadFiles?: number;
}

export function warmCacheHook(o: WarmCacheOptions) {
  return async (ctx: BeforeReleaseContext): Promise<{ withhold: Uint8Array; data: Record<string, unknown> }> => {
    const { img, classified } = ctx;
    const t0 = Date.now();
    const cand = fileCachePages(img.kernel, img.core, img.filter);
    const r = await controlRequest(o.control, {
      op: "adopt",
      memory: ctx.memPath,
      layout: ctx.layout,
      maxPfn: classified.maxPfn,
      candidates: Buffer.from(cand.bitmap).toString("base64"),
      budgetPages: o.budgetBytes !== undefined ? Math.floor(o.budgetBytes / 4096) : undefined,
      ttlMs: (o.ttlSeconds ?? 600) * 1000,
      files: o.preloadList !== undefined,
    });
    const kept = Buffer.from(String(r.kept ?? ""), "base64");
    if (kept.length !== cand.bitmap.length) throw new GuestcoreError(`disk server answered a kept bitmap of ${kept.length} bytes, not ${cand.bitmap.length}`);
    // The server keeps only pages it was offered.
    for (let i = 0; i < kept.length; i++) kept[i] &= cand.bitmap[i];
    const result: WarmCacheResult = {
      candidates: cand.count,
      hashedPages: Number(r.hashedPages ?? 0),
      keptPages: Number(r.keptPages ?? 0),
      matchedBlocks: Number(r.matchedBlocks ?? 0),
      matchMs: Date.now() - t0,
    };
    if (o.preloadList !== undefined) {
      const files = Array.isArray(r.files) ? r.files.map(String) : [];
      writeFileAtomic(o.preloadList, files.map((p) => p + "\n").join(""));
      result.preloadFiles = files.length;
    }
    ctx.note(`warm cache: ${result.keptPages} of ${cand.count} clean cache pages kept for ${result.matchedBlocks} disk blocks`, { ...result });
    return { withhold: new Uint8Array(kept), data: { ...result } };
  };
}
