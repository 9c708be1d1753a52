// Browser benchmark: Wick (through its public API, www/wick.js) and wllama (llama.cpp in wasm, npm @wllama/wllama) in
// the same headless Debian Chromium, against the dev server, at 1 and 2 threads: Wick on the
// app's default model (the MLX 4-bit safetensors folder) and on the GGUF it was made from,
// wllama on the GGUF. Prints one table of medians with Wick/wllama ratios.
// --model PATH benchmarks another GGUF under models/ (the real models of scripts/fetch-models.sh)
// the same way, Wick on the GGUF alone: prefill and decode tok/s, load time and peak memory.
//   node scripts/bench-browser.mjs [--model models/X.gguf] [--runs 3] [--decode 128] [--no-wllama] [--simd simd128]
import { readFileSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { openBrowser, waitReady } from '../tests/e2e/browser.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const RUNS = arg('--runs', 3);
const DECODE = arg('--decode', 128);
const THREADS = [1, 2];
// --no-wllama: Wick's rows only (a quick check while working on the kernels).
const WLLAMA = !process.argv.includes('--no-wllama');
// --simd simd128: the plain-SIMD builds (what browsers without relaxed SIMD run).
const SIMD = process.argv.includes('--simd') ? process.argv[process.argv.indexOf('--simd') + 1] : 'relaxed';
const MODEL_ARG = process.argv.includes('--model') ? process.argv[process.argv.indexOf('--model') + 1] : null;
const MODEL = MODEL_ARG ?? 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
// The page's default model is benchmarked beside its GGUF unless --model names another model.
const DEFAULT_MODEL = MODEL_ARG ? null : 'models/SmolLM2-135M-Instruct-MLX-4bit/';
const BENCH_PROMPT = readFileSync(new URL('../tests/fixtures/bench_prompt.txt', import.meta.url), 'utf8');
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const modelBytes = statSync(new URL(`../${MODEL}`, import.meta.url)).size;

/** Resident memory of Chromium's renderer processes, in bytes (largest one). */
function rendererRss() {
  const out = execFileSync('ps', ['-eo', 'rss=,args='], { encoding: 'utf8' });
  const rss = out.split('\n').filter((l) => l.includes('--type=renderer')).map((l) => Number(l.trim().split(/\s+/)[0]) * 1024);
  return Math.max(0, ...rss);
}

/** Raw-prompt runs in a fresh engine (Wick's public API) with `threads` threads. */
async function engineRuns(page, threads, model) {
  return page.evaluate(async ({ model, prompt, decode, runs, threads, simd }) => {
    const { Wick } = await import('/www/wick.js');
    const engine = await Wick.load(new URL(model, location.origin + '/').href, { threads, simd });
    const { loadSeconds, source, build } = engine.info;
    const out = [];
    for (let i = 0; i < runs; i++) {
      // cache_prompt: false runs the whole prompt each time.
      const { timings } = await engine.completions.create({ prompt, temperature: 0, max_tokens: decode, ignore_eos: true, cache_prompt: false });
      out.push({
        prefilled_tokens: timings.prompt_n, prefill_seconds: timings.prompt_ms / 1000,
        generated_tokens: timings.predicted_n, decode_seconds: timings.predicted_ms / 1000,
        loadSeconds, source, memoryBytes: engine.info.memoryBytes, threads: build.threads, simd: build.simd,
      });
    }
    await engine.unload();
    return out;
  }, { model, prompt: BENCH_PROMPT, decode: DECODE, runs: RUNS, threads, simd: SIMD });
}

/** The same measurements for wllama: raw completion of the same prompt, greedy, EOS ignored. */
async function wllamaRuns(page, threads) {
  return page.evaluate(async ({ model, prompt, decode, runs, threads }) => {
    const { Wllama } = await import('/node_modules/@wllama/wllama/esm/index.js');
    const wllama = new Wllama({ default: '/node_modules/@wllama/wllama/esm/wasm/wllama.wasm' }, { suppressNativeLog: true });
    const url = new URL(model, location.origin + '/').href;
    const cached = await (await caches.open('wick-models-v1')).match(url);
    const blob = await (cached ?? (await fetch(url))).blob();
    const t0 = performance.now();
    await wllama.loadModel([blob], { n_threads: threads, n_ctx: 1024, n_gpu_layers: 0 });
    const loadSeconds = (performance.now() - t0) / 1000;
    const out = [];
    for (let i = 0; i < runs; i++) {
      const r = await wllama.createCompletion({ prompt, max_tokens: decode, temperature: 0, ignore_eos: true, cache_prompt: false });
      out.push({ ...r.timings, loadSeconds });
    }
    await wllama.exit();
    return out;
  }, { model: MODEL, prompt: BENCH_PROMPT, decode: DECODE, runs: RUNS, threads });
}

/** Seconds from opening the page to the first token of a chat reply (weights cached). */
async function timeToFirstToken(context, base, threads) {
  const page = await context.newPage();
  await page.goto(`${base}?threads=${threads}&simd=${SIMD}${MODEL_ARG ? `&model=${encodeURIComponent(MODEL_ARG)}` : ''}`);
  await waitReady(page);
  await page.fill('#input', 'What is the capital of France?');
  await page.click('#send');
  await page.waitForFunction(() => (document.querySelector('#messages .msg.assistant')?.textContent.length ?? 0) > 0, null, { polling: 'raf', timeout: 120_000 });
  const t = await page.evaluate(() => performance.now() / 1000);
  await page.close();
  return t;
}

const browser = await openBrowser({ alsoServe: ['node_modules', 'tests/e2e/pages'] });
const rows = {};
try {
  const page = await browser.context.newPage();
  if (MODEL_ARG) {
    // A blank page: no engine of the app's sits in the renderer while the runs are measured.
    await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  } else {
    await page.goto(browser.base);
    await waitReady(page); // the first visit downloads and caches the weights
  }
  // The GGUF too, so every load below reads cached weights.
  await page.evaluate(async (url) => {
    const cache = await caches.open('wick-models-v1');
    if (!(await cache.match(url))) await cache.add(url);
  }, new URL(MODEL, browser.base).href);
  for (const threads of THREADS) {
    const gg = await engineRuns(page, threads, MODEL);
    const ggRss = rendererRss();
    const runs = DEFAULT_MODEL ? await engineRuns(page, threads, DEFAULT_MODEL) : gg;
    const rss = DEFAULT_MODEL ? rendererRss() : ggRss;
    const ttft = [];
    for (let i = 0; i < RUNS; i++) ttft.push(await timeToFirstToken(browser.context, browser.base, threads));
    const memory = Math.max(...runs.map((r) => r.memoryBytes));
    const none = { prompt_per_second: NaN, predicted_per_second: NaN, loadSeconds: NaN, prompt_n: 0, predicted_n: 0 };
    const wl = WLLAMA ? await wllamaRuns(page, threads) : [none];
    const wlRss = rendererRss();
    const wlPrefill = median(wl.map((r) => r.prompt_per_second));
    const wlDecode = median(wl.map((r) => r.predicted_per_second));
    const prefill = median(runs.map((r) => r.prefilled_tokens / r.prefill_seconds));
    const decode = median(runs.map((r) => r.generated_tokens / r.decode_seconds));
    const ggPrefill = median(gg.map((r) => r.prefilled_tokens / r.prefill_seconds));
    const ggDecode = median(gg.map((r) => r.generated_tokens / r.decode_seconds));
    const ggMemory = Math.max(...gg.map((r) => r.memoryBytes));
    rows[threads] = {
      ggPrefill: ggPrefill.toFixed(1),
      ggDecode: ggDecode.toFixed(1),
      ggLoad: median(gg.map((r) => r.loadSeconds)).toFixed(2),
      ggMemory: `${(ggMemory / 1e6).toFixed(0)} MB (${(ggMemory / modelBytes).toFixed(2)}×)`,
      ggRss: `${(ggRss / 1e6).toFixed(0)} MB`,
      ggRatioPrefill: `${(ggPrefill / wlPrefill).toFixed(2)}×`,
      ggRatioDecode: `${(ggDecode / wlDecode).toFixed(2)}×`,
      ggBuild: `${gg[0].threads === 1 ? 'single-threaded' : `threaded (${gg[0].threads} workers)`}, ${gg[0].simd}`,
      ggRatio: `${(ggPrefill / wlPrefill).toFixed(1)}× / ${(ggDecode / wlDecode).toFixed(1)}×`,
      wlPrefill: `${wlPrefill.toFixed(1)} (${wl[0].prompt_n} tok)`,
      wlDecode: `${wlDecode.toFixed(1)} (${wl[0].predicted_n} tok)`,
      wlLoad: median(wl.map((r) => r.loadSeconds)).toFixed(2),
      wlRss: `${(wlRss / 1e6).toFixed(0)} MB`,
      prefillRatio: `${(prefill / wlPrefill).toFixed(1)}×`,
      decodeRatio: `${(decode / wlDecode).toFixed(1)}×`,
      build: `${runs[0].threads === 1 ? 'single-threaded' : `threaded (${runs[0].threads} workers)`}, ${runs[0].simd}`,
      prefill: prefill.toFixed(1),
      decode: decode.toFixed(1),
      load: median(runs.map((r) => r.loadSeconds)).toFixed(2),
      ttft: median(ttft).toFixed(2),
      memory: `${(memory / 1e6).toFixed(0)} MB (${(memory / modelBytes).toFixed(2)}×)`,
      rss: `${(rss / 1e6).toFixed(0)} MB`,
    };
  }
  const version = await page.evaluate(() => navigator.userAgent.match(/Chrome\/[\d.]+/)?.[0]);
  const line = (label, key) => console.log(`| ${label} | ${THREADS.map((t) => rows[t][key]).join(' | ')} |`);
  if (MODEL_ARG) {
    console.log(`\nWick and wllama in headless Chromium (${version}), ${MODEL} (${(modelBytes / 1e6).toFixed(0)} MB), medians of ${RUNS}`);
    console.log(`| metric | ${THREADS.map((t) => `${t} thread${t > 1 ? 's' : ''}`).join(' | ')} |`);
    console.log(`|---|${THREADS.map(() => '---|').join('')}`);
    line('Wick wasm build', 'ggBuild');
    line('Wick prefill tok/s (bench_prompt)', 'ggPrefill');
    line(`Wick decode tok/s (${DECODE} greedy tokens)`, 'ggDecode');
    line('Wick model load, weights cached (s)', 'ggLoad');
    line('Wick page open → first token, weights cached (s)', 'ttft');
    line('Wick peak wasm memory (× model file)', 'ggMemory');
    line('renderer RSS after Wick (largest renderer)', 'ggRss');
    line('wllama prefill tok/s', 'wlPrefill');
    line('wllama decode tok/s', 'wlDecode');
    line('wllama model load (s)', 'wlLoad');
    line('renderer RSS after wllama (largest renderer)', 'wlRss');
    line('**Wick / wllama, prefill**', 'ggRatioPrefill');
    line('**Wick / wllama, decode**', 'ggRatioDecode');
  } else {
  console.log(`\nWick in headless Chromium (${version}), ${DEFAULT_MODEL} (and ${MODEL}), medians of ${RUNS}`);
  console.log(`| metric | ${THREADS.map((t) => `${t} thread${t > 1 ? 's' : ''}`).join(' | ')} |`);
  console.log(`|---|${THREADS.map(() => '---|').join('')}`);
  line('wasm build', 'build');
  line('prefill tok/s (122-token bench_prompt)', 'prefill');
  line(`decode tok/s (${DECODE} greedy tokens)`, 'decode');
  line('model load, weights cached (s)', 'load');
  line('page open → first token, weights cached (s)', 'ttft');
  line('peak wasm memory (× model file)', 'memory');
  line('renderer RSS after the runs', 'rss');
  line('GGUF: prefill tok/s', 'ggPrefill');
  line('GGUF: decode tok/s', 'ggDecode');
  line('GGUF: model load, weights cached (s)', 'ggLoad');
  line('GGUF: peak wasm memory (× model file, in a fresh worker)', 'ggMemory');
  line('wllama 3.13 prefill tok/s', 'wlPrefill');
  line('wllama 3.13 decode tok/s', 'wlDecode');
  line('wllama model load (s)', 'wlLoad');
  line('renderer RSS after wllama (largest renderer)', 'wlRss');
  line('**Wick / wllama, prefill**', 'prefillRatio');
  line('**Wick / wllama, decode**', 'decodeRatio');
  line('Wick GGUF / wllama, prefill / decode', 'ggRatio');
  }
  for (const dir of ['pkg', 'pkg-threads', 'pkg-relaxed', 'pkg-threads-relaxed']) {
    console.log(`| wasm size, www/${dir} | ${statSync(new URL(`../www/${dir}/wick_bg.wasm`, import.meta.url)).size} bytes |`);
  }
} finally {
  await browser.close();
}
