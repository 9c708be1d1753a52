// OpenAI's API over a Wick engine: request bodies checked field by field and turned into the
// engine's parameters (an unknown or unsupported field is an error, never ignored), replies built
// in OpenAI's response shapes (ChatCompletion, ChatCompletionChunk, Completion, the error body)
// and the streams of chunks an engine's replies become, and a fetch-compatible handler serving
// them as HTTP and server-sent events.
import { WickError } from './error.js';
import { FromWorker } from './protocol.js';

/** The most choices one request may ask for. */
const MAX_N = 16;
/** The widest beam search a request may ask for (MAX_BEAMS in src/beam.rs). */
const MAX_BEAMS = 64;

/** Fields that OpenAI's API has and Wick does not do, with why. */
const UNSUPPORTED = {
  tools: 'Wick does not call tools (function calling) yet',
  tool_choice: 'Wick does not call tools (function calling) yet',
  parallel_tool_calls: 'Wick does not call tools (function calling) yet',
  functions: 'Wick does not call functions yet',
  function_call: 'Wick does not call functions yet',
  audio: 'Wick\'s models read and write text only',
  prediction: 'Wick does not do predicted outputs',
  reasoning_effort: 'Wick\'s models have no reasoning settings',
  verbosity: 'Wick\'s models have no verbosity setting',
  web_search_options: 'Wick does not search the web',
  moderation: 'Wick does not moderate',
  metadata: 'Wick stores nothing (metadata goes with store)',
  prompt_cache_key: 'Wick keeps one conversation\'s KV cache per engine, reused automatically',
  prompt_cache_options: 'Wick keeps one conversation\'s KV cache per engine, reused automatically',
  prompt_cache_retention: 'Wick keeps one conversation\'s KV cache per engine, reused automatically',
  safety_identifier: 'Wick runs in this tab; there is no service to identify users to',
  suffix: 'Wick does not do fill-in-the-middle',
};

/** A WickError for a bad field value. */
const invalid = (param, message) => new WickError('invalid_request', message, { param });
/** A WickError for a field Wick does not do. */
const unsupported = (param, message) => new WickError('unsupported', message, { param });

/** Whether `v` was given (OpenAI's API takes null as absent). */
const given = (v) => v !== undefined && v !== null;

/** Checks that `v` is a number in [min, max] (`integer`: a whole one); returns it, or `fallback` when absent. */
function number(body, name, { min = -Infinity, max = Infinity, integer = false, above = false } = {}, fallback = undefined) {
  const v = body[name];
  if (!given(v)) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isSafeInteger(v)) || v < min || v > max || (above && v <= min)) {
    const range = above ? `> ${min}` : [min > -Infinity && `≥ ${min}`, max < Infinity && `≤ ${max}`].filter(Boolean).join(' and ');
    throw invalid(name, `${name} must be ${integer ? 'an integer' : 'a number'}${range ? ` ${range}` : ''}, not ${JSON.stringify(v)}.`);
  }
  return v;
}

/** Checks that `v` is a boolean; returns it, or `fallback` when absent. */
function boolean(body, name, fallback = false) {
  const v = body[name];
  if (!given(v)) return fallback;
  if (typeof v !== 'boolean') throw invalid(name, `${name} must be true or false, not ${JSON.stringify(v)}.`);
  return v;
}

/**
 * The fields both endpoints share, checked, as Rust's SamplingParams (with the `model`, `n`,
 * `stream`, `include_usage` and `signal` of the request beside it).
 * @param {Record<string, any>} body
 * @param {{ id: string, context_length: number }} info
 * @param {Set<string>} known every field this endpoint accepts
 * @param {number} defaultMaxTokens
 */
