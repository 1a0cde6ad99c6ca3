// One served disk: the image, its I/O buffers, the tracker and the warm
// copies in one shared Wasm memory, the NBD server in front of them, and
// the control socket through which `recover --warm-cache` hands over a
// crashed guest's clean cache pages.
import { chmodSync, statSync } from "node:fs";
import { HUGETLBFS_MAGIC, loadLibc, TMPFS_MAGIC } from "../core/libc.js";
import { GuestcoreError } from "../core/errors.js";
import { WasmCore } from "../core/wasm.js";
import { parseLayout } from "../sources/raw.js";
import { BufferPool } from "./buffer-pool.js";
import { filesOfBlocks } from "./cached-files.js";
import { ControlServer, type ControlRequest } from "./control.js";
import { DiskBackend } from "./disk-backend.js";
import { ImageFile, type CacheMode } from "./image-file.js";
import { matchPages } from "./matcher.js";
import { NbdServer } from "./nbd-server.js";
import { BlockTracker } from "./tracker.js";
import { WarmCopies } from "./warm-copies.js";

export interface DiskServiceOptions {
  image: string;
  socket: string;
  cache?: CacheMode;
  readOnly?: boolean;
  exportName?: string;
  /** I/O buffers: chunk size and count bound the memory in flight. */
  chunkBytes?: number;
  chunks?: number;
  /** Memory for the block tracker (default 64 MiB: 2 M blocks, 8 GiB of disk); 0 turns tracking off. */
  trackerBytes?: number;
  /** The control socket (default SOCKET.ctl). */
  control?: string;
  /** Read every block served from a warm copy from the image too, and count differences. */
  verifyWarm?: boolean;
  log?: (line: string) => void;
}

export class DiskService {
  readonly core: WasmCore;
  readonly image: ImageFile;
  readonly backend: DiskBackend;
  readonly server: NbdServer;
  readonly tracker: BlockTracker | undefined;
  readonly controlPath: string;
  warm: WarmCopies | undefined;
  private control: ControlServer | undefined;
  private ttlTimer: NodeJS.Timeout | undefined;
  private readonly log: (line: string) => void;

  private constructor(readonly opts: DiskServiceOptions) {
    const st = statSync(opts.image, { throwIfNoEntry: false });
    if (!st) throw new GuestcoreError(`${opts.image}: no such file`);
    if (st.isFile() && st.size % 512 !== 0) throw new GuestcoreError(`${opts.image}: size ${st.size} is not a multiple of 512`);
    this.log = opts.log ?? (() => {});
    this.core = new WasmCore();
    this.image = new ImageFile(opts.image, opts.cache ?? "none", opts.readOnly ?? false);
    const pool = new BufferPool(this.core, opts.chunkBytes ?? 1 << 20, opts.chunks ?? 16);
    const budget = opts.trackerBytes ?? 64 << 20;
    this.tracker = budget > 0 ? BlockTracker.create(this.core, budget, undefined, { onDropped: (pfn) => this.warm?.dropped(pfn) }) : undefined;
    this.backend = new DiskBackend(this.image, pool, this.tracker);
    this.server = new NbdServer(this.backend, { exportName: opts.exportName, log: opts.log });
    this.controlPath = opts.control ?? `${opts.socket}.ctl`;
  }

  static async start(opts: DiskServiceOptions): Promise<DiskService> {
    const s = new DiskService(opts);
    await s.server.listen(opts.socket);
    s.control = new ControlServer({
      stats: () => s.stats(),
      adopt: (req) => s.adopt(req),
      release: () => ({ releasedPages: s.releaseWarm("request") }),
    });
    await s.control.listen(s.controlPath);
    // adopt opens a file read-write and punches holes in it: only our own user may ask.
    chmodSync(s.controlPath, 0o600);
    return s;
  }

  stats(): Record<string, unknown> {
    return {
      disk: { ...this.backend.counters },
      tracker: this.tracker ? { ...this.tracker.stats(), consistent: this.tracker.count(2) } : undefined,
      warm: this.warm ? { keptPages: this.warm.keptPages, closed: this.warm.isClosed, ...this.warm.counters } : undefined,
      connections: this.server.connections.size,
    };
  }

