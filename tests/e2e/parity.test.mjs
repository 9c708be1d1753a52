// Native vs wasm on the real model: the last-position logits of the chat prompt, computed by
// the native CLI (`wick logits`) and by the single-threaded wasm build in Chromium, must agree
// within 1e-3 for both the GGUF file and the MLX safetensors folder made from it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { openBrowser } from './browser.mjs';

const PROMPT_FILE = 'tests/fixtures/chat_prompt.txt';
const MODELS = {
  gguf: { path: 'models/SmolLM2-135M-Instruct.Q4_1.gguf', files: null },
  mlx: {
    path: 'models/SmolLM2-135M-Instruct-MLX-4bit',
    files: ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'],
  },
};

let browser;
let page;

before(async () => {
  browser = await openBrowser();
  page = await browser.context.newPage();
  await page.goto(browser.base);
});

after(async () => {
  await browser?.close();
});

function nativeLogits(model) {
  const out = execFileSync('target/release/wick', ['logits', '--model', model, '--prompt-file', PROMPT_FILE], {
    maxBuffer: 64 << 20,
  });
  return JSON.parse(out);
}

async function wasmLogits({ path, files }) {
  const prompt = readFileSync(PROMPT_FILE, 'utf8');
  return page.evaluate(async ({ path, files, prompt }) => {
    const mod = await import('/www/pkg/wick.js');
    await mod.default();
    const get = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
    const engine = files
      ? mod.WickEngine.fromFiles(files, await Promise.all(files.map((f) => get(`/${path}/${f}`))), null)
      : new mod.WickEngine(await get(`/${path}`));
    const logits = Array.from(engine.promptLogits(prompt));
    engine.free();
    return logits;
  }, { path, files, prompt });
}

for (const [name, model] of Object.entries(MODELS)) {
  test(`${name}: native and wasm logits of the chat prompt agree within 1e-3`, async () => {
    const native = nativeLogits(model.path);
    const wasm = await wasmLogits(model);
    assert.equal(wasm.length, native.length);
    const diff = native.reduce((m, v, i) => Math.max(m, Math.abs(v - wasm[i])), 0);
    const argmax = (a) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);
    console.log(`${name}: max |native − wasm| = ${diff.toExponential(2)} over ${native.length} logits`);
    assert.ok(diff <= 1e-3, `${name}: logits differ by ${diff}`);
    assert.equal(argmax(wasm), argmax(native));
  });
}