function common(body, info, known, defaultMaxTokens) {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw invalid(null, 'The request body must be a JSON object.');
  }
  for (const key of Object.keys(body)) {
    if (known.has(key)) continue;
    if (key in UNSUPPORTED && (given(body[key]) && !(Array.isArray(body[key]) && !body[key].length) && body[key] !== 'none')) {
      throw unsupported(key, `${key} is not supported: ${UNSUPPORTED[key]}.`);
    }
    if (key in UNSUPPORTED) continue; // given as null, an empty list or 'none': asks for nothing
    throw unsupported(key, `Unknown field ${key}: Wick takes OpenAI's fields and top_k, min_p, repetition_penalty, ignore_eos, cache_prompt, beams and length_penalty.`);
  }
  if (given(body.model) && body.model !== info.id) {
    throw new WickError('model_not_found', `The model ${JSON.stringify(body.model)} is not loaded; this engine runs ${JSON.stringify(info.id)} (leave model out, or use that id).`, { param: 'model' });
  }
  const stream = boolean(body, 'stream');
  let includeUsage = false;
  if (given(body.stream_options)) {
    if (!stream) throw invalid('stream_options', 'stream_options is only allowed with stream: true.');
    const o = body.stream_options;
    if (typeof o !== 'object') throw invalid('stream_options', 'stream_options must be an object.');
    for (const key of Object.keys(o)) {
      if (key !== 'include_usage' && key !== 'include_obfuscation') throw unsupported(`stream_options.${key}`, `Unknown field stream_options.${key}.`);
    }
    includeUsage = boolean(o, 'include_usage');
    if (boolean(o, 'include_obfuscation')) throw unsupported('stream_options.include_obfuscation', 'stream_options.include_obfuscation is not supported: nothing leaves this tab, so there is nothing to pad.');
  }
  let stop = body.stop;
  if (!given(stop)) stop = [];
  else if (typeof stop === 'string') stop = [stop];
  if (!Array.isArray(stop) || stop.length > 4 || stop.some((s) => typeof s !== 'string' || !s)) {
    throw invalid('stop', 'stop must be a non-empty string or a list of up to 4 of them.');
  }
  let logitBias = {};
  if (given(body.logit_bias)) {
    if (typeof body.logit_bias !== 'object' || Array.isArray(body.logit_bias)) throw invalid('logit_bias', 'logit_bias must map token ids to numbers.');
    for (const [token, bias] of Object.entries(body.logit_bias)) {
      if (!/^\d+$/.test(token) || typeof bias !== 'number' || !(bias >= -100 && bias <= 100)) {
        throw invalid('logit_bias', `logit_bias must map token ids to numbers from -100 to 100, not ${JSON.stringify(token)}: ${JSON.stringify(bias)}.`);
      }
    }
    logitBias = body.logit_bias;
  }
  const signal = body.signal;
  if (given(signal) && !(signal instanceof AbortSignal)) throw invalid('signal', 'signal must be an AbortSignal.');
  const maxTokens = number(body, 'max_tokens', { min: 1, integer: true });
  const maxCompletionTokens = number(body, 'max_completion_tokens', { min: 1, integer: true });
  if (given(maxTokens) && given(maxCompletionTokens) && maxTokens !== maxCompletionTokens) {
    throw invalid('max_tokens', 'max_tokens and max_completion_tokens differ; give one.');
  }
  const topP = number(body, 'top_p', { min: 0, max: 1, above: true });
  if (topP !== undefined && topP > 1) throw invalid('top_p', 'top_p must be ≤ 1.');
  const params = {
    temperature: number(body, 'temperature', { min: 0, max: 2 }, 0.7),
    top_p: topP ?? 0.9,
    top_k: number(body, 'top_k', { min: 0, integer: true }, 40),
    min_p: number(body, 'min_p', { min: 0, max: 1 }, 0),
    repeat_penalty: number(body, 'repetition_penalty', { min: 0, max: 10, above: true }, 1),
    frequency_penalty: number(body, 'frequency_penalty', { min: -2, max: 2 }, 0),
    presence_penalty: number(body, 'presence_penalty', { min: -2, max: 2 }, 0),
    logit_bias: logitBias,
    seed: number(body, 'seed', { min: 0, integer: true }, undefined),
    max_tokens: maxTokens ?? maxCompletionTokens ?? defaultMaxTokens,
    ignore_eog: boolean(body, 'ignore_eos'),
    stop,
  };
  const n = number(body, 'n', { min: 1, max: MAX_N, integer: true }, 1);
  // Wick: beam search replaces sampling; its one reply is known only when the search ends.
  params.beams = number(body, 'beams', { min: 1, max: MAX_BEAMS, integer: true }, 0);
  params.length_penalty = number(body, 'length_penalty', { min: -10, max: 10 }, 0);
  if (params.length_penalty && !params.beams) throw invalid('length_penalty', 'length_penalty needs beams (beam search).');
  if (params.beams && n > 1) throw invalid('n', 'n > 1 with beams is not supported: beam search gives one reply, the most likely it kept.');
  if (params.beams && stream) throw invalid('stream', 'stream: true with beams is not supported: beam search knows its reply only when the search ends.');
  return { params, n, stream, includeUsage, signal, cachePrompt: boolean(body, 'cache_prompt', true) };
}

