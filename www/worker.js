// The engine host: one per engine (wick.js starts it). It loads a wasm build and the model, then
// runs each reply one step at a time, posting every generated token to the page. Between steps
// it yields to its event loop so a CANCEL lands between two tokens.
import { ToWorker, FromWorker } from './protocol.js';
import { WickError } from './error.js';
import { loadWasm } from './wasm.js';
import { fetchModel } from './model-files.js';
import { readMetadata, describe } from './gguf.js';
import { checkFits, DEFAULT_CONTEXT } from './memory.js';
import * as kvStore from './kv-store.js';
// What the modules above import in turn, named here so they are all fetched in one round rather
// than one import level after another (tests/e2e/returning.test.mjs checks the list is whole).
import './cache.js';
import './opfs-store.js';
import './vendor/noble-hashes/sha2.js';
import './vendor/noble-hashes/_md.js';
import './vendor/noble-hashes/_u64.js';
import './vendor/noble-hashes/utils.js';

/** @type {any} the WickEngine of the wasm build */
let engine = null;
/** @type {WebAssembly.Memory | null} the instance's memory, to report its size (it only grows) */
let memory = null;
/** @type {{ id: number, cancelled: boolean } | null} the reply in progress */
let current = null;
/** Whether chat replies snapshot the KV cache to OPFS and restore from it (load option `kvCache`). */
let keepKv = false;

const post = (type, payload = {}) => self.postMessage({ type, ...payload });

/** The instance's raw exports (the test hooks reach its allocator through them). */
let wasmExports = null;
/** @type {'trap' | 'oom' | 'hang' | null} what the next step of a reply does instead (a test hook) */
let armed = null;

/** Growth, in 64 KiB pages, that a trap must leave impossible to be blamed on memory (256 MiB). */
const OOM_HEADROOM_PAGES = 4096;

/**
 * Reports a failure; a trap (panic, out of memory) leaves the wasm instance unusable, so the
 * engine is dropped and the page is told (wick.js then starts a fresh worker). Rust's allocator
 * aborts with the same trap as a panic, so a trap after which the memory cannot grow another
 * 256 MiB is reported as out of memory.
 */
function fail(id, e) {
  let error = WickError.from(e);
  const trap = e instanceof WebAssembly.RuntimeError;
  if (trap && error.code !== 'out_of_memory' && memory && !canGrow(memory, OOM_HEADROOM_PAGES)) {
    error = new WickError('out_of_memory', `The engine ran out of memory (${e.message}) at ${(memory.buffer.byteLength / 2 ** 30).toFixed(2)} GiB of WebAssembly memory.`);
  }
  const fatal = error.code === 'engine_crashed' || (error.code === 'out_of_memory' && trap);
  if (fatal) engine = null;
  post(FromWorker.ERROR, { id, error: error.toJSON(), fatal });
}

