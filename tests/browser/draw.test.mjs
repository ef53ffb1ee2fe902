// The web page as a person uses it, in Debian's Chromium: start `digits serve` with a
// corrections database, draw each digit 0-9 with the mouse, read the answer the page shows;
// upload an image; read a number; correct a reading and find it stored.
// Run: npm test (DIGITS_BIN defaults to target/release/digits; CHROMIUM to /usr/bin/chromium).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { DIGITS, shifted } from "./strokes.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = process.env.DIGITS_BIN ?? path.join(root, "target/release/digits");
const port = 18000 + Math.floor(Math.random() * 2000);
const url = `http://127.0.0.1:${port}/`;
const shots = path.join(root, "target/browser");
const tmp = mkdtempSync(path.join(os.tmpdir(), "digits-browser-"));
const db = path.join(tmp, "feedback.sqlite");
let server, browser, page;

async function waitForServer() {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url + "healthz")).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("digits serve did not start");
}

before(async () => {
  server = spawn(bin, ["serve", "--port", String(port), "--feedback-db", db], { stdio: ["ignore", "inherit", "inherit"] });
  await waitForServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  await page.goto(url);
  await page.waitForSelector("#model option", { state: "attached" });
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  rmSync(tmp, { recursive: true, force: true });
});

/// What the corrections database holds, as `digits feedback stats --json` says.
function stored() {
  return JSON.parse(execFileSync(bin, ["feedback", "--db", db, "stats", "--json"], { encoding: "utf8" }));
}

/// Draws strokes given in canvas pixels with the mouse, as a person would.
async function draw(strokes) {
  const box = await page.locator("#pad").boundingBox();
  const size = await page.locator("#pad").evaluate((c) => [c.width, c.height]);
  const at = ([x, y]) => [box.x + (x * box.width) / size[0], box.y + (y * box.height) / size[1]];
  for (const stroke of strokes) {
    const [x0, y0] = at(stroke[0]);
    await page.mouse.move(x0, y0);
    await page.mouse.down();
    for (const p of stroke.slice(1)) {
      const [x, y] = at(p);
      await page.mouse.move(x, y, { steps: 2 });
    }
    await page.mouse.up();
  }
}

/// Waits until the page shows the answer to the latest drawing, and returns it.
async function answer() {
  await page.waitForSelector("#pad[data-state=done]", { timeout: 10000 });
  return (await page.locator("#answer").textContent()).trim();
}

test("each digit drawn with the mouse is read correctly", async () => {
  for (const [digit, strokes] of Object.entries(DIGITS)) {
    await page.keyboard.press("Escape");
    await draw(strokes);
    assert.equal(await answer(), digit, `drew ${digit}`);
    const bars = await page.locator("#bars .bar").count();
    assert.equal(bars, 10, "a bar per digit");
    assert.match(await page.locator("#confidence").textContent(), /% sure/);
    if (digit === "3") await page.screenshot({ path: path.join(shots, "page-digit-3.png") });
  }
});

test("undo and clear work from the keyboard", async () => {
  await page.keyboard.press("Escape");
  await draw(DIGITS[4]);
  assert.equal(await answer(), "4");
  await page.keyboard.press("Control+z");
  assert.notEqual(await answer(), "4", "undoing the 4's stem changes the answer");
  assert.equal(await page.locator("#pad").evaluate((c) => c.getContext("2d").getImageData(175, 200, 1, 1).data[3]), 0, "the stem is gone");
  await page.keyboard.press("Escape");
  assert.equal((await page.locator("#answer").textContent()).trim(), "");
});

test("the MLP can be chosen", async () => {
  await page.keyboard.press("Escape");
  await page.selectOption("#model", "mlp");
  await draw(DIGITS[7]);
  assert.equal(await answer(), "7");
  await page.selectOption("#model", "cnn");
});

test("an uploaded image is read", async () => {
  await page.keyboard.press("Escape");
  await page.setInputFiles("#file", path.join(root, "examples/seven.png"));
  assert.equal(await answer(), "7");
});

test("number mode reads several digits", async () => {
  await page.check("#number-mode");
  await draw([...DIGITS[2], ...shifted(DIGITS[0], 170), ...shifted(DIGITS[7], 330)]);
  assert.equal(await answer(), "207");
  assert.equal(await page.locator("#bars .bar").count(), 3, "a confidence bar per digit read");
  assert.equal(await page.locator("#normalized").evaluate((c) => c.width), 84, "the three digits the model saw");
  await page.screenshot({ path: path.join(shots, "page-number.png") });
  await page.uncheck("#number-mode");
});

test("a correction is clicked and stored", async () => {
  await page.keyboard.press("Escape");
  assert.ok(await page.locator("#kept").isVisible(), "the page says corrections are kept");
  assert.ok(!(await page.locator("#correct").isVisible()), "nothing to correct before an answer");
  await draw(DIGITS[4]);
  assert.equal(await answer(), "4");
  // Pretend the person meant a 9: the reading is wrong, they say so.
  await page.click("#correct-digit button[data-label='9']");
  await page.waitForSelector("#saved:has-text('Saved')");
  assert.match(await page.locator("#saved").textContent(), /correction #\d+/);
  await page.screenshot({ path: path.join(shots, "page-correction.png") });
  const s = stored();
  assert.equal(s.records, 1);
  assert.equal(s.by_label[9], 1);
  assert.deepEqual(s.by_source, [["web", 1]]);
  assert.equal(s.misread, 1, "stored beside what the model read (a 4)");
});

test("a number is corrected digit by digit", async () => {
  await page.check("#number-mode");
  await draw([...DIGITS[2], ...shifted(DIGITS[0], 170), ...shifted(DIGITS[7], 330)]);
  assert.equal(await answer(), "207");
  await page.fill("#number-text", "201");
  await page.click("#correct-number button[type=submit]");
  await page.waitForSelector("#saved:has-text('Saved')");
  const s = stored();
  assert.equal(s.records, 4);
  assert.deepEqual([s.by_label[2], s.by_label[0], s.by_label[1]], [1, 1, 1]);
  // A correction with the wrong number of digits is refused, and the page says why.
  await page.fill("#number-text", "12");
  await page.click("#correct-number button[type=submit]");
  await page.waitForSelector("#saved.failed");
  assert.match(await page.locator("#saved").textContent(), /Not saved: .*digit/);
  assert.equal(stored().records, 4);
  await page.uncheck("#number-mode");
});
