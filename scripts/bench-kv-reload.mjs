// Browser benchmark of KV snapshots: time to first token after a reload of a conversation of
// about 1,000 tokens, with its snapshot in OPFS (the load option `kvCache`: only the new question
// is prefilled) and without (the whole conversation is). Each run opens the page afresh and loads
// the model (from the browser's cache), then times one streamed request from `create()` to its
// first content; the snapshot's read and check count in it. Runs of the two modes alternate, so a
// slow spell of a noisy machine hits both alike. Prints median (min–max) and the ratio.
//   node scripts/bench-kv-reload.mjs [--runs 3] [--tokens 1000] [--model models/X.gguf …]
// Default models: SmolLM2-135M-Instruct Q4_1 and Qwen2.5-Coder-0.5B-Instruct Q4_K_M.
import { readFileSync } from 'node:fs';
import { openBrowser } from '../tests/e2e/browser.mjs';

const value = (name) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : null);
const RUNS = Number(value('--runs') ?? 3);
const TOKENS = Number(value('--tokens') ?? 1000);
const MODELS = process.argv.flatMap((a, i) => (process.argv[i - 1] === '--model' ? [a] : []));
if (!MODELS.length) MODELS.push('models/SmolLM2-135M-Instruct.Q4_1.gguf', 'models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf');
const TEXT = readFileSync(new URL('../tests/fixtures/bench_prompt.txt', import.meta.url), 'utf8');

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const show = (v) => `${median(v).toFixed(2)} (${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)})`;

const browser = await openBrowser();
const page = await browser.context.newPage();

/** Opens the app's origin afresh (a reload) with wick.js imported and `model` loaded. */
async function reload(model, kvCache) {
  await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  return page.evaluate(async ({ model, kvCache }) => {
    window.W = await import('/www/wick.js');
    window.engine = await window.W.Wick.load(new URL(model, location.origin + '/').href, { kvCache, onKvSaved: (s) => (window.saved = s) });
  }, { model, kvCache });
}

/**
 * The conversation: a user message of bench_prompt's text cut so that it and the assistant's
 * reply come to about TOKENS tokens, then a new question.
 */
async function conversation() {
  return page.evaluate(async ({ text, tokens }) => {
    const ids = await window.engine.tokenize(text.repeat(Math.ceil((tokens * 6) / text.length)));
    const user = await window.engine.detokenize(ids.slice(0, tokens - 80));
    return [{ role: 'user', content: `Summarize this:\n${user}` }];
  }, { text: TEXT, tokens: TOKENS });
}

/** Seconds from create() to the first streamed content of a reply to `messages`; the reply is then stopped (no snapshot is written). */
function firstToken(messages) {
  return page.evaluate(async (messages) => {
    const t0 = performance.now();
    const stream = await window.engine.chat.completions.create({ messages, temperature: 0, max_tokens: 8, stream: true, stream_options: { include_usage: true } });
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) {
        const seconds = (performance.now() - t0) / 1000;
        return { seconds };
      }
    }
    return { seconds: NaN };
  }, messages);
}

/** The prompt tokens of a reply to `messages` and how many were cached (run to its end). */
function usage(messages) {
  return page.evaluate(async (messages) => {
    const r = await window.engine.chat.completions.create({ messages, temperature: 0, max_tokens: 1 });
    return { prompt: r.usage.prompt_tokens, cached: r.usage.prompt_tokens_details.cached_tokens };
  }, messages);
}

const rows = [];
for (const model of MODELS) {
  await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  await page.evaluate(async () => (await import('/www/wick.js')).Wick.kvCache.clear());
  // The first turn runs once with snapshots on: its reply's snapshot is what a reload finds.
  await reload(model, true);
  const history = await conversation();
  const first = await page.evaluate(async (messages) => {
    const r = await window.engine.chat.completions.create({ messages, temperature: 0, max_tokens: 64 });
    return r.choices[0].message.content;
  }, history);
  await page.waitForFunction(() => window.saved, null, { timeout: 120_000, polling: 50 });
  const snapshot = await page.evaluate(() => window.saved);
  const asked = [...history, { role: 'assistant', content: first }, { role: 'user', content: 'What is the main point, in one sentence?' }];
  const times = { with: [], without: [] };
  for (let r = 0; r < RUNS; r++) {
    for (const mode of ['with', 'without']) {
      await reload(model, mode === 'with');
      times[mode].push((await firstToken(asked)).seconds);
    }
  }
  // What each mode prefills (the snapshot is still there: a stopped reply writes none).
  await reload(model, true);
  const restored = await usage(asked);
  await page.evaluate(() => window.engine.unload());
  rows.push({ model, snapshot, prompt: restored.prompt, cached: restored.cached, times });
  console.error(`[bench-kv-reload] ${model}: ${JSON.stringify(times)}`);
}
await browser.close();

console.log(`\nTime to first token after a reload, seconds: median (min–max) of ${RUNS} runs, alternating; headless Chromium, 2 threads`);
console.log('| model | prompt tokens | from snapshot | snapshot MB | with snapshot | without | without / with |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  const name = r.model.replace(/^models\//, '');
  console.log(`| ${name} | ${r.prompt} | ${r.cached} | ${(r.snapshot.bytes / 1e6).toFixed(1)} | ${show(r.times.with)} | ${show(r.times.without)} | ${(median(r.times.without) / median(r.times.with)).toFixed(1)}× |`);
}
