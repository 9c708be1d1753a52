// Loading models in headless Chromium through Wick's API: from another origin (a mock of the
// Hugging Face hub that redirects to its CDN), the browser's cache of model files (Wick.cache),
// an aborted download, a full storage quota, a model too big to load, and load errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openBrowser, watchWorkers } from './browser.mjs';
import { startMockHub } from './mock-hub.mjs';

const MLX = resolve('models/SmolLM2-135M-Instruct-MLX-4bit');
const MODELS = resolve('models');
const GGUF = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const REPO = 'HuggingFaceTB/SmolLM2-135M-Instruct';
const FRANCE = [{ role: 'system', content: 'You are a helpful AI assistant.' }, { role: 'user', content: 'What is the capital of France?' }];

let browser;
let page;
let hub;
let slowHub;
let jinjaFolder;
/** A plain ChatML template, unlike SmolLM2's own (which adds a default system prompt). */
const CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** The head of a GGUF v3 file: its metadata (strings and u32s), no tensors. */
function ggufHead(meta) {
  const str = (t) => {
    const b = Buffer.from(t);
    const n = Buffer.alloc(8);
    n.writeBigUInt64LE(BigInt(b.length));
    return Buffer.concat([n, b]);
  };
  const u32 = (v) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };
  const counts = Buffer.alloc(16);
  counts.writeBigUInt64LE(BigInt(Object.keys(meta).length), 8);
  const kvs = Object.entries(meta).map(([k, v]) => Buffer.concat([str(k), ...(typeof v === 'string' ? [u32(8), str(v)] : [u32(4), u32(v)])]));
  return Buffer.concat([Buffer.from('GGUF'), u32(3), counts, ...kvs]);
}

const inPage = (fn, arg) => page.evaluate(fn, arg);

/** A fresh API page whose engine workers each get `hook` (the worker's `__test` message) before anything else. */
async function pageWithWorkerHook(hook) {
  const p = await browser.context.newPage();
  await watchWorkers(p, hook);
  await p.goto(`${browser.base}tests/e2e/pages/api.html`);
  return p;
}
/** GETs the hub answered for paths matching `re`. */
const gets = (h, re) => h.requests.filter((r) => r.method === 'GET' && re.test(r.url));

before(async () => {
  browser = await openBrowser({ alsoServe: ['tests/e2e/pages'] });
  // The default model with its chat template moved out of tokenizer_config.json into chat_template.jinja.
  jinjaFolder = mkdtempSync(join(tmpdir(), 'wick-jinja-'));
  for (const f of ['config.json', 'tokenizer.json', 'model.safetensors']) symlinkSync(join(MLX, f), join(jinjaFolder, f));
  const config = JSON.parse(readFileSync(join(MLX, 'tokenizer_config.json'), 'utf8'));
  delete config.chat_template;
  writeFileSync(join(jinjaFolder, 'tokenizer_config.json'), JSON.stringify(config));
  writeFileSync(join(jinjaFolder, 'chat_template.jinja'), CHATML);
  hub = await startMockHub({
    repos: { [REPO]: MLX, 'second-state/SmolLM2-GGUF': MODELS, 'huge/model': MODELS, 'templates/SmolLM2-jinja': jinjaFolder },
    revisions: ['main', 'v1.0'],
    declared: {
      'huge/model/huge.gguf': 5e12,
      // 1.5 GB of weights (fits), and a KV cache for 4096 tokens that does not fit beside them.
      'huge/model/deep.gguf': { size: 1.5e9, head: ggufHead({ 'general.architecture': 'llama', 'general.file_type': 15, 'llama.block_count': 80, 'llama.context_length': 32768, 'llama.embedding_length': 8192, 'llama.attention.head_count': 64, 'llama.attention.head_count_kv': 8 }) },
    },
  });
  // 20 MB/s: the 100 MB weights take seconds, so an abort lands mid-file.
  slowHub = await startMockHub({ repos: { 'slow/SmolLM2': MLX }, throttle: 20e6 });
  page = await browser.context.newPage();
  await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  await inPage(async () => {
    window.W = await import('/www/wick.js');
    window.ask = async (engine, messages) => (await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 24 })).choices[0].message.content;
  });
});