const CHAT_FIELDS = new Set([
  'messages', 'model', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p',
  'seed', 'stop', 'frequency_penalty', 'presence_penalty', 'logprobs', 'top_logprobs', 'n', 'logit_bias', 'user',
  'response_format', 'modalities', 'store', 'service_tier', 'signal', 'top_k', 'min_p', 'repetition_penalty', 'ignore_eos',
  'cache_prompt', 'beams', 'length_penalty',
]);

/** Fields an assistant message read back from a ChatCompletion may carry, when empty. */
const EMPTY_WHEN_ECHOED = ['refusal', 'annotations', 'audio', 'function_call', 'tool_calls'];

/** A message's content as text: a string, or a list of text parts. */
function messageText(m, i) {
  if (typeof m.content === 'string') return m.content;
  if (m.content === null && m.role === 'assistant') return '';
  if (Array.isArray(m.content)) {
    return m.content.map((part, j) => {
      if (part?.type === 'text' && typeof part.text === 'string') return part.text;
      if (part?.type === 'refusal' && typeof part.refusal === 'string') return part.refusal;
      throw unsupported(`messages[${i}].content[${j}]`, `messages[${i}].content[${j}] is of type ${JSON.stringify(part?.type)}: Wick's models read text only.`);
    }).join('');
  }
  throw invalid(`messages[${i}].content`, `messages[${i}].content must be a string or a list of text parts.`);
}

/**
 * The engine's output constraint for OpenAI's `response_format`: none for text, any JSON object
 * for `json_object`, the schema's JSON for `json_schema` (the engine compiles it and rejects what
 * it cannot follow before any token runs).
 */
function responseFormat(format) {
  if (!given(format) || format?.type === 'text') return null;
  if (format.type === 'json_object') return { type: 'json_object' };
  if (format.type !== 'json_schema') {
    throw unsupported('response_format', `response_format ${JSON.stringify(format?.type)} is not supported (text, json_object or json_schema).`);
  }
  const js = format.json_schema;
  if (!js || typeof js !== 'object') throw invalid('response_format.json_schema', 'response_format.json_schema must be { name, schema, strict }.');
  if (typeof js.name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(js.name)) {
    throw invalid('response_format.json_schema.name', 'response_format.json_schema.name must be 1 to 64 letters, digits, _ or -.');
  }
  if (given(js.strict) && typeof js.strict !== 'boolean') throw invalid('response_format.json_schema.strict', 'response_format.json_schema.strict must be a boolean.');
  const schema = js.schema ?? {};
  if (typeof schema !== 'object' || Array.isArray(schema)) throw invalid('response_format.json_schema.schema', 'response_format.json_schema.schema must be a JSON schema object.');
  return { type: 'json_schema', schema };
}

/**
 * A chat completion request, checked: the conversation as `{ role, content }` messages (developer
 * becomes system) and the engine's parameters.
 * @param {Record<string, any>} body
 * @param {{ id: string, context_length: number }} info
 */
