// The warm-cache serving path on a synthetic crash: a "crashed guest"
// memory file on /dev/shm holds copies of disk blocks, some stale, some
// changed; the disk server adopts the pages that equal consistent blocks
// and serves those from memory. Every byte a client reads must equal the
// image at that moment (the server's own verification and the test's
// comparison with the file), stale and changed pages are never served,
// a write drops the copy first, and served pages go back to the host.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers/synthetic.js";
import { RawNbdClient } from "../helpers/nbd-client.js";
import { DiskService } from "../../src/warmcache/disk-service.js";
import { controlRequest } from "../../src/warmcache/control.js";
import { allocatedBytes } from "../../src/recovery/hole-punch.js";
import { Cmd } from "../../src/format/nbd.js";
import { waitFor } from "../helpers/wait.js";

const B = 4096;

test("warm copies: only pages equal to the disk are served, writes drop copies, served pages are released", async (t) => {
  const dir = tempDir(t);
  const img = join(dir, "disk.img");
  const blocks = 256;
  writeFileSync(img, randomBytes(blocks * B));
  const mem = `/dev/shm/guestcore-test-warm.${process.pid}.ram`;
  const svc = await DiskService.start({ image: img, socket: join(dir, "d.sock"), verifyWarm: true });
  const c = await RawNbdClient.open(join(dir, "d.sock"));
  try {
    await c.go("");
    // The crashed guest read blocks 0..127 (consistent) and wrote 200..203.
    assert.equal((await c.command(Cmd.READ, 0n, 128 * B)).error, 0);
    const fresh = randomBytes(4 * B);
    const old = readFileSync(img).subarray(200 * B, 204 * B);
    assert.equal((await c.command(Cmd.WRITE, BigInt(200 * B), 4 * B, fresh)).error, 0);
    const disk = readFileSync(img);
    // Its memory: pfn 10+i holds block i for i < 64 (clean cache), pfn 100
    // a copy of block 64 with one byte flipped (a wild write), 101 block
    // 200's old content (a stale page), 102 block 201's new content, 103 a
    // page nobody read (block 150).
    const pages = 128;
    const m = Buffer.alloc(pages * B);
    for (let i = 0; i < 64; i++) disk.copy(m, (10 + i) * B, i * B, (i + 1) * B);
    disk.copy(m, 100 * B, 64 * B, 65 * B);
    m[100 * B + 77] ^= 1;
    old.copy(m, 101 * B, 0, B);
    fresh.copy(m, 102 * B, B, 2 * B);
    disk.copy(m, 103 * B, 150 * B, 151 * B);
    writeFileSync(mem, m);
    const cand = Buffer.alloc(pages / 8, 0xff);
    const r = await controlRequest(svc.controlPath, {
      op: "adopt", memory: mem, layout: `0:${pages * B}@0`, maxPfn: pages, candidates: cand.toString("base64"),
    });
    assert.equal(r.keptPages, 65, JSON.stringify(r));
    const kept = Buffer.from(String(r.kept), "base64");
    const keptSet = new Set<number>();
    for (let p = 0; p < pages; p++) if (kept[p >> 3] & (1 << (p & 7))) keptSet.add(p);
    for (let i = 0; i < 64; i++) assert.ok(keptSet.has(10 + i), `pfn ${10 + i} kept`);
    assert.ok(keptSet.has(102) && !keptSet.has(100) && !keptSet.has(101) && !keptSet.has(103), [...keptSet].join(","));
    const heldBefore = allocatedBytes(mem);

    // The replacement writes block 5 before reading it: the copy goes first.
    const five = randomBytes(B);
    assert.equal((await c.command(Cmd.WRITE, BigInt(5 * B), B, five)).error, 0);
    // It reads everything.
    const got = await c.command(Cmd.READ, 0n, blocks * B);
    assert.equal(got.error, 0);
    assert.ok(got.data!.equals(readFileSync(img)), "every byte read equals the image");
    const s = (await controlRequest(svc.controlPath, { op: "stats" })).warm as Record<string, number>;
    // Blocks 0..63 but 5, and 201.
    assert.equal(s.servedBlocks, 64, JSON.stringify(s));
    assert.equal(s.verifiedBlocks, 64);
    assert.equal(s.verifyMismatches, 0);
    assert.equal(s.rejectedBlocks, 0);
    assert.equal(s.droppedCopies, 1);
    // Served pages went back to the host (and the dropped one).
    await new Promise((res) => setImmediate(res));
    assert.equal(s.keptPages, 0);
    assert.ok(allocatedBytes(mem) <= heldBefore - 65 * B, `${allocatedBytes(mem)} of ${heldBefore} held`);
    // A second read pass is all disk.
    await c.command(Cmd.READ, 0n, 64 * B);
    const s2 = (await controlRequest(svc.controlPath, { op: "stats" })).warm as Record<string, number>;
    assert.equal(s2.servedBlocks, 64);
  } finally {
    c.close();
    await svc.stop();
    rmSync(mem, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test("warm copies: a page changed after the match is refused when served; the TTL releases the rest", async (t) => {
  const dir = tempDir(t);
  const img = join(dir, "disk.img");
  writeFileSync(img, randomBytes(64 * B));
  const mem = `/dev/shm/guestcore-test-warm2.${process.pid}.ram`;
  const svc = await DiskService.start({ image: img, socket: join(dir, "d.sock"), verifyWarm: true });
  const c = await RawNbdClient.open(join(dir, "d.sock"));
  try {
    await c.go("");
    await c.command(Cmd.READ, 0n, 64 * B);
    writeFileSync(mem, readFileSync(img));
    const r = await controlRequest(svc.controlPath, {
      op: "adopt", memory: mem, layout: `0:${64 * B}@0`, maxPfn: 64, candidates: Buffer.alloc(8, 0xff).toString("base64"), ttlMs: 300,
      budgetPages: 40,
    });
    assert.equal(r.keptPages, 40, "the budget caps the kept pages");
    // A stray write into every kept page after the match.
    const fd = openSync(mem, "r+");
    for (let p = 0; p < 64; p++) writeSync(fd, Buffer.from([0xee]), 0, 1, p * B + 9);
    closeSync(fd);
    const got = await c.command(Cmd.READ, 0n, 8 * B);
    assert.ok(got.data!.equals(readFileSync(img).subarray(0, 8 * B)));
    const s = (await controlRequest(svc.controlPath, { op: "stats" })).warm as Record<string, number>;
    assert.equal(s.servedBlocks, 0);
    assert.ok(s.rejectedBlocks >= 1 && s.rejectedBlocks <= 8, JSON.stringify(s));
    // The 300 ms TTL runs out: the service says the warm copies are closed.
    const warm = async () => (await controlRequest(svc.controlPath, { op: "stats" })).warm as Record<string, unknown>;
    await waitFor(async () => (await warm()).closed === true, "the warm copies to close at their TTL", 10_000, 50);
    assert.equal(allocatedBytes(mem) <= 24 * B, true, `after the TTL the file holds ${allocatedBytes(mem)} bytes`);
  } finally {
    c.close();
    await svc.stop();
    rmSync(mem, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
