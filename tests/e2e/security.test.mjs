// The page locked down, in headless Chromium against the dev server: its Content-Security-Policy
// (header and <meta>) blocks inline script; hostile text (model output forced by a regex
// constraint, file names, error messages, chat-template errors) shows as text and runs nothing;
// hostile model files each give a readable error while the loaded model keeps answering; a model
// on another site waits for the user's consent. And the dev server itself: Host checks, real
// paths kept inside its roots, broken downloads that neither crash it nor leak files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openBrowser, waitReady, ask } from './browser.mjs';
import { startMockHub } from './mock-hub.mjs';
import { startServer, appPolicy } from '../../scripts/serve.mjs';

const GGUF = resolve('models/SmolLM2-135M-Instruct.Q4_1.gguf');
/** Where the hostile files are written for the page to fetch (served, ignored by git). */
const FIXTURES = 'target/e2e-security';

/** Payloads that run script if text is ever treated as HTML or a link is followed. */
const XSS = [
  '<img src=x onerror="window.__pwned=1;alert(1)">',
  '<script>window.__pwned=2;alert(2)</script>',
  '<svg onload="window.__pwned=3;alert(3)"></svg>',
  '<a href="javascript:window.__pwned=4;alert(4)">click me</a>',
  '[click me](javascript:window.__pwned=5) and ![x](javascript:window.__pwned=6)',
  '<iframe srcdoc="<script>parent.__pwned=7</script>"></iframe>',
];

let browser;
let hub;
let page;
const dialogs = [];
const violations = [];

/** The same string with regex syntax escaped (the constraint matches it literally). */
const literal = (s) => s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');

// ---------------------------------------------------------------------------------------------
// Hostile files, made from the real model's bytes.

const u64 = (n) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const ggufString = (s) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);

/** A GGUF v3 with the given string metadata and no tensors. */
function ggufStrings(meta) {
  const kvs = Object.entries(meta).map(([k, v]) => Buffer.concat([ggufString(k), u32(8), ggufString(v)]));
  return Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(kvs.length), ...kvs]);
}

/** `gguf` with its chat template replaced by `template`, padded with a comment to the same length (so no offset moves). */
function withTemplate(gguf, template) {
  const key = Buffer.from('tokenizer.chat_template');
  const at = gguf.indexOf(key) + key.length;
  assert.equal(gguf.readUInt32LE(at), 8, 'the template is a string');
  const len = Number(gguf.readBigUInt64LE(at + 4));
  const pad = len - Buffer.byteLength(template) - 4;
  assert.ok(pad >= 0, `the template fits in ${len} bytes`);
  const out = Buffer.from(gguf);
  out.write(`${template}{#${'.'.repeat(pad)}#}`, at + 12);
  return out;
}

/** The hostile files: name → [bytes, what the page's error must say]. */
function hostileFiles() {
  const gguf = readFileSync(GGUF);
  const lying = Buffer.from(gguf.subarray(0, 4 << 20));
  lying.writeBigUInt64LE(1n << 31n, 8); // the tensor count (a usize even in wasm32)
  // 4 Mi + 1 one-byte items: each would become a 32-byte value.
  const items = (1 << 22) + 1;
  const hugeArray = Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(1), ggufString('bytes'), u32(9), u32(0), u64(items), Buffer.alloc(items, 7)]);
  const loops = '{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{{ a }}{% endfor %}{% endfor %}{% endfor %}';
  return {
    'truncated.gguf': [gguf.subarray(0, 10 << 20), /file is truncated: .* needs bytes \d+\.\.\d+, but the file has 10485760 bytes/],
    'wrong-magic.gguf': [Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(4096)]), /not a GGUF file: it starts with bytes \[89 50 4e 47\]/],
    'lying-counts.gguf': [lying, /tensor count is 2147483648, more than the \d+ bytes left/],
    'huge-array.gguf': [hugeArray, /metadata arrays hold more than 4194304 items \(`bytes` alone has 4194305\)/],
    'nested-loops.gguf': [withTemplate(gguf, loops), /chat template was stopped: it took more than \d+ steps/],
  };
}

