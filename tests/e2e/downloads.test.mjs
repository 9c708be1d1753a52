// Verified and resumable downloads in headless Chromium: each model file is checked against the
// model's manifest (sizes and sha256, written by `wick quantize` and scripts/fetch-models.sh), a
// download that breaks off mid-file resumes with a Range request, a damaged or truncated copy in
// the browser's cache is found and downloaded again, and a Cache API that throws leaves the
// network.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { openBrowser, watchWorkers } from './browser.mjs';
import { startMockHub } from './mock-hub.mjs';

const DIR = resolve('models/SmolLM2-135M-Instruct-MLX-4bit');
const MLX = '/models/SmolLM2-135M-Instruct-MLX-4bit/';
const GGUF = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const FRANCE = [{ role: 'system', content: 'You are a helpful AI assistant.' }, { role: 'user', content: 'What is the capital of France?' }];
const WEIGHTS = statSync(`${DIR}/model.safetensors`).size;
const CUT_AT = 30_000_000;

let browser;
let page;
let hub;

before(async () => {
  browser = await openBrowser({ alsoServe: ['tests/e2e/pages'] });
  hub = await startMockHub({ repos: { 'flaky/SmolLM2': DIR }, cut: { 'flaky/SmolLM2/model.safetensors': CUT_AT } });
  page = await browser.context.newPage();
  await watchWorkers(page);
  await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  await page.evaluate(async () => {
    window.W = await import('/www/wick.js');
    window.run = async (model, options = {}) => {
      const cacheErrors = [];
      const engine = await window.W.Wick.load(model, { threads: 1, onCacheError: (e) => cacheErrors.push({ code: e.code, message: e.message }), ...options });
      const reply = await engine.chat.completions.create({ messages: window.FRANCE, temperature: 0, max_tokens: 16 });
      const { info } = engine;
      await engine.unload();
      return { answer: reply.choices[0].message.content, source: info.source, verified: info.verified, cacheErrors };
    };
  });
  await page.evaluate((m) => (window.FRANCE = m), FRANCE);
});

after(async () => {
  await browser?.close();
  await hub?.close();
});

/** GETs of `file` the dev server answered. */
const devGets = (file) => browser.requests.filter((r) => r.method === 'GET' && r.url.endsWith(`/${file}`));

