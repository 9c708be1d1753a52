// Wick's JavaScript API (www/wick.js) in headless Chromium: every engine function, with each
// response checked field by field against OpenAI's published schemas; the official `openai` npm
// client through engine.fetch; aborting; two engines at once. One browser, the default model
// loaded once (a second engine reads it from the browser's cache).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser } from './browser.mjs';
import {
  check, ChatCompletion, ChatCompletionChunk, Completion, CompletionChunk, ErrorResponse, ModelList, Model, Timings,
} from './openai-schema.mjs';

const MODEL = '/models/SmolLM2-135M-Instruct-MLX-4bit/';
const ID = 'SmolLM2-135M-Instruct-MLX-4bit';
const SYSTEM = { role: 'system', content: 'You are a helpful AI assistant.' };
const FRANCE = [SYSTEM, { role: 'user', content: 'What is the capital of France?' }];
const EXTRAS = { extras: { timings: Timings } };

let browser;
let page;
const consoleErrors = [];

/** Runs `fn(arg)` in the page and returns what it returned. */
const inPage = (fn, arg) => page.evaluate(fn, arg);

/** Runs `fn(arg)` in the page; returns the error it threw as `{ name, code, message, param }`, or null. */
const errorOf = (fn, arg) => page.evaluate(`(async () => {
  try { await (${fn})(${JSON.stringify(arg)}); return null; }
  catch (e) { return { name: e.name, code: e.code, message: e.message, param: e.param ?? null, isWickError: e instanceof window.W.WickError }; }
})()`);

before(async () => {
  browser = await openBrowser({ alsoServe: ['tests/e2e/pages'] });
  page = await browser.context.newPage();
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(`page exception: ${e.message}`));
  await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  await inPage(async () => {
    window.W = await import('/www/wick.js');
  });
});

after(async () => {
  await browser?.close();
});

test('Wick.load reports progress and resolves to an engine describing itself', async () => {
  const { info, progress } = await inPage(async (model) => {
    const progress = [];
    window.engine = await window.W.Wick.load(model, { onProgress: (p) => progress.push(p) });
    return { info: window.engine.info, progress };
  }, MODEL);
  const downloads = progress.filter((p) => p.phase === 'download');
  assert.ok(downloads.length >= 2, JSON.stringify(progress.slice(0, 5)));
  for (const p of progress) {
    assert.deepEqual(Object.keys(p).sort(), ['file', 'loaded', 'phase', 'total']);
    assert.ok(p.loaded <= p.total, JSON.stringify(p));
  }
  assert.ok(downloads.some((p) => p.file.endsWith('/model.safetensors')));
  const last = progress.at(-1);
  assert.equal(last.phase, 'init');
  assert.equal(last.loaded, info.bytes);
  assert.ok(info.bytes > 99e6 && info.bytes < 101e6, info.bytes);
  assert.equal(info.id, ID);
  assert.equal(info.source, 'network');
  assert.equal(info.architecture, 'llama');
  assert.equal(info.format, 'safetensors, MLX 4-bit');
  assert.equal(info.n_layers, 30);
  assert.equal(info.quantization, 'MLX 4-bit');
  assert.equal(info.chat_template, true);
  // The context defaults to 4096 tokens (the KV cache's memory), at most the model's.
  assert.equal(info.context_length, 4096);
  assert.equal(info.model_context_length, 8192);
  const cores = await inPage(() => navigator.hardwareConcurrency);
  assert.deepEqual(info.build, { simd: 'relaxed-simd', threads: cores });
  assert.ok(info.memoryBytes > info.bytes && info.loadSeconds > 0);
});

