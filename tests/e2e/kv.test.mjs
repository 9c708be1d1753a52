// KV snapshots in the browser (load option `kvCache`, engine.saveKv/restoreKv, Wick.kvCache): a
// conversation reloaded with the page continues from its snapshot in OPFS without prefilling
// again, and answers exactly as a fresh prefill does (the same tokens and logprobs); a snapshot of
// another model, of another conversation, corrupt or truncated is refused and the engine still
// answers. SmolLM2-135M-Instruct as GGUF Q4_1 and as MLX 4-bit: the same shapes, two models.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';

const GGUF = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';
const MLX = '/models/SmolLM2-135M-Instruct-MLX-4bit/';
const FIRST = [
  { role: 'system', content: 'You are a helpful AI assistant.' },
  { role: 'user', content: 'What is the capital of France?' },
];
/** Greedy, with logprobs, so two replies can be compared to the bit. */
const GREEDY = { temperature: 0, max_tokens: 12, logprobs: true, top_logprobs: 3 };

let browser;
let page;
const consoleErrors = [];

/** Opens the blank API page with wick.js imported as `window.W`. */
async function openPage() {
  await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  await page.evaluate(async () => {
    window.W = await import('/www/wick.js');
  });
}

/**
 * Loads `model` into `window[name]`; with `kvCache`, `window[name + 'Saved']` resolves at the next
 * snapshot written.
 */
async function load(name, model, kvCache) {
  await page.evaluate(async ({ name, model, kvCache }) => {
    const saved = [];
    window[`${name}Saved`] = saved;
    window[name] = await window.W.Wick.load(model, { kvCache, onKvSaved: (s) => saved.push(s) });
  }, { name, model, kvCache });
}

/** A greedy chat reply of engine `name`: its text, logprobs and cached prompt tokens. */
function reply(name, messages) {
  return page.evaluate(async ({ name, messages, params }) => {
    const r = await window[name].chat.completions.create({ messages, ...params });
    return {
      text: r.choices[0].message.content,
      logprobs: r.choices[0].logprobs.content,
      prompt: r.usage.prompt_tokens,
      cached: r.usage.prompt_tokens_details.cached_tokens,
    };
  }, { name, messages, params: GREEDY });
}

/** Waits until engine `name` has written `n` snapshots. */
async function snapshotsWritten(name, n) {
  await page.waitForFunction(({ name, n }) => window[`${name}Saved`].length >= n, { name, n }, { timeout: 60_000, polling: 50 });
}

before(async () => {
  browser = await openBrowser({ alsoServe: ['tests/e2e/pages'] });
  page = await browser.context.newPage();
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(`page exception: ${e.message}`));
  await openPage();
  await page.evaluate(() => window.W.Wick.kvCache.clear());
});

after(async () => {
  await browser?.close();
});

test('a reloaded conversation continues from its KV snapshot and answers as a fresh prefill', async () => {
  await load('engine', GGUF, true);
  const first = await reply('engine', FIRST);
  assert.ok(first.text.length > 0);
  await snapshotsWritten('engine', 1);
  const kept = await page.evaluate(() => window.W.Wick.kvCache.list());
  assert.equal(kept.length, 1, 'one snapshot per conversation');
  assert.ok(kept[0].tokens > 20 && kept[0].bytes > kept[0].tokens * 40_000, JSON.stringify(kept));
  assert.match(kept[0].model, /^[0-9a-f]{64}$/);

  await openPage(); // a reload: a new engine, its cache empty
  const second = [...FIRST, { role: 'assistant', content: first.text }, { role: 'user', content: 'And of Italy?' }];
  await load('engine', GGUF, true);
  const restored = await reply('engine', second);
  assert.ok(restored.cached >= kept[0].tokens, `the snapshot's ${kept[0].tokens} tokens are not prefilled (${restored.cached} cached of ${restored.prompt})`);

  await load('fresh', GGUF, false);
  const prefilled = await reply('fresh', second);
  assert.equal(prefilled.cached, 0, 'the fresh engine prefills everything');
  assert.equal(restored.text, prefilled.text);
  assert.deepEqual(restored.logprobs, prefilled.logprobs, 'the same tokens with the same logprobs, to the bit');

  // The second reply replaced the first one's snapshot (its tokens start the new one).
  await snapshotsWritten('engine', 1);
  const now = await page.evaluate(() => window.W.Wick.kvCache.list());
  assert.equal(now.length, 1, JSON.stringify(now));
  assert.ok(now[0].tokens > kept[0].tokens);
  assert.deepEqual(await page.evaluate(async () => {
    await window.W.Wick.kvCache.clear();
    return window.W.Wick.kvCache.estimate();
  }), { count: 0, bytes: 0 });
  await page.evaluate(() => Promise.all([window.engine.unload(), window.fresh.unload()]));
});