after(async () => {
  await browser?.close();
  await hub?.close();
  await slowHub?.close();
  if (jinjaFolder) rmSync(jinjaFolder, { recursive: true, force: true });
});

test('a hub repo loads from another origin through its CDN redirect; Wick.cache lists it and deletes it', async () => {
  const r = await inPage(async ({ repo, hubUrl, messages }) => {
    const { Wick } = window.W;
    const engine = await Wick.load(repo, { hubUrl, threads: 1 });
    const answer = await window.ask(engine, messages);
    const info = engine.info;
    await engine.unload();
    return { answer, info, list: await Wick.cache.list() };
  }, { repo: REPO, hubUrl: hub.url, messages: FRANCE });
  assert.match(r.answer, /Paris/);
  assert.equal(r.info.id, REPO);
  assert.equal(r.info.source, 'network');
  // Each file: a HEAD and a GET, both redirected from /resolve/main/ to /cdn/.
  for (const file of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']) {
    assert.ok(hub.requests.some((q) => q.method === 'HEAD' && q.url === `/${REPO}/resolve/main/${file}` && q.status === 302), file);
    assert.equal(gets(hub, new RegExp(`^/cdn/${REPO}/${file.replace('.', '\\.')}$`)).length, 1, file);
  }
  assert.ok(!hub.requests.some((q) => q.url.endsWith('/chat_template.jinja')), 'tokenizer_config.json has the template');
  const cdn = `${hub.url}/cdn/${REPO}/`;
  const kept = r.list.filter((f) => f.url.startsWith(cdn)).sort((a, b) => (a.url < b.url ? -1 : 1));
  assert.deepEqual(kept.map((f) => f.url.slice(cdn.length)), ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  for (const f of kept) {
    assert.equal(f.bytes, statSync(`${MLX}/${f.url.slice(cdn.length)}`).size, f.url);
    assert.ok(Math.abs(f.cachedAt - Date.now()) < 300_000, String(f.cachedAt));
  }
  assert.ok(!r.list.some((f) => f.url.includes('/resolve/')), 'the cache key is the resolved file');

  // The same files under another revision's URLs are not downloaded again (the manifest, which
  // this repo lacks, is asked for on every load: it is never kept).
  const files = /^\/cdn\/(?!.*\/manifest\.json$)/;
  const before = gets(hub, files).length;
  const again = await inPage(async ({ repo, hubUrl, messages }) => {
    const engine = await window.W.Wick.load(repo, { hubUrl, revision: 'v1.0', threads: 1 });
    const answer = await window.ask(engine, messages);
    const { source } = engine.info;
    await engine.unload();
    return { answer, source };
  }, { repo: REPO, hubUrl: hub.url, messages: FRANCE });
  assert.deepEqual(again, { answer: r.answer, source: 'cache' });
  assert.equal(gets(hub, files).length, before);

  const weights = `${hub.url}/${REPO}/resolve/main/model.safetensors`;
  const d = await inPage(async ({ weights, other, cdn }) => {
    const { cache } = window.W.Wick;
    const had = [await cache.has(weights), await cache.has(other), await cache.has(cdn)];
    const deleted = await cache.delete(weights);
    return {
      had, deleted,
      has: [await cache.has(weights), await cache.has(other), await cache.has(cdn)],
      again: await cache.delete(cdn),
      list: (await cache.list()).map((f) => f.url),
      estimate: await cache.estimate(),
    };
  }, { weights, other: weights.replace('/main/', '/v1.0/'), cdn: `${cdn}model.safetensors` });
  assert.deepEqual(d.had, [true, true, true]);
  assert.equal(d.deleted, true);
  assert.deepEqual(d.has, [false, false, false], 'the file and every URL that led to it are forgotten');
  assert.equal(d.again, false);
  assert.ok(!d.list.includes(`${cdn}model.safetensors`));
  assert.ok(d.list.includes(`${cdn}config.json`));
  assert.ok(d.estimate.quota > 0 && d.estimate.usage > 0, JSON.stringify(d.estimate));
  assert.ok(d.estimate.models > 0 && d.estimate.models < d.estimate.usage * 2, JSON.stringify(d.estimate));
});

test('a folder whose chat template is in chat_template.jinja renders with it', async () => {
  const r = await inPage(async ({ hubUrl, repo }) => {
    const { Wick } = window.W;
    const load = async (name) => {
      const engine = await Wick.load(name, { hubUrl, threads: 1 });
      const reply = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], temperature: 0, max_tokens: 2 });
      const chatml = await engine.tokenize('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
      await engine.unload();
      return { prompt: reply.usage.prompt_tokens, chatml: chatml.length };
    };
    return { jinja: await load('templates/SmolLM2-jinja'), own: await load(repo) };
  }, { hubUrl: hub.url, repo: REPO });
  assert.equal(r.jinja.prompt, r.jinja.chatml, 'the prompt is exactly chat_template.jinja\'s rendering');
  assert.ok(r.own.prompt > r.own.chatml + 5, 'SmolLM2\'s own template adds its default system prompt');
  assert.ok(hub.requests.some((q) => q.method === 'GET' && q.url === '/cdn/templates/SmolLM2-jinja/chat_template.jinja' && q.status === 200));
});

