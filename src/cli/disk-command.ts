// `guestcore disk serve`: the guest's disk through guestcore, as an NBD
// server on a unix socket.
import { Command } from "commander";
import { GuestcoreError } from "../core/errors.js";
import { DiskService } from "../warmcache/disk-service.js";
import { parseSize } from "../sources/raw.js";
import type { CacheMode } from "../warmcache/image-file.js";

interface ServeOpts {
  socket: string;
  cache: string;
  readOnly?: boolean;
  export?: string;
  json?: boolean;
  verbose?: boolean;
  trackerBudget: string;
  control?: string;
  verifyWarm?: boolean;
}

export function registerDisk(program: Command): Command {
  const disk = program.command("disk").description("serve a guest's disk image (NBD) so that guestcore sees every access");
  disk
    .command("serve")
    .description("serve IMAGE over NBD on a unix socket (fixed newstyle; READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, FUA)")
    .argument("<image>", "raw disk image (or block device)")
    .requiredOption("--socket <path>", "unix socket to listen on")
    .option("--cache <mode>", "none: O_DIRECT, like QEMU cache=none; writeback: through the host page cache", "none")
    .option("--read-only", "refuse writes")
    .option("--export <name>", "export name (the empty name is always accepted)")
    .option("--tracker-budget <bytes>", "memory for the block tracker: 32 bytes a tracked 4 KiB block, the oldest evicted when full; 0 turns warm caching off", "64M")
    .option("--control <path>", "control socket for 'recover --warm-cache' and stats (default SOCKET.ctl)")
    .option("--verify-warm", "also read every block served from a warm copy from the image and count differences (testing)")
    .option("--json", "print events as JSON lines")
    .option("-v, --verbose", "log connections")
    .addHelpText("after", [
      "",
      "Attach QEMU with:",
      "  -blockdev driver=nbd,server.type=unix,server.path=SOCKET,node-name=disk0,cache.direct=on",
      "  -device virtio-blk-pci,drive=disk0",
      "",
      "Examples:",
      "  guestcore disk serve vm1.img --socket /run/guestcore/vm1.nbd",
      "  nbdinfo 'nbd+unix:///?socket=/run/guestcore/vm1.nbd'",
      "  guestcore recover --qmp vm1.qmp -o vm1.kdump --warm-cache /run/guestcore/vm1.nbd.ctl ...",
    ].join("\n"))
    .action(async (image: string, o: ServeOpts) => {
      if (o.cache !== "none" && o.cache !== "writeback") throw new GuestcoreError(`--cache must be none or writeback, not "${o.cache}"`);
      const emit = (ev: Record<string, unknown>) =>
        process.stdout.write(o.json ? JSON.stringify({ time: new Date().toISOString(), ...ev }) + "\n"
          : `${Object.entries(ev).map(([k, v]) => (k === "event" || k === "message" ? String(v) : `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)).join(" ")}\n`);
      const svc = await DiskService.start({
        image,
        socket: o.socket,
        cache: o.cache as CacheMode,
        readOnly: o.readOnly,
        exportName: o.export,
        trackerBytes: parseSize(o.trackerBudget),
        control: o.control,
        verifyWarm: o.verifyWarm,
        log: o.verbose ? (line) => emit({ event: "log", message: line }) : undefined,
      });
      emit({ event: "listening", socket: o.socket, control: svc.controlPath, image, size: svc.image.size, cache: o.cache, trackedBlocks: svc.tracker?.slots ?? 0 });
      await new Promise<void>((resolve) => {
        for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
          process.removeAllListeners(sig);
          process.once(sig, () => resolve());
        }
      });
      await svc.stop();
      emit({ event: "stopped", ...svc.stats() });
    });
  return disk;
}