test('chat.completions.create answers with a ChatCompletion', async () => {
  const r = await inPage((messages) => window.engine.chat.completions.create({ model: 'SmolLM2-135M-Instruct-MLX-4bit', messages, temperature: 0, max_tokens: 24 }), FRANCE);
  check(r, ChatCompletion, EXTRAS);
  assert.match(r.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.equal(r.model, ID);
  assert.ok(Math.abs(r.created - Date.now() / 1000) < 120);
  assert.equal(r.choices.length, 1);
  const [choice] = r.choices;
  assert.equal(choice.index, 0);
  assert.match(choice.message.content, /Paris/);
  assert.equal(choice.message.role, 'assistant');
  assert.equal(choice.message.refusal, null);
  assert.equal(choice.logprobs, null);
  assert.equal(choice.finish_reason, 'stop');
  const u = r.usage;
  assert.ok(u.prompt_tokens > 20 && u.completion_tokens > 3, JSON.stringify(u));
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(r.timings.predicted_n, u.completion_tokens);
  assert.equal(r.timings.prompt_n, u.prompt_tokens - u.prompt_tokens_details.cached_tokens);
});

test('a streamed reply: the role first, content pieces, the finish, then usage with cached tokens', async () => {
  const { chunks, whole } = await inPage(async (messages) => {
    const body = { messages, temperature: 0, max_tokens: 24 };
    const whole = await window.engine.chat.completions.create(body);
    const chunks = [];
    for await (const c of await window.engine.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } })) chunks.push(c);
    return { chunks, whole };
  }, FRANCE);
  for (const c of chunks) check(c, ChatCompletionChunk, EXTRAS);
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
  assert.match(chunks[0].id, /^chatcmpl-/);
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  const pieces = chunks.slice(1, -2);
  assert.ok(pieces.length >= 3, `${pieces.length} content chunks`);
  for (const c of pieces) {
    assert.deepEqual(Object.keys(c.choices[0].delta), ['content']);
    assert.equal(c.choices[0].finish_reason, null);
    assert.equal(c.usage, null);
  }
  assert.equal(pieces.map((c) => c.choices[0].delta.content).join(''), whole.choices[0].message.content);
  const finish = chunks.at(-2);
  assert.deepEqual(finish.choices[0].delta, {});
  assert.equal(finish.choices[0].finish_reason, 'stop');
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  // The same conversation ran just before: its prompt is in the KV cache but for the last token.
  const u = last.usage;
  assert.equal(u.prompt_tokens, whole.usage.prompt_tokens);
  assert.equal(u.prompt_tokens_details.cached_tokens, u.prompt_tokens - 1);
  assert.equal(u.completion_tokens, whole.usage.completion_tokens);
  check(last.timings, Timings);
  assert.equal(last.timings.prompt_n, 1);
  // cache_prompt: false runs the whole prompt again.
  const fresh = await inPage((messages) => window.engine.chat.completions.create({ messages, temperature: 0, max_tokens: 24, cache_prompt: false }), FRANCE);
  assert.equal(fresh.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(fresh.timings.prompt_n, fresh.usage.prompt_tokens);
  assert.equal(fresh.choices[0].message.content, whole.choices[0].message.content);
});

test('without include_usage a stream carries no usage field', async () => {
  const chunks = await inPage(async (messages) => {
    const out = [];
    for await (const c of await window.engine.chat.completions.create({ messages, temperature: 0, max_tokens: 4, stream: true })) out.push(c);
    return out;
  }, FRANCE);
  assert.ok(chunks.length >= 3);
  for (const c of chunks) {
    check(c, ChatCompletionChunk);
    assert.ok(!('usage' in c));
    assert.equal(c.choices.length, 1);
  }
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
});

test('stop strings, max_tokens and n', async () => {
  const r = await inPage(async (messages) => {
    const create = (body) => window.engine.chat.completions.create({ messages, temperature: 0, ...body });
    return {
      free: await create({ max_tokens: 24 }),
      stopped: await create({ max_tokens: 24, stop: ['Paris', 'never'] }),
      short: await create({ max_tokens: 3 }),
      // ignore_eos: a sampled choice may otherwise end early, and the usage below counts 2 × 12.
      two: await create({ max_tokens: 12, n: 2, temperature: 1.2, seed: 11, ignore_eos: true }),
      again: await create({ max_tokens: 12, n: 2, temperature: 1.2, seed: 11, ignore_eos: true }),
    };
  }, FRANCE);
  const free = r.free.choices[0].message.content;
  const stopped = r.stopped.choices[0].message.content;
  assert.equal(stopped, free.slice(0, free.indexOf('Paris')));
  assert.equal(r.stopped.choices[0].finish_reason, 'stop');
  assert.equal(r.short.choices[0].finish_reason, 'length');
  assert.equal(r.short.usage.completion_tokens, 3);
  assert.ok(free.startsWith(r.short.choices[0].message.content));
  check(r.two, ChatCompletion, EXTRAS);
  assert.deepEqual(r.two.choices.map((c) => c.index), [0, 1]);
  assert.notEqual(r.two.choices[0].message.content, r.two.choices[1].message.content, 'choices use different seeds');
  assert.deepEqual(r.again.choices.map((c) => c.message.content), r.two.choices.map((c) => c.message.content), 'a seed repeats');
  assert.equal(r.two.usage.completion_tokens, 24);
  assert.equal(r.two.usage.prompt_tokens, r.free.usage.prompt_tokens, 'the prompt counts once');
});