test('aborting a download mid-file rejects with WickError(aborted) and keeps nothing half-downloaded', async () => {
  const r = await inPage(async ({ hubUrl }) => {
    const { Wick } = window.W;
    const controller = new AbortController();
    const seen = [];
    let error = null;
    try {
      await Wick.load('slow/SmolLM2', {
        hubUrl, signal: controller.signal,
        onProgress: (p) => {
          seen.push(p.loaded);
          if (p.file.endsWith('model.safetensors') && p.loaded > 10e6) controller.abort();
        },
      });
    } catch (e) {
      error = { name: e.name, code: e.code, message: e.message };
    }
    return { error, list: await Wick.cache.list(), seen: seen.at(-1) };
  }, { hubUrl: slowHub.url });
  assert.deepEqual({ name: r.error.name, code: r.error.code }, { name: 'WickError', code: 'aborted' });
  assert.ok(r.seen < 60e6, `aborted after ${r.seen} bytes`);
  const mine = r.list.filter((f) => f.url.startsWith(slowHub.url));
  assert.ok(!mine.some((f) => f.url.endsWith('model.safetensors')), JSON.stringify(mine));
  // Whole small files may stay: each one whole.
  for (const f of mine) assert.equal(f.bytes, statSync(`${MLX}/${f.url.split('/').pop()}`).size, f.url);
  assert.equal(gets(slowHub, /model\.safetensors$/).length, 1, 'the download had started');
});

test('a full storage quota is WickError(quota), and the model still runs from memory', async () => {
  const cdp = await browser.context.newCDPSession(page);
  const origin = new URL(browser.base).origin;
  await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 1_000_000 });
  try {
    const r = await inPage(async ({ hubUrl, messages, file }) => {
      const { Wick } = window.W;
      const errors = [];
      const engine = await Wick.load(`second-state/SmolLM2-GGUF/${file}`, { hubUrl, threads: 1, onCacheError: (e) => errors.push({ name: e.name, code: e.code, message: e.message }) });
      const answer = await window.ask(engine, messages);
      const { info } = engine;
      await engine.unload();
      return { errors, answer, info, has: await Wick.cache.has(`${hubUrl}/second-state/SmolLM2-GGUF/resolve/main/${file}`) };
    }, { hubUrl: hub.url, messages: FRANCE, file: GGUF });
    assert.equal(r.errors.length, 1, JSON.stringify(r.errors));
    assert.deepEqual({ name: r.errors[0].name, code: r.errors[0].code }, { name: 'WickError', code: 'quota' });
    assert.match(r.errors[0].message, /storage, which is full.*runs from memory/);
    assert.match(r.answer, /Paris/);
    assert.equal(r.info.format, 'GGUF');
    assert.equal(r.info.id, `second-state/SmolLM2-GGUF/${GGUF}`);
    assert.equal(r.has, false);
  } finally {
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });
    await cdp.detach();
  }
});

