// `guestcore disk serve`: the guest's disk through guestcore, as an NBD
// server on a unix socket.
import { Command } from "commander";
import { GuestcoreError } from "../core/errors.js";
import { DiskService } from "../warmcache/disk-service.js";
import type { CacheMode } from "../warmcache/image-file.js";

interface ServeOpts {
  socket: string;
  cache: string;
  readOnly?: boolean;
  export?: string;
  json?: boolean;
  verbose?: boolean;
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
    ].join("\n"))
    .action(async (image: string, o: ServeOpts) => {
      if (o.cache !== "none" && o.cache !== "writeback") throw new GuestcoreError(`--cache must be none or writeback, not "${o.cache}"`);
      const emit = (ev: Record<string, unknown>) =>
        process.stdout.write(o.json ? JSON.stringify({ time: new Date().toISOString(), ...ev }) + "\n" : `${Object.values(ev).join(" ")}\n`);
      const svc = await DiskService.start({
        image,
        socket: o.socket,
        cache: o.cache as CacheMode,
        readOnly: o.readOnly,
        exportName: o.export,
        log: o.verbose ? (line) => emit({ event: "log", message: line }) : undefined,
      });
      emit({ event: "listening", socket: o.socket, image, size: svc.image.size, cache: o.cache });
      await new Promise<void>((resolve) => {
        for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
          process.removeAllListeners(sig);
          process.once(sig, () => resolve());
        }
      });
      await svc.stop();
      emit({ event: "stopped", ...svc.backend.counters });
    });
  return disk;
}
