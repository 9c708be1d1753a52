// Native vs wasm on the real models: the last-position logits of a prompt, computed by the
// native CLI (`wick logits`) and by the single-threaded wasm builds in Chromium (simd128, and
// relaxed SIMD), must be the same to the bit: for SmolLM2's chat prompt as a GGUF file and as
// the MLX safetensors folder made from it, and for one short prompt on Qwen2.5-Coder-0.5B and
// Gemma-3-270M (Q4_K_M: Q4_K, Q5_0, Q6_K and Q8_0 matrices). Every kernel does its float
// arithmetic in one order on every target.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBrowser } from './browser.mjs';

const CHAT_PROMPT = 'tests/fixtures/chat_prompt.txt';
/** A short raw prompt for the larger models (one prefill keeps the test quick). */
const SHORT_PROMPT = 'The capital of France is';
const MODELS = {
  gguf: { path: 'models/SmolLM2-135M-Instruct.Q4_1.gguf', files: null, prompt: CHAT_PROMPT },
  mlx: {
    path: 'models/SmolLM2-135M-Instruct-MLX-4bit',
    files: ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'],
    prompt: CHAT_PROMPT,
  },
  'qwen2.5-coder-0.5b': { path: 'models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf', files: null, prompt: null },
  'gemma3-270m': { path: 'models/gemma-3-270m-q4_k_m.gguf', files: null, prompt: null },
};
let tmp;

let browser;
let page;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'wick-parity-'));
  const short = join(tmp, 'short_prompt.txt');
  writeFileSync(short, SHORT_PROMPT);
  for (const m of Object.values(MODELS)) m.prompt ??= short;
  browser = await openBrowser();
  page = await browser.context.newPage();
  await page.goto(browser.base);
});

after(async () => {
  await browser?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function nativeLogits({ path, prompt }) {
  const out = execFileSync('target/release/wick', ['logits', '--model', path, '--prompt-file', prompt], {
    maxBuffer: 64 << 20,
  });
  return JSON.parse(out);
}

async function wasmLogits({ path, files, prompt: promptFile }, pkg) {
  const prompt = readFileSync(promptFile, 'utf8');
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
    test(`${name}, ${pkg}: native and wasm logits of ${model.prompt === CHAT_PROMPT ? 'the chat prompt' : 'a short prompt'} are identical`, async () => {
      native[name] ??= nativeLogits(model);
      const wasm = await wasmLogits(model, pkg);
      assert.equal(wasm.length, native[name].length);
      const diff = native[name].reduce((m, v, i) => Math.max(m, Math.abs(v - wasm[i])), 0);
      console.log(`${name}, ${pkg}: max |native − wasm| = ${diff.toExponential(2)} over ${wasm.length} logits`);
      assert.equal(diff, 0, `${name}, ${pkg}: logits differ by up to ${diff}`);
    });
  }
}
