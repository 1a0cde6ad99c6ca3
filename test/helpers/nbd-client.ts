// A minimal NBD client for protocol edge cases that real clients never
// send (bad magic, unknown exports, requests past the end). Real clients
// (qemu-io, qemu-img, nbdinfo, nbdcopy) cover the normal paths.
import { connect, type Socket } from "node:net";
import { encodeRequest, IHAVEOPT, Opt } from "../../src/format/nbd.js";
import { SocketReader } from "../../src/warmcache/socket-reader.js";

export class RawNbdClient {
  private constructor(readonly socket: Socket, readonly reader: SocketReader) {}

  static async open(path: string): Promise<RawNbdClient> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const c = new RawNbdClient(socket, new SocketReader(socket));
    await c.reader.read(18);
    socket.write(Buffer.from([0, 0, 0, 3]));
    return c;
  }

  option(option: number, data: Buffer): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([h, data]));
  }

  /** One option reply: its type and data. */
  async reply(): Promise<{ type: number; data: Buffer }> {
    const h = await this.reader.read(20);
    const data = await this.reader.read(h.readUInt32BE(16));
    return { type: h.readUInt32BE(12), data };
  }

  /** OPT_GO for `name`; resolves with the replies up to the final one. */
  async go(name: string): Promise<number[]> {
    const n = Buffer.from(name);
    const d = Buffer.alloc(6 + n.length);
    d.writeUInt32BE(n.length, 0);
    n.copy(d, 4);
    this.option(Opt.GO, d);
    const types: number[] = [];
    for (let i = 0; i < 16; i++) {
      const r = await this.reply();
      types.push(r.type);
      if (r.type !== 3) break;
    }
    return types;
  }

  /** A command; resolves with the reply's error and data (reads carry `length` bytes on success). */
  async command(type: number, offset: bigint, length: number, payload?: Buffer): Promise<{ error: number; data?: Buffer }> {
    this.socket.write(encodeRequest({ flags: 0, type, handle: 7n, offset, length }));
    if (payload) this.socket.write(payload);
    const h = await this.reader.read(16);
    const error = h.readUInt32BE(4);
    const data = type === 0 && error === 0 ? await this.reader.read(length) : undefined;
    return { error, data };
  }

  close(): void {
    this.socket.destroy();
  }
}
