// Browser benchmark: Wick (through its public API, www/wick.js) and wllama (llama.cpp in wasm, npm
// @wllama/wllama) in the same headless Debian Chromium, against the dev server, at 1 and 2 threads:
// Wick on the app's default model (the MLX 4-bit safetensors folder) and on the GGUF it was made
// from, wllama on the GGUF. The engines stay loaded side by side and their runs are interleaved
// (one run of each in turn), so a slow spell of a noisy machine hits all of them alike. Prints
// one table of median (min–max) over the runs, with Wick/wllama ratios of the medians.
// --model PATH benchmarks another GGUF under models/ (the real models of scripts/fetch-models.sh)
// the same way, Wick on the GGUF alone.
// --prompt-tokens 512,2048 measures prompts of those lengths (in Wick's tokens: bench_prompt
// repeated and cut there, the same text given to wllama; each engine's own token count is shown)
// instead of bench_prompt itself.
// --profile adds, per thread count, one run of Wick with its stage timers on and a table like
// `wick bench --profile`'s: where a prefill chunk and a decode step spend their time, with the
// engine's time outside its forward and the worker's time between steps.
//   node scripts/bench-browser.mjs [--model models/X.gguf] [--runs 3] [--decode 128]
//        [--prompt-tokens N,N] [--no-wllama] [--simd simd128] [--threads 1,2] [--profile]
//        [--compare-root DIR] [--compare-llamacpp PYTHON] [--ttft-only]
// --compare-llamacpp PYTHON: native llama.cpp (scripts/llamacpp-bench.py under that Python, with
// xllamacpp installed) on the GGUF, the same prompt tokens and thread count, one run of it in
// turn with the browser engines' runs, so the browser/native ratios come from one stretch of time.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { openBrowser, waitReady } from '../tests/e2e/browser.mjs';

const value = (name) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : null);
const RUNS = Number(value('--runs') ?? 3);
const DECODE = Number(value('--decode') ?? 128);
const THREADS = value('--threads')?.split(',').map(Number) ?? [1, 2];
// --ttft-only: only page open → first token (and → ready), weights cached, the returning visit.
const TTFT_ONLY = process.argv.includes('--ttft-only');
// --compare-root DIR: another checkout (say, main's code before a change, with its wasm builds)
// served beside this one in a second browser. The speed runs load its Wick on the same model
// and interleave its runs with this checkout's (ratios this checkout / DIR); with --ttft-only,
// the same returning visits to it, interleaved.
const COMPARE_ROOT = value('--compare-root');
const PROMPT_TOKENS = value('--prompt-tokens')?.split(',').map(Number) ?? [];
if (PROMPT_TOKENS.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('--prompt-tokens takes whole numbers ≥ 1, comma-separated');
// --no-wllama: Wick's rows only (a quick check while working on the kernels).
const WLLAMA = !process.argv.includes('--no-wllama');
// --simd simd128: the plain-SIMD builds (what browsers without relaxed SIMD run).
const SIMD = value('--simd') ?? 'relaxed';
const PROFILE = process.argv.includes('--profile');
const LLAMACPP = value('--compare-llamacpp');
const MODEL_ARG = value('--model');
const MODEL = MODEL_ARG ?? 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
// The page's default model is benchmarked beside its GGUF unless --model names another model.
const DEFAULT_MODEL = MODEL_ARG ? null : 'models/SmolLM2-135M-Instruct-MLX-4bit/';
const BENCH_PROMPT = readFileSync(new URL('../tests/fixtures/bench_prompt.txt', import.meta.url), 'utf8');
const modelBytes = statSync(new URL(`../${MODEL}`, import.meta.url)).size;

/** min, median and max of a measurement's runs. */
const spread = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
};
const show = (s, digits = 1) => (Number.isNaN(s.median) ? '–' : `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`);
const ratio = (a, b) => (Number.isNaN(a.median / b.median) ? '–' : `${(a.median / b.median).toFixed(2)}×`);

