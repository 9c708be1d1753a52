// Browser benchmark: Wick's engine worker in headless Debian Chromium against the dev server,
// on the default model. Prints one table of medians.
//   node scripts/bench-browser.mjs [--runs 3] [--decode 128]
import { readFileSync, statSync } from 'node:fs';
import { openBrowser, waitReady } from '../tests/e2e/browser.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const RUNS = arg('--runs', 3);
const DECODE = arg('--decode', 128);
const MODEL = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
const BENCH_PROMPT = readFileSync(new URL('../tests/fixtures/bench_prompt.txt', import.meta.url), 'utf8');
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

const browser = await openBrowser();
try {
  const page = await browser.context.newPage();
  await page.goto(browser.base);
  await waitReady(page); // first visit: downloads and caches the weights

  // Drive a fresh engine worker directly (the same worker.js the app uses) with a raw prompt.
  const runs = await page.evaluate(async ({ model, prompt, decode, runs }) => {
    const worker = new Worker('/www/worker.js', { type: 'module' });
    const next = (type) => new Promise((resolve, reject) => {
      worker.onmessage = ({ data }) => {
        if (data.type === 'error') reject(new Error(data.message));
        else if (data.type === type) resolve(data);
      };
    });
    const ready = next('ready');
    worker.postMessage({ type: 'load-url', url: new URL(model, location.href).href });
    const { loadSeconds, source } = await ready;
    const out = [];
    for (let i = 0; i < runs; i++) {
      worker.postMessage({ type: 'reset' });
      const done = next('done');
      worker.postMessage({ type: 'generate', id: i, raw: prompt, params: { temperature: 0, max_tokens: decode, ignore_eog: true } });
      const { stats } = await done;
      out.push({ ...stats, loadSeconds, source });
    }
    worker.terminate();
    return out;
  }, { model: MODEL, prompt: BENCH_PROMPT, decode: DECODE, runs: RUNS });

  // Time from opening the page to the first token of a chat reply, weights in the browser cache.
  const ttft = [];
  for (let i = 0; i < RUNS; i++) {
    const p = await browser.context.newPage();
    await p.goto(browser.base);
    await waitReady(p);
    await p.fill('#input', 'What is the capital of France?');
    await p.click('#send');
    await p.waitForFunction(() => (document.querySelector('#messages .msg.assistant')?.textContent.length ?? 0) > 0, null, { polling: 'raf', timeout: 120_000 });
    ttft.push(await p.evaluate(() => performance.now() / 1000));
    await p.close();
  }

  const prefill = runs.map((r) => r.prefilled_tokens / r.prefill_seconds);
  const decodeRate = runs.map((r) => r.generated_tokens / r.decode_seconds);
  const wasmBytes = statSync(new URL('../www/pkg/wick_bg.wasm', import.meta.url)).size;
  const version = await page.evaluate(() => navigator.userAgent.match(/Chrome\/[\d.]+/)?.[0]);
  console.log(`| metric (Wick in ${version}, wasm simd128, 1 thread, median of ${RUNS}) | value |`);
  console.log('|---|---|');
  console.log(`| prefill tok/s (${runs[0].prefilled_tokens}-token bench_prompt) | ${median(prefill).toFixed(1)} |`);
  console.log(`| decode tok/s (${DECODE} greedy tokens) | ${median(decodeRate).toFixed(1)} |`);
  console.log(`| model load in the worker, weights from ${runs[0].source} (s) | ${median(runs.map((r) => r.loadSeconds)).toFixed(2)} |`);
  console.log(`| page open → first token, warm cache (s) | ${median(ttft).toFixed(2)} |`);
  console.log(`| wasm size (bytes) | ${wasmBytes} |`);
} finally {
  await browser.close();
}
