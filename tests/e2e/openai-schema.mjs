// OpenAI's published response schemas, transcribed field by field from the OpenAPI spec as the
// official `openai` npm package (7.59.0) types them: CreateChatCompletionResponse,
// CreateChatCompletionStreamResponse, CreateCompletionResponse, CompletionUsage,
// ChatCompletionTokenLogprob and ErrorResponse. `check(value, schema)` throws with the path of
// the first field that is missing, mistyped or not in the schema (Wick's documented additions are
// passed as `extras`).
import assert from 'node:assert/strict';

const t = (type) => ({ type });
const str = t('string');
const int = t('integer');
const num = t('number');
const bool = t('boolean');
const nul = t('null');
const oneOf = (...values) => ({ enum: values });
const nullable = (s) => ({ anyOf: [s, nul] });
const arr = (items) => ({ type: 'array', items });
const obj = (required, optional = {}) => ({ type: 'object', required, optional });
const map = (values) => ({ type: 'map', values });

export const TopLogprob = obj({ token: str, bytes: nullable(arr(int)), logprob: num });
export const ChatCompletionTokenLogprob = obj({ token: str, bytes: nullable(arr(int)), logprob: num, top_logprobs: arr(TopLogprob) });
const ChoiceLogprobs = obj({ content: nullable(arr(ChatCompletionTokenLogprob)), refusal: nullable(arr(ChatCompletionTokenLogprob)) });

export const CompletionUsage = obj({ completion_tokens: int, prompt_tokens: int, total_tokens: int }, {
  completion_tokens_details: obj({}, { accepted_prediction_tokens: int, audio_tokens: int, reasoning_tokens: int, rejected_prediction_tokens: int }),
  prompt_tokens_details: obj({}, { audio_tokens: int, cached_tokens: int }),
});

const SERVICE_TIER = nullable(oneOf('auto', 'default', 'flex', 'scale', 'priority', 'fast'));
const FINISH = oneOf('stop', 'length', 'tool_calls', 'content_filter', 'function_call');

export const ChatCompletionMessage = obj({ content: nullable(str), refusal: nullable(str), role: oneOf('assistant') }, {
  annotations: arr(obj({ type: oneOf('url_citation'), url_citation: obj({ end_index: int, start_index: int, title: str, url: str }) })),
  audio: nullable(obj({ id: str, data: str, expires_at: int, transcript: str })),
  function_call: nullable(obj({ arguments: str, name: str })),
  tool_calls: arr(obj({ id: str, type: str })),
});

export const ChatCompletion = obj({
  id: str,
  choices: arr(obj({ finish_reason: FINISH, index: int, logprobs: nullable(ChoiceLogprobs), message: ChatCompletionMessage })),
  created: int,
  model: str,
  object: oneOf('chat.completion'),
}, { service_tier: SERVICE_TIER, system_fingerprint: str, usage: CompletionUsage });

export const ChatCompletionChunk = obj({
  id: str,
  choices: arr(obj({
    delta: obj({}, {
      content: nullable(str),
      refusal: nullable(str),
      role: oneOf('developer', 'system', 'user', 'assistant', 'tool'),
      function_call: obj({}, { arguments: str, name: str }),
      tool_calls: arr(obj({ index: int })),
    }),
    finish_reason: nullable(FINISH),
    index: int,
  }, { logprobs: nullable(ChoiceLogprobs) })),
  created: int,
  model: str,
  object: oneOf('chat.completion.chunk'),
}, { obfuscation: str, service_tier: SERVICE_TIER, system_fingerprint: str, usage: nullable(CompletionUsage) });

export const Completion = obj({
  id: str,
  choices: arr(obj({
    finish_reason: oneOf('stop', 'length', 'content_filter'),
    index: int,
    logprobs: nullable(obj({}, { text_offset: arr(int), token_logprobs: arr(num), tokens: arr(str), top_logprobs: arr(map(num)) })),
    text: str,
  })),
  created: int,
  model: str,
  object: oneOf('text_completion'),
}, { system_fingerprint: str, usage: CompletionUsage });

/** A streamed Completion chunk: as Completion, but finish_reason is null until the end and usage may be null. */
export const CompletionChunk = obj({
  ...Completion.required,
  choices: arr(obj({ ...Completion.required.choices.items.required, finish_reason: nullable(oneOf('stop', 'length', 'content_filter')) })),
}, { system_fingerprint: str, usage: nullable(CompletionUsage) });

export const ErrorResponse = obj({ error: obj({ code: nullable(str), message: str, param: nullable(str), type: str }) });

export const Model = obj({ id: str, created: int, object: oneOf('model'), owned_by: str });
export const ModelList = obj({ object: oneOf('list'), data: arr(Model) });

/** Wick's `timings`, beside OpenAI's fields. */
export const Timings = obj({
  prompt_n: int, prompt_ms: num, prompt_per_second: num, predicted_n: int, predicted_ms: num, predicted_per_second: num, first_token_ms: num,
});

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function matches(value, schema) {
  try {
    check(value, schema);
    return true;
  } catch {
    return false;
  }
}

/**
 * Throws unless `value` follows `schema` field by field. `extras` lists fields outside the schema
 * that may appear at the top level (Wick's documented additions), with their own schemas.
 */
export function check(value, schema, { extras = {}, path = '$' } = {}) {
  if (schema.anyOf) {
    assert.ok(schema.anyOf.some((s) => matches(value, s)), `${path}: ${JSON.stringify(value)} matches none of its types`);
    return;
  }
  if (schema.enum) {
    assert.ok(schema.enum.includes(value), `${path}: ${JSON.stringify(value)} is not one of ${schema.enum.join(', ')}`);
    return;
  }
  const type = typeOf(value);
  if (schema.type === 'number') assert.ok(type === 'number' || type === 'integer', `${path}: expected a number, got ${type}`);
  else if (schema.type === 'map') {
    assert.equal(type, 'object', `${path}: expected an object`);
    for (const [k, v] of Object.entries(value)) check(v, schema.values, { path: `${path}[${JSON.stringify(k)}]` });
  } else assert.equal(type, schema.type, `${path}: expected ${schema.type}, got ${type} (${JSON.stringify(value)})`);
  if (schema.type === 'array') value.forEach((v, i) => check(v, schema.items, { path: `${path}[${i}]` }));
  if (schema.type === 'object') {
    for (const [k, s] of Object.entries(schema.required)) {
      assert.ok(k in value, `${path}.${k} is required`);
      check(value[k], s, { path: `${path}.${k}` });
    }
    for (const [k, v] of Object.entries(value)) {
      if (k in schema.required) continue;
      const s = schema.optional[k] ?? extras[k];
      assert.ok(s, `${path}.${k} is not in the schema`);
      check(v, s, { path: `${path}.${k}` });
    }
  }
}