/**
 * Loads `url`'s bytes into the page's file input as a file called `name`, as a user picking it
 * would; resolves to the name the browser gave the file.
 */
async function pickFile(url, name) {
  return page.evaluate(async ({ url, name }) => {
    const blob = await (await fetch(url)).blob();
    const files = new DataTransfer();
    files.items.add(new File([blob], name));
    const input = document.getElementById('model-file');
    input.files = files.files;
    input.dispatchEvent(new Event('change'));
    return input.files[0].name;
  }, { url, name });
}

/** Waits for the load that is under way to end in an error; returns the error's text. */
async function loadError(timeout = 120_000) {
  await page.waitForFunction(() => !document.getElementById('error').hidden && document.getElementById('loader').classList.contains('done'), null, { timeout, polling: 50 });
  return page.textContent('#error');
}

/** Nothing in the page ran or was made from hostile text: no script-bearing elements, handlers or javascript: links. */
async function assertInert(where) {
  const found = await page.evaluate(() => {
    const bad = [...document.querySelectorAll('script:not([src]), img, svg, iframe, object, embed')].map((e) => e.outerHTML);
    for (const e of document.querySelectorAll('*')) {
      for (const a of e.attributes) {
        if (/^on/i.test(a.name)) bad.push(`${e.tagName} ${a.name}`);
        if (/^\s*javascript:/i.test(a.value)) bad.push(`${e.tagName} ${a.name}=${a.value}`);
      }
    }
    return { bad, pwned: window.__pwned ?? null, url: location.href };
  });
  assert.deepEqual(found.bad, [], `${where}: elements or handlers made from hostile text`);
  assert.equal(found.pwned, null, `${where}: a payload ran`);
  assert.equal(new URL(found.url).pathname, '/', `${where}: the page navigated`);
  assert.deepEqual(dialogs, [], `${where}: a dialog opened`);
}

before(async () => {
  mkdirSync(FIXTURES, { recursive: true });
  for (const [name, [bytes]] of Object.entries(hostileFiles())) writeFileSync(join(FIXTURES, name), bytes);
  const gguf = readFileSync(GGUF);
  // A template that renders ChatML, and raises an error carrying a payload when asked "boom".
  const raising = `{% for m in messages %}{% if m.content == 'boom' %}{{ raise_exception('${XSS[0]}') }}{% endif %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}`;
  writeFileSync(join(FIXTURES, 'raising.gguf'), withTemplate(gguf, raising));
  writeFileSync(join(FIXTURES, 'payload-arch.gguf'), ggufStrings({ 'general.architecture': XSS[2] }));

  browser = await openBrowser({ alsoServe: ['tests/e2e/pages', FIXTURES] });
  hub = await startMockHub({ repos: { 'someone/models': resolve('models') } });
  page = await browser.context.newPage();
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  await page.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__violations.push({ directive: e.violatedDirective, blocked: e.blockedURI }));
    // The test's hook on the engine: while window.__force is set, each reply is constrained to
    // match it exactly (the worker's regex constraint), so the model itself writes the payload.
    // And what the engine wrote, as it came (the page renders Markdown).
    const Base = window.Worker;
    window.Worker = class extends Base {
      constructor(...args) {
        super(...args);
        this.addEventListener('message', ({ data }) => {
          if ((data?.type === 'token' || data?.type === 'done') && data.text) window.__raw += data.text;
        });
      }
    };
    const post = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function (msg, ...rest) {
      if (msg?.type === 'generate' && window.__force) msg.params = { ...msg.params, constraint: { type: 'regex', pattern: window.__force } };
      return post.call(this, msg, ...rest);
    };
  });
  await page.goto(browser.base);
  await waitReady(page);
  await page.evaluate(() => (document.getElementById('max_tokens').value = '200'));
});

