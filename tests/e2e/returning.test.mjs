// A returning visit in headless Chromium: the page's second visit reads the weights from OPFS
// (checked against the manifest, no download) and the wasm from the service worker's copy (no
// download: its ETag is asked with HEAD); a page without OPFS keeps the model in the Cache API
// and still answers; and the page runs only the wasm builds the server holds (scripts/dev.sh
// serves while it still builds three of them).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { openBrowser, waitReady, ask, watchWorkers } from './browser.mjs';

const ROOT = resolve('.');
const MLX = '/models/SmolLM2-135M-Instruct-MLX-4bit/';
const FRANCE = [{ role: 'system', content: 'You are a helpful AI assistant.' }, { role: 'user', content: 'What is the capital of France?' }];

let browser;

before(async () => {
  browser = await openBrowser({ alsoServe: ['tests/e2e/pages'] });
});

after(async () => {
  await browser?.close();
});

/** Requests the dev server answered for paths ending in `file`, by method. */
const served = (method, file) => browser.requests.filter((r) => r.method === method && r.url.split('?')[0].endsWith(file)).length;

/** `probe()` every 200 ms until `done(value)`, for up to 10 s; resolves to its last value. */
async function poll(probe, done) {
  let value = await probe();
  for (let i = 0; i < 50 && !done(value); i++) {
    await new Promise((r) => setTimeout(r, 200));
    value = await probe();
  }
  return value;
}

/** Opens the chat page (with a worker test hook, if any) and waits for its model. */
async function visit(hook = null) {
  const page = await browser.context.newPage();
  if (hook) await watchWorkers(page, hook);
  await page.goto(`${browser.base}?threads=2`);
  await waitReady(page);
  return page;
}

test('a returning visit reads the weights from OPFS, checked, and the wasm from the service worker\'s copy', async () => {
  const first = await visit();
  assert.match((await ask(first, 'What is the capital of France?')).raw, /Paris/);
  await first.close();
  const before = {
    weights: served('GET', 'model.safetensors'), tokenizer: served('GET', 'tokenizer.json'),
    wasm: served('GET', 'pkg-threads-relaxed/wick_bg.wasm'), heads: served('HEAD', 'pkg-threads-relaxed/wick_bg.wasm'),
  };
  assert.equal(before.weights, 1, 'the first visit downloads the weights once');

  const second = await visit();
  const status = await second.evaluate(() => document.getElementById('status').textContent);
  assert.match(status, /loaded from cache/);
  assert.match(status, /wasm relaxed-simd, 2 threads/);
  const kept = await second.evaluate(async () => (await import('/www/wick.js')).Wick.cache.list());
  // Every file of the model folder is kept in OPFS with the sha256 its manifest gives.
  const manifest = await (await fetch(`${browser.base.slice(0, -1)}${MLX}manifest.json`)).json();
  for (const [name, want] of Object.entries(manifest.files)) {
    const f = kept.find((k) => k.url.endsWith(`${MLX}${name}`));
    assert.deepEqual(f && [f.store, f.bytes, f.sha256], ['opfs', want.size, want.sha256], name);
  }
  assert.equal(served('GET', 'model.safetensors'), before.weights, 'no download of the weights');
  assert.equal(served('GET', 'tokenizer.json'), before.tokenizer);
  assert.equal(served('GET', 'pkg-threads-relaxed/wick_bg.wasm'), before.wasm, 'no download of the wasm');
  assert.equal(served('HEAD', 'pkg-threads-relaxed/wick_bg.wasm'), before.heads + 1, 'its ETag was asked');
  // The kept weights were not written since they were hashed at download: not hashed again.
  assert.equal(served('GET', 'www/sha256-worker.js'), 0, 'no kept copy was hashed again');
  assert.match((await ask(second, 'What is the capital of France?')).raw, /Paris/);
  await second.close();

  // Records kept before they held a last-modified time (earlier versions of Wick): the next
  // visit hashes those copies, finds them right and records the time, so later visits trust them.
  const records = (page, strip) => page.evaluate(async (strip) => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('weights');
    const out = [];
    for await (const [name, handle] of dir.entries()) {
      if (!name.endsWith('.json')) continue;
      const record = JSON.parse(await (await handle.getFile()).text());
      if (strip) {
        delete record.modified;
        const w = await handle.createWritable();
        await w.write(JSON.stringify(record));
        await w.close();
      }
      out.push(typeof record.modified === 'number');
    }
    return out;
  }, strip);
  const third = await visit();
  assert.ok((await records(third, true)).length >= 4);
  await third.close();
  const hashing = served('GET', 'www/sha256-worker.js');
  const fourth = await visit();
  assert.match((await ask(fourth, 'What is the capital of France?')).raw, /Paris/);
  assert.equal(served('GET', 'www/sha256-worker.js'), hashing + 1, 'the weights without a recorded time were hashed');
  // The hash runs beside the engine, the record is written after it.
  const timed = await poll(() => records(fourth, false), (t) => t.length && t.every(Boolean));
  assert.deepEqual(timed, timed.map(() => true), 'every record holds its time again');

  // The Storage panel's button clears OPFS too.
  await fourth.click('#clear-models');
  // (waitForFunction takes a promise for a truthy value: polled here instead.)
  const left = await poll(() => fourth.evaluate(async () => (await (await import('/www/wick.js')).Wick.cache.list()).length), (n) => n === 0);
  assert.equal(left, 0, 'the cache list is empty');
  assert.equal(await fourth.evaluate(async () => {
    const root = await navigator.storage.getDirectory();
    return root.getDirectoryHandle('weights').then(() => true, () => false);
  }), false);
  await fourth.close();
});

