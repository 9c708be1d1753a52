// Wick's public API: `Wick.load(model)` gives an engine that runs in its own Web Worker, and the
// engine is talked to as OpenAI's API is: `engine.chat.completions.create(body)`,
// `engine.completions.create(body)`, or over HTTP with `engine.fetch`. `Wick.cache` shows and
// frees the model files the browser keeps, `Wick.kvCache` the KV snapshots (load option
// `kvCache`: a conversation continues after a reload without running its prompt again). Types:
// wick.d.ts.
import { WickError } from './error.js';
import { modelCache } from './cache.js';
import { kvCache as kvStore } from './kv-store.js';
import { describeModel } from './model-files.js';
import { ToWorker, FromWorker } from './protocol.js';
import {
  chatRequest, completionRequest, Responses, usage, timings, finishReason, completionLogprobs, fetchHandler,
  chatChunks, completionChunks,
} from './openai.js';

export { WickError };

/** The model files the browser keeps: `list()`, `has(url)`, `delete(url)`, `clear()`, `estimate()`. */
export const cache = modelCache;

/**
 * The KV snapshots engines loaded with `kvCache: true` keep in OPFS, one per conversation and
 * model, bounded in number and bytes: `list()`, `estimate()` (`{ count, bytes }`), `clear()`.
 */
export const kvCache = kvStore;

const LOAD_OPTIONS = new Set(['threads', 'simd', 'contextLength', 'onProgress', 'onCacheError', 'onRestart', 'watchdogSeconds', 'signal', 'hubUrl', 'revision', 'quantize', 'kvCache', 'onKvSaved']);

/**
 * Seconds a busy engine may go without answering before it is taken for hung: one step (a
 * token, or a chunk of the prompt) of the largest model Wick runs takes a few seconds at most.
 */
const WATCHDOG_SECONDS = 60;

/** An error for an aborted request or load. */
const aborted = (what) => new WickError('aborted', `${what} was aborted.`);

/** A random seed for a request that gives none (OpenAI's replies differ from call to call). */
const randomSeed = () => crypto.getRandomValues(new Uint32Array(1))[0];