test('logprobs and top_logprobs follow OpenAI\'s shape and the greedy choice', async () => {
  const r = await inPage((messages) => window.engine.chat.completions.create({ messages, temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 3 }), FRANCE);
  check(r, ChatCompletion, EXTRAS);
  const tokens = r.choices[0].logprobs.content;
  assert.equal(tokens.length, r.usage.completion_tokens);
  assert.equal(tokens.map((t) => t.token).join(''), r.choices[0].message.content);
  for (const t of tokens) {
    assert.equal(t.top_logprobs.length, 3);
    assert.deepEqual(t.top_logprobs[0], { token: t.token, bytes: t.bytes, logprob: t.logprob }, 'greedy takes the most likely');
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob && t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob);
    assert.ok(t.logprob <= 0);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token)]);
  }
  // The Paris token is near certain for this model.
  const paris = tokens.find((t) => t.token.includes('Paris'));
  assert.ok(paris && paris.logprob > Math.log(0.5), JSON.stringify(paris));

  const chunks = await inPage(async (messages) => {
    const out = [];
    for await (const c of await window.engine.chat.completions.create({ messages, temperature: 0, max_tokens: 8, logprobs: true, stream: true })) out.push(c);
    return out;
  }, FRANCE);
  for (const c of chunks) check(c, ChatCompletionChunk);
  const streamed = chunks.flatMap((c) => c.choices[0].logprobs?.content ?? []);
  assert.deepEqual(streamed.map((t) => [t.token, t.logprob]), tokens.map((t) => [t.token, t.logprob]));
  assert.ok(streamed.every((t) => t.top_logprobs.length === 0), 'logprobs without top_logprobs lists no alternatives');
});

test('sampling fields change the reply: logit_bias, penalties, top_k, min_p, repetition_penalty, seed', async () => {
  const r = await inPage(async (messages) => {
    const create = (body) => window.engine.chat.completions.create({ messages, max_tokens: 12, logprobs: true, ...body });
    const greedy = await create({ temperature: 0 });
    const first = await window.engine.tokenize(greedy.choices[0].logprobs.content[0].token);
    const banned = await create({ temperature: 0, logit_bias: { [first[0]]: -100 } });
    const hot = (extra) => create({ temperature: 1.5, top_p: 1, seed: 5, ...extra });
    return {
      greedy, banned, first,
      hot: await hot({ top_k: 0 }), hotAgain: await hot({ top_k: 0 }), k1: await hot({ top_k: 1 }),
      minP: await hot({ top_k: 0, min_p: 1 }),
    };
  }, FRANCE);
  const text = (c) => c.choices[0].message.content;
  assert.notEqual(r.banned.choices[0].logprobs.content[0].token, r.greedy.choices[0].logprobs.content[0].token);
  assert.equal(text(r.hot), text(r.hotAgain), 'same seed, same reply');
  // top_k 1 and min_p 1 keep only the most likely token: greedy whatever the temperature.
  assert.equal(text(r.k1), text(r.greedy));
  assert.equal(text(r.minP), text(r.greedy));
  assert.notEqual(text(r.hot), text(r.greedy));
  // A prompt the model repeats: each penalty breaks the repetition its own way.
  const p = await inPage(async () => {
    const create = async (body) => (await window.engine.completions.create({ prompt: 'One, two, three, one, two, three, one, two, three,', temperature: 0, max_tokens: 12, ...body })).choices[0].text;
    return {
      plain: await create({}),
      presence: await create({ presence_penalty: 2 }),
      frequency: await create({ frequency_penalty: 2 }),
      repetition: await create({ repetition_penalty: 1.8 }),
    };
  });
  assert.match(p.plain, /one, two, three/, 'the model repeats');
  for (const k of ['presence', 'frequency', 'repetition']) assert.notEqual(p[k], p.plain, k);
});

