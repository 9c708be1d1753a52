// The chat page as a product: Markdown replies (and model output that tries to run code staying
// inert), regenerate and edit-and-resend, conversations kept across reloads, the storage panel,
// keyboard use, the phone-width layout, and axe-core's accessibility audit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { openBrowser, waitReady, ask } from './browser.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const SCREENS = process.env.WICK_SCREENS ?? 'test-results';

/** A stored reply with every Markdown part the page styles. */
const MARKDOWN = [
  'Here is the function:',
  '',
  '```python',
  'def add(a, b):',
  '    return a + b',
  '```',
  '',
  '- first item',
  '- second item',
  '- third item',
  '',
  '1. one',
  '2. two',
  '',
  '| Language | Typing |',
  '| --- | --- |',
  '| Python | dynamic |',
  '| Rust | static |',
  '',
  'See [the docs](https://example.com/docs) and `inline code`.',
].join('\n');

/**
 * Model output that would run code if it reached the page as HTML: each payload sets
 * window.__xss or opens a dialog when it runs.
 */
const XSS = [
  '<img src=x onerror="window.__xss = 1; alert(1)">',
  '<script>window.__xss = 2; alert(2)</script>',
  '<svg onload="window.__xss = 3; alert(3)"><circle r="5"/></svg>',
  '<a href="javascript:window.__xss = 4; alert(4)">html link</a>',
  '[md link](javascript:window.__xss=5;alert(5))',
  '[entity link](jav&#x61;script:window.__xss=6;alert(6))',
  '[spaced link]( javascript:window.__xss=7 )',
  '![image](x" onerror="window.__xss=8;alert(8))',
  '<iframe src="javascript:window.parent.__xss=9"></iframe>',
  '<details open ontoggle="window.__xss=10">x</details>',
  '[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
  '<a href="#" style="position:fixed;inset:0" onclick="window.__xss=11">cover</a>',
].join('\n\n');

let browser;
let page;
const dialogs = [];
const consoleErrors = [];

before(async () => {
  browser = await openBrowser();
  await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: browser.base });
  page = await browser.context.newPage();
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss();
  });
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(`page exception: ${e.message}`));
  await page.goto(browser.base);
  await waitReady(page);
  mkdirSync(SCREENS, { recursive: true });
});

after(async () => {
  await browser?.close();
});

/** axe-core's findings on the page as it is now that are serious or critical. */
async function axeViolations(p) {
  await p.evaluate(AXE);
  const result = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/** Keeps a conversation through the app's own storage module and reloads onto it. */
async function openStored(turns, title = 'Stored chat') {
  await page.evaluate(async ({ turns, title }) => {
    const store = await import('/www/conversations.js');
    const c = { ...store.newConversation(), title, named: true, turns };
    await store.saveConversation(c);
    store.rememberOpen(c.id);
  }, { turns, title });
  await page.reload();
  await waitReady(page);
  await page.waitForFunction((n) => document.querySelectorAll('#messages .msg').length === n, turns.length);
}

test('the vendored marked and DOMPurify are the copies of the versions package-lock.json pins', () => {
  const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')).packages;
  for (const [name, from, to] of [
    ['marked', 'node_modules/marked/lib/marked.esm.js', 'www/vendor/marked.esm.js'],
    ['dompurify', 'node_modules/dompurify/dist/purify.es.mjs', 'www/vendor/purify.es.mjs'],
  ]) {
    const installed = JSON.parse(readFileSync(`node_modules/${name}/package.json`, 'utf8')).version;
    assert.equal(installed, lock[`node_modules/${name}`].version, `${name}: run npm ci`);
    assert.ok(readFileSync(to).equals(readFileSync(from)), `${to} differs from ${name} ${installed}: run scripts/vendor-js.sh`);
  }
});

const lastReply = (p = page) => p.locator('#messages .msg.assistant').last();

test('a reply renders Markdown: a code block with a copy button, lists, a table, a safe link', async () => {
  await openStored([{ role: 'user', content: 'Show me Markdown.' }, { role: 'assistant', content: MARKDOWN }]);
  const reply = lastReply();
  assert.equal(await reply.locator('pre code.language-python').textContent(), 'def add(a, b):\n    return a + b\n');
  assert.equal(await reply.locator('ul > li').count(), 3);
  assert.equal(await reply.locator('ol > li').count(), 2);
  assert.deepEqual(await reply.locator('table th').allTextContents(), ['Language', 'Typing']);
  assert.deepEqual(await reply.locator('table td').allTextContents(), ['Python', 'dynamic', 'Rust', 'static']);
  assert.equal(await reply.locator('code:not(pre code)').textContent(), 'inline code');
  const link = reply.locator('a');
  assert.equal(await link.getAttribute('href'), 'https://example.com/docs');
  assert.equal(await link.getAttribute('target'), '_blank');
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');

  await reply.locator('button.copy-code').click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), 'def add(a, b):\n    return a + b\n');
  await reply.locator('button[aria-label="Copy reply"]').click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), MARKDOWN);
  await page.screenshot({ path: `${SCREENS}/chat-desktop-markdown.png` });
});

