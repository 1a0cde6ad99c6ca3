// `guestcore disk serve` against real NBD clients: libnbd's nbdinfo and
// nbdcopy, QEMU's qemu-io and qemu-img. The image file itself is the
// oracle: after the same writes through NBD and straight to a copy of the
// file (qemu-io on the raw file), both files are byte-identical.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { tempDir } from "../helpers/synthetic.js";
import { RawNbdClient } from "../helpers/nbd-client.js";
import { DiskService } from "../../src/warmcache/disk-service.js";
import { Cmd, NbdErr, Opt, Rep } from "../../src/format/nbd.js";

const run = promisify(execFile);
const MB = 1 << 20;
const uri = (sock: string) => `nbd+unix:///?socket=${sock}`;

async function serve(dir: string, image: string, readOnly = false): Promise<{ svc: DiskService; sock: string }> {
  const sock = join(dir, `s${Math.random().toString(36).slice(2, 8)}.sock`);
  return { svc: await DiskService.start({ image, socket: sock, readOnly }), sock };
}

test("nbdinfo sees the export's size, flags and block sizes", async (t) => {
  const dir = tempDir(t);
  const img = join(dir, "disk.img");
  writeFileSync(img, randomBytes(8 * MB));
  const { svc, sock } = await serve(dir, img);
  try {
    const { stdout } = await run("nbdinfo", ["--json", uri(sock)]);
    const e = JSON.parse(stdout).exports[0];
    assert.equal(e["export-size"], 8 * MB);
    for (const k of ["can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"]) assert.equal(e[k], true, k);
    assert.equal(e.is_read_only, false);
    assert.equal(e.block_size_minimum, 512);
    assert.equal(e.block_size_maximum, 32 * MB);
  } finally {
    await svc.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("writes, FUA writes, zeroes, discards and flushes through NBD equal the same qemu-io script on the file", async (t) => {
  const dir = tempDir(t);
  const img = join(dir, "disk.img");
  const ref = join(dir, "ref.img");
  writeFileSync(img, randomBytes(32 * MB));
  copyFileSync(img, ref);
  // Aligned and 512-unaligned-to-4K offsets, a request above the 1 MiB
  // pool chunk, FUA, holes allowed and not.
  const script = [
    "write -P 0x11 0 4096",
    "write -P 0x22 512 1024",
    "write -f -P 0x33 1m 3m",
    "write -z 8m 2m",
    "write -z -u 12m 1m",
    "discard 16m 1m",
    "write -P 0x44 20m 9m",
    "flush",
    "write -P 0x55 31m 1m",
  ];
  const args = (target: string, fmt: string[]) => [...fmt, ...script.flatMap((c) => ["-c", c]), target];
  const { svc, sock } = await serve(dir, img);
  try {
    await run("qemu-io", args(uri(sock), ["-f", "raw"]));
    await run("qemu-io", args(ref, ["-f", "raw"]));
    const c = svc.backend.counters;
    assert.ok(c.writeBytes >= 13 * MB && c.zeroBytes === 3 * MB && c.trimBytes === MB && c.flushes >= 1, JSON.stringify(c));
    // qemu-img compare reads both through QEMU's block layer, one of them over NBD.
    const { stdout } = await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", ref, uri(sock)]);
    assert.match(stdout, /identical/);
  } finally {
    await svc.stop();
  }
  assert.ok(readFileSync(img).equals(readFileSync(ref)), "the image file equals the reference");
  rmSync(dir, { recursive: true, force: true });
});

test("nbdcopy writes an image in and reads it back out, multi-connection", async (t) => {
  const dir = tempDir(t);
  const img = join(dir, "disk.img");
  const src = join(dir, "src.img");
  writeFileSync(img, Buffer.alloc(24 * MB));
  writeFileSync(src, randomBytes(24 * MB));
  const { svc, sock } = await serve(dir, img);
  try {
    await run("nbdcopy", ["--connections=4", src, uri(sock)]);
    await run("nbdcopy", ["--connections=4", uri(sock), join(dir, "out.img")]);
  } finally {
    await svc.stop();
  }
  assert.ok(readFileSync(img).equals(readFileSync(src)), "the image holds what nbdcopy sent");
  assert.ok(readFileSync(join(dir, "out.img")).equals(readFileSync(src)), "nbdcopy read back the same bytes");
  rmSync(dir, { recursive: true, force: true });
});

test("protocol errors: unknown export, past the end, unaligned, read-only, bad magic", async (t) => {
  const dir = tempDir(t);
  const img = join(dir, "disk.img");
  writeFileSync(img, randomBytes(MB));
  const { svc, sock } = await serve(dir, img, true);
  try {
    const c = await RawNbdClient.open(sock);
    assert.deepEqual(await c.go("nosuch"), [Rep.ERR_UNKNOWN]);
    c.option(Opt.STRUCTURED_REPLY, Buffer.alloc(0));
    assert.equal((await c.reply()).type, Rep.ERR_UNSUP);
    assert.deepEqual(await c.go(""), [Rep.INFO, Rep.INFO, Rep.ACK]);
    assert.equal((await c.command(Cmd.READ, BigInt(MB - 4096), 8192)).error, NbdErr.EINVAL);
    assert.equal((await c.command(Cmd.READ, 100n, 512)).error, NbdErr.EINVAL);
    assert.equal((await c.command(Cmd.WRITE, 0n, 512, Buffer.alloc(512))).error, NbdErr.EPERM);
    const r = await c.command(Cmd.READ, 4096n, 4096);
    assert.equal(r.error, 0);
    assert.ok(r.data!.equals(readFileSync(img).subarray(4096, 8192)));
    c.socket.write(Buffer.alloc(28, 0xff));
    await new Promise<void>((resolve) => c.socket.once("close", () => resolve()));
    c.close();
    // The server is still up for the next client.
    const { stdout } = await run("nbdinfo", ["--size", uri(sock)]);
    assert.equal(Number(stdout), MB);
  } finally {
    await svc.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