/** Whether `mem` can still grow by `pages` (it grows if so: the instance is being dropped). */
function canGrow(mem, pages) {
  try {
    mem.grow(pages);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs an armed test hook inside the engine's step: a trap through the allocator's abort (an
 * impossible alignment), allocations until wasm memory runs out, or a loop that never returns.
 */
function fireTestHook() {
  const action = armed;
  armed = null;
  if (action === 'trap') wasmExports.__wbindgen_malloc(1, 3);
  if (action === 'oom') for (;;) wasmExports.__wbindgen_malloc(64 * 2 ** 20, 8);
  if (action === 'hang') for (;;);
}

/** The Cache API as broken storage shows it: every call throws (a test hook). */
function breakCacheApi() {
  const broken = () => Promise.reject(new DOMException('The Cache API is broken (a test hook).', 'UnknownError'));
  Object.defineProperty(self, 'caches', { configurable: true, value: { open: broken, has: broken, delete: broken, keys: broken, match: broken } });
}

/** Fetches the model and builds the engine. */
async function load({ source, options }) {
  const t0 = performance.now();
  // The module's pure functions (a folder's layout) are ready before its thread pool.
  let onModule;
  const early = new Promise((resolve) => (onModule = (mod) => resolve({ mod })));
  const wasm = loadWasm(options.threads, options.simd, onModule).catch((e) => {
    throw new WickError('network', `Could not start Wick's WebAssembly engine (${e.message}): the www/pkg*/ folders must be served beside wick.js.`);
  });
  wasm.catch(() => {}); // awaited below, after the download; a failure is reported there
  const module = Promise.race([early, wasm]);
  try {
    const fits = (size, shape) => checkFits(source.id, size, shape, options.contextLength);
    const model = await fetchModel(source, {
      wasm: module,
      fits,
      deferCheck: !options.recheck,
      onProgress: (p) => post(FromWorker.PROGRESS, p),
      onCacheError: (e) => post(FromWorker.CACHE_ERROR, { error: e.toJSON() }),
    });
    const { mod, exports, memory: mem, build } = await wasm;
    memory = mem;
    wasmExports = exports;
    const bytes = model.gguf ? model.gguf.length : model.files.reduce((n, f) => n + f.bytes.length, 0);
    post(FromWorker.PROGRESS, { phase: 'init', loaded: bytes, total: bytes, file: source.id });
    // A GGUF's metadata names its quantization; a file that came from the cache or from the
    // user is judged here, before the engine tries to hold it.
    const shape = model.gguf ? describe(readMetadata(model.gguf) ?? new Map()) : null;
    if (model.gguf) {
      fits(bytes, shape);
      engine = new mod.WickEngine(model.gguf);
    } else {
      engine = mod.WickEngine.fromFiles(model.files.map((f) => f.name), model.files.map((f) => f.bytes), options.quantize ?? null);
    }
    // The kept copies were hashed while the engine was built: a damaged one (reported, deleted)
    // drops the engine, and the model is loaded again, which downloads that file.
    if (!(await model.checked)) {
      engine.free();
      engine = null;
      return load({ source, options: { ...options, recheck: true } });
    }
    engine.setContextLength(options.contextLength ?? DEFAULT_CONTEXT);
    keepKv = Boolean(options.kvCache) && typeof navigator.storage?.getDirectory === 'function';
    const details = JSON.parse(engine.info());
    const quantization = shape ? (shape.quantization ?? 'unknown quantization') : details.format.replace(/^safetensors, /, '');
    const info = {
      id: source.id, name: source.id, ...details, quantization, source: model.source, bytes, build,
      loadSeconds: (performance.now() - t0) / 1000, memoryBytes: memory.buffer.byteLength, verified: model.verified,
    };
    post(FromWorker.READY, { info });
  } catch (e) {
    engine?.free();
    engine = null;
    let error = WickError.from(e);
    if (source.hub && error.code === 'model_not_found') {
      error = new WickError(error.code, `${error.message} ("${source.hub}" was read as a hub repo id; for a file on this site write "./${source.hub}".)`);
    }
    post(FromWorker.ERROR, { error: error.toJSON(), fatal: true });
  }
}

/** Resolves on the next turn of the event loop, letting a CANCEL message in (no 4 ms clamp). */
const channel = new MessageChannel();
const yieldQueue = [];
channel.port1.onmessage = () => yieldQueue.shift()?.();
const nextTurn = () => new Promise((resolve) => {
  yieldQueue.push(resolve);
  channel.port2.postMessage(null);
});

/** Runs one reply to its end, posting each token. */
async function generate({ id, messages, prompt, params, fresh }) {
  if (!engine) return fail(id, new WickError('engine_crashed', 'No model is loaded in this engine; load the model again.'));
  if (current) return fail(id, new WickError('internal', 'A reply is already running in this engine.'));
  const reply = { id, cancelled: false };
  current = reply;
  try {
    const json = JSON.stringify(params);
    if (fresh) engine.reset();
    const chat = typeof prompt !== 'string';
    // A snapshot that fails to load (storage, or one the engine refuses) only costs the prefill.
    const kv = keepKv && chat && !fresh ? await kvStore.restore(engine, messages).catch((e) => ({ restored: 0, refused: e.message })) : null;
    if (chat) engine.startChat(JSON.stringify(messages), json);
    else engine.startRaw(prompt, json);
    post(FromWorker.STARTED, { id });
    let said = '';
    for (;;) {
      await nextTurn();
      if (reply.cancelled) {
        const ev = JSON.parse(engine.cancel());
        post(FromWorker.DONE, { id, reason: 'cancelled', text: ev ? ev.text : '', stats: JSON.parse(engine.stats()), memoryBytes: memory.buffer.byteLength });
        return;
      }
      if (armed) fireTestHook();
      const ev = JSON.parse(engine.step());
      if (ev.kind === 'prefill') post(FromWorker.PREFILL, { id, done: ev.done, total: ev.total });
      else if (ev.kind === 'token') {
        said += ev.text;
        post(FromWorker.TOKEN, { id, text: ev.text, logprobs: ev.logprobs });
      }
      else if (ev.kind === 'search') continue; // a beam search went one token deeper
      else {
        post(FromWorker.DONE, { id, reason: ev.reason, text: ev.text, stats: JSON.parse(engine.stats()), memoryBytes: memory.buffer.byteLength, kv });
        if (keepKv && chat) saveKv([...messages, { role: 'assistant', content: said + ev.text }]);
        return;
      }
    }
  } catch (e) {
    fail(id, e);
  } finally {
    if (current === reply) current = null;
  }
}

/** Snapshots the conversation's KV cache to OPFS after a reply; a failure is logged, the chat goes on. */
function saveKv(messages) {
  kvStore.save(engine, messages).then(
    (s) => post(FromWorker.KV_SAVED, s),
    (e) => console.warn(`Wick: the KV cache was not kept (${e.message}).`),
  );
}

/**
 * Runs the start of a conversation into the cache ahead of its first question: from its warm
 * KV snapshot when one is kept (a returning visit), else by a prefill, which is then kept.
 * Skipped while a reply runs: the reply itself fills the cache.
 */
async function warm({ id, messages }) {
  const json = JSON.stringify(messages);
  let ids = null;
  let restored = 0;
  if (keepKv && engine && !current) {
    try {
      ids = engine.warmTokens(json);
      ({ restored } = await kvStore.restore(engine, messages, { ids, busy: () => current !== null || !engine }));
    } catch {
      // A snapshot that cannot be read only costs the prefill.
    }
  }
  answer(id, () => {
    if (current) return { cached: engine.cachedTokens(), restored: 0 };
    const before = ids ? engine.cachedPrefix(ids) : 0;
    const cached = engine.warmChat(json);
    if (ids && before < ids.length && engine.cachedPrefix(ids) === ids.length && engine.cachedTokens() === ids.length) {
      kvStore.save(engine, null).then(
        (saved) => post(FromWorker.KV_SAVED, saved),
        (e) => console.warn(`Wick: the warm KV cache was not kept (${e.message}).`),
      );
    }
    return { cached, restored };
  });
}

/** Runs a quick engine call that answers RESULT. */
function answer(id, f) {
  if (!engine) return fail(id, new WickError('engine_crashed', 'No model is loaded in this engine; load the model again.'));
  try {
    post(FromWorker.RESULT, { id, value: f() });
  } catch (e) {
    fail(id, e);
  }
}

self.onmessage = ({ data }) => {
  switch (data.type) {
    case ToWorker.LOAD:
      load(data);
      break;
    case ToWorker.GENERATE:
      generate(data);
      break;
    case ToWorker.CANCEL:
      if (current && current.id === data.id) current.cancelled = true;
      break;
    case ToWorker.WARM:
      warm(data);
      break;
    case ToWorker.SAVE_KV:
      answer(data.id, () => engine.saveKv(data.messages ? JSON.stringify(data.messages) : undefined));
      break;
    case ToWorker.RESTORE_KV:
      answer(data.id, () => ({ cached: engine.restoreKv(data.bytes, engine.chatTokens(JSON.stringify(data.messages))) }));
      break;
    case ToWorker.TOKENIZE:
      answer(data.id, () => Array.from(engine.tokenize(data.text)));
      break;
    case ToWorker.DETOKENIZE:
      answer(data.id, () => engine.detokenize(Uint32Array.from(data.ids)));
      break;
    case ToWorker.PROFILE:
      answer(data.id, () => JSON.parse(engine.profile(Boolean(data.on))));
      break;
    case ToWorker.PING:
      post(FromWorker.PONG);
      break;
    case ToWorker.TEST:
      // A browser without OPFS (alone or with another hook): model files go to the Cache API.
      if (data.noOpfs) Object.defineProperty(navigator.storage, 'getDirectory', { configurable: true, value: undefined });
      if (data.action === 'break-cache') breakCacheApi();
      // A smaller device than the test machine, as navigator.deviceMemory reports it (GiB).
      else if (data.action === 'device-memory') Object.defineProperty(navigator, 'deviceMemory', { configurable: true, value: data.gib });
      // A nearly full storage, as navigator.storage.estimate() reports it.
      else if (data.action === 'storage-left') navigator.storage.estimate = async () => ({ quota: data.bytes, usage: 0 });
      else if (['trap', 'oom', 'hang'].includes(data.action)) armed = data.action;
      break;
    default:
      post(FromWorker.ERROR, { id: data.id, error: { code: 'internal', message: `unknown message ${data.type}` }, fatal: false });
  }
};
