// Real models in headless Chromium, through the page and through Wick's API: Qwen2.5-Coder-0.5B
// (a chat model) and Gemma-3-270M (a base model, so the page runs it as text completion) answer
// exactly as llama.cpp does (tests/fixtures/real/*.llamacpp.json, greedy, on outputs without a
// near-tie), the page lists every model the dev server holds and names each model's
// architecture, quantization and context. With WICK_BIG_MODELS=1 the 1.5B answers too, in the
// single-threaded and the threaded build (scripts/fetch-models.sh qwen2.5-coder-1.5b).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { openBrowser, waitReady, ask } from './browser.mjs';
import { listModels } from '../../scripts/serve.mjs';

const QWEN = 'models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf';
const GEMMA = 'models/gemma-3-270m-q4_k_m.gguf';
const BIG = 'models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf';
const reference = (name) => JSON.parse(readFileSync(`tests/fixtures/real/${name}.llamacpp.json`, 'utf8'));
const greedy = (ref, id) => ref.greedy.find((g) => g.id === id);

let browser;

before(async () => {
  browser = await openBrowser({ alsoServe: ['tests/e2e/pages'] });
});

after(async () => {
  await browser?.close();
});

/** Opens the page on `model` and waits until it is ready; sets the settings given (by element id). */
async function openPage(model, settings = {}) {
  const page = await browser.context.newPage();
  await page.goto(`${browser.base}?model=${encodeURIComponent(model)}`);
  await waitReady(page, 300_000);
  await page.evaluate((s) => {
    for (const [id, value] of Object.entries(s)) document.getElementById(id).value = value;
  }, settings);
  return page;
}

test('Qwen2.5-Coder-0.5B answers in the page as llama.cpp does, and the menu lists every model', async () => {
  const ref = reference('qwen2.5-coder-0.5b').chat.find((c) => c.id === 'capital');
  // No system prompt: the model's template adds its own, as llama.cpp's chat completion does.
  const page = await openPage(QWEN, { system: '', max_tokens: '48' });
  const status = await page.textContent('#status');
  assert.match(status, /Ready: qwen2\.5-coder-0\.5b-instruct-q4_k_m\.gguf \(GGUF Q4_K_M, qwen2, 24 layers, context 4096 of 32768 tokens\) · chat · wasm relaxed-simd/);
  const reply = await ask(page, ref.messages[0].content);
  assert.equal(reply.raw, ref.reply);

  // The menu: every model in models/, as the dev server lists it, beside the page's own entries.
  const listed = await listModels(resolve('models'));
  assert.ok(listed.some((m) => m.path === QWEN) && listed.some((m) => m.path === GEMMA), JSON.stringify(listed));
  await page.waitForFunction(() => document.getElementById('model-choice').dataset.listed !== undefined);
  const options = await page.evaluate(() => [...document.getElementById('model-choice').options].map((o) => ({ value: o.value, label: o.textContent })));
  for (const m of listed) {
    const option = options.find((o) => o.value === m.path);
    assert.ok(option, `${m.path} is not in the menu: ${JSON.stringify(options)}`);
  }
  assert.equal(new Set(options.map((o) => o.value)).size, options.length, 'each model once');
  assert.match(options.find((o) => o.value === GEMMA).label, /^gemma-3-270m-q4_k_m\.gguf · GGUF · 253\.\d MB$/);
  assert.equal(await page.evaluate(() => document.getElementById('model-choice').value), QWEN);
  await page.close();
});

test('Gemma-3-270M, a base model, continues text in the page as llama.cpp does', async () => {
  const ref = greedy(reference('gemma3-270m'), 'recipe');
  const page = await openPage(GEMMA, { max_tokens: '24' });
  const status = await page.textContent('#status');
  assert.match(status, /Ready: gemma-3-270m-q4_k_m\.gguf \(GGUF Q4_K_M, gemma3, 18 layers, context 4096 of 32768 tokens\) · text completion \(base model, no chat template\)/);
  assert.match(await page.getAttribute('#input', 'placeholder'), /start of a text/);
  const reply = await ask(page, ref.prompt);
  assert.equal(reply.raw, ref.text);
  assert.match(reply.status, /24 tokens at [\d.]+ tok\/s/);
  // A second message is continued by itself (a base model has no conversation).
  const again = await ask(page, ref.prompt);
  assert.equal(again.raw, ref.text);
  await page.close();
});