after(async () => {
  await browser?.close();
  await hub?.close();
  rmSync(FIXTURES, { recursive: true, force: true });
});

test('the app page carries its CSP as a header and a <meta>, and has no inline script or style', async () => {
  const html = readFileSync('index.html', 'utf8');
  const header = (await fetch(browser.base)).headers.get('content-security-policy');
  assert.equal(header, appPolicy());
  for (const d of ["default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "worker-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"]) {
    assert.ok(header.includes(d), `${d} in ${header}`);
  }
  // connect-src: this site and the origins the page lists for models, no more.
  const origins = html.match(/<meta name="wick-model-origins" content="([^"]*)"/)[1].split(/\s+/);
  const connect = header.match(/connect-src ([^;]+)/)[1].split(/\s+/);
  assert.equal(connect[0], "'self'");
  for (const o of origins) assert.ok(connect.includes(o), `${o} in connect-src`);
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son\w+=/i);
});

test('under the CSP an inline script, an inline handler and a fetch elsewhere are blocked, with or without the header', async () => {
  const attempt = () => page.evaluate(async () => {
    window.__violations.length = 0;
    const s = document.createElement('script');
    s.textContent = 'window.__inline = 1';
    document.body.append(s);
    const holder = document.createElement('div');
    holder.innerHTML = '<img src="data:," onload="window.__handler = 1">';
    document.body.append(holder);
    const far = await fetch('http://127.0.0.2:9/x').then(() => 'fetched', () => 'blocked');
    await new Promise((r) => setTimeout(r, 300));
    s.remove();
    holder.remove();
    return { inline: window.__inline ?? null, handler: window.__handler ?? null, far, violations: window.__violations.map((v) => v.directive) };
  });
  const withHeader = await attempt();
  assert.deepEqual([withHeader.inline, withHeader.handler, withHeader.far], [null, null, 'blocked']);
  for (const d of ['script-src-elem', 'script-src-attr', 'connect-src']) assert.ok(withHeader.violations.includes(d), `${d}: ${withHeader.violations}`);

  // A static host sends no header: the <meta> alone must hold.
  const other = await browser.context.newPage();
  await other.route((url) => url.pathname === '/', async (route) => {
    const response = await route.fetch();
    const headers = { ...response.headers() };
    delete headers['content-security-policy'];
    await route.fulfill({ response, headers });
  });
  await other.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective));
  });
  // On localhost, an origin the service worker of 127.0.0.1 does not control (it would answer
  // the page from its cache, past the route).
  const local = browser.base.replace('127.0.0.1', 'localhost');
  const response = await other.goto(`${local}?model=${encodeURIComponent('models/none.gguf')}`);
  assert.equal(response.headers()['content-security-policy'], undefined);
  const metaOnly = await other.evaluate(async () => {
    const s = document.createElement('script');
    s.textContent = 'window.__inline = 1';
    document.body.append(s);
    await new Promise((r) => setTimeout(r, 300));
    return { inline: window.__inline ?? null, violations: window.__violations };
  });
  assert.equal(metaOnly.inline, null);
  assert.ok(metaOnly.violations.includes('script-src-elem'), String(metaOnly.violations));
  await other.close();
});

test('hostile model output shows as text: nothing runs, nothing is made of it', async () => {
  for (const payload of XSS) {
    await page.evaluate((p) => {
      window.__force = p;
      window.__raw = '';
    }, literal(payload));
    await ask(page, 'Say something.');
    assert.equal(await page.evaluate(() => window.__raw), payload, 'the model wrote the payload');
    // Follow every link the reply holds, as a user might.
    await page.evaluate(() => document.querySelectorAll('#messages a').forEach((a) => a.click()));
    await assertInert(`output ${payload}`);
    // Raw HTML shows as the text it is (a Markdown link is a link, its javascript: gone).
    const last = await page.evaluate(() => [...document.querySelectorAll('#messages .msg.assistant')].at(-1).textContent);
    if (payload.startsWith('<')) assert.ok(last.includes(payload), last);
  }
  await page.evaluate(() => (window.__force = null));
});