  /** Take over a crashed guest's clean cache pages that equal consistent blocks. */
  private async adopt(req: ControlRequest): Promise<Record<string, unknown>> {
    if (!this.tracker) throw new GuestcoreError("this disk server tracks no blocks (--tracker-budget 0)");
    const memPath = String(req.memory ?? "");
    const maxPfn = Number(req.maxPfn);
    if (!memPath.startsWith("/")) throw new GuestcoreError("adopt needs the memory file's absolute path");
    // Guest RAM lives on tmpfs (memory-backend-file on /dev/shm, memfd) or hugetlbfs; nothing else is a guest's memory.
    const fsType = loadLibc("checking the memory file's filesystem").statfs(memPath).type;
    if (fsType !== TMPFS_MAGIC && fsType !== HUGETLBFS_MAGIC) throw new GuestcoreError(`${memPath} is not on tmpfs or hugetlbfs: not a guest's RAM`);
    if (!Number.isSafeInteger(maxPfn) || maxPfn <= 0 || maxPfn > 2 ** 40) throw new GuestcoreError(`adopt: bad maxPfn ${req.maxPfn}`);
    const candidates = Buffer.from(String(req.candidates ?? ""), "base64");
    if (candidates.length !== Math.ceil(maxPfn / 8)) throw new GuestcoreError(`adopt: candidate bitmap of ${candidates.length} bytes for ${maxPfn} pages`);
    const segments = parseLayout(String(req.layout ?? ""));
    const budgetPages = req.budgetPages === undefined || req.budgetPages === null ? undefined : Number(req.budgetPages);
    const ttlMs = Number(req.ttlMs ?? 600_000);
    // One crashed guest at a time: copies of an earlier one go first.
    this.releaseWarm("a new crash");
    const m = await matchPages(this.core, this.tracker, { memPath, segments, candidates: new Uint8Array(candidates), maxPfn, budgetPages });
    const warm = new WarmCopies(this.core, this.tracker, memPath, segments, m.refs, { verifyImage: this.opts.verifyWarm ? this.opts.image : undefined });
    this.warm = warm;
    this.backend.warm = warm;
    if (Number.isFinite(ttlMs) && ttlMs > 0) {
      this.ttlTimer = setTimeout(() => this.releaseWarm("the TTL"), ttlMs);
      this.ttlTimer.unref();
    }
    this.log(`warm cache: ${m.keptPages} pages kept for ${m.matchedBlocks} blocks (${m.hashedPages} hashed, ${m.indexed} consistent blocks) in ${m.ms} ms`);
    // The file list is a hint for the replacement's preload: without it the warm copies still serve.
    let files: string[] | undefined;
    let filesError: string | undefined;
    if (req.files) {
      try {
        files = await filesOfBlocks(this.opts.image, this.tracker.blocksWithCopies());
      } catch (e) {
        filesError = (e as Error).message.split("\n")[0];
        this.log(`warm cache: no preload list: ${filesError}`);
      }
    }
    return {
      kept: Buffer.from(m.kept).toString("base64"), keptPages: m.keptPages, matchedBlocks: m.matchedBlocks,
      hashedPages: m.hashedPages, consistentBlocks: m.indexed, ms: m.ms, files, filesError,
    };
  }

  private releaseWarm(why: string): number {
    if (this.ttlTimer) clearTimeout(this.ttlTimer);
    this.ttlTimer = undefined;
    const w = this.warm;
    if (!w || w.isClosed) return 0;
    const n = w.releaseAll();
    this.tracker?.clearCopies();
    this.log(`warm cache: ${n} unserved copies released (${why})`);
    return n;
  }

  async stop(): Promise<void> {
    await this.control?.close();
    await this.server.close();
    this.releaseWarm("shutdown");
    await this.image.flush().catch(() => {});
    this.image.close();
  }
}
