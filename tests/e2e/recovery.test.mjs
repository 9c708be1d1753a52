// Crash recovery in headless Chromium: a wasm trap, an engine out of memory and an engine that
// stops answering are each recovered in place. The tests reach the engine's worker through the
// worker's test hook (`{ type: '__test' }`, protocol.js), posted to the Worker objects the page
// creates (an init script records them); no page control or API call can send it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, waitReady, ask, watchWorkers } from './browser.mjs';

const MLX = '/models/SmolLM2-135M-Instruct-MLX-4bit/';
const FRANCE = 'What is the capital of France?';

let browser;
let page;

before(async () => {
  browser = await openBrowser({ alsoServe: ['tests/e2e/pages'] });
  page = await browser.context.newPage();
  await watchWorkers(page);
});

after(async () => {
  await browser?.close();
});

/** Arms a test hook in the newest engine worker of the page. */
const arm = (action) => page.evaluate((a) => window.__workers.at(-1).postMessage({ type: '__test', action: a }), action);

/** Sends a question that the armed hook makes crash; resolves to the banner once the engine is back. */
async function crashAndWait(question) {
  const workers = await page.evaluate(() => window.__workers.length);
  await page.fill('#input', question);
  await page.click('#send');
  await page.waitForFunction(() => {
    const banner = document.getElementById('error');
    return !banner.hidden && /The engine was restarted/.test(banner.textContent);
  }, null, { timeout: 120_000, polling: 100 });
  const after = await page.evaluate(() => ({
    banner: document.getElementById('error').textContent,
    status: document.getElementById('status').textContent,
    workers: window.__workers.length,
    messages: [...document.querySelectorAll('#messages .msg')].map((m) => [m.classList[1], m.firstChild?.textContent ?? '']),
    input: !document.getElementById('input').disabled,
  }));
  assert.equal(after.workers, workers + 1, 'a fresh worker (a new wasm instance) was started');
  assert.ok(after.input, 'the page stays usable');
  return after;
}

/** Prompt tokens and how many of them were new, from the status line after a reply. */
const promptTokens = (status) => {
  const m = status.match(/prompt (\d+) tokens \((\d+) new/);
  assert.ok(m, status);
  return { prompt: Number(m[1]), fresh: Number(m[2]) };
};

test('a wasm trap mid-reply is recovered in place: a fresh worker loads the model again, the conversation stays, the next message is answered', async () => {
  // One thread: the single-threaded build, the lighter of the two to reload.
  await page.goto(`${browser.base}?threads=1`);
  await waitReady(page);
  const first = await ask(page, FRANCE);
  assert.match(first.text, /Paris/);
  const before = promptTokens(first.status);

  await arm('trap');
  const crash = await crashAndWait('Tell me more about it.');
  assert.match(crash.banner, /^The engine crashed \(unreachable\)/);
  assert.match(crash.banner, /restarted and the model loaded again .*the conversation is kept/);
  assert.match(crash.status, /Restarted after a crash \(engine_crashed\)/);
  // The first exchange is still on the page; the failed question is, its reply is not.
  assert.deepEqual(crash.messages.slice(0, 2).map(([role]) => role), ['user', 'assistant']);
  assert.match(crash.messages[1][1], /Paris/);

  const next = await ask(page, FRANCE);
  assert.match(next.text, /Paris/);
  // The whole conversation was sent again. The new instance's cache was empty, and it restored
  // the KV snapshot kept after the first reply: at least the first prompt did not run again.
  const after = promptTokens(next.status);
  assert.ok(after.prompt > before.prompt + 20, `${after.prompt} vs ${before.prompt}`);
  assert.ok(after.fresh > 0 && after.fresh <= after.prompt - before.prompt, `${after.fresh} new of ${after.prompt}`);
});

test('an engine that runs out of memory is recovered in place and the next message is answered', async () => {
  await arm('oom');
  const crash = await crashAndWait('And what about Spain?');
  assert.match(crash.banner, /^The engine ran out of memory \(unreachable\) at \d\.\d\d GiB of WebAssembly memory\./);
  assert.match(crash.status, /Restarted after a crash \(out_of_memory\)/);
  const next = await ask(page, FRANCE);
  assert.match(next.text, /Paris/);
  // The conversation's last snapshot (after the reply before the crash) was restored.
  const after = promptTokens(next.status);
  assert.ok(after.fresh > 0 && after.fresh < after.prompt, `${after.fresh} new of ${after.prompt}`);
});

test('the watchdog catches an engine that stops answering; a crash right after a restart stops the engine for good', async () => {
  await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  const r = await page.evaluate(async ({ model, question }) => {
    const { Wick } = await import('/www/wick.js');
    const events = [];
    const engine = await Wick.load(model, {
      threads: 1, watchdogSeconds: 8,
      onRestart: (e) => events.push({ phase: e.phase, code: e.error.code, message: e.error.message, memory: e.info?.memoryBytes }),
    });
    const messages = [{ role: 'system', content: 'You are a helpful AI assistant.' }, { role: 'user', content: question }];
    const answer = async () => {
      try {
        return (await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 16 })).choices[0].message.content;
      } catch (e) {
        return { code: e.code, message: e.message };
      }
    };
    const armNewest = (action) => window.__workers.at(-1).postMessage({ type: '__test', action });
    armNewest('hang');
    const t0 = performance.now();
    const hung = await answer();
    const caughtAfter = (performance.now() - t0) / 1000;
    const recovered = await answer(); // waits for the restart, then runs on the fresh worker
    const restarts = engine.info.restarts;
    // Two crashes with no success between: the engine is stopped and says so.
    armNewest('trap');
    const trapped = await answer();
    await new Promise((r) => setTimeout(r, 100));
    while (events.at(-1).phase === 'crashed') await new Promise((r) => setTimeout(r, 100));
    armNewest('trap');
    const again = await answer();
    const after = await answer();
    return { hung, caughtAfter, recovered, restarts, trapped, again, after, events, workers: window.__workers.length };
  }, { model: MLX, question: FRANCE });
  assert.equal(r.hung.code, 'engine_crashed');
  assert.match(r.hung.message, /The engine stopped answering \(nothing for 8\.0 s\)/);
  assert.ok(r.caughtAfter >= 8 && r.caughtAfter < 20, `caught after ${r.caughtAfter} s`);
  assert.match(r.recovered, /Paris/);
  assert.equal(r.restarts, 1);
  assert.equal(r.trapped.code, 'engine_crashed');
  assert.equal(r.again.code, 'engine_crashed');
  assert.match(r.after.message, /crashed again right after a restart, so it was stopped/);
  assert.deepEqual(r.events.map((e) => e.phase), ['crashed', 'restarted', 'crashed', 'restarted', 'failed']);
  assert.ok(r.events[1].memory < 2 ** 30, `a fresh instance: ${r.events[1].memory} bytes`);
  assert.equal(r.workers, 3);
});