test('model output with script, event handlers, javascript: and data: links stays inert', async () => {
  await openStored([{ role: 'user', content: 'Attack.' }, { role: 'assistant', content: XSS }]);
  const reply = lastReply();
  // Raw HTML shows as text, so the reader sees what the model wrote.
  assert.match(await reply.textContent(), /<img src=x onerror=/);
  assert.match(await reply.textContent(), /<script>window.__xss = 2/);
  const found = await page.evaluate(() => {
    const box = document.getElementById('messages');
    const all = [...box.querySelectorAll('*')];
    return {
      tags: [...new Set(all.map((e) => e.tagName.toLowerCase()))].sort(),
      handlers: all.flatMap((e) => [...e.attributes].filter((a) => a.name.startsWith('on') || a.name === 'style').map((a) => a.name)),
      hrefs: [...box.querySelectorAll('[href], [src], [action], [formaction]')].map((e) => e.getAttribute('href') ?? e.getAttribute('src')),
    };
  });
  for (const tag of ['script', 'img', 'svg', 'iframe', 'details', 'object', 'embed', 'style']) {
    assert.ok(!found.tags.includes(tag), `a <${tag}> reached the page: ${found.tags}`);
  }
  assert.deepEqual(found.handlers, []);
  assert.ok(found.hrefs.every((h) => !/^\s*(javascript|data|vbscript):/i.test(h)), `unsafe URLs: ${found.hrefs}`);

  // Clicking every link the reply has navigates nowhere and runs nothing.
  const url = page.url();
  const pages = browser.context.pages().length;
  for (const a of await reply.locator('a').all()) await a.click({ force: true });
  await page.waitForTimeout(300);
  assert.equal(page.url(), url);
  assert.equal(browser.context.pages().length, pages);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.deepEqual(dialogs, []);
});

test('partial Markdown streams into one element, rendered at most once per animation frame', async () => {
  const result = await page.evaluate(async (text) => {
    const { markdownStream } = await import('/www/markdown.js');
    const el = document.createElement('div');
    document.body.append(el);
    const view = markdownStream(el);
    const frame = () => new Promise((r) => requestAnimationFrame(r));
    let updates = 0;
    let empty = 0;
    const observer = new MutationObserver(() => {
      if (!el.textContent) empty += 1;
    });
    observer.observe(el, { childList: true, subtree: true, characterData: true });
    // 4 characters at a time, many tokens per frame, as a fast model streams.
    for (let i = 4; i < text.length; i += 4) {
      view.update(text.slice(0, i));
      updates += 1;
      if (i % 64 === 0) await frame();
    }
    view.update(text);
    await frame();
    await frame();
    observer.disconnect();
    const out = { updates, renders: view.renders, empty, code: el.querySelector('pre code')?.textContent, cells: el.querySelectorAll('td').length };
    el.remove();
    return out;
  }, MARKDOWN);
  assert.ok(result.updates > 50, JSON.stringify(result));
  assert.ok(result.renders <= Math.ceil(result.updates / 16) + 2, `rendered ${result.renders} times for ${result.updates} updates`);
  assert.equal(result.empty, 0, 'the reply was shown empty while it grew');
  assert.equal(result.code, 'def add(a, b):\n    return a + b\n');
  assert.equal(result.cells, 4);
});

