// Wick as web developers get it: the npm package (`npm pack`, installed into a scratch folder and
// imported from node_modules by a page), and the two examples of examples/, in headless Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openBrowser } from './browser.mjs';
import { startServer } from '../../scripts/serve.mjs';
import { startMockHub } from './mock-hub.mjs';

const MLX = resolve('models/SmolLM2-135M-Instruct-MLX-4bit');
const REPO = 'HuggingFaceTB/SmolLM2-135M-Instruct';
/** What the package holds: the API's modules, its types and the four wasm builds. */
const PACKAGED = [
  'README.md', 'package.json',
  ...['wick.js', 'wick.d.ts', 'error.js', 'cache.js', 'opfs-store.js', 'sha256-worker.js', 'kv-store.js', 'gguf.js', 'memory.js', 'model-files.js', 'openai.js', 'protocol.js', 'wasm.js', 'worker.js'].map((f) => `www/${f}`),
  // sha256 for checking downloads as they stream: @noble/hashes, vendored with its license.
  ...['sha2.js', '_md.js', '_u64.js', 'utils.js', 'LICENSE'].map((f) => `www/vendor/noble-hashes/${f}`),
  ...['pkg', 'pkg-relaxed', 'pkg-threads', 'pkg-threads-relaxed'].flatMap((p) => [`www/${p}/wick.js`, `www/${p}/wick_bg.wasm`]),
].sort();

/** A page that imports the installed package by its name (an import map points at node_modules). */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>wick-llm from node_modules</title>
<script type="importmap">{ "imports": { "wick-llm": "/node_modules/wick-llm/www/wick.js" } }</script>
<div id="reply"></div>
<script type="module">
  import { Wick } from 'wick-llm';
  const hubUrl = new URLSearchParams(location.search).get('hub');
  const engine = await Wick.load('${REPO}', { hubUrl });
  const reply = await engine.chat.completions.create({
    messages: [{ role: 'system', content: 'You are a helpful AI assistant.' }, { role: 'user', content: 'What is the capital of France?' }],
    temperature: 0, max_tokens: 24,
  });
  document.getElementById('reply').textContent = reply.choices[0].message.content;
  document.title = 'answered with ' + engine.info.build.simd;
</script>
`;

let scratch;
let packed;
let browser;
let server;
let hub;
const consoleErrors = [];

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'wick-package-'));
  [packed] = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', scratch], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', join(scratch, packed.filename)], { cwd: scratch, stdio: 'ignore' });
  writeFileSync(join(scratch, 'index.html'), PAGE);
  server = await startServer({ port: 0, root: scratch, alsoServe: ['node_modules/wick-llm'] });
  hub = await startMockHub({ repos: { [REPO]: MLX } });
  browser = await openBrowser();
  browser.context.on('console', (m) => m.type() === 'error' && consoleErrors.push(`${m.text()} ${JSON.stringify(m.location())}`));
});

after(async () => {
  await browser?.close();
  await hub?.close();
  await new Promise((r) => (server ? server.close(r) : r()));
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

test('npm pack gives wick.js, its types and the four wasm builds, and nothing unused', () => {
  assert.equal(packed.name, 'wick-llm');
  const files = packed.files.map((f) => f.path).filter((p) => !p.includes('/snippets/')).sort();
  assert.deepEqual(files, PACKAGED);
  // The threaded builds' worker helper (wasm-bindgen-rayon) is the only other file.
  const snippets = packed.files.map((f) => f.path).filter((p) => p.includes('/snippets/'));
  assert.deepEqual(snippets.map((p) => p.split('/')[1]).sort(), ['pkg-threads', 'pkg-threads-relaxed']);
  assert.ok(snippets.every((p) => p.endsWith('/workerHelpers.no-bundler.js')), snippets.join());
  const installed = join(scratch, 'node_modules', 'wick-llm');
  const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
  assert.deepEqual(manifest.exports['.'], { types: './www/wick.d.ts', default: './www/wick.js' });
  for (const target of Object.values(manifest.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)))) {
    const path = target.replace('*', 'wick_bg.wasm').replace('./package.json', 'package.json');
    assert.ok(existsSync(join(installed, path)), `${target} is in the package`);
  }
  // Every module wick.js imports, and each import of theirs, is in the package.
  for (const file of packed.files.map((f) => f.path).filter((p) => /^www\/[\w/-]+\.js$/.test(p) && !p.includes('/pkg'))) {
    for (const [, dep] of readFileSync(join(installed, file), 'utf8').matchAll(/(?:from |new URL\()['"](\.\/[\w/.-]+\.js)['"]/g)) {
      const path = new URL(dep, `file:///${file}`).pathname.slice(1);
      assert.ok(files.includes(path), `${file} imports ${dep}`);
    }
  }
});

test('a page that imports the installed package from node_modules answers', async () => {
  const page = await browser.context.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/?hub=${encodeURIComponent(hub.url)}`);
  await page.waitForFunction(() => document.title.startsWith('answered'), null, { timeout: 180_000 });
  assert.match(await page.textContent('#reply'), /Paris/);
  assert.equal(await page.title(), 'answered with relaxed-simd');
  await page.close();
});

for (const example of ['minimal.html', 'openai-client.html']) {
  test(`examples/${example} streams a reply into its div`, async () => {
    const page = await browser.context.newPage();
    await page.addInitScript(() => {
      window.__states = [];
      document.addEventListener('DOMContentLoaded', () => {
        const el = document.getElementById('reply');
        new MutationObserver(() => window.__states.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
      });
    });
    await page.goto(`${browser.base}examples/${example}`);
    await page.waitForFunction(() => {
      const text = document.getElementById('reply').textContent;
      return !text.startsWith('Loading') && text.trim().length >= 20;
    }, null, { timeout: 180_000, polling: 100 });
    const states = await page.evaluate(() => window.__states.filter((s) => !s.startsWith('Loading')));
    assert.ok(states.length >= 3, `the reply streamed in ${states.length} steps`);
    await page.close();
  });
}

test('the console shows no errors', () => {
  assert.deepEqual(consoleErrors, []);
});