export function chatRequest(body, info) {
  const request = common(body, info, CHAT_FIELDS, info.context_length);
  if (!Array.isArray(body.messages) || !body.messages.length) {
    throw invalid('messages', 'messages must be a non-empty list of { role, content }.');
  }
  const messages = body.messages.map((m, i) => {
    if (!m || typeof m !== 'object') throw invalid(`messages[${i}]`, `messages[${i}] must be an object { role, content }.`);
    if (m.role === 'tool' || m.role === 'function') throw unsupported(`messages[${i}].role`, `messages[${i}] has role ${m.role}: Wick does not call tools yet.`);
    if (!['system', 'developer', 'user', 'assistant'].includes(m.role)) {
      throw invalid(`messages[${i}].role`, `messages[${i}].role must be system, developer, user or assistant, not ${JSON.stringify(m.role)}.`);
    }
    for (const key of Object.keys(m)) {
      if (key === 'role' || key === 'content') continue;
      const empty = !given(m[key]) || (Array.isArray(m[key]) && !m[key].length);
      if (m.role === 'assistant' && EMPTY_WHEN_ECHOED.includes(key) && empty) continue;
      throw unsupported(`messages[${i}].${key}`, `messages[${i}].${key} is not supported: Wick's messages are { role, content }.`);
    }
    return { role: m.role === 'developer' ? 'system' : m.role, content: messageText(m, i) };
  });
  const logprobs = boolean(body, 'logprobs');
  const top = number(body, 'top_logprobs', { min: 0, max: 20, integer: true });
  if (top !== undefined && !logprobs) throw invalid('top_logprobs', 'top_logprobs needs logprobs: true.');
  request.params.logprobs = logprobs ? (top ?? 0) : null;
  request.params.constraint = responseFormat(body.response_format);
  if (given(body.modalities) && (!Array.isArray(body.modalities) || body.modalities.some((m) => m !== 'text'))) {
    throw unsupported('modalities', 'Wick\'s models write text only (modalities: ["text"]).');
  }
  if (body.store === true) throw unsupported('store', 'Wick stores nothing: it runs in this tab.');
  if (given(body.service_tier) && body.service_tier !== 'auto' && body.service_tier !== 'default') {
    throw unsupported('service_tier', 'Wick has one service tier: this tab.');
  }
  if (given(body.user) && typeof body.user !== 'string') throw invalid('user', 'user must be a string.');
  return { ...request, messages, logprobs };
}

const COMPLETION_FIELDS = new Set([
  'prompt', 'model', 'stream', 'stream_options', 'max_tokens', 'temperature', 'top_p', 'seed', 'stop', 'frequency_penalty',
  'presence_penalty', 'logprobs', 'n', 'logit_bias', 'user', 'echo', 'signal', 'top_k', 'min_p', 'repetition_penalty', 'ignore_eos',
  'cache_prompt', 'best_of', 'beams', 'length_penalty',
]);

/**
 * A completion request, checked: its prompts and the engine's parameters. `max_tokens`
 * defaults to 16, as in OpenAI's API.
 * @param {Record<string, any>} body
 * @param {{ id: string, context_length: number }} info
 */
export function completionRequest(body, info) {
  const request = common(body, info, COMPLETION_FIELDS, 16);
  let prompts = body.prompt;
  if (typeof prompts === 'string') prompts = [prompts];
  if (!Array.isArray(prompts) || !prompts.length) throw invalid('prompt', 'prompt must be a string or a non-empty list of strings.');
  if (prompts.some((p) => typeof p !== 'string')) {
    throw unsupported('prompt', 'prompt must be text: token-id prompts are not supported (engine.detokenize turns ids into text).');
  }
  const logprobs = number(body, 'logprobs', { min: 0, max: 5, integer: true }, null);
  request.params.logprobs = logprobs;
  const echo = boolean(body, 'echo');
  if (echo && logprobs !== null) throw unsupported('echo', 'echo with logprobs is not supported: Wick does not score prompt tokens.');
  if (given(body.user) && typeof body.user !== 'string') throw invalid('user', 'user must be a string.');
  if (given(body.best_of) && body.best_of !== request.n) {
    throw unsupported('best_of', 'best_of other than n is not supported: Wick does not rank several completions.');
  }
  return { ...request, prompts, logprobs, echo };
}