test('a warmed system prompt is kept, and a returning visit restores it instead of prefilling', async () => {
  await openPage();
  await page.evaluate(() => window.W.Wick.kvCache.clear());
  const system = [FIRST[0]];
  const question = [FIRST[0], { role: 'user', content: 'Name three colors.' }];
  await load('engine', MLX, true);
  const first = await page.evaluate((system) => window.engine.warm(system), system);
  assert.equal(first.restored_tokens, 0, 'nothing is kept on a first visit');
  assert.ok(first.cached_tokens > 5, JSON.stringify(first));
  await snapshotsWritten('engine', 1);
  // A reply in a conversation that starts with it keeps its own snapshot beside the warm one.
  await reply('engine', FIRST);
  await snapshotsWritten('engine', 2);
  const kept = await page.evaluate(() => window.W.Wick.kvCache.list());
  const warm = kept.filter((s) => s.warm);
  assert.equal(kept.length, 2, JSON.stringify(kept));
  assert.equal(warm.length, 1, JSON.stringify(kept));
  assert.equal(warm[0].tokens, first.cached_tokens);
  assert.match(warm[0].name, /^warm-\d+-[0-9a-f]{32}\.kv$/);

  await openPage(); // a reload: a new engine, its cache empty
  await load('engine', MLX, true);
  const again = await page.evaluate((system) => window.engine.warm(system), system);
  assert.deepEqual(again, { cached_tokens: first.cached_tokens, restored_tokens: first.cached_tokens });
  const restored = await reply('engine', question);
  assert.equal(restored.cached, first.cached_tokens, 'the question prefills only what follows the system prompt');
  await load('fresh', MLX, false);
  const prefilled = await reply('fresh', question);
  assert.equal(prefilled.cached, 0);
  assert.equal(restored.text, prefilled.text);
  assert.deepEqual(restored.logprobs, prefilled.logprobs, 'the same tokens with the same logprobs, to the bit');
  // A cache that holds another conversation goes back to the warm start from its snapshot too.
  const third = await page.evaluate(async (system) => {
    await window.engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 });
    return window.engine.warm(system);
  }, system);
  assert.equal(third.restored_tokens, first.cached_tokens, 'a cache holding another conversation restores the warm start again');
  await page.evaluate(() => Promise.all([window.engine.unload(), window.fresh.unload(), window.W.Wick.kvCache.clear()]));
});

