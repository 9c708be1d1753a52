// Browser end to end: examples/train.html trains a tiny model in a Web Worker (the
// single-threaded wasm build) on pasted text, the loss falls, the model completes text and
// chats, and its folder downloads as a ZIP that the native CLI then loads and runs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBrowser } from './browser.mjs';

// Two State of the Union addresses (public domain), the corpus of tests/train.rs too.
const CORPUS = readFileSync('tests/fixtures/trained/corpus.txt', 'utf8');
const STEPS = 50;

let browser;
let page;
const consoleErrors = [];

before(async () => {
  browser = await openBrowser();
  page = await browser.context.newPage();
  const record = (where) => (msg) => {
    if (msg.type() === 'error') consoleErrors.push(`${where}: ${msg.text()}`);
  };
  page.on('console', record('page'));
  page.on('pageerror', (e) => consoleErrors.push(`page exception: ${e.message}`));
  page.on('worker', (w) => w.on('console', record('worker')));
  await page.goto(`${browser.base}examples/train.html`);
});

after(async () => {
  await browser?.close();
});

/** Waits until the page's state is `state` (or it shows an error). */
async function waitState(state, timeout = 300_000) {
  await page.waitForFunction((want) => {
    const s = document.body.dataset.state;
    if (s === 'error' && want !== 'error') throw new Error(document.getElementById('error').textContent);
    return s === want;
  }, state, { timeout, polling: 100 });
}

/** Clicks `button` and waits for the generation it starts to end; returns the output's text. */
async function generate(button, prompt) {
  const before = await page.evaluate(() => Number(document.body.dataset.generated ?? 0));
  await page.fill('#prompt', prompt);
  await page.click(button);
  await page.waitForFunction((n) => {
    const err = document.getElementById('error');
    if (!err.hidden) throw new Error(err.textContent);
    return Number(document.body.dataset.generated ?? 0) > n;
  }, before, { timeout: 60_000, polling: 50 });
  return page.textContent('#output');
}

test('text too short to train on is a readable error, and the page goes on', async () => {
  await page.fill('#corpus', 'Too short.');
  await page.click('#train');
  await waitState('error');
  assert.match(await page.textContent('#error'), /the corpus is \d+ tokens long; a training window needs 65/);
  assert.equal(await page.isDisabled('#train'), false);
});

test(`${STEPS} steps in the tab: the loss falls, live`, async () => {
  await page.fill('#corpus', CORPUS);
  await page.click('#options summary');
  await page.fill('#steps', String(STEPS));
  await page.click('#train');
  // The chart grows while training runs (at least one redraw before the end).
  await page.waitForFunction(() => {
    const pts = document.querySelector('#chart polyline')?.getAttribute('points');
    return pts && pts.split(' ').length >= 3;
  }, null, { timeout: 120_000, polling: 20 });
  const during = await page.evaluate(() => document.body.dataset.state);
  await waitState('trained');
  assert.equal(during, 'training');

  const log = (await page.textContent('#loss-log')).trim().split('\n').map((l) => l.split('\t'));
  assert.equal(log.length, STEPS);
  const losses = log.map((f) => Number(f[1]));
  const rates = log.map((f) => Number(f[2].replace(/[^\d]/g, '')));
  const first = losses[0];
  const last = losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
  const status = await page.textContent('#status');
  const vocab = Number(status.match(/vocabulary (\d+)/)[1]);
  console.log(`in-tab loss ${first.toFixed(3)} → ${last.toFixed(3)} (mean of the last 5) over ${STEPS} steps; ` +
    `median ${rates.sort((a, b) => a - b)[STEPS >> 1]} tok/s; ${status}`);
  assert.ok(Math.abs(first - Math.log(vocab)) < 0.1, `first loss ${first}, ln V ${Math.log(vocab)}`);
  assert.ok(last < first - 0.8, `loss ${first} → ${last}`);
  assert.equal((await page.getAttribute('#chart polyline', 'points')).split(' ').length, STEPS);
  assert.match(status, /safetensors, float/);
});

test('the trained model completes text and chats', async () => {
  const prompt = 'The Senate and House of';
  const completion = await generate('#complete', prompt);
  assert.ok(completion.startsWith(prompt));
  assert.ok(completion.length > prompt.length + 10, completion);
  console.log(`completion: ${JSON.stringify(completion)}`);
  const reply = await generate('#chat', 'Hello, who are you?');
  assert.ok(reply.startsWith('Hello, who are you?'));
  assert.ok(reply.length > 'Hello, who are you?'.length, reply);
  await page.screenshot({ path: 'test-results/wick-train.png', fullPage: true });
});

test('the folder downloads as a ZIP that the native CLI runs', async () => {
  const links = await page.$$eval('#downloads a', (as) => as.map((a) => a.getAttribute('download')));
  assert.deepEqual(links, [
    'wick-trained-model.zip', 'model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'loss.svg',
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'wick-trained-'));
  try {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#downloads a[download$=".zip"]')]);
    const zipPath = join(dir, 'model.zip');
    await download.saveAs(zipPath);
    execFileSync('unzip', ['-q', zipPath, '-d', join(dir, 'model')]);
    const out = execFileSync('target/release/wick', [
      'generate', '--model', join(dir, 'model'), '--raw', '--prompt', 'The Senate', '--temperature', '0', '--max-tokens', '12',
    ], { encoding: 'utf8' });
    assert.ok(out.trim().length > 0, out);
    console.log(`native CLI on the downloaded folder: ${JSON.stringify(out.trim())}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(consoleErrors, []);
});
