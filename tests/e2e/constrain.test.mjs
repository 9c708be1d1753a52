// Constrained decoding in the tab: chat.completions and engine.fetch with OpenAI's response_format
// give the JSON the native engine gives for the same model (tests/fixtures/constrain_smollm2.json,
// written by tests/constrain.rs), and Ajv, an independent validator, accepts every reply.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { openBrowser } from './browser.mjs';

const MODEL = '/models/SmolLM2-135M-Instruct-MLX-4bit/';
const FIXTURE = JSON.parse(readFileSync(new URL('../fixtures/constrain_smollm2.json', import.meta.url), 'utf8'));
const ajv = new Ajv({ allErrors: true, strict: false });
addFormats(ajv);

let browser;
let page;
const consoleErrors = [];
const inPage = (fn, arg) => page.evaluate(fn, arg);

before(async () => {
  browser = await openBrowser({ alsoServe: ['tests/e2e/pages'] });
  page = await browser.context.newPage();
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(`page exception: ${e.message}`));
  await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  await inPage(async (model) => {
    window.W = await import('/www/wick.js');
    window.engine = await window.W.Wick.load(model);
  }, MODEL);
});

after(async () => {
  await browser?.close();
});

/** The messages of a fixture case. */
const messages = (c) => [{ role: 'system', content: FIXTURE.system }, { role: 'user', content: c.prompt }];

test('response_format json_schema gives the native reply, and it validates', async () => {
  assert.ok(FIXTURE.cases.length >= 3);
  for (const c of FIXTURE.cases) {
    const body = {
      messages: messages(c), temperature: 0, max_tokens: c.max_tokens,
      response_format: c.schema ? { type: 'json_schema', json_schema: { name: 'reply', schema: c.schema, strict: true } } : { type: 'json_object' },
    };
    const r = await inPage((b) => window.engine.chat.completions.create(b), body);
    const content = r.choices[0].message.content;
    assert.equal(content, c.text, c.prompt);
    assert.equal(r.choices[0].finish_reason, 'stop');
    const value = JSON.parse(content);
    if (c.schema) {
      const validate = ajv.compile(c.schema);
      assert.ok(validate(value), `${content}: ${ajv.errorsText(validate.errors)}`);
    } else {
      assert.equal(typeof value, 'object');
    }
  }
});

test('engine.fetch takes response_format too, streamed', async () => {
  const c = FIXTURE.cases[0];
  const body = await inPage(async (b) => {
    const res = await window.engine.fetch('http://localhost/v1/chat/completions', { method: 'POST', body: JSON.stringify(b) });
    return res.text();
  }, { messages: messages(c), temperature: 0, max_tokens: c.max_tokens, stream: true, response_format: { type: 'json_schema', json_schema: { name: 'reply', schema: c.schema } } });
  const text = body.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)).choices[0]?.delta.content ?? '').join('');
  assert.equal(text, c.text);
});

test('a schema the engine cannot follow is a WickError before any token', async () => {
  const cases = [
    [{ type: 'json_schema', json_schema: { name: 'bad', schema: { type: 'objekt' } } }, 'invalid_request', null, /output constraint: invalid JSON schema/],
    [{ type: 'json_schema', json_schema: { schema: {} } }, 'invalid_request', 'response_format.json_schema.name', /name/],
    [{ type: 'json_schema' }, 'invalid_request', 'response_format.json_schema', /json_schema must be/],
    [{ type: 'grammar' }, 'unsupported', 'response_format', /text, json_object or json_schema/],
  ];
  for (const [format, code, param, message] of cases) {
    const e = await inPage(async (b) => {
      try { await window.engine.chat.completions.create(b); return null; }
      catch (err) { return { name: err.name, code: err.code, param: err.param ?? null, message: err.message }; }
    }, { messages: [{ role: 'user', content: 'hi' }], response_format: format });
    assert.ok(e, JSON.stringify(format));
    assert.equal(e.name, 'WickError');
    assert.deepEqual([e.code, e.param], [code, param], e.message);
    assert.match(e.message, message);
  }
  const r = await inPage((b) => window.engine.chat.completions.create(b), { messages: [{ role: 'system', content: 'You are a helpful AI assistant.' }, { role: 'user', content: 'What is the capital of France?' }], temperature: 0, max_tokens: 16 });
  assert.match(r.choices[0].message.content, /Paris/);
});

test('the console shows no errors', () => {
  assert.deepEqual(consoleErrors, []);
});
