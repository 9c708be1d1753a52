// Native vs wasm on the real model: the last-position logits of the chat prompt, computed by
// the native CLI (`wick logits`) and by the single-threaded wasm builds in Chromium (simd128, and
// relaxed SIMD), must be the same to the bit for both the GGUF file and the MLX safetensors
// folder made from it: every kernel does its float arithmetic in one order on every target.
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

async function wasmLogits({ path, files }, pkg) {
  const prompt = readFileSync(PROMPT_FILE, 'utf8');
  return page.evaluate(async ({ path, files, prompt, pkg }) => {
    const mod = await import(`/www/${pkg}/wick.js`);
    await mod.default();
    const get = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
    const engine = files
      ? mod.WickEngine.fromFiles(files, await Promise.all(files.map((f) => get(`/${path}/${f}`))), null)
      : new mod.WickEngine(await get(`/${path}`));
    const logits = Array.from(engine.promptLogits(prompt));
    engine.free();
    return logits;
  }, { path, files, prompt, pkg });
}

const native = {};
for (const pkg of ['pkg', 'pkg-relaxed']) {
  for (const [name, model] of Object.entries(MODELS)) {
    test(`${name}, ${pkg}: native and wasm logits of the chat prompt are identical`, async () => {
      native[name] ??= nativeLogits(model.path);
      const wasm = await wasmLogits(model, pkg);
      assert.equal(wasm.length, native[name].length);
      const diff = native[name].reduce((m, v, i) => Math.max(m, Math.abs(v - wasm[i])), 0);
      console.log(`${name}, ${pkg}: max |native − wasm| = ${diff.toExponential(2)} over ${wasm.length} logits`);
      assert.equal(diff, 0, `${name}, ${pkg}: logits differ by up to ${diff}`);
    });
  }
}
