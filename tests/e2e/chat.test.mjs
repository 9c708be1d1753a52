// Browser end to end: the real model (models/, fetched by setup) answering in headless Debian
// Chromium, served by the dev server, computed by Candle in wasm in a Web Worker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { openBrowser, waitReady, ask } from './browser.mjs';

const GGUF = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
const MLX = 'models/SmolLM2-135M-Instruct-MLX-4bit';
const modelRequests = (requests) => requests.filter((r) => /\.(gguf|safetensors)$/.test(r.url) && r.method === 'GET');

let browser;
let page;
const consoleErrors = [];

before(async () => {
  browser = await openBrowser();
  page = await browser.context.newPage();
  const record = (where) => (msg) => {
    if (msg.type() === 'error') consoleErrors.push(`${where}: ${msg.text()}`);
  };
  page.on('console', record('page'));
  page.on('pageerror', (e) => consoleErrors.push(`page exception: ${e.message}`));
  page.on('worker', (w) => w.on('console', record('worker')));
  // Record what the progress bar says from the first moment on.
  await page.addInitScript(() => {
    window.__progress = [];
    document.addEventListener('DOMContentLoaded', () => {
      const label = document.getElementById('progress-label');
      new MutationObserver(() => window.__progress.push(label.textContent)).observe(label, { childList: true, characterData: true, subtree: true });
    });
  });
});

after(async () => {
  await browser?.close();
});

test('the default model downloads with a byte progress bar and loads', async () => {
  await page.goto(browser.base);
  await waitReady(page);
  const progress = await page.evaluate(() => window.__progress);
  const downloads = progress.filter((t) => /^Downloading the model: [\d.]+ \/ [\d.]+ MB$/.test(t));
  assert.ok(downloads.length >= 2, `progress updates: ${JSON.stringify(progress)}`);
  // config.json, tokenizer.json, tokenizer_config.json and model.safetensors, counted together.
  const [, loaded, total] = downloads.at(-1).match(/([\d.]+) \/ ([\d.]+) MB/);
  assert.equal(loaded, total);
  assert.ok(Number(total) > 99 && Number(total) < 101, downloads.at(-1));
  assert.deepEqual(modelRequests(browser.requests).map((r) => r.url.split('/').slice(-2).join('/')), [
    'SmolLM2-135M-Instruct-MLX-4bit/model.safetensors',
  ]);
  const status = await page.textContent('#status');
  assert.match(status, /SmolLM2-135M-Instruct-MLX-4bit \(safetensors, MLX 4-bit, llama, 30 layers, context 4096 of 8192 tokens\) · chat · /);
  assert.match(status, /loaded from network/);
  // The dev server makes the page cross-origin isolated, so the threaded build runs, and
  // Chromium has relaxed SIMD.
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), true);
  assert.match(status, cores > 1 ? new RegExp(`wasm relaxed-simd, ${cores} threads`) : /wasm relaxed-simd, 1 thread\b/);
});