test('a real reply streams as Markdown into one element that never empties', async () => {
  await page.click('#new-chat');
  await page.evaluate(() => {
    window.__replyNodes = new Set();
    window.__emptied = 0;
    const box = document.getElementById('messages');
    new MutationObserver(() => {
      const last = box.querySelector('.msg.assistant:last-of-type');
      if (!last) return;
      window.__replyNodes.add(last);
      if (window.__replyNodes.size === 1 && last.dataset.seen && !last.querySelector('.body').textContent) window.__emptied += 1;
      if (last.querySelector('.body').textContent) last.dataset.seen = '1';
    }).observe(box, { childList: true, subtree: true, characterData: true });
  });
  const reply = await ask(page, 'Write a Python function that adds two numbers.');
  assert.ok(reply.updates >= 3, `only ${reply.updates} updates`);
  assert.equal(await page.evaluate(() => window.__replyNodes.size), 1);
  assert.equal(await page.evaluate(() => window.__emptied), 0);
  assert.ok(await lastReply().locator('pre code').count() >= 1, `no code block in: ${reply.text}`);
  assert.match(await lastReply().locator('pre code').first().textContent(), /def \w+\(/);
});

/** The kept conversation that is open, read back from IndexedDB. */
const storedTurns = () => page.evaluate(async () => {
  const store = await import('/www/conversations.js');
  const id = store.lastOpen();
  return (await store.listConversations()).find((c) => c.id === id)?.turns.map((t) => `${t.role}: ${t.content}`);
});

test('regenerate replaces the last reply with a new one for the same question', async () => {
  await page.click('#new-chat');
  const first = await ask(page, 'What is the capital of France?');
  assert.match(first.text, /Paris/);
  const before = await storedTurns();
  assert.equal(before.length, 2);
  await lastReply().locator('button[aria-label="Regenerate reply"]').click();
  await page.waitForFunction(() => document.querySelector('#messages .msg.assistant:last-of-type.pending'));
  await page.waitForFunction(() => !document.querySelector('#messages .msg.assistant.pending'), null, { timeout: 120_000 });
  assert.equal(await page.locator('#messages .msg').count(), 2);
  assert.equal(await page.locator('#messages .msg.user').textContent(), 'What is the capital of France?');
  // Greedy sampling: the same question gives the same reply again.
  assert.equal(await lastReply().locator('.body').textContent(), first.text);
  assert.deepEqual(await storedTurns(), before);
  assert.match(await page.textContent('#status'), /tok\/s/);
});

test('edit-and-resend replaces the last question and its reply', async () => {
  await page.locator('#messages .msg.user').last().locator('button[aria-label="Edit and resend"]').click();
  const box = page.getByLabel('Edit your message');
  assert.equal(await box.inputValue(), 'What is the capital of France?');
  await box.fill('What is the capital of Italy?');
  await box.press('Enter');
  await page.waitForFunction(() => document.querySelector('#messages .msg.assistant:last-of-type.pending'));
  await page.waitForFunction(() => !document.querySelector('#messages .msg.assistant.pending'), null, { timeout: 120_000 });
  assert.equal(await page.locator('#messages .msg').count(), 2);
  assert.equal(await page.locator('#messages .msg.user .body').textContent(), 'What is the capital of Italy?');
  assert.match(await lastReply().locator('.body').textContent(), /Rome/);
  const turns = await storedTurns();
  assert.equal(turns.length, 2);
  assert.equal(turns[0], 'user: What is the capital of Italy?');
  assert.match(turns[1], /^assistant: .*Rome/s);
});

test('conversations survive a reload, and can be renamed, opened and deleted from the keyboard', async () => {
  const italy = await page.locator('#messages').innerText();
  await page.click('#new-chat');
  await ask(page, 'What is the capital of Germany?');
  const germany = await page.locator('#messages').innerText();
  await page.reload();
  await waitReady(page);
  await page.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 2);
  assert.equal(await page.locator('#messages').innerText(), germany, 'the open conversation came back');
  const titles = await page.locator('#conversation-list .open').allTextContents();
  assert.deepEqual(titles.slice(0, 2), ['What is the capital of Germany?', 'What is the capital of Italy?']);
  assert.equal(await page.locator('#conversation-list .open[aria-current]').textContent(), 'What is the capital of Germany?');

  // Rename with the keyboard: focus the button, Enter, type, Enter.
  await page.locator('#conversation-list li').nth(1).locator('.rename').focus();
  await page.keyboard.press('Enter');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('Italy');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('#conversation-list .open')].some((b) => b.textContent === 'Italy'));
  // Open it with the keyboard.
  await page.locator('#conversation-list .open', { hasText: 'Italy' }).focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction((t) => document.getElementById('messages').innerText === t, italy);
  await page.reload();
  await waitReady(page);
  await page.waitForFunction((t) => document.getElementById('messages').innerText === t, italy);
  assert.equal(await page.locator('#conversation-list .open[aria-current]').textContent(), 'Italy');

  // Delete it: the list and a reload forget it.
  const count = await page.locator('#conversation-list li').count();
  await page.locator('#conversation-list button[aria-label="Delete “Italy”"]').click();
  await page.waitForFunction((n) => document.querySelectorAll('#conversation-list li').length === n - 1, count);
  assert.equal(await page.locator('#messages .msg').count(), 0);
  await page.reload();
  await waitReady(page);
  await page.waitForFunction(() => document.querySelector('#conversation-list li'));
  assert.ok(!(await page.locator('#conversation-list .open').allTextContents()).includes('Italy'));
});