test('beams: width 1 is the greedy reply, width 3 answers, and combinations without sense are errors', async () => {
  const r = await inPage(async (messages) => {
    const create = (extra) => window.engine.chat.completions.create({ messages, max_tokens: 24, ...extra });
    return { greedy: await create({ temperature: 0 }), one: await create({ beams: 1, temperature: 0.9 }), three: await create({ beams: 3, length_penalty: 0.5 }) };
  }, FRANCE);
  check(r.three, ChatCompletion, EXTRAS);
  assert.equal(r.one.choices[0].message.content, r.greedy.choices[0].message.content);
  assert.equal(r.one.choices[0].finish_reason, r.greedy.choices[0].finish_reason);
  assert.match(r.three.choices[0].message.content, /Paris/);
  const create = (body) => window.engine.chat.completions.create(body);
  const m = [{ role: 'user', content: 'hi' }];
  const cases = [
    [{ messages: m, beams: 2, n: 2 }, 'n', /n > 1 with beams/],
    [{ messages: m, beams: 2, stream: true }, 'stream', /stream: true with beams/],
    [{ messages: m, beams: 65 }, 'beams', /beams must be an integer ≥ 1 and ≤ 64/],
    [{ messages: m, length_penalty: 1 }, 'length_penalty', /needs beams/],
    [{ messages: m, beams: 2, logprobs: true }, null, /log-probabilities are not reported with beam search/],
  ];
  for (const [body, param, message] of cases) {
    const e = await errorOf(create, body);
    assert.ok(e, JSON.stringify(body));
    assert.deepEqual([e.code, e.param], ['invalid_request', param], e.message);
    assert.match(e.message, message);
  }
});

test('completions.create continues a raw prompt as a Completion, streamed or not', async () => {
  const r = await inPage(async () => {
    const e = window.engine;
    const plain = await e.completions.create({ prompt: 'The capital of France is', temperature: 0 });
    const echo = await e.completions.create({ prompt: ['The capital of France is', 'One, two, three,'], temperature: 0, max_tokens: 4, echo: true });
    const scored = await e.completions.create({ prompt: 'The capital of France is', temperature: 0, max_tokens: 4, logprobs: 2 });
    const chunks = [];
    for await (const c of await e.completions.create({ prompt: 'The capital of France is', temperature: 0, stream: true, stream_options: { include_usage: true } })) chunks.push(c);
    return { plain, echo, scored, chunks };
  });
  check(r.plain, Completion, EXTRAS);
  assert.match(r.plain.id, /^cmpl-/);
  assert.equal(r.plain.choices[0].finish_reason, 'length');
  assert.equal(r.plain.usage.completion_tokens, 16, 'max_tokens defaults to 16');
  assert.match(r.plain.choices[0].text, /Paris/);
  check(r.echo, Completion, EXTRAS);
  assert.deepEqual(r.echo.choices.map((c) => c.index), [0, 1]);
  assert.ok(r.echo.choices[0].text.startsWith('The capital of France is'));
  assert.ok(r.echo.choices[1].text.startsWith('One, two, three,'));
  assert.ok(r.echo.usage.prompt_tokens > 8);
  check(r.scored, Completion, EXTRAS);
  const lp = r.scored.choices[0].logprobs;
  assert.equal(lp.tokens.join(''), r.scored.choices[0].text);
  assert.equal(lp.tokens.length, 4);
  assert.deepEqual(lp.text_offset, lp.tokens.map((_, i) => lp.tokens.slice(0, i).join('').length));
  for (const [i, top] of lp.top_logprobs.entries()) {
    assert.ok(Object.keys(top).length === 2, JSON.stringify(top));
    assert.equal(top[lp.tokens[i]], lp.token_logprobs[i]);
  }
  for (const c of r.chunks) check(c, CompletionChunk, EXTRAS);
  assert.equal(r.chunks.slice(0, -1).map((c) => c.choices[0].text).join(''), r.plain.choices[0].text);
  assert.equal(r.chunks.at(-2).choices[0].finish_reason, 'length');
  assert.deepEqual(r.chunks.at(-1).choices, []);
  assert.equal(r.chunks.at(-1).usage.completion_tokens, 16);
});