test('the France question is answered with Paris, streamed in several updates', async () => {
  const reply = await ask(page, 'What is the capital of France?');
  assert.match(reply.text, /Paris/);
  assert.ok(reply.updates >= 3, `only ${reply.updates} updates`);
  assert.match(reply.status, /tok\/s/);
  // The system prompt was run into the cache when the model became ready (while one types), so
  // the question prefilled only its own turn.
  const m = reply.status.match(/prompt (\d+) tokens \((\d+) new/);
  assert.ok(m, reply.status);
  assert.ok(Number(m[2]) < Number(m[1]) - 10, `prefilled ${m[2]} of ${m[1]} prompt tokens`);
  mkdirSync('test-results', { recursive: true });
  await page.screenshot({ path: 'test-results/wick-chat.png', fullPage: true });
});

test('stop halts a long reply and the next question still works', async () => {
  await page.click('#settings summary');
  await page.fill('#max_tokens', '400');
  await page.fill('#input', 'Write a very long story about a dragon who learns to bake bread.');
  await page.click('#send');
  await page.waitForFunction(() => (document.querySelector('#messages .msg.assistant:last-of-type')?.textContent.length ?? 0) > 40, null, { timeout: 120_000 });
  await page.click('#stop');
  await page.waitForFunction(() => !document.querySelector('#messages .msg.assistant:last-of-type').classList.contains('pending'), null, { timeout: 30_000 });
  const stopped = await page.textContent('#messages .msg.assistant:last-of-type');
  assert.match(stopped, /\(stopped\)$/);
  await page.waitForTimeout(1500);
  assert.equal(await page.textContent('#messages .msg.assistant:last-of-type'), stopped, 'text kept growing after stop');
  assert.ok(await page.isDisabled('#stop'));

  await page.click('#new-chat');
  const reply = await ask(page, 'What is the capital of France?');
  assert.match(reply.text, /Paris/);
  // A new conversation is warmed with the system prompt too.
  const [, total, fresh] = reply.status.match(/prompt (\d+) tokens \((\d+) new/);
  assert.ok(Number(fresh) < Number(total) - 10, reply.status);
});

test('a follow-up question reuses the cached conversation', async () => {
  const reply = await ask(page, 'And what is the capital of Italy?');
  assert.ok(reply.text.trim().length > 0);
  const m = reply.status.match(/prompt (\d+) tokens \((\d+) new/);
  assert.ok(m, reply.status);
  assert.ok(Number(m[2]) < Number(m[1]) / 2, `prefilled ${m[2]} of ${m[1]} prompt tokens`);
});

test('bad model files show a readable error and the current model keeps working', async () => {
  await page.setInputFiles('#model-file', { name: 'notes.gguf', mimeType: 'application/octet-stream', buffer: Buffer.from('hello, this is not a model') });
  await page.waitForSelector('#error:not([hidden])');
  assert.match(await page.textContent('#error'), /Could not load notes\.gguf: not a GGUF file.*Still using SmolLM2/s);

  const truncated = readFileSync(GGUF).subarray(0, 5_000_000);
  await page.setInputFiles('#model-file', { name: 'cut.gguf', mimeType: 'application/octet-stream', buffer: truncated });
  await page.waitForFunction(() => document.getElementById('error').textContent.includes('cut.gguf'));
  assert.match(await page.textContent('#error'), /file is truncated/);

  // A Hugging Face folder whose weights were cut short: the error names the file.
  const folder = ['config.json', 'tokenizer.json', 'tokenizer_config.json'].map((name) => ({
    name, mimeType: 'application/json', buffer: readFileSync(`${MLX}/${name}`),
  }));
  const cut = readFileSync(`${MLX}/model.safetensors`).subarray(0, 20_000_000);
  await page.setInputFiles('#model-file', [...folder, { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: cut }]);
  await page.waitForFunction(() => document.getElementById('error').textContent.includes('4 files'));
  assert.match(await page.textContent('#error'), /model\.safetensors: tensor `[^`]+`: data_offsets .* outside the data section.*Still using/s);

  const reply = await ask(page, 'What is the capital of France?');
  assert.match(reply.text, /Paris/);
  assert.ok(await page.isHidden('#error'));
});

test('a prompt longer than the context is a readable error and the chat goes on', async () => {
  await page.fill('#input', 'lorem ipsum dolor sit amet '.repeat(3000));
  await page.click('#send');
  await page.waitForSelector('#error:not([hidden])');
  assert.match(await page.textContent('#error'), /the prompt is too long: \d+ tokens needed but the context holds 4096/);
  const reply = await ask(page, 'What is the capital of France?');
  assert.match(reply.text, /Paris/);
});

test('a reload takes the weights from the browser cache, not the network', async () => {
  const before = modelRequests(browser.requests).length;
  await page.reload();
  await waitReady(page);
  assert.equal(modelRequests(browser.requests).length, before, 'the model was downloaded again');
  assert.match(await page.textContent('#status'), /loaded from cache/);
  const reply = await ask(page, 'What is the capital of France?');
  assert.match(reply.text, /Paris/);
});

test('the GGUF the default model was made from is selectable and replies the same', async () => {
  const mlx = await ask(page, 'What is the capital of France?');
  await page.evaluate(() => { document.getElementById('settings').open = true; });
  // A new model starts a new conversation, so both answers come from the same prompt.
  await page.selectOption('#model-choice', GGUF);
  await page.waitForFunction(() => /Ready: SmolLM2-135M-Instruct\.Q4_1\.gguf \(GGUF Q4_1, llama, 30 layers, context 4096 of 8192 tokens\)/.test(document.getElementById('status').textContent));
  const gguf = await ask(page, 'What is the capital of France?');
  assert.equal(gguf.text, mlx.text);
  assert.match(gguf.text, /Paris/);
  await page.selectOption('#model-choice', `${MLX}/`);
  await page.waitForFunction(() => /Ready: SmolLM2-135M-Instruct-MLX-4bit/.test(document.getElementById('status').textContent));
  await page.evaluate(() => { document.getElementById('settings').open = false; });
});

// The other three builds: single-threaded with relaxed SIMD, and both plain-SIMD builds (for
// browsers without relaxed SIMD).
for (const [query, want] of [
  ['threads=1', /wasm relaxed-simd, 1 thread · loaded from cache/],
  ['threads=1&simd=simd128', /wasm simd128, 1 thread · loaded from cache/],
  ['threads=2&simd=simd128', /wasm simd128, 2 threads · loaded from cache/],
]) {
  test(`the ${want.source.split(' ·')[0]} build answers too (?${query})`, async () => {
    const other = await browser.context.newPage();
    other.on('console', (m) => m.type() === 'error' && consoleErrors.push(`${query}: ${m.text()}`));
    await other.goto(`${browser.base}?${query}`);
    await waitReady(other);
    assert.match(await other.textContent('#status'), want);
    const reply = await ask(other, 'What is the capital of France?');
    assert.match(reply.text, /Paris/);
    await other.close();
  });
}

test('the console shows no errors', () => {
  assert.deepEqual(consoleErrors, []);
});