/** A random id such as OpenAI's (`chatcmpl-…`). */
const newId = (prefix) => `${prefix}-${Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('')}`;

/** OpenAI's finish_reason for the engine's reason. */
export const finishReason = (reason) => (reason === 'max_tokens' || reason === 'context_full' ? 'length' : 'stop');

/**
 * Token usage of a request from the stats of its replies (the first reply's prompt counts once
 * per prompt, as in OpenAI's API), with Wick's timings beside it.
 * @param {{ prompt: import('./protocol.js').Stats, replies: import('./protocol.js').Stats[] }[]} runs
 */
export function usage(runs) {
  const prompt = runs.reduce((n, r) => n + r.prompt.prompt_tokens, 0);
  const cached = runs.reduce((n, r) => n + r.prompt.prompt_tokens - r.prompt.prefilled_tokens, 0);
  const all = runs.flatMap((r) => r.replies);
  const completion = all.reduce((n, s) => n + s.generated_tokens, 0);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
}

/**
 * Wick's figures for a request, llama.cpp's server's names: prompt tokens run (`prompt_n`, the
 * cached ones not counted) and tokens generated (`predicted_n`), with their times.
 * @param {import('./protocol.js').Stats[]} stats
 */
export function timings(stats) {
  const sum = (f) => stats.reduce((n, s) => n + f(s), 0);
  const promptN = sum((s) => s.prefilled_tokens);
  const promptMs = sum((s) => s.prefill_seconds) * 1000;
  const predictedN = sum((s) => s.generated_tokens);
  const predictedMs = sum((s) => s.decode_seconds) * 1000;
  return {
    prompt_n: promptN, prompt_ms: promptMs, prompt_per_second: promptMs ? (promptN * 1000) / promptMs : 0,
    predicted_n: predictedN, predicted_ms: predictedMs, predicted_per_second: predictedMs ? (predictedN * 1000) / predictedMs : 0,
    first_token_ms: (stats[0]?.first_token_seconds ?? 0) * 1000,
  };
}

/** Builds one request's responses: ids, `created` and `model` shared by all its chunks. */
export class Responses {
  /**
   * @param {'chat.completion'|'text_completion'} kind
   * @param {string} model
   */
  constructor(kind, model) {
    this.kind = kind;
    this.id = newId(kind === 'chat.completion' ? 'chatcmpl' : 'cmpl');
    this.created = Math.floor(Date.now() / 1000);
    this.model = model;
  }

  /** The fields every response and chunk starts with. */
  head(object) {
    return { id: this.id, object, created: this.created, model: this.model, system_fingerprint: 'wick' };
  }

  /** A ChatCompletion. */
  chat(choices, usageValue, timingsValue) {
    return { ...this.head('chat.completion'), choices, usage: usageValue, timings: timingsValue };
  }

  /** A ChatCompletionChunk of one choice (`usage` null, when the stream will end with usage). */
  chatChunk(index, delta, { logprobs = null, finish = null, withUsage = false } = {}) {
    const chunk = { ...this.head('chat.completion.chunk'), choices: [{ index, delta, logprobs, finish_reason: finish }] };
    if (withUsage) chunk.usage = null;
    return chunk;
  }

  /** The last chunk of a stream that asked for usage: no choices. */
  usageChunk(object, usageValue, timingsValue) {
    return { ...this.head(object), choices: [], usage: usageValue, timings: timingsValue };
  }

  /** A Completion. */
  completion(choices, usageValue, timingsValue) {
    return { ...this.head('text_completion'), choices, usage: usageValue, timings: timingsValue };
  }

  /** A streamed Completion chunk of one choice. */
  completionChunk(index, text, { logprobs = null, finish = null, withUsage = false } = {}) {
    const chunk = { ...this.head('text_completion'), choices: [{ index, text, logprobs, finish_reason: finish }] };
    if (withUsage) chunk.usage = null;
    return chunk;
  }
}

