// Offline use: after one visit, the page opens and answers with the network off and the server
// gone, from what its service worker kept (app shell, wasm) and the weights in the Cache API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, waitReady, ask } from './browser.mjs';

let browser;
let page;
const consoleErrors = [];

before(async () => {
  browser = await openBrowser();
  page = await browser.context.newPage();
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(`page exception: ${e.message}`));
});

after(async () => {
  await browser?.close();
});

test('a first visit installs the service worker, which serves the page and keeps the app', async () => {
  await page.goto(browser.base);
  await waitReady(page);
  assert.equal(await page.evaluate(() => Boolean(navigator.serviceWorker.controller)), true);
  await page.waitForFunction(() => /works offline/.test(document.getElementById('storage-use').textContent));
  const reply = await ask(page, 'What is the capital of France?');
  assert.match(reply.text, /Paris/);
  const kept = await page.evaluate(async () => (await (await caches.open('wick-shell-v1')).keys()).map((r) => new URL(r.url).pathname));
  for (const path of ['/', '/www/app.js', '/www/worker.js', '/www/markdown.js', '/www/vendor/marked.esm.js']) {
    assert.ok(kept.includes(path), `${path} not kept: ${kept}`);
  }
  assert.ok(kept.some((p) => /^\/www\/pkg[\w-]*\/wick_bg\.wasm$/.test(p)), `no wasm kept: ${kept}`);
  assert.ok(!kept.some((p) => /\.(gguf|safetensors)$/.test(p)), 'the weights were kept twice');
});

test('with the network off and the server stopped, the page reloads and answers', async () => {
  const status = await page.textContent('#status');
  const build = status.match(/wasm [\w-]+, \d+ threads?/)[0];
  await browser.context.setOffline(true);
  await browser.stopServer();
  const served = browser.requests.length;
  await page.reload();
  await waitReady(page);
  assert.equal(browser.requests.length, served, 'the server was reached');
  assert.equal(await page.evaluate(() => navigator.onLine), false);
  // The kept responses carry COOP/COEP, so the page stays cross-origin isolated: same build.
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), true);
  const ready = await page.textContent('#status');
  assert.match(ready, /loaded from cache/);
  assert.ok(ready.includes(build), `${ready} does not run ${build}`);
  const reply = await ask(page, 'What is the capital of France?');
  assert.match(reply.text, /Paris/);
  // The conversation kept before going offline came back too.
  assert.ok((await page.locator('#conversation-list li').count()) >= 1);
});

test('a page address with a query is served offline too', async () => {
  const other = await browser.context.newPage();
  await other.goto(`${browser.base}?simd=relaxed`);
  await waitReady(other);
  assert.match(await other.textContent('#status'), /loaded from cache/);
  const reply = await ask(other, 'What is the capital of France?');
  assert.match(reply.text, /Paris/);
  await other.close();
});

test('the console shows no errors', () => {
  assert.deepEqual(consoleErrors, []);
});
