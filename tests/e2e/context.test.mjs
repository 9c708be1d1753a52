// Long conversations in headless Chromium: on a page loaded with a small context (?context=384),
// a conversation several times longer than the context keeps answering; the oldest turns slide
// out (the system prompt stays), the page says so, and the turns after a slide reuse the KV
// cache of the prefix that was kept.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, waitReady, ask } from './browser.mjs';

const QUESTIONS = [
  'What is the capital of Italy?', 'Name three colours of the rainbow.', 'What do bees make?',
  'How many legs does a spider have?', 'What is the largest ocean?', 'Which planet is known as the red planet?',
  'What is water made of?', 'Name a fruit that is yellow.', 'What is the opposite of hot?',
  'How many days are in a week?', 'What do cows drink?', 'What is the capital of Japan?',
  'What colour is the sky?', 'How many hours are in a day?', 'What do fish live in?', 'Name a big cat.',
  'What is frozen water called?', 'Which season comes after winter?', 'What do plants need to grow?',
  'How many wheels does a bicycle have?',
];

let browser;
let page;

before(async () => {
  browser = await openBrowser();
  page = await browser.context.newPage();
});

after(async () => {
  await browser?.close();
});

test('a conversation longer than the context keeps answering: the oldest turns slide out and the page says so', async (t) => {
  await page.goto(`${browser.base}?context=384&threads=1`);
  await waitReady(page);
  assert.match(await page.textContent('#status'), /context 384 of 8192 tokens/);
  await page.click('#settings summary');
  await page.fill('#max_tokens', '48');
  const turns = [];
  for (const q of [...QUESTIONS, 'What is the capital of France?']) {
    const r = await ask(page, q);
    const m = r.status.match(/prompt (\d+) tokens \((\d+) new/);
    assert.ok(m, r.status);
    const notices = await page.$$eval('#messages .msg.notice', (els) => els.map((e) => e.textContent));
    turns.push({ q, text: r.text, prompt: Number(m[1]), fresh: Number(m[2]), notices: notices.length, notice: notices.at(-1) });
  }
  const log = JSON.stringify(turns.map((t) => [t.prompt, t.fresh, t.notices]));
  t.diagnostic(`[prompt tokens, of them new, notices so far] per turn: ${log}`);
  // Every question was answered, and no prompt with its reply ran past the context.
  for (const t of turns) {
    assert.ok(t.text.trim().length > 0, `${t.q}: empty reply`);
    assert.ok(t.prompt + 48 <= 384, log);
  }
  assert.match(turns.at(-1).text, /Paris/);
  // The window slid, more than once.
  const slides = turns.filter((t, i) => t.notices > (turns[i - 1]?.notices ?? 0));
  assert.ok(slides.length >= 2, log);
  assert.match(turns.at(-1).notice ?? '', /^The \d+ earlier messages no longer fit in the 384-token context window beside a reply of up to 48 tokens, so the model no longer sees them \(the system prompt is kept\)\.$/);
  // The turn after a slide reuses what the slide kept: most of its prompt comes from the cache.
  const i = turns.indexOf(slides[0]);
  const next = turns[i + 1];
  assert.ok(next && next.fresh < next.prompt / 2, log);
  // Whereas the slide itself reran everything after the system prompt.
  assert.ok(slides[0].fresh > slides[0].prompt / 2, log);
});