/** Loads `model` through the API in a fresh page, runs `requests` (chat or completion bodies), and unloads it. */
async function viaApi(model, options, requests) {
  const page = await browser.context.newPage();
  await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  const r = await page.evaluate(async ({ model, options, requests }) => {
    const { Wick } = await import('/www/wick.js');
    const engine = await Wick.load(model, options);
    const out = [];
    for (const body of requests) {
      const res = body.messages ? await engine.chat.completions.create(body) : await engine.completions.create(body);
      out.push(body.messages ? res.choices[0].message.content : res.choices[0].text);
    }
    const { info } = engine;
    await engine.unload();
    return { info, out };
  }, { model, options, requests });
  await page.close();
  return r;
}

test('through the API: Gemma completes text in the single-threaded build, weights held once', async () => {
  const ref = greedy(reference('gemma3-270m'), 'recipe');
  const r = await viaApi(`/${GEMMA}`, { threads: 1 }, [{ prompt: ref.prompt, temperature: 0, max_tokens: 24, ignore_eos: true }]);
  assert.equal(r.out[0], ref.text);
  const { info } = r;
  assert.deepEqual(
    [info.architecture, info.quantization, info.chat_template, info.context_length, info.model_context_length, info.build.threads],
    ['gemma3', 'Q4_K_M', false, 4096, 32768, 1],
  );
  // Wasm memory after loading and answering: the file once, a KV cache (18 layers, one KV head
  // of 256, f32 keys and values, 4096 tokens at most: 151 MB) and working memory.
  const file = statSync(GEMMA).size;
  console.log(`gemma3-270m: wasm memory ${(info.memoryBytes / 1e6).toFixed(0)} MB for a ${(file / 1e6).toFixed(0)} MB file (${(info.memoryBytes / file).toFixed(2)}×)`);
  assert.ok(info.memoryBytes < 2 * file, `${info.memoryBytes} bytes of wasm memory for a ${file}-byte file`);
});

if (process.env.WICK_BIG_MODELS === '1') {
  // First, while the browser keeps no copy of the file: the judgement comes from its head.
  test('opt-in: the 1.5B with its whole 32768-token context is refused before its download', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${browser.base}tests/e2e/pages/api.html`);
    const seen = browser.requests.length;
    const e = await page.evaluate(async (model) => {
      const { Wick } = await import('/www/wick.js');
      return Wick.load(model, { contextLength: 32768 }).then(() => null, (e) => ({ code: e.code, message: e.message }));
    }, `/${BIG}`);
    await page.close();
    assert.equal(e?.code, 'out_of_memory');
    assert.match(e.message, /KV cache for 32768 tokens 2\.63 GiB.*Load it with a smaller contextLength \(about \d+ tokens fit\)/);
    const gets = browser.requests.slice(seen).filter((q) => q.method === 'GET' && q.url.endsWith('.gguf'));
    assert.deepEqual(gets.map((q) => q.status), [206], 'only the head was read');
  });

  for (const threads of [1, 2]) {
    test(`opt-in: Qwen2.5-Coder-1.5B answers as llama.cpp does, ${threads === 1 ? 'single-threaded build' : 'threaded build'}`, async () => {
      const ref = reference('qwen2.5-coder-1.5b');
      const chat = ref.chat.find((c) => c.id === 'capital');
      const code = greedy(ref, 'fibonacci');
      const r = await viaApi(`/${BIG}`, { threads }, [
        { messages: chat.messages, temperature: 0, max_tokens: 48 },
        { prompt: code.prompt, temperature: 0, max_tokens: 24, ignore_eos: true },
      ]);
      assert.equal(r.info.build.threads, threads);
      assert.deepEqual(r.out, [chat.reply, code.text]);
      const file = statSync(BIG).size;
      console.log(`qwen2.5-coder-1.5b, ${threads} thread(s): load ${r.info.loadSeconds.toFixed(1)} s, wasm memory ${(r.info.memoryBytes / 2 ** 30).toFixed(2)} GiB for a ${(file / 2 ** 30).toFixed(2)} GiB file`);
    });
  }
}