/**
 * Legacy completions' logprobs of some tokens: parallel lists, `top_logprobs` as maps from
 * token text to log-probability (the chosen token always among them), `text_offset` counted
 * from `offset`.
 * @param {import('./protocol.js').TokenLogprobs[]} tokens
 * @param {number} offset
 */
export function completionLogprobs(tokens, offset) {
  const out = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const t of tokens) {
    out.tokens.push(t.token);
    out.token_logprobs.push(t.logprob);
    const top = Object.fromEntries(t.top_logprobs.map((a) => [a.token, a.logprob]));
    top[t.token] ??= t.logprob;
    out.top_logprobs.push(top);
    out.text_offset.push(offset);
    offset += t.token.length;
  }
  return out;
}

/** The chunks of a streamed chat completion: role first, then content pieces, then the finish. */
export async function* chatChunks(req, responses, first, start, release) {
  let reply = first;
  try {
    const stats = [];
    const withUsage = req.includeUsage;
    for (let i = 0; i < req.n; i++) {
      if (i > 0) reply = await start(i);
      yield responses.chatChunk(i, { role: 'assistant', content: '' }, { withUsage });
      let tokens = [];
      for await (const ev of reply) {
        if (ev.logprobs) tokens.push(ev.logprobs);
        const logprobs = req.logprobs ? { content: tokens, refusal: null } : null;
        if (ev.text) {
          yield responses.chatChunk(i, { content: ev.text }, { logprobs, withUsage });
          tokens = [];
        }
        if (ev.type === FromWorker.DONE) {
          stats.push(ev.stats);
          yield responses.chatChunk(i, {}, { finish: finishReason(ev.reason), logprobs: tokens.length ? logprobs : null, withUsage });
        }
      }
    }
    if (withUsage) yield responses.usageChunk('chat.completion.chunk', usage([{ prompt: stats[0], replies: stats }]), timings(stats));
  } catch (e) {
    throw WickError.from(e);
  } finally {
    await reply.close(); // a consumer that left early leaves no reply running
    release();
  }
}

/** The chunks of a streamed completion: text pieces of each choice, then its finish. */
export async function* completionChunks(req, responses, first, start, release) {
  let reply = first;
  try {
    const runs = [];
    const withUsage = req.includeUsage;
    for (let p = 0; p < req.prompts.length; p++) {
      const replies = [];
      for (let i = 0; i < req.n; i++) {
        if (p > 0 || i > 0) reply = await start(p, i);
        const index = p * req.n + i;
        let offset = 0;
        if (req.echo) {
          yield responses.completionChunk(index, req.prompts[p], { withUsage });
          offset = req.prompts[p].length;
        }
        let tokens = [];
        for await (const ev of reply) {
          if (ev.logprobs) tokens.push(ev.logprobs);
          const logprobs = () => (req.logprobs === null ? null : completionLogprobs(tokens, offset));
          if (ev.text) {
            yield responses.completionChunk(index, ev.text, { logprobs: logprobs(), withUsage });
            offset += ev.text.length;
            tokens = [];
          }
          if (ev.type === FromWorker.DONE) {
            replies.push(ev.stats);
            yield responses.completionChunk(index, '', { finish: finishReason(ev.reason), logprobs: tokens.length ? logprobs() : null, withUsage });
          }
        }
      }
      runs.push({ prompt: replies[0], replies });
    }
    if (withUsage) yield responses.usageChunk('text_completion', usage(runs), timings(runs.flatMap((r) => r.replies)));
  } catch (e) {
    throw WickError.from(e);
  } finally {
    await reply.close(); // a consumer that left early leaves no reply running
    release();
  }
}

/** OpenAI's error body for a WickError. */
export function errorBody(e) {
  const status = e.status ?? 500;
  return {
    error: {
      message: e.message,
      type: status >= 500 ? 'server_error' : 'invalid_request_error',
      param: e.param ?? null,
      code: e.code,
    },
  };
}