test('hostile file names and the errors that quote them show as text', async () => {
  for (const payload of XSS.slice(0, 3)) {
    const name = await pickFile(`${FIXTURES}/wrong-magic.gguf`, `${payload}.gguf`);
    const error = await loadError();
    assert.ok(error.includes(`Could not load ${name}: not a GGUF file`), error);
    await assertInert(`file name ${payload}`);
  }
  // An error message built from the file's own metadata (its architecture's name).
  await pickFile(`${FIXTURES}/payload-arch.gguf`, 'payload-arch.gguf');
  const error = await loadError();
  assert.ok(error.includes(XSS[2]), error);
  await assertInert('architecture name');
  assert.match((await ask(page, 'Name a colour.')).text, /\S/);
});

test('a chat template error carrying a payload shows as text, and the model loaded with it still answers', async () => {
  await pickFile(`${FIXTURES}/raising.gguf`, 'raising.gguf');
  await waitReady(page);
  await page.fill('#input', 'boom');
  await page.click('#send');
  await page.waitForFunction(() => !document.getElementById('error').hidden, null, { timeout: 60_000 });
  const error = await page.textContent('#error');
  assert.ok(error.includes(`chat template: invalid operation: ${XSS[0]}`), error);
  await assertInert('template error');
  assert.match((await ask(page, 'Name a fruit.')).text, /\S/);
});

test('each hostile file gives a readable error in the page and the loaded model keeps answering', async () => {
  const before = await page.textContent('#status');
  for (const [name, [, want]] of Object.entries(hostileFiles())) {
    const t0 = Date.now();
    await pickFile(`${FIXTURES}/${name}`, name);
    const error = await loadError();
    const seconds = (Date.now() - t0) / 1000;
    assert.match(error, want, name);
    assert.match(error, /Still using \S+\.$/, name);
    assert.ok(seconds < 30, `${name}: the error took ${seconds} s`);
    const { text } = await ask(page, 'What is 2 + 2?');
    assert.match(text, /\S/, `${name}: the old model answered`);
    assert.equal((await page.textContent('#status')).split(' · ')[0], before.split(' · ')[0].replace(/^Ready: /, ''));
  }
  await assertInert('hostile files');
});

