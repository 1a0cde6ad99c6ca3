// The warm-cache disk server's two sockets, fed a hostile client's bytes:
//
// - byte 0 even: the NBD server (src/warmcache/nbd-server.ts) over the
//   real disk backend and block tracker of a DiskService on a scratch
//   image: the fixed-newstyle handshake and option haggling, then the
//   transmission phase, read through its SocketReader from a stream that
//   ends where the input does;
// - byte 0 odd: the control socket's JSON lines (src/warmcache/control.ts)
//   through a ControlServer on a scratch unix socket, with the service's
//   harmless handlers (stats, release; adopt punches holes in the file it
//   is given and is left out).
//
// The seeds are what QEMU and libnbd send (the options they try, reads,
// writes, flush, trim, write-zeroes, a disconnect) and the requests
// `recover --warm-cache` and operators make.
import { mkdirSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { Duplex } from "node:stream";
import { GuestcoreError } from "../../src/core/errors.js";
import { Cmd, CmdFlag, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, IHAVEOPT, Info, Opt, REQUEST_MAGIC } from "../../src/format/nbd.js";
import { ControlServer } from "../../src/warmcache/control.js";
import { DiskService } from "../../src/warmcache/disk-service.js";
import type { ConnectionInfo, NbdServer } from "../../src/warmcache/nbd-server.js";
import { SocketReader } from "../../src/warmcache/socket-reader.js";
import type { Field, Seed, SeedContext } from "../target.js";
import { materialTarget } from "../guest-memory.js";

const DISK = 1 << 20;

interface Material {
  service?: DiskService;
  controlPath: string;
  logs: string[];
  seeds: Seed[];
}

// The connection loop is private to NbdServer (accept() swallows what it
// throws, rightly for a server); the target calls it to see what it throws.
type Serving = { serve(s: Socket, r: SocketReader, i: ConnectionInfo): Promise<void> };

class Stream {
  readonly parts: Buffer[] = [];
  readonly fields: Field[] = [];
  private at = 1;

  field(width: 1 | 2 | 4 | 8, kind: Field["kind"], name: string): this {
    this.fields.push({ offset: this.at, width, kind, name, bigEndian: true });
    return this;
  }

  put(b: Buffer): this {
    this.parts.push(b);
    this.at += b.length;
    return this;
  }

  u16(v: number): this { const b = Buffer.alloc(2); b.writeUInt16BE(v); return this.put(b); }
  u32(v: number): this { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); return this.put(b); }
  u64(v: bigint): this { const b = Buffer.alloc(8); b.writeBigUInt64BE(v); return this.put(b); }

  option(opt: number, data: Buffer): this {
    const n = this.fields.length;
    this.field(8, "magic", `option ${n} magic`).u64(IHAVEOPT).field(4, "flags", `option ${n} code`).u32(opt).field(4, "size", `option ${n} length`).u32(data.length);
    return this.put(data);
  }

  request(type: number, flags: number, offset: number, length: number, data?: Buffer): this {
    const n = this.fields.length;
    this.field(4, "magic", `request ${n} magic`).u32(REQUEST_MAGIC).field(2, "flags", `request ${n} flags`).u16(flags).field(2, "flags", `request ${n} type`).u16(type)
      .u64(BigInt(n)).field(8, "offset", `request ${n} offset`).u64(BigInt(offset)).field(4, "size", `request ${n} length`).u32(length);
    return data ? this.put(data) : this;
  }

  seed(form: number, label: string): Seed {
    return { label, bytes: new Uint8Array(Buffer.concat([Buffer.from([form]), ...this.parts])), fields: this.fields };
  }
}

