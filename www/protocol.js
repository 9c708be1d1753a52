// The messages between wick.js (the page side of an engine) and its worker (worker.js). Every
// message is a plain object `{ type, ...payload }`; this file is the one place they are named and
// typed. Requests that answer carry an `id` the answer repeats.

/**
 * @typedef {import('./model-files.js').ModelSource} ModelSource
 * @typedef {{ threads: number, simd: 'relaxed'|'simd128', contextLength?: number, quantize?: 'q4'|'q8'|null,
 *   kvCache?: boolean }} LoadOptions
 * @typedef {{ role: string, content: string }} Message
 * @typedef {Record<string, unknown>} EngineParams Rust's `SamplingParams` as JSON
 *   (temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty,
 *   logit_bias, logprobs, seed, max_tokens, ignore_eog, stop)
 * @typedef {{ token: string, bytes: number[] | null, logprob: number }} TokenLogprob
 * @typedef {TokenLogprob & { top_logprobs: TokenLogprob[] }} TokenLogprobs
 * @typedef {{ prompt_tokens: number, prefilled_tokens: number, prefill_seconds: number,
 *   generated_tokens: number, decode_seconds: number, first_token_seconds: number }} Stats
 * @typedef {{ id: string, name: string, architecture: string, format: string, quantization: string,
 *   chat_template: boolean, vocab_size: number,
 *   hidden_size: number, n_layers: number, n_heads: number, n_kv_heads: number,
 *   context_length: number, model_context_length: number, source: 'network'|'cache'|'file',
 *   bytes: number, loadSeconds: number, build: { simd: 'relaxed-simd'|'simd128', threads: number },
 *   memoryBytes: number, verified: boolean }} EngineInfo
 */

/** Page → worker. */
export const ToWorker = Object.freeze({
  /** `{ source: ModelSource, options: LoadOptions }`: fetch the model and build the engine (once per worker). */
  LOAD: 'load',
  /**
   * `{ id, messages: Message[], params: EngineParams, fresh }`: start a chat reply and stream it;
   * or `{ id, prompt: string, params, fresh }` to continue a raw prompt. `fresh`: forget the KV
   * cache first (the whole prompt is run). One at a time (wick.js queues).
   */
  GENERATE: 'generate',
  /** `{ id }`: stop that reply now (it answers DONE with reason 'cancelled'). */
  CANCEL: 'cancel',
  /** `{ id, messages: Message[] }`: run the start of a conversation into the KV cache; answers RESULT `{ cached }`. */
  WARM: 'warm',
  /** `{ id, messages: Message[] | null }`: answers RESULT with a KV snapshot (a Uint8Array). */
  SAVE_KV: 'save-kv',
  /** `{ id, bytes: Uint8Array, messages: Message[] }`: restores a snapshot before a reply to `messages`; answers RESULT `{ cached }`. */
  RESTORE_KV: 'restore-kv',
  /** `{ id, text }`: answers RESULT with the token ids. */
  TOKENIZE: 'tokenize',
  /** `{ id, ids: number[] }`: answers RESULT with the text. */
  DETOKENIZE: 'detokenize',
  /** `{ id, on: boolean }`: answers RESULT with the stage timers' counts since the last PROFILE, then turns them on or off. */
  PROFILE: 'profile',
  /** `{}`: answers PONG as soon as the worker is between two steps (wick.js's watchdog). */
  PING: 'ping',
  /**
   * `{ action: 'trap'|'oom'|'hang'|'break-cache' }`: a test hook no page control or API call
   * sends (the browser tests post it to the worker themselves): the next step of a reply traps,
   * runs the engine's allocator out of memory, or never returns; 'break-cache' makes the Cache
   * API throw from then on (sent before LOAD).
   */
  TEST: '__test',
});

/** Worker → page. */
export const FromWorker = Object.freeze({
  /** `{ phase: 'download'|'cache'|'init', loaded, total, file }`: loading progress in bytes. */
  PROGRESS: 'progress',
  /** `{ error: { code, message } }`: the model could not be kept in the browser's storage (it still runs). */
  CACHE_ERROR: 'cache-error',
  /** `{ info: EngineInfo }`: the engine is ready. */
  READY: 'ready',
  /** `{ id }`: the engine took the prompt of GENERATE (it fits; the reply is under way). */
  STARTED: 'started',
  /** `{ id, done, total }`: prompt tokens run so far. */
  PREFILL: 'prefill',
  /** `{ id, text, logprobs?: TokenLogprobs }`: one generated token and the text it completes. */
  TOKEN: 'token',
  /**
   * `{ id, reason, text, stats: Stats, memoryBytes, kv }`: the reply ended (text: a last piece,
   * possibly empty). `kv`: `{ restored, refused? }` when the engine keeps KV snapshots — tokens
   * restored from one before the reply, and why one was refused.
   */
  DONE: 'done',
  /** `{ model, name, tokens, bytes }`: the KV cache was snapshotted to OPFS after a reply. */
  KV_SAVED: 'kv-saved',
  /** `{}`: the answer to PING. */
  PONG: 'pong',
  /** `{ id, value }`: the answer to WARM, TOKENIZE, DETOKENIZE or PROFILE. */
  RESULT: 'result',
  /**
   * `{ id?, error: { code, message, param }, fatal }`: a request (or, without id, the load)
   * failed; `fatal`: the engine is gone and the model must be loaded again.
   */
  ERROR: 'error',
});