/** Rejects with `aborted` when `signal` aborts before `promise` settles. */
function abortable(promise, signal, what) {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(aborted(what));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(aborted(what));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Messages of one request, read in order as they arrive. */
class Inbox {
  #items = [];
  #waiting = null;

  push(item) {
    if (this.#waiting) {
      this.#waiting(item);
      this.#waiting = null;
    } else {
      this.#items.push(item);
    }
  }

  /** @returns {Promise<any>} */
  next() {
    return this.#items.length ? Promise.resolve(this.#items.shift()) : new Promise((r) => (this.#waiting = r));
  }
}

/**
 * Loads a model into a new engine, which runs in its own Web Worker (several can run at once).
 * @param {string | URL | File | File[] | FileList} model a GGUF URL, a Hugging Face-style folder
 *   URL ending in `/`, a hub repo id `org/name` (or `org/name/file.gguf`), or File objects
 * @param {import('./wick.d.ts').LoadOptions} [options]
 * @returns {Promise<Engine>}
 */
export async function load(model, options = {}) {
  for (const key of Object.keys(options)) {
    if (!LOAD_OPTIONS.has(key)) throw new WickError('invalid_request', `Unknown load option ${key} (known: ${[...LOAD_OPTIONS].join(', ')}).`, { param: key });
  }
  const { threads, simd = 'relaxed', contextLength, onProgress, onCacheError, onRestart, watchdogSeconds = WATCHDOG_SECONDS, signal, hubUrl, revision, quantize = null, kvCache = false, onKvSaved } = options;
  const cores = globalThis.navigator?.hardwareConcurrency || 1;
  if (threads !== undefined && !(Number.isSafeInteger(threads) && threads >= 1)) throw new WickError('invalid_request', 'threads must be a whole number ≥ 1.', { param: 'threads' });
  if (contextLength !== undefined && !(Number.isSafeInteger(contextLength) && contextLength >= 2)) throw new WickError('invalid_request', 'contextLength must be a whole number ≥ 2.', { param: 'contextLength' });
  if (!(typeof watchdogSeconds === 'number' && watchdogSeconds >= 0 && watchdogSeconds < 2 ** 31 / 1000)) throw new WickError('invalid_request', 'watchdogSeconds must be a number ≥ 0 (0: no watchdog).', { param: 'watchdogSeconds' });
  if (simd !== 'relaxed' && simd !== 'simd128') throw new WickError('invalid_request', 'simd must be "relaxed" or "simd128".', { param: 'simd' });
  if (quantize !== null && quantize !== 'q4' && quantize !== 'q8') throw new WickError('invalid_request', 'quantize must be "q4", "q8" or null.', { param: 'quantize' });
  if (typeof kvCache !== 'boolean') throw new WickError('invalid_request', 'kvCache must be true or false.', { param: 'kvCache' });
  if (signal?.aborted) throw aborted('Loading the model');
  const base = globalThis.document?.baseURI ?? globalThis.location?.href;
  const source = describeModel(model, { hubUrl, revision }, base);
  const loadOptions = { threads: Math.min(threads ?? cores, cores), simd, contextLength, quantize, kvCache };
  const { worker, info } = await startWorker(source, loadOptions, { onProgress, onCacheError, signal });
  return new Engine(worker, info, { source, options: loadOptions, onProgress, onCacheError, onRestart, onKvSaved, watchdogMs: watchdogSeconds * 1000 });
}

/**
 * Starts an engine's worker and has it load `source`; resolves once the engine is ready. A
 * worker that crashed is replaced by starting another the same way: a new worker is a new wasm
 * instance (wasm-bindgen's init keeps the first instance of its module for good).
 * @param {import('./model-files.js').ModelSource} source
 * @param {import('./protocol.js').LoadOptions} options
 * @param {{ onProgress?: Function, onCacheError?: Function, signal?: AbortSignal }} callbacks
 * @returns {Promise<{ worker: Worker, info: import('./protocol.js').EngineInfo }>}
 */
function startWorker(source, options, { onProgress, onCacheError, signal }) {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  return new Promise((resolve, reject) => {
    const fail = (error) => {
      signal?.removeEventListener('abort', onAbort);
      worker.terminate();
      reject(error);
    };
    const onAbort = () => fail(aborted('Loading the model'));
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.onerror = (e) => {
      e.preventDefault?.();
      fail(new WickError('engine_crashed', `The engine's worker failed while loading${e.message ? ` (${e.message})` : ''}: is www/worker.js served beside wick.js?`));
    };
    worker.onmessage = ({ data }) => {
      if (data.type === FromWorker.PROGRESS) onProgress?.({ loaded: data.loaded, total: data.total, file: data.file, phase: data.phase });
      else if (data.type === FromWorker.CACHE_ERROR) onCacheError?.(WickError.from(data.error));
      else if (data.type === FromWorker.ERROR) fail(WickError.from(data.error));
      else if (data.type === FromWorker.READY) {
        signal?.removeEventListener('abort', onAbort);
        resolve({ worker, info: data.info });
      }
    };
    worker.postMessage({ type: ToWorker.LOAD, source, options });
  });
}

/**
 * @typedef {{ source: import('./model-files.js').ModelSource, options: import('./protocol.js').LoadOptions,
 *   onProgress?: Function, onCacheError?: Function, onRestart?: Function, watchdogMs: number }} Reload
 *   what the engine was loaded from and how, to load it again after a crash
 */

/**
 * A loaded model in its own worker, answering OpenAI-shaped requests one at a time. When the
 * worker crashes (a wasm trap, out of memory) or stops answering (the watchdog), the requests
 * in flight fail with that error and a fresh worker loads the model again; the requests after
 * them wait for it.
 */
class Engine {
  #worker;
  #info;
  /** @type {Map<number, Inbox>} */
  #inboxes = new Map();
  #nextId = 1;
  /** Resolves when the request before the newest one lets go of the engine. */
  #tail = Promise.resolve();
  /** @type {Set<AbortController>} one per request running or waiting */
  #requests = new Set();
  /** @type {WickError | null} why the engine no longer answers */
  #dead = null;
  /** @type {WickError | null} the crash that stopped the engine for good, if one did */
  #crashed = null;
  #memoryBytes;
  /** @type {Reload} */
  #reload;
  /** @type {Promise<void> | null} a fresh worker loading the model after a crash */
  #restarting = null;
  /** Crashes since a request last succeeded: a crash right after a restart is not restarted. */
  #crashesInARow = 0;
  #restarts = 0;
  /** The watchdog's timer, and when it last pinged and last heard from the worker (ms). */
  #watchdog = null;
  #pingedAt = null;
  #heardAt = 0;

  constructor(worker, info, reload) {
    this.#info = info;
    this.#memoryBytes = info.memoryBytes;
    this.#reload = reload;
    this.#attach(worker);
    /** OpenAI's chat API: `create(body)` gives a ChatCompletion, or with `stream: true` an async iterable of ChatCompletionChunk. */
    this.chat = Object.freeze({ completions: Object.freeze({ create: (body, options) => this.#chat(body, options) }) });
    /** OpenAI's completions API for raw prompts: `create(body)` gives a Completion (or chunks of one). */
    this.completions = Object.freeze({ create: (body, options) => this.#complete(body, options) });
    /** A `fetch` that serves this engine as OpenAI's HTTP API (pass it to the `openai` client). */
    this.fetch = fetchHandler(this);
    Object.freeze(this);
  }

  /** What is loaded and how: model id, architecture, format, context length, wasm build, load time, restarts… */
  get info() {
    return Object.freeze({ ...this.#info, memoryBytes: this.#memoryBytes, restarts: this.#restarts });
  }

  /** Makes `worker` the engine's worker. */
  #attach(worker) {
    this.#worker = worker;
    worker.onmessage = ({ data }) => {
      this.#heardAt = performance.now();
      if (data.type === FromWorker.PONG) return;
      if (data.type === FromWorker.DONE || data.type === FromWorker.RESULT) this.#crashesInARow = 0;
      if (data.type === FromWorker.CACHE_ERROR) this.#reload.onCacheError?.(WickError.from(data.error));
      else if (data.type === FromWorker.KV_SAVED) this.#reload.onKvSaved?.({ tokens: data.tokens, bytes: data.bytes });
      else if (data.type === FromWorker.ERROR && data.fatal) this.#crash(WickError.from(data.error));
      else this.#inboxes.get(data.id)?.push(data);
    };
    worker.onerror = (e) => {
      e.preventDefault?.();
      this.#crash(new WickError('engine_crashed', `The engine's worker crashed${e.message ? ` (${e.message})` : ''}.`));
    };
  }

  /**
   * The worker is lost: the requests in flight fail with `error`, and a fresh worker loads the
   * model again (unless the engine crashed again before any request succeeded, or was unloaded).
   */
  #crash(error) {
    if (this.#dead || this.#restarting) return;
    this.#unwatch();
    this.#worker.onmessage = null;
    this.#worker.onerror = null;
    this.#worker.terminate();
    for (const inbox of this.#inboxes.values()) inbox.push({ type: FromWorker.ERROR, error: error.toJSON(), fatal: true });
    this.#inboxes.clear();
    this.#crashesInARow += 1;
    if (this.#crashesInARow > 1) {
      this.#kill(new WickError(error.code, `${error.message} It crashed again right after a restart, so it was stopped; load the model again.`));
      this.#reload.onRestart?.({ phase: 'failed', error: this.#dead });
      return;
    }
    this.#reload.onRestart?.({ phase: 'crashed', error });
    const restart = this.#restart(error);
    this.#restarting = restart;
    restart.finally(() => {
      if (this.#restarting === restart) this.#restarting = null;
    });
  }

  /** Loads the model again in a fresh worker (a new wasm instance). */
  async #restart(error) {
    const { source, options, onProgress, onCacheError, onRestart } = this.#reload;
    try {
      const { worker, info } = await startWorker(source, options, { onProgress, onCacheError });
      if (this.#dead) {
        worker.terminate(); // unloaded meanwhile
        return;
      }
      this.#info = info;
      this.#memoryBytes = info.memoryBytes;
      this.#restarts += 1;
      this.#attach(worker);
      onRestart?.({ phase: 'restarted', error, info: this.info });
    } catch (e) {
      if (this.#dead) return;
      this.#kill(new WickError(error.code, `${error.message} Loading the model again failed: ${WickError.from(e).message}`));
      onRestart?.({ phase: 'failed', error: this.#dead });
    }
  }

  /** Stops the engine for good: every request fails with `error`, and the worker is dropped. */
  #kill(error) {
    this.#dead ??= error;
    this.#crashed ??= error;
    this.#unwatch();
    for (const inbox of this.#inboxes.values()) inbox.push({ type: FromWorker.ERROR, error: this.#dead.toJSON(), fatal: true });
    for (const c of this.#requests) c.abort();
    this.#worker.terminate();
  }

  /** Resolves once the engine can take a message (after a restart in progress); throws if it cannot. */
  async #ready(signal) {
    while (this.#restarting) await abortable(this.#restarting, signal, 'The request');
    this.#alive();
  }

  #alive() {
    if (this.#dead) throw new WickError(this.#dead.code, this.#dead.message);
  }

  /** An inbox for the answers to message `id`; the watchdog runs while any is open. */
  #open(id) {
    const inbox = new Inbox();
    this.#inboxes.set(id, inbox);
    this.#watch();
    return inbox;
  }

  #close(id) {
    this.#inboxes.delete(id);
    if (!this.#inboxes.size) this.#unwatch();
  }

  /**
   * While requests are in flight, pings the worker, which answers between two steps; a ping
   * left unanswered for the watchdog's time means the engine hangs, and counts as a crash.
   * (Only an unanswered ping counts: a page whose timers are throttled pings late, not falsely.)
   */
  #watch() {
    const ms = this.#reload.watchdogMs;
    if (this.#watchdog || !ms) return;
    this.#pingedAt = null;
    this.#watchdog = setInterval(() => {
      const now = performance.now();
      if (this.#pingedAt !== null && this.#heardAt < this.#pingedAt) {
        if (now - this.#pingedAt > ms) this.#crash(new WickError('engine_crashed', `The engine stopped answering (nothing for ${(ms / 1000).toFixed(1)} s).`));
        return;
      }
      this.#pingedAt = now;
      this.#worker.postMessage({ type: ToWorker.PING });
    }, Math.max(20, ms / 4));
  }

  #unwatch() {
    clearInterval(this.#watchdog);
    this.#watchdog = null;
  }

  /** Sends a message that answers RESULT, and resolves to its value. */
  async #call(type, payload) {
    await this.#ready();
    const id = this.#nextId++;
    const inbox = this.#open(id);
    this.#worker.postMessage({ type, id, ...payload });
    try {
      const msg = await inbox.next();
      if (msg.type === FromWorker.ERROR) throw WickError.from(msg.error);
      if (msg.type !== FromWorker.RESULT) throw aborted('The request');
      return msg.value;
    } finally {
      this.#close(id);
    }
  }

  /**
   * A controller for one request: aborted by the caller's signals, by `interrupt()` or
   * `unload()`; `done()` forgets it.
   */
  #controller(...signals) {
    const controller = new AbortController();
    const cleanup = new AbortController();
    for (const s of signals) {
      if (!s) continue;
      if (s.aborted) controller.abort();
      else s.addEventListener('abort', () => controller.abort(), { once: true, signal: cleanup.signal });
    }
    this.#requests.add(controller);
    return {
      signal: controller.signal,
      done: () => {
        cleanup.abort();
        this.#requests.delete(controller);
      },
    };
  }

  /** Waits for the engine to be free (requests run one after another); resolves to the release. */
  async #acquire(signal) {
    const previous = this.#tail;
    let release;
    const mine = new Promise((r) => (release = r));
    this.#tail = previous.then(() => mine);
    try {
      await abortable(previous, signal, 'The request');
    } catch (e) {
      previous.then(release);
      throw e;
    }
    return release;
  }

  /**
   * Starts one reply and resolves once the engine took the prompt (so a prompt too long for the
   * context fails here); returns an async iterator of its TOKEN events, ending with DONE.
   */
  async #start(payload, signal) {
    await this.#ready(signal);
    if (signal.aborted) throw aborted('The request');
    const id = this.#nextId++;
    const inbox = this.#open(id);
    const worker = this.#worker;
    const onAbort = () => worker.postMessage({ type: ToWorker.CANCEL, id });
    signal.addEventListener('abort', onAbort, { once: true });
    this.#worker.postMessage({ type: ToWorker.GENERATE, id, ...payload });
    let finished = false;
    const finish = () => {
      finished = true;
      signal.removeEventListener('abort', onAbort);
      this.#close(id);
    };
    const read = async () => {
      for (;;) {
        const msg = await inbox.next();
        if (msg.type === FromWorker.PREFILL || msg.type === FromWorker.STARTED) continue;
        if (msg.type === FromWorker.ERROR) {
          finish();
          throw WickError.from(msg.error);
        }
        if (msg.type === FromWorker.DONE) {
          finish();
          this.#memoryBytes = msg.memoryBytes;
          if (msg.reason === 'cancelled') throw aborted('The request');
        }
        return msg;
      }
    };
    const first = await inbox.next();
    if (first.type === FromWorker.ERROR) {
      finish();
      throw WickError.from(first.error);
    }
    /** Stops the reply if it still runs, and waits until the engine is free again. */
    const close = async () => {
      if (!finished) worker.postMessage({ type: ToWorker.CANCEL, id });
      while (!finished) await read().catch(() => {});
    };
    return {
      close,
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const msg = await read();
            if (signal.aborted) {
              // The caller gave up: the tokens the engine made meanwhile are not shown.
              await close();
              throw aborted('The request');
            }
            yield msg;
            if (msg.type === FromWorker.DONE) return;
          }
        } finally {
          await close(); // left early (a `break`)
        }
      },
    };
  }

  /**
   * One request: queued, then run by `run(signal, release)` while it holds the engine (a stream
   * calls `release` when it ends).
   */
  async #request(signal, userSignal, run) {
    this.#alive();
    const control = this.#controller(signal, userSignal);
    let release;
    try {
      release = await this.#acquire(control.signal);
      return await run(control.signal, () => {
        release();
        control.done();
      });
    } catch (e) {
      release?.();
      control.done();
      // A request cut short by a crash says so, not just that it was aborted.
      throw this.#crashed ? new WickError(this.#crashed.code, this.#crashed.message) : WickError.from(e);
    }
  }

  /** `chat.completions.create`. */
  async #chat(body, { signal } = {}) {
    const req = chatRequest(body, this.#info);
    const responses = new Responses('chat.completion', this.#info.id);
    const seed = req.params.seed ?? randomSeed();
    const start = (i, s) => this.#start({ messages: req.messages, params: { ...req.params, seed: seed + i }, fresh: !req.cachePrompt && i === 0 }, s);
    return this.#request(req.signal, signal, async (s, release) => {
      if (req.stream) return chatChunks(req, responses, await start(0, s), (i) => start(i, s), release);
      try {
        const choices = [];
        const stats = [];
        for (let i = 0; i < req.n; i++) {
          let content = '';
          const tokens = [];
          for await (const ev of await start(i, s)) {
            content += ev.text;
            if (ev.logprobs) tokens.push(ev.logprobs);
            if (ev.type === FromWorker.DONE) {
              stats.push(ev.stats);
              choices.push({
                index: i,
                message: { role: 'assistant', content, refusal: null, annotations: [] },
                logprobs: req.logprobs ? { content: tokens, refusal: null } : null,
                finish_reason: finishReason(ev.reason),
              });
            }
          }
        }
        return responses.chat(choices, usage([{ prompt: stats[0], replies: stats }]), timings(stats));
      } finally {
        release();
      }
    });
  }

  /** `completions.create`. */
  async #complete(body, { signal } = {}) {
    const req = completionRequest(body, this.#info);
    const responses = new Responses('text_completion', this.#info.id);
    const seed = req.params.seed ?? randomSeed();
    const start = (p, i, s) => this.#start({ prompt: req.prompts[p], params: { ...req.params, seed: seed + i }, fresh: !req.cachePrompt && i === 0 }, s);
    return this.#request(req.signal, signal, async (s, release) => {
      if (req.stream) return completionChunks(req, responses, await start(0, 0, s), (p, i) => start(p, i, s), release);
      try {
        const choices = [];
        const runs = [];
        for (let p = 0; p < req.prompts.length; p++) {
          const replies = [];
          for (let i = 0; i < req.n; i++) {
            let text = req.echo ? req.prompts[p] : '';
            const tokens = [];
            for await (const ev of await start(p, i, s)) {
              text += ev.text;
              if (ev.logprobs) tokens.push(ev.logprobs);
              if (ev.type === FromWorker.DONE) {
                replies.push(ev.stats);
                choices.push({
                  text,
                  index: p * req.n + i,
                  logprobs: req.logprobs === null ? null : completionLogprobs(tokens, 0),
                  finish_reason: finishReason(ev.reason),
                });
              }
            }
          }
          runs.push({ prompt: replies[0], replies });
        }
        return responses.completion(choices, usage(runs), timings(runs.flatMap((r) => r.replies)));
      } finally {
        release();
      }
    });
  }

  /**
   * The token ids of `text`, read as a raw prompt is (special tokens written in it count, and
   * the model's start token comes first if it adds one).
   * @param {string} text
   * @returns {Promise<number[]>}
   */
  async tokenize(text) {
    if (typeof text !== 'string') throw new WickError('invalid_request', 'tokenize takes a string.');
    return this.#call(ToWorker.TOKENIZE, { text });
  }

  /**
   * Where the engine's forwards spent their time since the last call, per phase (prefill
   * chunks, decode steps) and stage, like `wick bench --profile`; then turns the stage timers on
   * or off (a benchmark aid: off, they cost nothing).
   * @param {boolean} on
   * @returns {Promise<{ prefill: PhaseProfile, decode: PhaseProfile }>} with
   *   `PhaseProfile = { forwards, seconds, stages: { stage, seconds, calls }[] }`
   */
  async profile(on) {
    return this.#call(ToWorker.PROFILE, { on: Boolean(on) });
  }

  /**
   * The text of token ids, control tokens written out (`tokenize`'s inverse).
   * @param {number[]} ids
   * @returns {Promise<string>}
   */
  async detokenize(ids) {
    if (!Array.isArray(ids) || ids.some((i) => !Number.isSafeInteger(i) || i < 0 || i > 0xffffffff)) {
      throw new WickError('invalid_request', 'detokenize takes a list of token ids (whole numbers ≥ 0).');
    }
    return this.#call(ToWorker.DETOKENIZE, { ids });
  }

  /**
   * Runs the start of a conversation (a system prompt, say) into the engine's KV cache ahead of
   * the next request, so that request prefills only what follows; skipped while a request runs.
   * With the load option `kvCache`, a start warmed once is kept as a KV snapshot and restored
   * from it on later visits instead of prefilled. Resolves to the tokens cached, and how many of
   * them came from a snapshot.
   * @param {{ role: string, content: string }[]} messages
   * @returns {Promise<{ cached_tokens: number, restored_tokens: number }>}
   */
  async warm(messages) {
    const { messages: checked } = chatRequest({ messages }, this.#info);
    const { cached, restored } = await this.#call(ToWorker.WARM, { messages: checked });
    return { cached_tokens: cached, restored_tokens: restored };
  }

  /**
   * A snapshot of the engine's KV cache as bytes (the model's id, the tokens, their keys and
   * values, a checksum), to give to `restoreKv` later, in this engine or another of the same
   * model. With `messages` (a finished conversation, the reply last) only what the conversation
   * agrees with is kept. Fails while a request runs.
   * @param {{ role: string, content: string }[]} [messages]
   * @returns {Promise<Uint8Array>}
   */
  async saveKv(messages) {
    const checked = messages === undefined ? null : chatRequest({ messages }, this.#info).messages;
    return this.#call(ToWorker.SAVE_KV, { messages: checked });
  }

  /**
   * Restores a `saveKv` snapshot before a reply to `messages`, so that reply prefills only the
   * tokens past it. The engine checks it whole and fails with WickError('invalid_request') — its
   * cache left as it was — when it is of another model, its tokens do not start this
   * conversation's prompt, or it is corrupt or truncated. Resolves to the tokens now cached.
   * @param {Uint8Array} bytes
   * @param {{ role: string, content: string }[]} messages
   * @returns {Promise<{ cached_tokens: number }>}
   */
  async restoreKv(bytes, messages) {
    if (!(bytes instanceof Uint8Array)) throw new WickError('invalid_request', 'restoreKv takes the Uint8Array saveKv gave.');
    const { messages: checked } = chatRequest({ messages }, this.#info);
    const { cached } = await this.#call(ToWorker.RESTORE_KV, { bytes, messages: checked });
    return { cached_tokens: cached };
  }

  /** Stops every running and waiting request of this engine: each fails with WickError('aborted'). */
  interrupt() {
    for (const c of this.#requests) c.abort();
  }

  /** Stops the engine and frees its worker and memory; requests in flight fail with 'aborted'. */
  async unload() {
    if (this.#dead) return;
    this.interrupt();
    this.#dead = new WickError('invalid_request', 'This engine was unloaded; load the model again with Wick.load.');
    for (const inbox of this.#inboxes.values()) inbox.push({ type: FromWorker.DONE, reason: 'cancelled', text: '', stats: null, memoryBytes: this.#memoryBytes });
    this.#unwatch();
    this.#worker.terminate();
  }
}

/** Wick's API in one object: `load`, `cache` and `WickError`. */
export const Wick = Object.freeze({ load, cache, kvCache, WickError });
export default Wick;