/** Resident memory of Chromium's renderer processes, in bytes (largest one). */
function rendererRss() {
  const out = execFileSync('ps', ['-eo', 'rss=,args='], { encoding: 'utf8' });
  const rss = out.split('\n').filter((l) => l.includes('--type=renderer')).map((l) => Number(l.trim().split(/\s+/)[0]) * 1024);
  return Math.max(0, ...rss);
}

/** The context every engine gets: the default, or room for the longest prompt and its reply. */
const CONTEXT = Math.max(4096, ...PROMPT_TOKENS.map((n) => n + DECODE + 64));

/** Loads a Wick engine in the page under `name` (Wick's public API, `threads` threads). */
async function loadWick(page, name, model, threads) {
  return page.evaluate(async ({ name, model, threads, simd, contextLength }) => {
    const { Wick } = await import('/www/wick.js');
    const engine = await Wick.load(new URL(model, location.origin + '/').href, { threads, simd, contextLength });
    (window.__engines ??= {})[name] = engine;
    const { loadSeconds, build } = engine.info;
    return { loadSeconds, threads: build.threads, simd: build.simd };
  }, { name, model, threads, simd: SIMD, contextLength: CONTEXT });
}

/** Loads wllama in the page on the GGUF, from the page's model cache. */
async function loadWllama(page, threads) {
  return page.evaluate(async ({ model, threads, ctx }) => {
    const { Wllama } = await import('/node_modules/@wllama/wllama/esm/index.js');
    const wllama = new Wllama({ default: '/node_modules/@wllama/wllama/esm/wasm/wllama.wasm' }, { suppressNativeLog: true });
    const url = new URL(model, location.origin + '/').href;
    const cached = await (await caches.open('wick-models-v1')).match(url);
    const blob = await (cached ?? (await fetch(url))).blob();
    const t0 = performance.now();
    await wllama.loadModel([blob], { n_threads: threads, n_ctx: ctx, n_gpu_layers: 0 });
    (window.__engines ??= {}).wllama = wllama;
    return { loadSeconds: (performance.now() - t0) / 1000 };
  }, { model: MODEL, threads, ctx: Math.max(1024, ...PROMPT_TOKENS.map((n) => n + DECODE + 64)) });
}