test('unsupported fields and bad values are clear errors, and the engine goes on', async () => {
  const create = (body) => window.engine.chat.completions.create(body);
  const m = [{ role: 'user', content: 'hi' }];
  const cases = [
    [{ messages: m, tools: [{ type: 'function', function: { name: 'f' } }] }, 'unsupported', 'tools', /does not call tools/],
    [{ messages: m, response_format: { type: 'xml' } }, 'unsupported', 'response_format', /text, json_object or json_schema/],
    [{ messages: m, frobnicate: 1 }, 'unsupported', 'frobnicate', /Unknown field frobnicate/],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'unsupported', 'messages[0].content[0]', /text only/],
    [{ messages: [{ role: 'tool', content: 'x', tool_call_id: '1' }] }, 'unsupported', 'messages[0].role', /tools/],
    [{ messages: m, temperature: 3 }, 'invalid_request', 'temperature', /temperature must be a number ≥ 0 and ≤ 2/],
    [{ messages: m, top_logprobs: 2 }, 'invalid_request', 'top_logprobs', /needs logprobs/],
    [{ messages: m, stop: ['a', 'b', 'c', 'd', 'e'] }, 'invalid_request', 'stop', /up to 4/],
    [{ messages: m, logit_bias: { 99999999: 5 } }, 'invalid_request', null, /logit bias names token 99999999/],
    [{ messages: [] }, 'invalid_request', 'messages', /non-empty/],
    [{ messages: m, model: 'gpt-4o' }, 'model_not_found', 'model', /this engine runs "SmolLM2-135M-Instruct-MLX-4bit"/],
    [{ messages: [{ role: 'user', content: 'lorem ipsum dolor sit amet '.repeat(2000) }] }, 'context_length_exceeded', null, /the prompt is too long: \d+ tokens needed but the context holds 4096/],
  ];
  for (const [body, code, param, message] of cases) {
    const e = await errorOf(create, body);
    assert.ok(e, JSON.stringify(body).slice(0, 80));
    assert.equal(e.name, 'WickError');
    assert.ok(e.isWickError);
    assert.equal(e.code, code, e.message);
    assert.equal(e.param, param, e.message);
    assert.match(e.message, message);
  }
  const legacy = await errorOf((b) => window.engine.completions.create(b), { prompt: [1, 2, 3] });
  assert.equal(legacy.code, 'unsupported');
  const bestOf = await errorOf((b) => window.engine.completions.create(b), { prompt: 'x', best_of: 3 });
  assert.deepEqual([bestOf.code, bestOf.param], ['unsupported', 'best_of']);
  const r = await inPage((messages) => window.engine.chat.completions.create({ messages, temperature: 0, max_tokens: 24 }), FRANCE);
  assert.match(r.choices[0].message.content, /Paris/);
});

test('tokenize and detokenize are inverses, special tokens included', async () => {
  const r = await inPage(async () => {
    const text = '<|im_start|>user\nHéllo, 世界! 12<|im_end|>';
    const ids = await window.engine.tokenize(text);
    return { ids, back: await window.engine.detokenize(ids), paris: await window.engine.tokenize(' Paris') };
  });
  assert.ok(r.ids.every((i) => Number.isInteger(i) && i >= 0));
  assert.equal(r.ids[0], 1, '<|im_start|> is one token, id 1 in SmolLM2');
  assert.equal(r.back, '<|im_start|>user\nHéllo, 世界! 12<|im_end|>');
  assert.equal(r.paris.length, 1);
  const bad = await errorOf((ids) => window.engine.detokenize(ids), [1, 10_000_000]);
  assert.equal(bad.code, 'invalid_request');
  assert.match(bad.message, /token id 10000000 is not in the vocabulary/);
  const notList = await errorOf((ids) => window.engine.detokenize(ids), 'abc');
  assert.equal(notList.code, 'invalid_request');
});

test('profile() counts where prefill chunks and decode steps spend their time, only while on', async () => {
  const { on, off } = await inPage(async () => {
    await window.engine.profile(true);
    await window.engine.completions.create({ prompt: 'The capital of France is', max_tokens: 3, temperature: 0, ignore_eos: true, cache_prompt: false });
    const on = await window.engine.profile(false);
    await window.engine.completions.create({ prompt: 'The capital of France is', max_tokens: 2, temperature: 0, cache_prompt: false });
    return { on, off: await window.engine.profile(false) };
  });
  // One prompt chunk, then a one-token forward after each of the three samples (the cache
  // holds every token of the reply).
  assert.equal(on.prefill.forwards, 1);
  assert.equal(on.decode.forwards, 3);
  const stage = (phase, name) => phase.stages.find((s) => s.stage === name);
  for (const phase of [on.prefill, on.decode]) {
    assert.equal(phase.stages.length, 13);
    assert.ok(stage(phase, 'matmul gate/up').seconds > 0 && stage(phase, 'attention').calls > 0, JSON.stringify(phase));
    const staged = phase.stages.filter((s) => s.stage !== 'sampling').reduce((n, s) => n + s.seconds, 0);
    assert.ok(staged <= phase.seconds * 1.01 + 1e-4, `${staged} > ${phase.seconds}`);
  }
  assert.equal(stage(on.prefill, 'sampling').calls + stage(on.decode, 'sampling').calls, 3);
  assert.equal(off.prefill.forwards + off.decode.forwards, 0);
});