test('pre-flight for the store: a file larger than the room the storage reports is not kept, and onCacheError says so before the download', async () => {
  // 1 MB left in the storage.
  const full = await pageWithWorkerHook({ action: 'storage-left', bytes: 1_000_000 });
  const r = await full.evaluate(async ({ hubUrl, file, messages }) => {
    const { Wick } = await import('/www/wick.js');
    const errors = [];
    const url = `${hubUrl}/second-state/SmolLM2-GGUF/resolve/main/${file}`;
    await Wick.cache.delete(url);
    let progressAtError = null;
    let loaded = 0;
    const engine = await Wick.load(`second-state/SmolLM2-GGUF/${file}`, {
      hubUrl, threads: 1,
      onProgress: (p) => { if (p.phase === 'download') loaded = p.loaded; },
      onCacheError: (e) => { errors.push({ code: e.code, message: e.message }); progressAtError ??= loaded; },
    });
    const reply = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 24 });
    await engine.unload();
    return { errors, progressAtError, answer: reply.choices[0].message.content, has: await Wick.cache.has(url) };
  }, { hubUrl: hub.url, file: GGUF, messages: FRANCE });
  await full.close();
  assert.equal(r.errors.length, 1, JSON.stringify(r.errors));
  assert.equal(r.errors[0].code, 'quota');
  assert.match(r.errors[0].message, /storage, which is full \(1\.0 MB left for this site, 98\.\d MB needed\); it runs from memory/);
  assert.equal(r.progressAtError, 0, 'said before any byte was downloaded');
  assert.match(r.answer, /Paris/);
  assert.equal(r.has, false);
});

test('a model too big for wasm memory is refused before it is downloaded', async () => {
  const e = await inPage(async (hubUrl) => {
    try {
      await window.W.Wick.load('huge/model/huge.gguf', { hubUrl });
      return null;
    } catch (e) {
      return { code: e.code, message: e.message };
    }
  }, hub.url);
  assert.equal(e.code, 'out_of_memory');
  assert.match(e.message, /4656\.6 GiB; a model in the browser must fit in 4 GiB/);
  assert.equal(gets(hub, /huge\.gguf$/).length, 0);
});