/** One run of native llama.cpp on `ids` (token ids) at `threads`, as `runOnce` reports one. */
function llamacppOnce(ids, threads) {
  const dir = mkdtempSync(join(tmpdir(), 'wick-llamacpp-'));
  try {
    writeFileSync(join(dir, 'prompts.json'), JSON.stringify([ids]));
    const script = new URL('llamacpp-bench.py', import.meta.url).pathname;
    const out = JSON.parse(execFileSync(LLAMACPP, [script, MODEL, join(dir, 'prompts.json'), String(DECODE), '1', String(threads)], { encoding: 'utf8' }));
    const [row] = out.rows;
    return { prefill: row.prefill.median, decode: row.decode.median, promptTokens: row.prompt_tokens, peer: `${out.package} ${out.version}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One raw-prompt run of engine `name`: prefill and decode tok/s, prompt tokens, wasm memory. */
async function runOnce(page, name, prompt) {
  return page.evaluate(async ({ name, prompt, decode }) => {
    const engine = window.__engines[name];
    if (name === 'wllama') {
      const { timings: t } = await engine.createCompletion({ prompt, max_tokens: decode, temperature: 0, ignore_eos: true, cache_prompt: false });
      return { prefill: t.prompt_per_second, decode: t.predicted_per_second, promptTokens: t.prompt_n };
    }
    // cache_prompt: false runs the whole prompt each time.
    const { timings: t } = await engine.completions.create({ prompt, temperature: 0, max_tokens: decode, ignore_eos: true, cache_prompt: false });
    return {
      prefill: t.prompt_n / (t.prompt_ms / 1000), decode: t.predicted_n / (t.predicted_ms / 1000),
      promptTokens: t.prompt_n, memoryBytes: engine.info.memoryBytes,
    };
  }, { name, prompt, decode: DECODE });
}

/**
 * One run of Wick engine `name` with its stage timers on: their counts per phase, the engine's
 * own prefill and decode seconds, and the run's wall time as the page saw it.
 */
async function profileOnce(page, name, prompt) {
  return page.evaluate(async ({ name, prompt, decode }) => {
    const engine = window.__engines[name];
    await engine.profile(true);
    const t0 = performance.now();
    const { timings: t } = await engine.completions.create({ prompt, temperature: 0, max_tokens: decode, ignore_eos: true, cache_prompt: false });
    const wall = (performance.now() - t0) / 1000;
    const counts = await engine.profile(false);
    return { counts, prefill: t.prompt_ms / 1000, decode: t.predicted_ms / 1000, decodeTokens: t.predicted_n, wall };
  }, { name, prompt, decode: DECODE });
}

/**
 * Prints one profiled run as `wick bench --profile` does: ms per prefill chunk and per decode
 * token of each stage, with its share of the phase's engine time.
 */
function printProfile(threads, label, p) {
  const { prefill, decode } = p.counts;
  // The sample after the last prefill chunk counts to decode, as the engine's timings do.
  const stage = (phase, i) => phase.stages[i].seconds;
  const sampling = prefill.stages.findIndex((s) => s.stage === 'sampling');
  const columns = [
    { phase: prefill, total: p.prefill, per: Math.max(1, prefill.forwards), moved: -stage(prefill, sampling) },
    { phase: decode, total: p.decode, per: Math.max(1, p.decodeTokens), moved: stage(prefill, sampling) },
  ];
  const cell = (s, c) => `${((1e3 * s) / c.per).toFixed(4)} (${((100 * s) / Math.max(c.total, 1e-12)).toFixed(1)}%)`;
  console.log(`\nProfile in the browser, ${threads} thread${threads > 1 ? 's' : ''}, ${label}: ms per prefill chunk (${prefill.forwards} chunk${prefill.forwards === 1 ? '' : 's'}) and per decode token, share of the phase`);
  console.log('| stage | prefill | decode |');
  console.log('|---|---|---|');
  prefill.stages.forEach(({ stage: name }, i) => {
    console.log(`| ${name} | ${columns.map((c) => cell(stage(c.phase, i) + (i === sampling ? c.moved : 0), c)).join(' | ')} |`);
  });
  const staged = (c) => c.phase.stages.reduce((n, s, i) => n + (i === sampling ? 0 : s.seconds), 0);
  console.log(`| other in the forward (copies, glue) | ${columns.map((c) => cell(Math.max(0, c.phase.seconds - staged(c)), c)).join(' | ')} |`);
  const outside = (c) => c.total - c.phase.seconds - (stage(c.phase, sampling) + c.moved);
  console.log(`| engine step outside the forward | ${columns.map((c) => cell(Math.max(0, outside(c)), c)).join(' | ')} |`);
  console.log(`| total (the engine's timings) | ${columns.map((c) => cell(c.total, c)).join(' | ')} |`);
  const between = p.wall - p.prefill - p.decode;
  console.log(`| worker between steps (messages, event loop), ms per step | ${((1e3 * between) / Math.max(1, p.decodeTokens + prefill.forwards)).toFixed(4)} (${((100 * between) / p.wall).toFixed(1)}% of the run) |`);
}

/** The prompts to measure: bench_prompt, or per length the text of its first N Wick tokens repeated. */
async function prompts(page, name) {
  if (!PROMPT_TOKENS.length) return [{ label: '122-token bench_prompt', text: BENCH_PROMPT }];
  return page.evaluate(async ({ name, base, lengths }) => {
    const engine = window.__engines[name];
    const per = (await engine.tokenize(base)).length;
    const out = [];
    for (const n of lengths) {
      const ids = (await engine.tokenize(base.repeat(Math.ceil(n / per) + 1))).slice(0, n);
      out.push({ label: `${n}-token prompt`, text: await engine.detokenize(ids) });
    }
    return out;
  }, { name, base: BENCH_PROMPT, lengths: PROMPT_TOKENS });
}

/** Unloads every engine of the page. */
async function unloadAll(page) {
  await page.evaluate(async () => {
    for (const [name, e] of Object.entries(window.__engines ?? {})) await (name === 'wllama' ? e.exit() : e.unload());
    window.__engines = {};
  });
}

/**
 * Seconds from opening the page to the first token of a chat reply in a new conversation
 * (weights cached; the kept conversations are deleted after each visit, so the page does not
 * reopen and prefill the last one). The question is sent the frame the page is ready, by the
 * page itself: Playwright's fill and click (waits for a stable element, round trips) took
 * 0.1–0.3 s on a 2-core machine, which is no part of the page's time.
 */
async function timeToFirstToken(context, base, threads) {
  const page = await context.newPage();
  await page.goto(`${base}?threads=${threads}&simd=${SIMD}${MODEL_ARG ? `&model=${encodeURIComponent(MODEL_ARG)}` : ''}`);
  const times = await page.evaluate(async (question) => {
    const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
    const $ = (id) => document.getElementById(id);
    const until = async (done, seconds) => {
      const end = performance.now() + seconds * 1000;
      while (!done()) {
        if (!$('error').hidden) throw new Error($('error').textContent);
        if (performance.now() > end) throw new Error(`timed out after ${seconds} s`);
        await frame();
      }
    };
    await until(() => $('loader').classList.contains('done') && !$('input').disabled, 180);
    const ready = performance.now() / 1000;
    $('input').value = question;
    $('composer').requestSubmit();
    await until(() => ($('messages').querySelector('.msg.assistant')?.textContent.length ?? 0) > 0, 120);
    return { ready, first: performance.now() / 1000 };
  }, 'What is the capital of France?');
  await page.evaluate(async () => (await import('/www/conversations.js')).clearConversations());
  await page.close();
  return times;
}

const browser = await openBrowser({ alsoServe: ['node_modules', 'tests/e2e/pages'] });
const results = {};
let promptList = [];
let other = null;
let otherPage = null;
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
  // A blank page for the runs: the app's own engine leaves the renderer.
  if (!MODEL_ARG) await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  if (TTFT_ONLY) {
    await page.close();
    const sites = [{ label: 'this checkout', browser }];
    if (COMPARE_ROOT) {
      const other = await openBrowser({ root: COMPARE_ROOT, alsoServe: ['tests/e2e/pages'] });
      const first = await other.context.newPage();
      await first.goto(other.base);
      await waitReady(first); // its first visit downloads and keeps the weights
      await first.close();
      sites.push({ label: COMPARE_ROOT, browser: other });
    }
    const rows = sites.flatMap((site) => THREADS.map((threads) => ({ site, threads, ready: [], first: [] })));
    // Interleaved over the sites and thread counts, one returning visit each in turn.
    for (let i = 0; i < RUNS; i++) {
      for (const row of rows) {
        const r = await timeToFirstToken(row.site.browser.context, row.site.browser.base, row.threads);
        row.ready.push(r.ready);
        row.first.push(r.first);
      }
    }
    console.log(`\nReturning visit (weights kept), ${DEFAULT_MODEL ?? MODEL}, ${RUNS} interleaved runs: median (min–max) seconds`);
    console.log('| site | threads | page open → model ready | page open → first token | first token / this checkout |');
    console.log('|---|---|---|---|---|');
    for (const row of rows) {
      const mine = rows.find((r) => r.site === sites[0] && r.threads === row.threads);
      console.log(`| ${row.site.label} | ${row.threads} | ${show(spread(row.ready), 2)} | ${show(spread(row.first), 2)} | ${ratio(spread(row.first), spread(mine.first))} |`);
    }
    for (const site of sites) await site.browser.close();
    process.exit(0);
  }
  // The other checkout's Wick, in its own browser, for the interleaved speed runs.
  if (COMPARE_ROOT) {
    other = await openBrowser({ root: COMPARE_ROOT, alsoServe: ['tests/e2e/pages'] });
    otherPage = await other.context.newPage();
    await otherPage.goto(`${other.base}tests/e2e/pages/api.html`);
  }
  for (const threads of THREADS) {
    const engines = { gguf: await loadWick(page, 'gguf', MODEL, threads) };
    const hosts = { gguf: page, wick: page, wllama: page };
    if (DEFAULT_MODEL) engines.wick = await loadWick(page, 'wick', DEFAULT_MODEL, threads);
    if (WLLAMA) engines.wllama = await loadWllama(page, threads);
    if (otherPage) {
      engines.compare = await loadWick(otherPage, 'compare', DEFAULT_MODEL ?? MODEL, threads);
      hosts.compare = otherPage;
    }
    promptList = await prompts(page, 'gguf');
    const runs = {};
    // Native llama.cpp, when asked, takes its turn after the browser engines.
    const runners = [...Object.keys(engines), ...(LLAMACPP ? ['llamacpp'] : [])];
    for (const p of promptList) {
      const ids = LLAMACPP && (await page.evaluate(async (text) => Array.from(await window.__engines.gguf.tokenize(text)), p.text));
      runs[p.label] = Object.fromEntries(runners.map((n) => [n, []]));
      // Interleaved: one run of each engine in turn.
      for (let i = 0; i < RUNS; i++) {
        for (const name of runners) {
          runs[p.label][name].push(name === 'llamacpp' ? llamacppOnce(ids, threads) : await runOnce(hosts[name], name, p.text));
        }
      }
    }
    const profiles = [];
    if (PROFILE) {
      const main = DEFAULT_MODEL ? 'wick' : 'gguf';
      for (const p of promptList) profiles.push({ label: p.label, run: await profileOnce(page, main, p.text) });
    }
    const rss = rendererRss();
    await unloadAll(page);
    if (otherPage) await unloadAll(otherPage);
    const ttft = [];
    for (let i = 0; i < RUNS; i++) ttft.push((await timeToFirstToken(browser.context, browser.base, threads)).first);
    results[threads] = { engines, runs, rss, ttft: spread(ttft), profiles };
  }
  const version = await page.evaluate(() => navigator.userAgent.match(/Chrome\/[\d.]+/)?.[0]);
  const line = (label, f) => console.log(`| ${label} | ${THREADS.map((t) => f(results[t])).join(' | ')} |`);
  const main = DEFAULT_MODEL ? 'wick' : 'gguf';
  const build = (e) => `${e.threads === 1 ? 'single-threaded' : `threaded (${e.threads} workers)`}, ${e.simd}`;
  const of = (r, label, name, key) => spread((r.runs[label][name] ?? []).map((x) => x[key]).concat(r.runs[label][name]?.length ? [] : [NaN]));
  const memory = (r, name) => {
    const m = Math.max(...Object.values(r.runs).flatMap((p) => (p[name] ?? []).map((x) => x.memoryBytes)));
    return `${(m / 1e6).toFixed(0)} MB (${(m / modelBytes).toFixed(2)}×)`;
  };
  console.log(`\nWick${WLLAMA ? ' and wllama' : ''} in headless Chromium (${version}), ${DEFAULT_MODEL ?? MODEL}${DEFAULT_MODEL ? ` (and ${MODEL})` : ''}, ${RUNS} interleaved runs each: median (min–max)`);
  console.log(`| metric | ${THREADS.map((t) => `${t} thread${t > 1 ? 's' : ''}`).join(' | ')} |`);
  console.log(`|---|${THREADS.map(() => '---|').join('')}`);
  line('Wick wasm build', (r) => build(r.engines[main]));
  for (const { label } of promptList) {
    const names = DEFAULT_MODEL ? [['wick', 'Wick'], ['gguf', 'Wick GGUF']] : [['gguf', 'Wick']];
    for (const [name, who] of names) {
      line(`${who} prefill tok/s (${label})`, (r) => show(of(r, label, name, 'prefill')));
      line(`${who} decode tok/s (${DECODE} greedy tokens after it)`, (r) => show(of(r, label, name, 'decode')));
    }
    if (otherPage) {
      const mine = DEFAULT_MODEL ? 'wick' : 'gguf';
      line(`Wick at ${COMPARE_ROOT} prefill tok/s (${label})`, (r) => show(of(r, label, 'compare', 'prefill')));
      line(`Wick at ${COMPARE_ROOT} decode tok/s`, (r) => show(of(r, label, 'compare', 'decode')));
      line(`**this checkout / ${COMPARE_ROOT}, prefill**`, (r) => ratio(of(r, label, mine, 'prefill'), of(r, label, 'compare', 'prefill')));
      line(`**this checkout / ${COMPARE_ROOT}, decode**`, (r) => ratio(of(r, label, mine, 'decode'), of(r, label, 'compare', 'decode')));
    }
    if (LLAMACPP) {
      line(`native llama.cpp prefill tok/s (${label})`, (r) => `${show(of(r, label, 'llamacpp', 'prefill'))}, ${r.runs[label].llamacpp[0].peer}`);
      line('native llama.cpp decode tok/s', (r) => show(of(r, label, 'llamacpp', 'decode')));
      for (const [name, who] of names) {
        line(`**${who} / native llama.cpp, prefill** (${label})`, (r) => ratio(of(r, label, name, 'prefill'), of(r, label, 'llamacpp', 'prefill')));
        line(`**${who} / native llama.cpp, decode**`, (r) => ratio(of(r, label, name, 'decode'), of(r, label, 'llamacpp', 'decode')));
      }
    }
    if (WLLAMA) {
      line(`wllama prefill tok/s (${label}; its tokens)`, (r) => `${show(of(r, label, 'wllama', 'prefill'))}, ${r.runs[label].wllama[0].promptTokens} tok`);
      line(`wllama decode tok/s (${DECODE} greedy tokens after it)`, (r) => show(of(r, label, 'wllama', 'decode')));
      for (const [name, who] of names) {
        line(`**${who} / wllama, prefill** (${label})`, (r) => ratio(of(r, label, name, 'prefill'), of(r, label, 'wllama', 'prefill')));
        line(`**${who} / wllama, decode** (${label})`, (r) => ratio(of(r, label, name, 'decode'), of(r, label, 'wllama', 'decode')));
      }
    }
  }
  line('Wick model load, weights cached (s)', (r) => r.engines[main].loadSeconds.toFixed(2));
  if (DEFAULT_MODEL) line('Wick GGUF model load, weights cached (s)', (r) => r.engines.gguf.loadSeconds.toFixed(2));
  if (WLLAMA) line('wllama model load (s)', (r) => r.engines.wllama.loadSeconds.toFixed(2));
  line('page open → first token, weights cached (s)', (r) => show(r.ttft, 2));
  line('Wick peak wasm memory (× model file)', (r) => memory(r, main));
  if (DEFAULT_MODEL) line('Wick GGUF peak wasm memory (× model file)', (r) => memory(r, 'gguf'));
  line(`renderer RSS with ${WLLAMA ? 'all engines' : 'the engines'} loaded (largest renderer)`, (r) => `${(r.rss / 1e6).toFixed(0)} MB`);
  for (const dir of ['pkg', 'pkg-threads', 'pkg-relaxed', 'pkg-threads-relaxed']) {
    const wasm = new URL(`../www/${dir}/wick_bg.wasm`, import.meta.url);
    // A first run of scripts/dev.sh serves before every build exists.
    console.log(`| wasm size, www/${dir} | ${existsSync(wasm) ? `${statSync(wasm).size} bytes` : 'not built'} |`);
  }
  for (const t of THREADS) for (const { label, run } of results[t].profiles) printProfile(t, label, run);
} finally {
  await browser.close();
  await other?.close();
}