test('an AbortSignal ends a stream with WickError(aborted), and the next request answers', async () => {
  const r = await inPage(async (messages) => {
    const controller = new AbortController();
    const stream = await window.engine.chat.completions.create({
      messages: [{ role: 'user', content: 'Write a very long story about a dragon.' }], max_tokens: 300, temperature: 0, stream: true, signal: controller.signal,
    });
    let pieces = 0;
    let error = null;
    try {
      for await (const c of stream) {
        if (c.choices[0]?.delta.content && ++pieces === 5) controller.abort();
      }
    } catch (e) {
      error = { name: e.name, code: e.code, message: e.message };
    }
    // Leaving a stream early (break) stops the reply too, even before its first token.
    for await (const c of await window.engine.chat.completions.create({ messages, max_tokens: 300, stream: true })) if (c.choices[0]?.delta.content) break;
    for await (const c of await window.engine.chat.completions.create({ messages, max_tokens: 300, stream: true, n: 2 })) if (c) break;
    for await (const c of await window.engine.completions.create({ prompt: 'Once upon a time', max_tokens: 300, stream: true })) if (c) break;
    const next = await window.engine.chat.completions.create({ messages, temperature: 0, max_tokens: 24 });
    // A signal aborted before the request is an error at once.
    const before = new AbortController();
    before.abort();
    let early = null;
    await window.engine.chat.completions.create({ messages, signal: before.signal }).catch((e) => { early = e.code; });
    return { pieces, error, next, early };
  }, FRANCE);
  assert.equal(r.pieces, 5, 'no content after the abort');
  assert.deepEqual({ name: r.error.name, code: r.error.code }, { name: 'WickError', code: 'aborted' });
  assert.match(r.next.choices[0].message.content, /Paris/);
  assert.equal(r.early, 'aborted');
});

test('interrupt() stops the running and the waiting requests', async () => {
  const r = await inPage(async (messages) => {
    const e = window.engine;
    const long = e.chat.completions.create({ messages: [{ role: 'user', content: 'Count from one to two hundred.' }], max_tokens: 300, ignore_eos: true });
    const waiting = e.chat.completions.create({ messages, max_tokens: 300 });
    await new Promise((r) => setTimeout(r, 300));
    e.interrupt();
    const codes = await Promise.all([long, waiting].map((p) => p.then(() => 'answered', (err) => err.code)));
    const next = await e.chat.completions.create({ messages, temperature: 0, max_tokens: 24 });
    return { codes, next: next.choices[0].message.content };
  }, FRANCE);
  assert.deepEqual(r.codes, ['aborted', 'aborted']);
  assert.match(r.next, /Paris/);
});

test('requests to one engine queue; two engines answer at the same time', async () => {
  const r = await inPage(async ({ model, messages }) => {
    const second = await window.W.Wick.load(model, { threads: 1 });
    const times = { first: [], second: [] };
    const run = async (engine, key) => {
      let text = '';
      for await (const c of await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 96, ignore_eos: true, stream: true })) {
        if (c.choices[0]?.delta.content) {
          times[key].push(performance.now());
          text += c.choices[0].delta.content;
        }
      }
      return text;
    };
    const [a, b] = await Promise.all([run(window.engine, 'first'), run(second, 'second')]);
    // Two requests to one engine run one after the other.
    const [c, d] = await Promise.all([0, 1].map(() => second.chat.completions.create({ messages, temperature: 0, max_tokens: 24 })));
    const info = second.info;
    await second.unload();
    let after = null;
    await second.chat.completions.create({ messages }).catch((e) => { after = e.code; });
    return { a, b, times, c: c.choices[0].message.content, d: d.choices[0].message.content, info, after };
  }, { model: MODEL, messages: FRANCE });
  assert.match(r.a, /Paris/);
  assert.equal(r.a, r.b);
  assert.equal(r.info.source, 'cache');
  assert.equal(r.info.build.threads, 1);
  // The replies ran at the same time: each started before the other ended.
  const [first, second] = [r.times.first, r.times.second];
  assert.ok(first.length > 20 && second.length > 20, `${first.length} and ${second.length} pieces`);
  assert.ok(first[0] < second.at(-1) && second[0] < first.at(-1), `first ${first[0]}…${first.at(-1)}, second ${second[0]}…${second.at(-1)}`);
  assert.equal(r.c, r.d);
  assert.match(r.c, /Paris/);
  assert.equal(r.after, 'invalid_request');
});

