// Training speed, native and in the tab, in the same run: `wick train` and examples/train.html
// (headless Chromium, single-threaded wasm build) train the same model with the same options on
// the same corpus; prints one table of losses and the median tokens/s per step, and the ratio.
//   node scripts/bench-train.mjs [--steps 200] [--corpus ~/.cache/wick/corpus/sotu-1790-1808.txt]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBrowser } from '../tests/e2e/browser.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const steps = Number(arg('--steps', 200));
const corpus = arg('--corpus', join(homedir(), '.cache/wick/corpus/sotu-1790-1808.txt'));
const options = { steps, layers: 2, dim: 64, heads: 4, kv_heads: 2, context: 64, batch: 16, lr: 0.006, vocab: 512, seed: 0 };
const median = (v) => [...v].sort((a, b) => a - b)[v.length >> 1];

function native() {
  const out = mkdtempSync(join(tmpdir(), 'wick-bench-train-'));
  const flags = Object.entries(options).flatMap(([k, v]) => [`--${k.replace('_', '-')}`, String(v)]);
  try {
    const log = execFileSync('target/release/wick', ['train', '--corpus', corpus, '--out', out, '--log-every', '1', ...flags], { encoding: 'utf8' });
    const rows = log.split('\n').filter((l) => l.startsWith('step ')).map((l) => l.trim().split(/\s+/));
    return {
      losses: rows.map((f) => Number(f[3])),
      rates: rows.map((f) => Number(f.at(-2))),
      heldOut: Number(log.match(/held-out loss ([\d.]+)/)?.[1]),
    };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

async function tab() {
  const browser = await openBrowser();
  try {
    const page = await browser.context.newPage();
    await page.goto(`${browser.base}examples/train.html`);
    await page.fill('#corpus', readFileSync(corpus, 'utf8'));
    await page.click('#options summary');
    for (const [k, v] of Object.entries(options)) await page.fill(`#${k}`, String(v));
    await page.click('#train');
    await page.waitForFunction(() => {
      if (document.body.dataset.state === 'error') throw new Error(document.getElementById('error').textContent);
      return document.body.dataset.state === 'trained';
    }, null, { timeout: 3_600_000, polling: 200 });
    const rows = (await page.textContent('#loss-log')).trim().split('\n').map((l) => l.split('\t'));
    const status = await page.textContent('#status');
    return {
      losses: rows.map((f) => Number(f[1])),
      rates: rows.map((f) => Number(f[2].replace(/[^\d]/g, ''))),
      heldOut: Number(status.match(/held-out ([\d.]+)/)?.[1]),
    };
  } finally {
    await browser.close();
  }
}

const n = native();
const t = await tab();
const last10 = (l) => (l.slice(-10).reduce((a, b) => a + b, 0) / Math.min(10, l.length)).toFixed(3);
console.log(`Training ${options.layers} layers × dim ${options.dim}, ${options.heads}/${options.kv_heads} heads, context ${options.context}, ` +
  `batch ${options.batch}, vocabulary ${options.vocab}, ${steps} steps, seed ${options.seed}, on ${corpus}`);
console.log('| metric | native (wick train) | in the tab (wasm, 1 thread) |');
console.log('|---|---|---|');
console.log(`| first loss | ${n.losses[0].toFixed(3)} | ${t.losses[0].toFixed(3)} |`);
console.log(`| mean loss, last 10 steps | ${last10(n.losses)} | ${last10(t.losses)} |`);
console.log(`| held-out loss | ${n.heldOut.toFixed(3)} | ${t.heldOut.toFixed(3)} |`);
console.log(`| median tokens/s per step | ${median(n.rates)} | ${median(t.rates)} |`);
console.log(`| **tab / native speed** | | ${(median(t.rates) / median(n.rates)).toFixed(2)}× |`);