test('storage use is shown and clearing the chats empties the list for good', async () => {
  await page.waitForFunction(() => /chats? [\d.]+ kB/.test(document.getElementById('storage-use').textContent));
  const text = await page.textContent('#storage-use');
  const m = text.match(/([\d.]+) MB used of ([\d.]+) MB: downloaded models ([\d.]+) MB, (\d+) chats? [\d.]+ kB, (\d+) KV snapshots? ([\d.]+) MB · works offline/);
  assert.ok(m, text);
  assert.ok(Number(m[3]) > 99, text); // the default model, about 100 MB
  assert.ok(Number(m[4]) >= 2, text);
  // The replies above left their KV snapshots; they go with the chats.
  assert.ok(Number(m[5]) >= 1 && Number(m[6]) > 1, text);
  await page.click('#clear-chats');
  await page.waitForFunction(() => !document.querySelector('#conversation-list li') && /, 0 chats [\d.]+ kB, 0 KV snapshots/.test(document.getElementById('storage-use').textContent));
  assert.deepEqual(await page.evaluate(async () => (await import('/www/wick.js')).Wick.kvCache.list()), []);
  await page.reload();
  await waitReady(page);
  await page.waitForFunction(() => /, 0 chats/.test(document.getElementById('storage-use').textContent));
  assert.equal(await page.locator('#conversation-list li').count(), 0);
  assert.equal(await page.locator('#messages .msg').count(), 0);
  // Deleting the downloaded models empties the model cache; the loaded model keeps answering.
  await page.click('#clear-models');
  await page.waitForFunction(() => /downloaded models 0\.0 MB/.test(document.getElementById('storage-use').textContent));
  assert.deepEqual(await page.evaluate(async () => (await import('/www/wick.js')).Wick.cache.list()), []);
});

test('axe-core finds nothing serious or critical at desktop width', async () => {
  await ask(page, 'What is the capital of France?');
  assert.deepEqual(await axeViolations(page), []);
  await page.screenshot({ path: `${SCREENS}/chat-desktop.png` });
});

