// Shared plumbing for the browser tests and the browser benchmark: the dev server and
// Debian's Chromium driven by playwright-core (no downloaded browser).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../../scripts/serve.mjs';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * Starts the dev server on a free port (serving `root`, the checkout by default; `roots`: more
 * folders its files' real paths may lie in) and Chromium with a fresh profile.
 */
export async function openBrowser({ alsoServe = [], root = undefined, roots = [] } = {}) {
  const requests = [];
  const server = await startServer({ port: 0, root, roots, alsoServe, onRequest: (method, url, status) => requests.push({ method, url, status }) });
  const base = `http://127.0.0.1:${server.address().port}/`;
  const profile = mkdtempSync(join(tmpdir(), 'wick-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1000, height: 800 },
  });
  let serving = true;
  /** Stops the server (open connections too), as if the site went away. */
  const stopServer = async () => {
    if (!serving) return;
    serving = false;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  const close = async () => {
    await context.close();
    await stopServer();
    rmSync(profile, { recursive: true, force: true });
  };
  return { base, context, requests, close, stopServer };
}

/**
 * Watches the engine workers `page` creates: each is kept in `window.__workers`, and gets the
 * worker's `__test` message `window.__workerHook` (or `hook`, when that is unset) before anything
 * else. Call before the page's first `goto`.
 */
export async function watchWorkers(page, hook = null) {
  await page.addInitScript((initial) => {
    window.__workers = [];
    if (initial && window.__workerHook === undefined) window.__workerHook = initial;
    const Native = window.Worker;
    window.Worker = class extends Native {
      constructor(...args) {
        super(...args);
        window.__workers.push(this);
        if (window.__workerHook) this.postMessage({ type: '__test', ...window.__workerHook });
      }
    };
  }, hook);
}

/** Resolves when the page says the model is ready (or rejects with the error it shows). */
export async function waitReady(page, timeout = 180_000, polling = 100) {
  await page.waitForFunction(() => {
    const err = document.getElementById('error');
    if (!err.hidden) throw new Error(err.textContent);
    return document.getElementById('loader').classList.contains('done') && !document.getElementById('input').disabled;
  }, null, { timeout, polling });
}

/** Types a question, sends it, waits for the reply to end; returns its text and how often it changed. */
export async function ask(page, question, timeout = 300_000) {
  await page.evaluate(() => {
    window.__updates = [];
    const box = document.getElementById('messages');
    window.__observer?.disconnect();
    window.__observer = new MutationObserver(() => {
      const last = box.querySelector('.msg.assistant:last-of-type');
      if (last && window.__updates.at(-1) !== last.textContent) window.__updates.push(last.textContent);
    });
    window.__observer.observe(box, { childList: true, subtree: true, characterData: true });
  });
  await page.fill('#input', question);
  await page.click('#send');
  await page.waitForFunction(() => {
    const err = document.getElementById('error');
    if (!err.hidden) throw new Error(err.textContent);
    const last = document.querySelector('#messages .msg.assistant:last-of-type');
    return last && !last.classList.contains('pending');
  }, null, { timeout, polling: 50 });
  return page.evaluate(async () => {
    // The reply as the model wrote it (the page shows it rendered as Markdown): the last assistant
    // turn of the kept conversation, once it holds as many replies as the page shows.
    const shown = document.querySelectorAll('#messages .msg.assistant').length;
    let raw = null;
    for (let i = 0; i < 200 && raw === null; i++) {
      const turns = await import('/www/conversations.js')
        .then(({ listConversations }) => listConversations())
        .then((all) => all[0]?.turns ?? [], () => []);
      if (turns.filter((t) => t.role === 'assistant').length >= shown) raw = turns.at(-1)?.content ?? null;
      else await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return {
      text: document.querySelector('#messages .msg.assistant:last-of-type').firstChild?.textContent ?? '',
      raw,
      updates: window.__updates.length,
      status: document.getElementById('status').textContent,
    };
  });
}