test('Wick.kvCache.clear waits for a snapshot being written instead of failing', async () => {
  await openPage();
  const result = await page.evaluate(async () => {
    const opfs = await navigator.storage.getDirectory();
    const kv = await opfs.getDirectoryHandle('kv', { create: true });
    const dir = await kv.getDirectoryHandle('a-model', { create: true });
    const file = await dir.getFileHandle(`12-${'0'.repeat(32)}.kv`, { create: true });
    const writable = await file.createWritable();
    await writable.write(new Uint8Array(1000));
    const cleared = window.W.Wick.kvCache.clear().then(() => 'cleared', (e) => `${e.name}: ${e.message}`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await writable.close();
    return { cleared: await cleared, after: await window.W.Wick.kvCache.estimate() };
  });
  assert.deepEqual(result, { cleared: 'cleared', after: { count: 0, bytes: 0 } });
});

test('saveKv/restoreKv: another model, another conversation, corrupt and truncated snapshots are refused', async () => {
  await openPage();
  await load('gguf', GGUF, false);
  await load('mlx', MLX, false);
  const first = await reply('gguf', FIRST);
  const conversation = [...FIRST, { role: 'assistant', content: first.text }];
  const next = [...conversation, { role: 'user', content: 'And of Italy?' }];
  await page.evaluate(async (conversation) => {
    window.bytes = await window.gguf.saveKv(conversation);
  }, conversation);

  /** Restores window.bytes changed by `change` into engine `name`; the error, then a reply. */
  const refused = async (name, change, messages) => {
    const error = await page.evaluate(async ({ name, change, messages }) => {
      const bytes = new Function('b', `return (${change})(b)`)(window.bytes.slice());
      try {
        await window[name].restoreKv(bytes, messages);
        return null;
      } catch (e) {
        return { code: e.code, message: e.message };
      }
    }, { name, change, messages });
    const after = await reply(name, next);
    assert.ok(after.text.length > 0, 'the engine still answers');
    return error;
  };

  let e = await refused('mlx', '(b) => b', next);
  assert.equal(e?.code, 'invalid_request');
  assert.match(e.message, /made by another model/);
  e = await refused('gguf', '(b) => b', [FIRST[0], { role: 'user', content: 'Write a haiku about rain.' }]);
  assert.match(e?.message ?? '', /another conversation/);
  e = await refused('gguf', '(b) => { b[b.length >> 1] ^= 1; return b; }', next);
  assert.match(e?.message ?? '', /corrupt: its checksum does not match/);
  e = await refused('gguf', '(b) => b.subarray(0, b.length - 1000)', next);
  assert.match(e?.message ?? '', /truncated/);

  // The snapshot whole restores, and the reply prefills only the rest.
  const cached = await page.evaluate((next) => window.gguf.restoreKv(window.bytes, next), next);
  assert.ok(cached.cached_tokens > 20);
  const after = await reply('gguf', next);
  assert.equal(after.cached, cached.cached_tokens);
  await page.evaluate(() => Promise.all([window.gguf.unload(), window.mlx.unload()]));
});

test('a snapshot of another model filed under this model is refused at a reload, and the page still answers', async () => {
  await openPage();
  await page.evaluate(() => window.W.Wick.kvCache.clear());
  // The MLX model's snapshot of the conversation, then moved where the GGUF model's would be.
  await load('mlx', MLX, true);
  const first = await reply('mlx', FIRST);
  await snapshotsWritten('mlx', 1);
  const [theirs] = await page.evaluate(() => window.W.Wick.kvCache.list());
  // A short chat on the GGUF model makes its directory.
  await load('gguf', GGUF, true);
  await reply('gguf', [{ role: 'user', content: 'Hi' }]);
  await snapshotsWritten('gguf', 1);
  const moved = await page.evaluate(async (theirs) => {
    const ours = (await window.W.Wick.kvCache.list()).find((s) => s.model !== theirs.model);
    const kv = await (await navigator.storage.getDirectory()).getDirectoryHandle('kv');
    const bytes = await (await (await (await kv.getDirectoryHandle(theirs.model)).getFileHandle(theirs.name)).getFile()).arrayBuffer();
    await kv.removeEntry(theirs.model, { recursive: true });
    const w = await (await (await kv.getDirectoryHandle(ours.model)).getFileHandle(theirs.name, { create: true })).createWritable();
    await w.write(bytes);
    await w.close();
    return { model: ours.model, name: theirs.name };
  }, theirs);
  await page.evaluate(() => Promise.all([window.mlx.unload(), window.gguf.unload()]));

  await openPage();
  await load('gguf', GGUF, true);
  const next = [...FIRST, { role: 'assistant', content: first.text }, { role: 'user', content: 'And of Italy?' }];
  const answer = await reply('gguf', next);
  assert.ok(answer.text.length > 0, 'the page answers');
  assert.equal(answer.cached, 0, 'nothing was restored from the other model\'s snapshot');
  const left = await page.evaluate(() => window.W.Wick.kvCache.list());
  assert.ok(!left.some((s) => s.name === moved.name && s.model === moved.model), 'the refused snapshot is deleted');
  await page.evaluate(() => window.gguf.unload());
  assert.deepEqual(consoleErrors, []);
});