test('pre-flight: a model larger than the device reports is refused before it is downloaded; a trial grow tells what wasm memory the browser grants', async () => {
  // A 1 GiB device.
  const small = await pageWithWorkerHook({ action: 'device-memory', gib: 1 });
  const before = hub.requests.length;
  const r = await small.evaluate(async (hubUrl) => {
    const { Wick } = await import('/www/wick.js');
    const { canReserve } = await import('/www/memory.js');
    let refused = null;
    try {
      await Wick.load('huge/model/deep.gguf', { hubUrl, contextLength: 1024, threads: 1 });
    } catch (e) {
      refused = { code: e.code, message: e.message };
    }
    return { refused, small: canReserve(64 * 2 ** 20), beyond: canReserve(5 * 2 ** 30) };
  }, hub.url);
  await small.close();
  assert.equal(r.refused?.code, 'out_of_memory', JSON.stringify(r.refused));
  assert.match(r.refused.message, /deep\.gguf needs about 3\.\d\d GiB of WebAssembly memory .*more than this device's 1\.00 GiB of memory/);
  // Only the head of the file was read (a ranged GET): nothing was downloaded.
  const deep = hub.requests.slice(before).filter((q) => q.method === 'GET' && q.url.endsWith('/deep.gguf'));
  assert.deepEqual(deep.map((q) => q.status), [206]);
  assert.equal(r.small, true);
  assert.equal(r.beyond, false);
});

test('a model whose KV cache would not fit is refused before it is downloaded, and the tab goes on', async () => {
  const before = hub.requests.length;
  const r = await inPage(async ({ hubUrl, gguf, messages }) => {
    const attempt = async (options) => {
      try {
        await window.W.Wick.load('huge/model/deep.gguf', { hubUrl, ...options });
        return null;
      } catch (e) {
        return { code: e.code, message: e.message };
      }
    };
    const refused = await attempt({});
    // With a shorter context it fits: the download starts (and fails, the hub sends nothing).
    const shorter = await attempt({ contextLength: 1024 });
    // The tab still works: another model loads and answers.
    const engine = await window.W.Wick.load(gguf, { threads: 1 });
    const answer = await window.ask(engine, messages);
    await engine.unload();
    return { refused, shorter, answer };
  }, { hubUrl: hub.url, gguf: `/models/${GGUF}`, messages: FRANCE });
  assert.equal(r.refused.code, 'out_of_memory');
  assert.match(r.refused.message, /deep\.gguf needs about 6\.61 GiB of WebAssembly memory \(weights 1\.40 GiB \+ KV cache for 4096 tokens 3\.75 GiB \+ working memory 1\.46 GiB\)/);
  assert.match(r.refused.message, /more than the 4\.00 GiB a wasm engine in this browser can have\. Load it with a smaller contextLength \(about 1024 tokens fit\)/);
  assert.equal(r.shorter.code, 'network', r.shorter.message);
  assert.match(r.answer, /Paris/);
  // Each attempt read the file's head (a ranged GET, 206); only the one that fits asked for all of it.
  const deep = hub.requests.slice(before).filter((q) => q.method === 'GET' && q.url.endsWith('/deep.gguf'));
  assert.deepEqual(deep.map((q) => q.status), [206, 206, 500]);
});

test('load errors say what is wrong', async () => {
  // A tiny GGUF whose architecture is renamed to one Wick does not run.
  const gguf = readFileSync('tests/fixtures/hf/llama2/model.gguf');
  const at = gguf.indexOf('llama', gguf.indexOf('general.architecture'));
  gguf.write('bloom', at);
  const r = await inPage(async ({ hubUrl, base, bloom }) => {
    const { Wick } = window.W;
    const attempt = async (model, options) => {
      try {
        const engine = await Wick.load(model, options);
        await engine.unload();
        return null;
      } catch (e) {
        return { name: e.name, code: e.code, message: e.message };
      }
    };
    return {
      missingRepo: await attempt('nobody/nothing', { hubUrl }),
      missingFile: await attempt('/models/nothing.gguf'),
      notGguf: await attempt('/www/wick.d.ts'),
      noServer: await attempt('http://127.0.0.1:9/model.gguf'),
      notAModel: await attempt('models/x.gguf', { hubUrl }),
      badOption: await attempt('/models/x.gguf', { thread: 2 }),
      badFile: await attempt([new File(['hello'], 'notes.gguf')]),
      unsupported: await attempt(new File([new Uint8Array(bloom)], 'bloom.gguf')),
      base,
    };
  }, { hubUrl: hub.url, base: browser.base, bloom: [...gguf] });
  const expect = {
    missingRepo: ['model_not_found', /nobody\/nothing\/resolve\/main\/config\.json does not exist \(HTTP 404\)/],
    missingFile: ['model_not_found', /models\/nothing\.gguf does not exist/],
    notGguf: ['model_format', /not a GGUF file/],
    noServer: ['network', /Could not download http:\/\/127\.0\.0\.1:9\/model\.gguf/],
    notAModel: ['model_not_found', /models\/x\.gguf\/resolve\/main\/config\.json does not exist.*read as a hub repo id; for a file on this site write "\.\/models\/x\.gguf"/],
    badOption: ['invalid_request', /Unknown load option thread/],
    badFile: ['model_format', /not a GGUF file/],
    unsupported: ['unsupported', /unsupported architecture `bloom`/],
  };
  for (const [name, [code, message]] of Object.entries(expect)) {
    assert.equal(r[name]?.name, 'WickError', name);
    assert.equal(r[name].code, code, `${name}: ${r[name].message}`);
    assert.match(r[name].message, message, name);
  }
});