test('contextLength bounds a conversation', async () => {
  const r = await inPage(async ({ model, messages }) => {
    const engine = await window.W.Wick.load(model, { threads: 1, contextLength: 48 });
    const { info } = engine;
    const full = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 100, ignore_eos: true });
    let error = null;
    await engine.chat.completions.create({ messages: [{ role: 'user', content: 'lorem ipsum dolor sit amet '.repeat(10) }] }).catch((e) => { error = { code: e.code, message: e.message }; });
    await engine.unload();
    return { info, usage: full.usage, finish: full.choices[0].finish_reason, error };
  }, { model: MODEL, messages: FRANCE });
  assert.equal(r.info.context_length, 48);
  assert.equal(r.info.model_context_length, 8192);
  assert.equal(r.finish, 'length');
  assert.equal(r.usage.total_tokens, 48, 'prompt and reply fill the context');
  assert.equal(r.error.code, 'context_length_exceeded');
  assert.match(r.error.message, /the context holds 48/);
  const bad = await errorOf((model) => window.W.Wick.load(model, { contextLength: 1 }), MODEL);
  assert.deepEqual({ code: bad.code, param: bad.param }, { code: 'invalid_request', param: 'contextLength' });
});

test('warm() runs a system prompt into the cache ahead of the question', async () => {
  const r = await inPage(async (messages) => {
    const e = window.engine;
    await e.chat.completions.create({ messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hi' }], max_tokens: 2 });
    const system = [{ role: 'system', content: 'You are a helpful AI assistant who loves geography.' }];
    const warmed = await e.warm(system);
    const reply = await e.chat.completions.create({ messages: [...system, messages[1]], temperature: 0, max_tokens: 24 });
    return { warmed, usage: reply.usage };
  }, FRANCE);
  assert.ok(r.warmed.cached_tokens > 10, JSON.stringify(r.warmed));
  assert.ok(r.usage.prompt_tokens_details.cached_tokens >= r.warmed.cached_tokens - 1, JSON.stringify(r));
});

test('engine.fetch serves OpenAI\'s HTTP API: models, JSON, server-sent events, error bodies', async () => {
  const r = await inPage(async (messages) => {
    const f = window.engine.fetch;
    const base = 'http://localhost/v1';
    const post = (path, body) => f(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    const answer = async (res) => ({ status: res.status, type: res.headers.get('content-type'), body: await res.text() });
    return {
      models: await answer(await f(`${base}/models`)),
      model: await answer(await f(`${base}/models/SmolLM2-135M-Instruct-MLX-4bit`)),
      noModel: await answer(await f(`${base}/models/gpt-4o`)),
      chat: await answer(await post('/chat/completions', { model: 'SmolLM2-135M-Instruct-MLX-4bit', messages, temperature: 0, max_tokens: 24 })),
      sse: await answer(await post('/chat/completions', { messages, temperature: 0, max_tokens: 24, stream: true, stream_options: { include_usage: true } })),
      completion: await answer(await post('/completions', { prompt: 'The capital of France is', temperature: 0, max_tokens: 4, stream: true })),
      badJson: await answer(await post('/chat/completions', '{"messages": [')),
      badField: await answer(await post('/chat/completions', { messages, tools: [{ type: 'function', function: { name: 'f' } }] })),
      tooLong: await answer(await post('/chat/completions', { messages: [{ role: 'user', content: 'lorem ipsum '.repeat(5000) }] })),
      wrongModel: await answer(await post('/chat/completions', { model: 'gpt-4o', messages })),
      unknown: await answer(await post('/embeddings', { input: 'x' })),
      wrongMethod: await answer(await f(`${base}/chat/completions`)),
    };
  }, FRANCE);
  assert.equal(r.models.status, 200);
  check(JSON.parse(r.models.body), ModelList);
  assert.equal(JSON.parse(r.models.body).data[0].id, ID);
  check(JSON.parse(r.model.body), Model);
  assert.equal(r.noModel.status, 404);
  assert.equal(r.chat.status, 200);
  assert.equal(r.chat.type, 'application/json');
  const chat = JSON.parse(r.chat.body);
  check(chat, ChatCompletion, EXTRAS);
  assert.match(chat.choices[0].message.content, /Paris/);
  assert.equal(r.sse.status, 200);
  assert.match(r.sse.type, /^text\/event-stream/);
  const events = r.sse.body.split('\n\n').filter(Boolean);
  assert.ok(events.every((e) => e.startsWith('data: ')), r.sse.body.slice(0, 200));
  assert.equal(events.at(-1), 'data: [DONE]');
  assert.ok(r.sse.body.endsWith('data: [DONE]\n\n'));
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
  for (const c of chunks) check(c, ChatCompletionChunk, EXTRAS);
  assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), chat.choices[0].message.content);
  assert.ok(chunks.at(-1).usage.prompt_tokens > 0);
  const completionEvents = r.completion.body.split('\n\n').filter(Boolean);
  assert.equal(completionEvents.at(-1), 'data: [DONE]');
  for (const e of completionEvents.slice(0, -1)) check(JSON.parse(e.slice(6)), CompletionChunk);
  const errors = { badJson: [400, 'invalid_request'], badField: [400, 'unsupported'], tooLong: [400, 'context_length_exceeded'], wrongModel: [404, 'model_not_found'], unknown: [404, 'unknown_url'], wrongMethod: [400, 'invalid_request'], noModel: [404, 'model_not_found'] };
  for (const [name, [status, code]] of Object.entries(errors)) {
    assert.equal(r[name].status, status, name);
    const body = JSON.parse(r[name].body);
    check(body, ErrorResponse);
    assert.equal(body.error.code, code, name);
    assert.equal(body.error.type, 'invalid_request_error', name);
    assert.ok(body.error.message.length > 10, name);
  }
});

test('the official openai client works unchanged through engine.fetch, streamed or not', async () => {
  const r = await inPage(async (messages) => {
    const { default: OpenAI } = await import('openai');
    const client = new OpenAI({ apiKey: 'none', baseURL: 'http://localhost/v1', fetch: window.engine.fetch, dangerouslyAllowBrowser: true, maxRetries: 0 });
    const models = await client.models.list();
    const model = models.data[0].id;
    const whole = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 24 });
    let streamed = '';
    const chunks = [];
    const stream = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 24, stream: true, stream_options: { include_usage: true } });
    for await (const c of stream) {
      chunks.push(c);
      streamed += c.choices[0]?.delta?.content ?? '';
    }
    const completion = await client.completions.create({ model, prompt: 'The capital of France is', temperature: 0, max_tokens: 6 });
    let error = null;
    try {
      await client.chat.completions.create({ model, messages, tools: [{ type: 'function', function: { name: 'f' } }] });
    } catch (e) {
      error = { name: e.constructor.name, status: e.status, code: e.code, param: e.param, message: e.message };
    }
    // The client ends a stream whose signal aborts without an error, as it does against OpenAI.
    const controller = new AbortController();
    let pieces = 0;
    let aborted = null;
    try {
      const s = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Tell me a long story.' }], max_tokens: 300, stream: true }, { signal: controller.signal });
      for await (const c of s) if (c.choices[0]?.delta?.content && ++pieces === 3) controller.abort();
    } catch (e) {
      aborted = e.constructor.name;
    }
    const after = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 24 });
    return { model, whole, streamed, chunks, completion, error, aborted, pieces, after: after.choices[0].message.content };
  }, FRANCE);
  assert.equal(r.model, ID);
  check(r.whole, ChatCompletion, EXTRAS);
  assert.match(r.whole.choices[0].message.content, /Paris/);
  assert.equal(r.streamed, r.whole.choices[0].message.content);
  for (const c of r.chunks) check(c, ChatCompletionChunk, EXTRAS);
  assert.equal(r.chunks.at(-1).usage.completion_tokens, r.whole.usage.completion_tokens);
  check(r.completion, Completion, EXTRAS);
  assert.match(r.completion.choices[0].text, /Paris/);
  assert.deepEqual({ ...r.error, message: undefined }, { name: 'BadRequestError', status: 400, code: 'unsupported', param: 'tools', message: undefined });
  assert.match(r.error.message, /tools is not supported/);
  assert.deepEqual({ aborted: r.aborted, pieces: r.pieces }, { aborted: null, pieces: 3 });
  assert.match(r.after, /Paris/);
});

test('the console shows no errors', () => {
  assert.deepEqual(consoleErrors, []);
});