test('the model folder\'s manifest lists every file with its size and sha256, and the load checks them', async () => {
  const manifest = JSON.parse(readFileSync(`${DIR}/manifest.json`, 'utf8'));
  const files = readdirSync(DIR).filter((f) => f !== 'manifest.json').sort();
  assert.deepEqual(Object.keys(manifest.files).sort(), files);
  for (const f of files) {
    const bytes = readFileSync(`${DIR}/${f}`);
    assert.deepEqual(manifest.files[f], { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') }, f);
  }
  const gguf = JSON.parse(readFileSync(`models/${GGUF}.manifest.json`, 'utf8'));
  assert.equal(gguf.files[GGUF].size, statSync(`models/${GGUF}`).size);
  assert.match(gguf.files[GGUF].sha256, /^[0-9a-f]{64}$/);

  const r = await page.evaluate(async ({ mlx, gguf }) => ({ mlx: await window.run(mlx), gguf: await window.run(gguf) }), { mlx: MLX, gguf: `/models/${GGUF}` });
  for (const [name, got] of Object.entries(r)) {
    assert.match(got.answer, /Paris/, name);
    assert.deepEqual([got.source, got.verified, got.cacheErrors], ['network', true, []], name);
  }
  // What the browser keeps (in OPFS, the worker having sync access handles) carries the sha256
  // measured while the file streamed in.
  const kept = await page.evaluate(async (url) => (await window.W.Wick.cache.list()).find((f) => f.url === url), `${browser.base.slice(0, -1)}${MLX}model.safetensors`);
  assert.deepEqual([kept.store, kept.sha256, kept.bytes], ['opfs', manifest.files['model.safetensors'].sha256, WEIGHTS]);
});

test('a download broken off mid-file resumes with Range from where it stopped', async () => {
  const r = await page.evaluate(async (hubUrl) => {
    const seen = [];
    const out = await window.run('flaky/SmolLM2', { hubUrl, onProgress: (p) => p.file.endsWith('model.safetensors') && seen.push(p.loaded) });
    return { ...out, seen: seen.length, kept: (await window.W.Wick.cache.list()).filter((f) => f.url.startsWith(hubUrl)) };
  }, hub.url);
  assert.match(r.answer, /Paris/);
  assert.equal(r.verified, true);
  const weights = hub.requests.filter((q) => q.method === 'GET' && q.url.endsWith('/model.safetensors'));
  assert.equal(weights.length, 2, JSON.stringify(weights));
  assert.deepEqual([weights[0].status, weights[0].range], [200, null]);
  assert.equal(weights[1].status, 206);
  // It asked for the rest: from the byte where what arrived ended (up to the cut; what the
  // sockets held when the connection dropped is lost), not from 0.
  const from = Number(weights[1].range.match(/^bytes=(\d+)-$/)[1]);
  assert.ok(from > 1e6 && from <= CUT_AT, `resumed from ${from}`);
  const kept = r.kept.find((f) => f.url.endsWith('/model.safetensors'));
  assert.equal(kept.bytes, WEIGHTS);
});

/**
 * Damages two kept files of the default model, the weights (one bit) and tokenizer.json (cut in
 * half, its recorded size unchanged), in OPFS or in the Cache API.
 */
async function damage(where) {
  await page.evaluate(async ({ base, where }) => {
    const bitFlip = (b) => {
      b[b.length >> 1] ^= 0x40;
      return b;
    };
    const half = (b) => b.slice(0, b.length >> 1);
    if (where === 'cache') {
      const cache = await caches.open('wick-models-v1');
      const rewrite = async (name, change) => {
        const hit = await cache.match(base + name);
        await cache.put(base + name, new Response(change(new Uint8Array(await hit.arrayBuffer())), { headers: hit.headers }));
      };
      await rewrite('model.safetensors', bitFlip);
      await rewrite('tokenizer.json', half);
      return;
    }
    // OPFS: weights/KEY holds the bytes of the URL KEY.json names.
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('weights');
    const rewrite = async (name, change) => {
      for await (const [file, handle] of dir.entries()) {
        if (!file.endsWith('.json')) continue;
        if (JSON.parse(await (await handle.getFile()).text()).url !== base + name) continue;
        const data = await dir.getFileHandle(file.slice(0, -5));
        const bytes = change(new Uint8Array(await (await data.getFile()).arrayBuffer()));
        const out = await data.createWritable();
        await out.write(bytes);
        await out.close();
        return;
      }
      throw new Error(`${name} is not kept in OPFS`);
    };
    await rewrite('model.safetensors', bitFlip);
    await rewrite('tokenizer.json', half);
  }, { base: browser.base.slice(0, -1) + MLX, where });
}

for (const where of ['opfs', 'cache']) {
  test(`a damaged or truncated copy in the browser's ${where === 'opfs' ? 'OPFS' : 'Cache API (a worker without OPFS)'} is detected and downloaded again`, async () => {
    const run = (mlx, noOpfs) => page.evaluate(async ({ mlx, noOpfs }) => {
      window.__workerHook = noOpfs ? { noOpfs: true } : null;
      try {
        return await window.run(mlx);
      } finally {
        window.__workerHook = null;
      }
    }, { mlx, noOpfs });
    const noOpfs = where === 'cache';
    // The first test kept the model in OPFS; without OPFS the Cache API gets its own copy first.
    if (noOpfs) await page.evaluate(() => window.W.Wick.cache.clear());
    if (noOpfs) assert.equal((await run(MLX, true)).source, 'network');
    const stores = await page.evaluate(async () => [...new Set((await window.W.Wick.cache.list()).map((f) => f.store))]);
    assert.deepEqual(stores, [where]);
    await damage(where);
    const before = { weights: devGets('model.safetensors').length, tokenizer: devGets('tokenizer.json').length };
    const r = await run(MLX, noOpfs);
    assert.match(r.answer, /Paris/);
    assert.equal(r.source, 'network');
    const messages = r.cacheErrors.map((e) => `${e.code}: ${e.message}`).sort();
    assert.equal(messages.length, 2, JSON.stringify(messages));
    assert.match(messages[0], /^model_format: The browser's copy of .*\/model\.safetensors was damaged \(its sha256 is [0-9a-f]{64}, the manifest says [0-9a-f]{64}\); it is downloaded again\.$/);
    assert.match(messages[1], new RegExp(`^model_format: The browser's copy of .*/tokenizer\\.json was damaged \\(${noOpfs ? '.*ended early.*' : 'it holds \\d+ bytes, the manifest says \\d+'}\\); it is downloaded again\\.$`));
    assert.equal(devGets('model.safetensors').length, before.weights + 1);
    assert.equal(devGets('tokenizer.json').length, before.tokenizer + 1);
    // The copies kept now are whole again: the next load reads them from the same store.
    const again = await run(MLX, noOpfs);
    assert.deepEqual([again.source, again.cacheErrors], ['cache', []]);
    assert.equal(devGets('model.safetensors').length, before.weights + 1);
  });
}

test('a Cache API that throws leaves the model to the network, and it still loads', async () => {
  const before = devGets('model.safetensors').length;
  const r = await page.evaluate(async (mlx) => {
    window.__workerHook = { action: 'break-cache', noOpfs: true };
    try {
      return await window.run(mlx);
    } finally {
      window.__workerHook = null;
    }
  }, MLX);
  assert.match(r.answer, /Paris/);
  assert.deepEqual([r.source, r.verified, r.cacheErrors], ['network', true, []]);
  assert.equal(devGets('model.safetensors').length, before + 1, 'downloaded, though the cache keeps it');
});

test('the vendored sha256 is @noble/hashes as package-lock.json pins it, unmodified', () => {
  const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
  const pinned = lock.packages['node_modules/@noble/hashes'];
  assert.equal(pinned.version, JSON.parse(readFileSync('node_modules/@noble/hashes/package.json', 'utf8')).version);
  for (const f of ['sha2.js', '_md.js', '_u64.js', 'utils.js', 'LICENSE']) {
    assert.ok(readFileSync(`www/vendor/noble-hashes/${f}`).equals(readFileSync(`node_modules/@noble/hashes/${f}`)), f);
  }
});
