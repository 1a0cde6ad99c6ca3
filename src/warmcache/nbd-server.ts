// An NBD server on a unix socket: fixed-newstyle handshake, OPT_GO/INFO,
// EXPORT_NAME, LIST, ABORT; simple replies for READ, WRITE, FLUSH, TRIM,
// WRITE_ZEROES with FUA. Structured replies and meta contexts are refused,
// which QEMU 7.2 and libnbd both accept (they fall back to simple replies
// and to "all data" block status).
import type { Socket } from "node:net";
import {
  Cmd, CmdFlag, decodeGo, decodeOptionHeader, decodeRequest, exportNameReply,
  FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, IHAVEOPT, Info, infoBlockSize, infoExport, infoText,
  MAX_OPTION_LENGTH, NbdErr, Opt, OPTION_HEADER, optionReply, Rep, REQUEST_HEADER, REQUEST_MAGIC,
  serverGreeting, simpleReply, TFlag,
} from "../format/nbd.js";
import { GuestcoreError } from "../core/errors.js";
import type { BlockBackend } from "./block-backend.js";
import { SocketReader } from "./socket-reader.js";
import { UnixServer } from "./unix-server.js";

/** QEMU's own NBD server and client cap requests at 32 MiB. */
export const MAX_REQUEST = 32 * 1024 * 1024;
/** Requests a connection may have in flight before we stop reading its socket. */
const MAX_INFLIGHT = 64;
/** Options a client may send before it must pick an export. */
const MAX_OPTIONS = 256;

export interface NbdServerOptions {
  exportName?: string;
  description?: string;
  log?: (line: string) => void;
}

export interface ConnectionInfo {
  id: number;
  requests: number;
}

export class NbdServer {
  private readonly listener = new UnixServer((s) => this.accept(s));
  private nextId = 1;
  readonly connections = new Map<number, ConnectionInfo>();
  private readonly log: (line: string) => void;

  constructor(
    readonly backend: BlockBackend,
    private readonly opts: NbdServerOptions = {},
  ) {
    this.log = opts.log ?? (() => {});
  }

  listen(path: string): Promise<void> {
    return this.listener.listen(path);
  }

  close(): Promise<void> {
    return this.listener.close();
  }

  private flags(): number {
    let f = TFlag.HAS_FLAGS | TFlag.SEND_FLUSH | TFlag.SEND_FUA | TFlag.SEND_TRIM | TFlag.SEND_WRITE_ZEROES;
    // Every connection shares one image descriptor, so a FLUSH on one makes
    // the writes completed on all of them durable: multi-conn is safe.
    f |= TFlag.CAN_MULTI_CONN;
    if (this.backend.readOnly) f |= TFlag.READ_ONLY;
    return f;
  }

  private accept(socket: Socket): void {
    const id = this.nextId++;
    const info: ConnectionInfo = { id, requests: 0 };
    this.connections.set(id, info);
    socket.on("close", () => {
      this.connections.delete(id);
      this.log(`connection ${id}: closed after ${info.requests} requests`);
    });
    const reader = new SocketReader(socket);
    this.serve(socket, reader, info).catch((e: Error) => {
      if (!/connection closed|ECONNRESET|EPIPE/.test(e.message)) this.log(`connection ${id}: ${e.message}`);
      socket.destroy();
    });
  }

  private async serve(socket: Socket, reader: SocketReader, info: ConnectionInfo): Promise<void> {
    const noZeroes = await this.handshake(socket, reader);
    if (noZeroes === undefined) return;
    this.log(`connection ${info.id}: transmission`);
    await this.transmission(socket, reader, info);
  }

  /** Returns whether the client chose NO_ZEROES, or undefined when it left. */
  private async handshake(socket: Socket, reader: SocketReader): Promise<boolean | undefined> {
    socket.write(serverGreeting());
    const cflags = (await reader.read(4)).readUInt32BE(0);
    if (!(cflags & FLAG_C_FIXED_NEWSTYLE)) throw new GuestcoreError("client does not speak fixed newstyle");
    const noZeroes = (cflags & FLAG_C_NO_ZEROES) !== 0;
    const size = BigInt(this.backend.size);
    for (let n = 0; n < MAX_OPTIONS; n++) {
      const h = decodeOptionHeader(await reader.read(OPTION_HEADER));
      if (h.magic !== IHAVEOPT) throw new GuestcoreError("bad option magic");
      if (h.length > MAX_OPTION_LENGTH) throw new GuestcoreError(`option ${h.option} of ${h.length} bytes`);
      const data = await reader.read(h.length);
      switch (h.option) {
        case Opt.EXPORT_NAME: {
          if (!this.knownExport(data.toString("utf8"))) throw new GuestcoreError(`unknown export '${data.toString("utf8")}'`);
          socket.write(exportNameReply(size, this.flags(), noZeroes));
          return noZeroes;
        }
        case Opt.ABORT:
          socket.end(optionReply(h.option, Rep.ACK));
          return undefined;
        case Opt.LIST:
          if (h.length !== 0) {
            socket.write(optionReply(h.option, Rep.ERR_INVALID));
            break;
          }
          socket.write(optionReply(h.option, Rep.SERVER, nameEntry(this.opts.exportName ?? "")));
          socket.write(optionReply(h.option, Rep.ACK));
          break;
        case Opt.INFO:
        case Opt.GO: {
          const go = decodeGo(data);
          if (!go) {
            socket.write(optionReply(h.option, Rep.ERR_INVALID));
            break;
          }
          if (!this.knownExport(go.name)) {
            socket.write(optionReply(h.option, Rep.ERR_UNKNOWN));
            break;
          }
          socket.write(optionReply(h.option, Rep.INFO, infoExport(size, this.flags())));
          // Block sizes always (the spec allows it): QEMU and libnbd honour them.
          socket.write(optionReply(h.option, Rep.INFO, infoBlockSize(this.backend.minBlock, 4096, MAX_REQUEST)));
          if (go.infos.includes(Info.NAME)) socket.write(optionReply(h.option, Rep.INFO, infoText(Info.NAME, this.opts.exportName ?? "")));
          if (go.infos.includes(Info.DESCRIPTION) && this.opts.description)
            socket.write(optionReply(h.option, Rep.INFO, infoText(Info.DESCRIPTION, this.opts.description)));
          socket.write(optionReply(h.option, Rep.ACK));
          if (h.option === Opt.GO) return noZeroes;
          break;
        }
        default:
          // STARTTLS, STRUCTURED_REPLY, meta contexts and anything newer.
          socket.write(optionReply(h.option, Rep.ERR_UNSUP));
      }
    }
    throw new GuestcoreError(`more than ${MAX_OPTIONS} options`);
  }

