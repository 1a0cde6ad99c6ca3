// `guestcore view` in Debian's headless Chromium (puppeteer-core, no
// browser download): the page opens a real capture's -d 31 zstd kdump
// through <input type=file> and shows what the guest itself logged (the
// marker its init printed, in meta.json), the task list `guestcore ps`
// gives, and a memory map whose totals are makedumpfile's exclusion table
// for the same capture. The Wasm core runs on shared memory there, so the
// page must be cross-origin isolated; zstd pages go through zstd-codec.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer, { type Browser, type ElementHandle } from "puppeteer-core";
import { makedumpfileOracle, realFixture } from "../helpers/real.js";
import { tempDir } from "../helpers/synthetic.js";

const CLI = fileURLToPath(new URL("../../src/cli.js", import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const PROFILE = "q35-256m";

function startView(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, "view", "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`guestcore view printed no URL in 20 s: ${out}${err}`)), 20_000);
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /guestcore view: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1] });
      }
    });
    child.stderr!.on("data", (d) => (err += d));
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`guestcore view exited (${code}): ${out}${err}`));
    });
  });
}

test(`guestcore view shows ${PROFILE}'s kernel log marker, tasks and memory map in headless Chromium`, { timeout: 300_000 }, async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
  const fx = realFixture(PROFILE);
  const dir = tempDir(t);
  const kdump = join(dir, `${PROFILE}.kdump`);
  execFileSync(process.execPath, [CLI, "dump", fx.elf, "-o", kdump, "-d", "31"], { stdio: "ignore" });
  const ps = JSON.parse(execFileSync(process.execPath, [CLI, "ps", "--json", kdump], { encoding: "utf8" })) as { pid: number; comm: string }[];
  const oracle = makedumpfileOracle(fx, 31);

  const { child, url } = await startView();
  let browser: Browser | undefined;
  try {
    browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"], headless: true });
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    await page.setViewport({ width: 1400, height: 1100 });
    await page.goto(url);
    assert.equal(await page.evaluate(() => crossOriginIsolated), true, "the page is cross-origin isolated (COOP/COEP)");

    const input = await page.$("input#file[type=file]") as ElementHandle<HTMLInputElement> | null;
    assert.ok(input, "the page has a file input");
    const t0 = performance.now();
    await input.uploadFile(kdump);
    await page.waitForFunction(() => ["done", "failed"].includes(document.body.dataset.state ?? ""), { timeout: 180_000 });
    t.diagnostic(`${PROFILE}: ${(statSync(kdump).size / 2 ** 20).toFixed(1)} MiB kdump analysed in the page in ${((performance.now() - t0) / 1000).toFixed(2)} s`);

    const shown = await page.evaluate(() => ({
      state: document.body.dataset.state,
      errors: [...document.querySelectorAll("#errors li")].map((e) => e.textContent),
      info: Object.fromEntries([...document.querySelectorAll("#info dd")].map((d) => [(d as HTMLElement).dataset.key, d.textContent])),
      log: [...document.querySelectorAll("#log div")].map((d) => d.textContent),
      taskCount: Number(document.getElementById("task-count")!.dataset.count),
      tasks: [...document.querySelectorAll("#tasks tbody tr")].map((r) => [...r.querySelectorAll("td")].map((c) => c.textContent)),
      legend: Object.fromEntries([...document.querySelectorAll("#legend li")].map((l) => [(l as HTMLElement).dataset.cls, Number((l as HTMLElement).dataset.pages)])),
      cells: document.querySelectorAll("#map rect").length,
    }));
    await page.screenshot({ path: join(dir, "view.png"), fullPage: true });
    t.diagnostic(`screenshot: ${join(dir, "view.png")}`);

    assert.deepEqual(pageErrors, []);
    assert.equal(shown.state, "done");
    assert.deepEqual(shown.errors, []);
    assert.equal(shown.info.kernelRelease, fx.release);
    assert.equal(shown.info.crossOriginIsolated, "true");
    assert.equal(shown.info.zstd, "zstd-codec", "zstd pages decoded by zstd-codec in the browser");
    assert.equal(shown.info.compression, "zstd");
    assert.match(shown.info.kaslrOffset ?? "", /^0x[0-9a-f]+$/);
    assert.equal(shown.info.pageSize, "4096");

    // The marker the guest's init printed just before the panic.
    assert.ok(shown.log.some((l) => l?.endsWith(`] ${fx.marker}`)), `the log shows "${fx.marker}"`);
    assert.ok(shown.log.some((l) => /Kernel panic - not syncing: sysrq triggered crash/.test(l ?? "")));

    assert.equal(shown.taskCount, ps.length, "task count equals guestcore ps --json");
    assert.equal(shown.tasks.length, ps.length);
    // Columns: active, PID, PPID, TGID, CPU, ST, COMM.
    const init = shown.tasks.find((r) => r[1] === "1");
    assert.ok(init, "pid 1 is listed");
    assert.equal(init[6], "init");
    assert.deepEqual(shown.tasks.map((r) => `${r[1]} ${r[6]}`), ps.map((p) => `${p.pid} ${p.comm}`));

    // The map's totals are makedumpfile's table at -d 31 on the original ELF.
    assert.ok(shown.cells > 0);
    const want = oracle.counts;
    assert.deepEqual(
      { zero: shown.legend.zero ?? 0, cache: shown.legend["page cache"] ?? 0, cachePrivate: shown.legend["private cache"] ?? 0, user: shown.legend["user (anon)"] ?? 0, free: shown.legend.free ?? 0 },
      { zero: want.zero, cache: want.cache, cachePrivate: want.cachePrivate, user: want.user, free: want.free },
    );
    assert.equal(shown.legend.kernel, oracle.remaining, "kernel pages are makedumpfile's remaining pages");
  } finally {
    await browser?.close();
    child.kill("SIGTERM");
    rmSync(kdump, { force: true });
  }
});