function go(name: string, infos: number[]): Buffer {
  const n = Buffer.from(name, "utf8");
  const b = Buffer.alloc(6 + n.length + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((x, i) => b.writeUInt16BE(x, 6 + n.length + 2 * i));
  return b;
}

function transmission(s: Stream): Stream {
  return s.request(Cmd.WRITE, CmdFlag.FUA, 0, 8192, Buffer.alloc(8192, 0x5a)).request(Cmd.READ, 0, 4096, 4096)
    .request(Cmd.FLUSH, 0, 0, 0).request(Cmd.TRIM, 0, 8192, 4096).request(Cmd.WRITE_ZEROES, CmdFlag.NO_HOLE, 16384, 8192)
    .request(Cmd.READ, 0, DISK - 4096, 8192).request(Cmd.READ, 0, 100, 512).request(Cmd.BLOCK_STATUS, 0, 0, 4096).request(Cmd.DISC, 0, 0, 0);
}

function seeds(): Seed[] {
  const cflags = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES;
  const haggling = new Stream().field(4, "flags", "client flags").u32(cflags)
    .option(Opt.STRUCTURED_REPLY, Buffer.alloc(0)).option(Opt.LIST, Buffer.alloc(0))
    .option(Opt.INFO, go("", [Info.NAME, Info.DESCRIPTION, Info.BLOCK_SIZE])).option(Opt.GO, go("", [Info.BLOCK_SIZE]));
  const oldStyle = new Stream().field(4, "flags", "client flags").u32(FLAG_C_FIXED_NEWSTYLE).option(Opt.EXPORT_NAME, Buffer.alloc(0));
  const lines = ['{"op":"stats"}', '{"op":"release"}', '{"op":"adopt","memory":"/nonexistent","maxPfn":8}', '{"op":"stats","x":[1,2,{"y":null}]}', "not json", '{"op":7}', "[]", ""];
  const control = new Stream().put(Buffer.from(lines.join("\n") + "\n"));
  return [
    transmission(haggling).seed(0, "NBD: options as libnbd tries them, OPT_GO, then every command"),
    transmission(oldStyle).seed(0, "NBD: NBD_OPT_EXPORT_NAME, then every command"),
    control.seed(1, "control socket: stats, release, refused and broken requests"),
  ];
}

function build(ctx: SeedContext): Material {
  mkdirSync(ctx.scratchDir, { recursive: true });
  writeFileSync(join(ctx.scratchDir, "disk.img"), Buffer.alloc(DISK));
  // The service and the control server listen (async): started() brings them up on the first run.
  return { logs: [], controlPath: join(ctx.scratchDir, "ctl.sock"), seeds: seeds() };
}

/** Starts the service and the control server once, on first use (they listen: async). */
async function started(m: Material, ctx: SeedContext): Promise<DiskService> {
  if (m.service) return m.service;
  m.service = await DiskService.start({ image: join(ctx.scratchDir, "disk.img"), socket: join(ctx.scratchDir, "nbd.sock"), cache: "writeback",
    trackerBytes: 1 << 20, log: (l) => m.logs.push(l) });
  const s = m.service;
  await new ControlServer({ stats: () => s.stats(), release: () => ({ released: 0 }), adopt: () => { throw new GuestcoreError("adopt is not fuzzed"); } }).listen(m.controlPath);
  return s;
}

async function nbd(m: Material, server: NbdServer, input: Uint8Array): Promise<void> {
  const sock = new Duplex({ read() {}, write(_c, _e, cb) { cb(); }, final(cb) { cb(); } });
  sock.push(Buffer.from(input));
  sock.push(null);
  m.logs.length = 0;
  try {
    await (server as unknown as Serving).serve(sock as unknown as Socket, new SocketReader(sock as unknown as Socket), { id: 1, requests: 0 });
  } catch (e) {
    // The stream ending where the input does is the client leaving.
    if (!(e instanceof Error && e.message === "connection closed")) throw e;
  } finally {
    sock.destroy();
  }
  // Requests run after serve() returns; an EIO from the scratch image is the server's own fault.
  await new Promise((r) => setImmediate(r));
  const bad = m.logs.filter((l) => !/: transmission$/.test(l));
  if (bad.length) throw new Error(`the NBD server logged: ${bad[0]}`);
}

function control(m: Material, input: Uint8Array): Promise<void> {
  const text = Buffer.from(input).toString("utf8");
  const expected = text.split("\n").slice(0, -1).filter((l) => l.trim()).length;
  return new Promise((resolve, reject) => {
    const c = connect(m.controlPath);
    let buf = "";
    let got = 0;
    const done = (e?: Error) => {
      c.destroy();
      if (e) reject(e);
      else resolve();
    };
    c.setEncoding("utf8");
    c.on("data", (d: string) => {
      buf += d;
      for (let i; (i = buf.indexOf("\n")) >= 0; buf = buf.slice(i + 1)) {
        const r = JSON.parse(buf.slice(0, i)) as { ok: boolean; error?: string };
        if (!r.ok && /^internal error/.test(String(r.error))) return done(new Error(`control reply: ${r.error}`));
        if (++got >= expected) return done();
      }
    });
    c.on("error", (e) => done(new GuestcoreError(`control socket: ${e.message}`)));
    c.on("close", () => done());
    c.write(input.subarray(0), () => {
      if (expected === 0) c.end();
    });
  });
}

export default materialTarget({
  name: "nbd",
  describes: "a hostile NBD client (handshake, options, transmission) against the warm-cache disk server, and its control socket's JSON lines",
  build,
  async run(m, input, ctx) {
    const service = await started(m, ctx);
    if ((input[0] ?? 0) & 1) await control(m, input.subarray(1));
    else await nbd(m, service.server, input.subarray(1));
  },
});