  private knownExport(name: string): boolean {
    return name === "" || name === (this.opts.exportName ?? "");
  }

  private async transmission(socket: Socket, reader: SocketReader, info: ConnectionInfo): Promise<void> {
    let inflight = 0;
    let wake: (() => void) | undefined;
    const done = () => {
      inflight--;
      if (wake) {
        const w = wake;
        wake = undefined;
        w();
      }
    };
    for (;;) {
      while (inflight >= MAX_INFLIGHT) await new Promise<void>((r) => (wake = r));
      const req = decodeRequest(await reader.read(REQUEST_HEADER));
      if (req.magic !== REQUEST_MAGIC) throw new GuestcoreError("bad request magic");
      info.requests++;
      if (req.type === Cmd.DISC) {
        // Finish what is in flight (the spec: outstanding requests are served), then close.
        while (inflight > 0) await new Promise<void>((r) => (wake = r));
        socket.end();
        return;
      }
      let payload: Buffer | undefined;
      if (req.type === Cmd.WRITE) {
        // The data follows the header whatever we decide; too much means a broken client.
        if (req.length > MAX_REQUEST) throw new GuestcoreError(`write of ${req.length} bytes`);
        payload = await reader.read(req.length);
      }
      inflight++;
      this.execute(req.type, req.flags, req.offset, req.length, payload).then(
        (data) => {
          if (!socket.destroyed) {
            socket.write(simpleReply(0, req.handle));
            if (data) socket.write(data);
          }
          done();
        },
        (e: GuestcoreError & { nbdError?: number }) => {
          const err = e.nbdError ?? errnoToNbd(e.code);
          if (err === NbdErr.EIO) this.log(`connection ${info.id}: ${e.message}`);
          if (!socket.destroyed) socket.write(simpleReply(err, req.handle));
          done();
        },
      );
    }
  }

  private async execute(type: number, flags: number, offset: bigint, length: number, payload?: Buffer): Promise<Buffer | undefined> {
    const b = this.backend;
    const fua = (flags & CmdFlag.FUA) !== 0;
    if (type === Cmd.FLUSH) {
      await b.flush();
      return undefined;
    }
    if (type !== Cmd.READ && type !== Cmd.WRITE && type !== Cmd.TRIM && type !== Cmd.WRITE_ZEROES) throw nbdError(NbdErr.EINVAL, "unsupported command");
    if (offset + BigInt(length) > BigInt(b.size)) throw nbdError(type === Cmd.READ ? NbdErr.EINVAL : NbdErr.ENOSPC, "beyond the end");
    if (Number(offset) % b.minBlock !== 0 || length % b.minBlock !== 0) throw nbdError(NbdErr.EINVAL, "unaligned request");
    if (length > MAX_REQUEST) throw nbdError(NbdErr.EOVERFLOW, "request too large");
    const off = Number(offset);
    if (type === Cmd.READ) return b.read(off, length);
    if (b.readOnly) throw nbdError(NbdErr.EPERM, "read-only export");
    if (length === 0) return undefined;
    if (type === Cmd.WRITE) await b.write(off, payload!, fua);
    else if (type === Cmd.TRIM) await b.trim(off, length, fua);
    else await b.zero(off, length, fua, (flags & CmdFlag.NO_HOLE) === 0);
    return undefined;
  }
}

function nameEntry(name: string): Buffer {
  const n = Buffer.from(name, "utf8");
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  return b;
}

function nbdError(code: number, message: string): GuestcoreError & { nbdError: number } {
  const e = new GuestcoreError(message) as GuestcoreError & { nbdError: number };
  e.nbdError = code;
  return e;
}

function errnoToNbd(code: string | undefined): number {
  switch (code) {
    case "ENOSPC":
    case "EDQUOT":
      return NbdErr.ENOSPC;
    case "EPERM":
    case "EACCES":
    case "EROFS":
      return NbdErr.EPERM;
    case "ENOMEM":
      return NbdErr.ENOMEM;
    case "EINVAL":
      return NbdErr.EINVAL;
    default:
      return NbdErr.EIO;
  }
}