test('at phone width the page fits, the chat list folds away, and axe-core finds nothing serious', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await openStored([{ role: 'user', content: 'Show me Markdown.' }, { role: 'assistant', content: MARKDOWN }], 'Markdown');
  const fits = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  assert.ok(await fits(), 'the page scrolls sideways');
  assert.ok(await page.isHidden('#sidebar'));
  assert.equal(await page.getAttribute('#toggle-list', 'aria-expanded'), 'false');
  assert.deepEqual(await axeViolations(page), []);
  await page.screenshot({ path: `${SCREENS}/chat-phone.png` });
  await page.click('#toggle-list');
  assert.ok(await page.isVisible('#sidebar'));
  assert.equal(await page.getAttribute('#toggle-list', 'aria-expanded'), 'true');
  assert.ok(await fits());
  assert.deepEqual(await axeViolations(page), []);
  await page.screenshot({ path: `${SCREENS}/chat-phone-list.png` });
  // Escape folds it away and gives the focus back to the button; Enter opens it again.
  await page.keyboard.press('Escape');
  assert.ok(await page.isHidden('#sidebar'));
  assert.equal(await page.evaluate(() => document.activeElement.id), 'toggle-list');
  await page.keyboard.press('Enter');
  assert.ok(await page.isVisible('#sidebar'));
  assert.equal(await page.evaluate(() => document.activeElement.id), 'new-chat');
  // Opening a conversation folds the list again.
  await page.locator('#conversation-list .open').first().click();
  await page.waitForSelector('#sidebar', { state: 'hidden' });
  const reply = await ask(page, 'What is the capital of France?');
  assert.match(reply.text, /Paris/);
  assert.ok(await fits());
  await page.setViewportSize({ width: 1000, height: 800 });
});

test('while the server lists no MLX folder yet (a first run), the page starts with the GGUF and answers', async () => {
  const MLX_PATH = 'models/SmolLM2-135M-Instruct-MLX-4bit/';
  const asked = [];
  // At the context, so the service worker's requests are seen too.
  const list = async (route) => {
    const response = await route.fetch();
    const models = await response.json();
    assert.ok(models.some((m) => m.path === MLX_PATH), 'the real listing has the folder');
    await route.fulfill({ response, json: models.filter((m) => m.path !== MLX_PATH) });
  };
  const folder = (route) => {
    asked.push(route.request().url());
    return route.fulfill({ status: 404, body: 'not yet' });
  };
  await browser.context.route(/\/models\/$/, list);
  await browser.context.route(/SmolLM2-135M-Instruct-MLX-4bit/, folder);
  const first = await browser.context.newPage();
  first.on('pageerror', (e) => consoleErrors.push(`page exception: ${e.message}`));
  first.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  // A browser that has never loaded the folder (the model that loaded last is remembered).
  await first.addInitScript(() => localStorage.removeItem('wick-loaded-model'));
  const later = await browser.context.newPage();
  later.on('pageerror', (e) => consoleErrors.push(`page exception: ${e.message}`));
  try {
    await first.goto(browser.base);
    await waitReady(first);
    assert.equal(await first.inputValue('#model-choice'), 'models/SmolLM2-135M-Instruct.Q4_1.gguf');
    assert.deepEqual(asked, [], 'nothing of the MLX folder is asked for');
    const reply = await ask(first, 'What is the capital of France?');
    assert.match(reply.text, /Paris/);

    // A returning visit starts the model that loaded last before the server's list comes; a
    // folder that loaded last time but is gone now (and no longer kept) leaves the list to
    // choose, as above.
    const forgotten = await first.evaluate(async (folder) => {
      const { Wick } = await import('/www/wick.js');
      const kept = (await Wick.cache.list()).filter((f) => f.url.includes(folder));
      for (const f of kept) await Wick.cache.delete(f.url);
      return kept.length;
    }, MLX_PATH);
    assert.ok(forgotten > 0, 'the folder was kept by an earlier visit');
    await later.addInitScript((path) => localStorage.setItem('wick-loaded-model', path), MLX_PATH);
    await later.goto(browser.base);
    await later.waitForFunction(() => document.getElementById('loader').classList.contains('done') &&
      document.getElementById('model-choice').value.endsWith('.gguf') && !document.getElementById('input').disabled, null, { timeout: 180_000, polling: 100 });
    assert.ok(asked.length > 0, 'the remembered folder was tried first');
    assert.equal(await later.isHidden('#error'), true, await later.textContent('#error'));
    assert.match((await ask(later, 'What is the capital of France?')).text, /Paris/);
    assert.equal(await later.evaluate(() => localStorage.getItem('wick-loaded-model')), 'models/SmolLM2-135M-Instruct.Q4_1.gguf');
  } finally {
    await browser.context.unroute(/\/models\/$/, list);
    await browser.context.unroute(/SmolLM2-135M-Instruct-MLX-4bit/, folder);
    await first.close();
    await later.close();
  }
});

test('the console shows no errors', () => {
  assert.deepEqual(consoleErrors, []);
});
