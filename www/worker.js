// The engine host: owns the wasm module and the model, runs generation one step at a time and
// posts each text piece to the page. Runs as a module Worker so the page never blocks.
import { ToWorker, FromWorker, MODEL_CACHE } from './protocol.js';

let wasmReady = null;
let engine = null;
let engineName = '';
let wasmMemory = null; // the instance's memory, to report its size (it only ever grows)
let WickEngine = null; // the engine class of whichever build was loaded

/**
 * Loads the threaded build when the page is cross-origin isolated (SharedArrayBuffer) and more
 * than one thread is wanted, the single-threaded build otherwise or if that fails.
 */
async function initWasm(threads) {
  if (threads > 1 && self.crossOriginIsolated) {
    try {
      const mod = await import('./pkg-threads/wick.js');
      const wasm = await mod.default();
      await mod.initThreadPool(threads);
      return { mod, wasm, build: { simd: true, threads } };
    } catch (e) {
      console.warn(`threaded build unavailable (${e.message}); using one thread`);
    }
  }
  const mod = await import('./pkg/wick.js');
  const wasm = await mod.default();
  return { mod, wasm, build: { simd: true, threads: 1 } };
}
let current = null; // { id, cancelled, finished } of the reply in progress

const post = (type, payload = {}) => self.postMessage({ type, ...payload });

/** Reads a Response body into one Uint8Array, reporting progress as it goes. */
async function readWithProgress(response, phase) {
  const total = Number(response.headers.get('content-length')) || 0;
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    post(FromWorker.PROGRESS, { phase, loaded: bytes.length, total: bytes.length });
    return bytes;
  }
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  let lastPost = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    const now = performance.now();
    if (now - lastPost > 50) {
      post(FromWorker.PROGRESS, { phase, loaded, total });
      lastPost = now;
    }
  }
  post(FromWorker.PROGRESS, { phase, loaded, total: total || loaded });
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const c of chunks) {
    bytes.set(c, offset);
    offset += c.length;
  }
  return bytes;
}

/** The model's bytes: from the Cache API when present, else the network (then cached). */
async function fetchModel(url) {
  const cache = 'caches' in self ? await caches.open(MODEL_CACHE) : null;
  const hit = cache && (await cache.match(url));
  if (hit) return { bytes: await readWithProgress(hit, 'cache'), source: 'cache' };
  const response = await fetch(url);
  if (!response.ok) throw new Error(`could not download ${url}: HTTP ${response.status}`);
  const bytes = await readWithProgress(response, 'download');
  if (cache) {
    const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) };
    try {
      await cache.put(url, new Response(bytes, { headers }));
    } catch (e) {
      // A full disk quota only costs the next reload a download; say so and go on.
      console.warn(`model not cached: ${e.message}`);
    }
  }
  return { bytes, source: 'network' };
}

async function load(getBytes, name, threads) {
  const t0 = performance.now();
  wasmReady ??= initWasm(threads);
  try {
    const [{ bytes, source }, { mod, wasm, build }] = await Promise.all([getBytes(), wasmReady]);
    wasmMemory = wasm.memory;
    WickEngine = mod.WickEngine;
    post(FromWorker.PROGRESS, { phase: 'init', loaded: bytes.length, total: bytes.length });
    await stopCurrent();
    const next = new WickEngine(bytes);
    // Only a model that loaded replaces the current one, so a bad file costs nothing.
    engine?.free();
    engine = next;
    engineName = name;
    const info = JSON.parse(engine.info());
    post(FromWorker.READY, {
      info, source, name, bytes: bytes.length, build, memoryBytes: wasmMemory.buffer.byteLength,
      loadSeconds: (performance.now() - t0) / 1000,
    });
  } catch (e) {
    if (isFatal(e)) {
      engine = null;
      wasmReady = null;
    }
    const keeping = engine ? ` Still using ${engineName}.` : '';
    post(FromWorker.ERROR, { message: `Could not load ${name}: ${messageOf(e)}.${keeping}`, fatal: !engine });
  }
}

const messageOf = (e) => (e && e.message) || String(e);
// A trap (panic, out of memory) leaves the wasm instance unusable: the model must be reloaded.
const isFatal = (e) => e instanceof WebAssembly.RuntimeError;

/** Cancels the reply in progress, if any, and waits until its loop has let go of the engine. */
async function stopCurrent() {
  if (!current) return;
  current.cancelled = true;
  await current.finished;
}

/** Resolves on the next turn of the event loop, letting a CANCEL message in (no 4 ms clamp). */
const channel = new MessageChannel();
const yieldQueue = [];
channel.port1.onmessage = () => yieldQueue.shift()?.();
const nextTurn = () => new Promise((resolve) => {
  yieldQueue.push(resolve);
  channel.port2.postMessage(null);
});

async function generate({ id, messages, raw, params }) {
  await stopCurrent();
  if (!engine) {
    post(FromWorker.ERROR, { id, message: 'No model is loaded.', fatal: false });
    return;
  }
  let finish;
  const reply = { id, cancelled: false, finished: new Promise((r) => (finish = r)) };
  current = reply;
  try {
    const paramsJson = JSON.stringify(params ?? {});
    if (typeof raw === 'string') engine.startRaw(raw, paramsJson);
    else engine.startChat(JSON.stringify(messages), paramsJson);
    for (;;) {
      await nextTurn();
      if (reply.cancelled) {
        const ev = JSON.parse(engine.cancel());
        post(FromWorker.DONE, { id, reason: 'cancelled', text: ev ? ev.text : '', stats: JSON.parse(engine.stats()) });
        return;
      }
      const ev = JSON.parse(engine.step());
      if (ev.kind === 'prefill') post(FromWorker.PREFILL, { id, done: ev.done, total: ev.total });
      else if (ev.kind === 'token') post(FromWorker.TOKEN, { id, text: ev.text });
      else {
        post(FromWorker.DONE, {
          id, reason: ev.reason, text: ev.text, stats: JSON.parse(engine.stats()), memoryBytes: wasmMemory.buffer.byteLength,
        });
        return;
      }
    }
  } catch (e) {
    const fatal = isFatal(e);
    if (fatal) {
      engine = null;
      wasmReady = null;
    }
    post(FromWorker.ERROR, {
      id,
      message: fatal ? `The engine crashed (${messageOf(e)}); load the model again.` : messageOf(e),
      fatal,
    });
  } finally {
    if (current === reply) current = null;
    finish();
  }
}

self.onmessage = ({ data }) => {
  switch (data.type) {
    case ToWorker.LOAD_URL:
      load(() => fetchModel(data.url), data.url.split('/').pop(), data.threads);
      break;
    case ToWorker.LOAD_FILE:
      load(async () => ({ bytes: new Uint8Array(await data.file.arrayBuffer()), source: 'file' }), data.file.name, data.threads);
      break;
    case ToWorker.GENERATE:
      generate(data);
      break;
    case ToWorker.CANCEL:
      if (current && current.id === data.id) current.cancelled = true;
      break;
    case ToWorker.RESET:
      stopCurrent().then(() => engine?.reset());
      break;
    default:
      post(FromWorker.ERROR, { message: `unknown message ${data.type}`, fatal: false });
  }
};