/** A JSON Response. */
const json = (status, body) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/** A server-sent-events Response of the chunks an async iterable yields, ending in `data: [DONE]`. */
function eventStream(chunks, signal) {
  const encoder = new TextEncoder();
  const iterator = chunks[Symbol.asyncIterator]();
  return new Response(new ReadableStream({
    async pull(controller) {
      try {
        const { done, value } = await iterator.next();
        if (done) {
          controller.enqueue(encoder.encode('data: [DONE]\n\n'));
          controller.close();
        } else {
          controller.enqueue(encoder.encode(`data: ${JSON.stringify(value)}\n\n`));
        }
      } catch (e) {
        const error = WickError.from(e);
        if (error.code === 'aborted' && signal?.aborted) {
          controller.error(signal.reason ?? new DOMException('The request was aborted.', 'AbortError'));
        } else {
          // OpenAI's clients read an error event in the stream and throw it.
          controller.enqueue(encoder.encode(`data: ${JSON.stringify(errorBody(error))}\n\n`));
          controller.close();
        }
      }
    },
    async cancel() {
      await iterator.return?.();
    },
  }), { status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' } });
}

/**
 * A `fetch`-compatible function that serves an engine as OpenAI's HTTP API:
 * `POST …/chat/completions`, `POST …/completions` (JSON, or server-sent events with `stream`),
 * `GET …/models` and `GET …/models/{id}`; anything else is OpenAI's error body with its status.
 * Aborting the request's signal rejects (or errors the stream) with an AbortError.
 * @param {{ info: { id: string }, chat: any, completions: any }} engine
 * @returns {(input: RequestInfo | URL, init?: RequestInit) => Promise<Response>}
 */
export function fetchHandler(engine) {
  const model = () => ({ id: engine.info.id, object: 'model', created: 0, owned_by: 'wick' });
  return async (input, init) => {
    const request = new Request(input, init);
    const path = new URL(request.url).pathname.replace(/\/+$/, '');
    const signal = request.signal;
    const abortError = () => signal.reason instanceof Error ? signal.reason : new DOMException('The request was aborted.', 'AbortError');
    if (signal.aborted) throw abortError();
    try {
      const route = /(?:^|\/)(chat\/completions|completions|models)(?:\/(.+))?$/.exec(path);
      if (!route || (route[2] && route[1] !== 'models')) {
        const message = `Unknown request URL: ${request.method} ${path}. Wick serves POST /v1/chat/completions, POST /v1/completions and GET /v1/models.`;
        return json(404, { error: { message, type: 'invalid_request_error', param: null, code: 'unknown_url' } });
      }
      const [, what, id] = route;
      if (what === 'models') {
        if (request.method !== 'GET') throw new WickError('invalid_request', `${request.method} ${path} is not served; use GET.`);
        if (id === undefined) return json(200, { object: 'list', data: [model()] });
        if (decodeURIComponent(id) !== engine.info.id) throw new WickError('model_not_found', `The model ${JSON.stringify(decodeURIComponent(id))} does not exist; this engine runs ${JSON.stringify(engine.info.id)}.`, { param: 'model' });
        return json(200, model());
      }
      if (request.method !== 'POST') throw new WickError('invalid_request', `${request.method} ${path} is not served; use POST.`);
      let body;
      try {
        body = JSON.parse(await request.text());
      } catch (e) {
        throw new WickError('invalid_request', `The request body is not valid JSON: ${e.message}`);
      }
      if (body && typeof body === 'object' && 'signal' in body) throw new WickError('unsupported', 'Unknown field signal: over HTTP, abort the request itself.', { param: 'signal' });
      const api = what === 'chat/completions' ? engine.chat.completions : engine.completions;
      const result = await api.create({ ...body, signal });
      return body.stream ? eventStream(result, signal) : json(200, result);
    } catch (e) {
      const error = WickError.from(e);
      if (error.code === 'aborted' && signal.aborted) throw abortError();
      return json(error.status, errorBody(error));
    }
  };
}