test('without OPFS the page keeps the model in the Cache API, reads it back from there, and answers', async () => {
  const first = await visit({ noOpfs: true });
  assert.match((await ask(first, 'What is the capital of France?')).raw, /Paris/);
  await first.close();
  const downloads = served('GET', 'model.safetensors');
  const second = await visit({ noOpfs: true });
  assert.match(await second.evaluate(() => document.getElementById('status').textContent), /loaded from cache/);
  assert.equal(served('GET', 'model.safetensors'), downloads, 'read from the Cache API');
  const stores = await second.evaluate(async () => [...new Set((await (await import('/www/wick.js')).Wick.cache.list()).map((f) => f.store))]);
  assert.deepEqual(stores, ['cache']);
  assert.match((await ask(second, 'What is the capital of France?')).raw, /Paris/);
  await second.evaluate(async () => (await import('/www/wick.js')).Wick.cache.clear());
  await second.close();
});

/**
 * A copy of the site that lacks the wasm builds `missing` (a first run of scripts/dev.sh before
 * its background builds are done): links into the checkout, served from a temporary root.
 */
function siteWithout(missing) {
  const root = mkdtempSync(join(tmpdir(), 'wick-builds-'));
  for (const f of ['index.html', 'sw.js', 'models']) symlinkSync(join(ROOT, f), join(root, f));
  mkdirSync(join(root, 'www'));
  for (const f of readdirSync('www')) if (!missing.includes(f)) symlinkSync(join(ROOT, 'www', f), join(root, 'www', f));
  mkdirSync(join(root, 'tests/e2e'), { recursive: true });
  symlinkSync(join(ROOT, 'tests/e2e/pages'), join(root, 'tests/e2e/pages'));
  return root;
}

test('the page runs only the wasm builds the server holds', async () => {
  const cases = [
    // The threaded builds without relaxed SIMD: two threads on the plain SIMD one.
    { missing: ['pkg-threads-relaxed', 'pkg-relaxed'], threads: 2, want: { simd: 'simd128', threads: 2 } },
    // Only the threaded relaxed build (what dev.sh builds first): one thread on it.
    { missing: ['pkg', 'pkg-threads', 'pkg-relaxed'], threads: 1, want: { simd: 'relaxed-simd', threads: 1 } },
  ];
  for (const { missing, threads, want } of cases) {
    const root = siteWithout(missing);
    const site = await openBrowser({ root, roots: [ROOT], alsoServe: ['tests/e2e/pages'] });
    try {
      const page = await site.context.newPage();
      await page.goto(`${site.base}tests/e2e/pages/api.html`);
      const r = await page.evaluate(async ({ model, threads, messages }) => {
        const { Wick } = await import('/www/wick.js');
        const engine = await Wick.load(model, { threads });
        const reply = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 16 });
        const { build } = engine.info;
        await engine.unload();
        return { build, answer: reply.choices[0].message.content };
      }, { model: MLX, threads, messages: FRANCE });
      assert.deepEqual(r.build, want, missing.join(', '));
      assert.match(r.answer, /Paris/);
      for (const dir of missing) assert.equal(site.requests.filter((q) => q.url.includes(`/www/${dir}/`) && q.status === 200).length, 0, dir);
    } finally {
      await site.close();
      rmSync(root, { recursive: true, force: true });
    }
  }
});

/** Every module `entry` imports, directly or not, as paths from the checkout, with its depth. */
function importGraph(entry) {
  const depth = new Map([[entry, 1]]);
  for (const file of depth.keys()) {
    const source = readFileSync(file, 'utf8');
    for (const [, a, b] of source.matchAll(/^(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|^import\s*['"](\.[^'"]+)['"]/gm)) {
      const dep = relative(ROOT, resolve(dirname(file), a ?? b));
      if (!depth.has(dep)) depth.set(dep, depth.get(file) + 1);
    }
  }
  depth.delete(entry);
  return depth;
}

test('a visit asks for its modules in one round: index.html preloads them all, worker.js names them all', () => {
  const preloaded = [...readFileSync('index.html', 'utf8').matchAll(/<link rel="modulepreload" href="([^"]+)">/g)].map((m) => m[1]);
  assert.deepEqual([...preloaded].sort(), [...importGraph('www/app.js').keys()].sort());
  const deeper = [...importGraph('www/worker.js')].filter(([, d]) => d > 2).map(([f]) => f);
  assert.deepEqual(deeper, [], 'modules worker.js reaches only through another');
});