test('a ?model= on another site waits for the user; a cancelled one loads nothing, an accepted one loads', async () => {
  const other = await browser.context.newPage();
  const far = `${hub.url}/someone/models/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf`;
  const payload = `${far}#<img src=x onerror=alert(1)>`;
  await other.goto(`${browser.base}?model=${encodeURIComponent(payload)}`);
  await other.waitForSelector('#confirm-origin', { timeout: 30_000 });
  const text = await other.textContent('#confirm-origin-text');
  assert.ok(text.includes(`another site, ${hub.url}: ${far}#`), text);
  assert.equal(await other.evaluate(() => document.querySelectorAll('#confirm-origin img').length), 0);
  const gets = () => hub.requests.filter((r) => r.url.includes('SmolLM2-135M-Instruct.Q4_1.gguf')).length;
  const before = gets();
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(gets(), before, 'nothing is fetched while the page asks');
  await other.click('#confirm-origin-cancel');
  await other.waitForFunction(() => document.getElementById('loader').classList.contains('done'));
  assert.match(await other.textContent('#status'), /No model loaded — the link named a model on another site/);
  assert.equal(gets(), before);

  await other.goto(`${browser.base}?model=${encodeURIComponent(far)}`);
  await other.click('#confirm-origin-load');
  await waitReady(other);
  assert.match(await other.textContent('#status'), /SmolLM2-135M-Instruct\.Q4_1\.gguf \(GGUF/);
  await other.close();
  // Its own site needs no question (every other test loads models/ without one).
  assert.equal(await page.evaluate(() => document.getElementById('confirm-origin')), null);
});

test('?threads= is clamped to the cores the browser reports', async () => {
  const other = await browser.context.newPage();
  await other.goto(`${browser.base}?threads=4096`);
  await waitReady(other);
  const cores = await other.evaluate(() => navigator.hardwareConcurrency);
  assert.match(await other.textContent('#status'), new RegExp(`wasm [\\w-]+, ${cores} thread${cores === 1 ? '' : 's'}\\b`));
  await other.close();
});

// ---------------------------------------------------------------------------------------------
// The dev server on its own.

/** A raw GET with the given headers; resolves to { status, body }. */
function get(port, path, headers = {}) {
  return new Promise((resolveGet, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolveGet({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

test('the dev server answers only localhost, keeps real paths inside its roots, and survives broken downloads', async () => {
  const scratch = mkdtempSync(join(tmpdir(), 'wick-serve-'));
  const root = join(scratch, 'checkout');
  const cache = join(scratch, 'cache');
  const outside = join(scratch, 'outside');
  for (const d of [join(root, 'models'), join(root, 'www'), cache, outside]) mkdirSync(d, { recursive: true });
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>x</title>');
  writeFileSync(join(cache, 'cached.gguf'), 'GGUF cached');
  writeFileSync(join(outside, 'secret.gguf'), 'secret');
  writeFileSync(join(root, 'www', 'big.bin'), Buffer.alloc(64 << 20, 1));
  symlinkSync(join(cache, 'cached.gguf'), join(root, 'models', 'cached.gguf'));
  symlinkSync(join(outside, 'secret.gguf'), join(root, 'models', 'escape.gguf'));
  symlinkSync(outside, join(root, 'models', 'elsewhere'));
  const server = await startServer({ port: 0, root, roots: [cache] });
  const { port } = server.address();
  try {
    // DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own Host.
    assert.equal((await get(port, '/index.html', { Host: 'evil.example' })).status, 421);
    assert.equal((await get(port, '/index.html', { Host: `evil.example:${port}` })).status, 421);
    assert.equal((await get(port, '/index.html', { Host: `localhost:${port}` })).status, 200);
    assert.equal((await get(port, '/index.html', { Host: `127.0.0.1:${port}` })).status, 200);

    const served = async (path) => {
      const r = await get(port, path, { Host: `127.0.0.1:${port}` });
      return r.status === 200 ? r.body.toString() : r.status;
    };
    assert.equal(await served('/models/cached.gguf'), 'GGUF cached', 'a link into the model cache is served');
    assert.equal(await served('/models/escape.gguf'), 404, 'a link out of the roots is not');
    assert.equal(await served('/models/elsewhere/secret.gguf'), 404, 'nor a file under a linked folder outside');
    assert.equal(await served('/models/%2e%2e/%2e%2e/outside/secret.gguf'), 404);

    // Downloads the browser breaks off: the server neither falls over nor keeps the file open.
    const openFiles = () => readdirSync('/proc/self/fd').length;
    const fds = openFiles();
    for (let i = 0; i < 10; i++) {
      await new Promise((resolveAbort, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/www/big.bin', headers: i % 2 ? { Range: 'bytes=100-' } : {} }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolveAbort();
          });
        });
        req.on('error', (e) => (e.code === 'ECONNRESET' ? resolveAbort() : reject(e)));
        req.end();
      });
    }
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(openFiles() <= fds + 2, `open files went from ${fds} to ${openFiles()}`);
    const whole = await get(port, '/www/big.bin', { Host: `127.0.0.1:${port}` });
    assert.equal(whole.body.length, 64 << 20, 'the server still serves whole files');
    const part = await get(port, '/www/big.bin', { Host: `127.0.0.1:${port}`, Range: 'bytes=10-19' });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], `bytes 10-19/${64 << 20}`);
  } finally {
    await new Promise((r) => server.close(r));
    rmSync(scratch, { recursive: true, force: true });
  }
});
