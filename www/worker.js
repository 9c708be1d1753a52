// The engine host: owns the wasm module and the model, runs generation one step at a time and
// posts each text piece to the page. Runs as a module Worker so the page never blocks.
import { ToWorker, FromWorker, MODEL_CACHE } from './protocol.js';

let wasmReady = null;
let engine = null;
let engineName = '';
let wasmMemory = null; // the instance's memory, to report its size (it only ever grows)
let WickEngine = null; // the engine class of whichever build was loaded

/**
 * A module whose one function uses `i32x4.relaxed_dot_i8x16_i7x16_add_s`: it validates exactly
 * where the engine has relaxed SIMD (Chromium does; some browsers do not).
 */
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type: () -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x3d, 0x01, 0x3b, 0x00, // code: one body of 59 bytes, no locals
  ...[0, 1, 2].flatMap(() => [0xfd, 0x0c, ...new Array(16).fill(0)]), // three v128.const 0
  0xfd, 0x93, 0x02, 0x0b, // i32x4.relaxed_dot_i8x16_i7x16_add_s, end
]);

/** Whether this engine runs relaxed SIMD. */
const hasRelaxedSimd = () => WebAssembly.validate(RELAXED_SIMD_PROBE);

/**
 * Loads the threaded build when the page is cross-origin isolated (SharedArrayBuffer) and more
 * than one thread is wanted, the single-threaded build otherwise or if that fails; each with
 * relaxed SIMD where the engine has it, unless `simd` is 'simd128'.
 */
async function initWasm(threads, simd) {
  const relaxed = simd !== 'simd128' && hasRelaxedSimd();
  const suffix = relaxed ? '-relaxed' : '';
  const flavour = relaxed ? 'relaxed-simd' : 'simd128';
  if (threads > 1 && self.crossOriginIsolated) {
    try {
      const mod = await import(`./pkg-threads${suffix}/wick.js`);
      const wasm = await mod.default();
      await mod.initThreadPool(threads);
      return { mod, wasm, build: { simd: flavour, threads } };
    } catch (e) {
      console.warn(`threaded build unavailable (${e.message}); using one thread`);
    }
  }
  const mod = await import(`./pkg${suffix}/wick.js`);
  const wasm = await mod.default();
  return { mod, wasm, build: { simd: flavour, threads: 1 } };
}
let current = null; // { id, cancelled, finished } of the reply in progress

const post = (type, payload = {}) => self.postMessage({ type, ...payload });

/**
 * Reads a Response body into one Uint8Array, reporting progress as it goes; `base` bytes
 * (files read before this one) are added to what is reported.
 */
async function readWithProgress(response, phase, base = 0) {
  const total = Number(response.headers.get('content-length')) || 0;
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    post(FromWorker.PROGRESS, { phase, loaded: base + bytes.length, total: base + bytes.length });
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
      post(FromWorker.PROGRESS, { phase, loaded: base + loaded, total: total ? base + total : 0 });
      lastPost = now;
    }
  }
  post(FromWorker.PROGRESS, { phase, loaded: base + loaded, total: base + (total || loaded) });
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const c of chunks) {
    bytes.set(c, offset);
    offset += c.length;
  }
  return bytes;
}

/**
 * One file's bytes: from the Cache API when present, else the network (then cached).
 * With `optional`, a 404 gives `null` instead of an error.
 */
async function fetchFile(url, { base = 0, optional = false } = {}) {
  const cache = 'caches' in self ? await caches.open(MODEL_CACHE) : null;
  const hit = cache && (await cache.match(url));
  if (hit) return { bytes: await readWithProgress(hit, 'cache', base), source: 'cache' };
  const response = await fetch(url);
  if (optional && response.status === 404) return null;
  if (!response.ok) throw new Error(`could not download ${url}: HTTP ${response.status}`);
  const bytes = await readWithProgress(response, 'download', base);
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

/**
 * A Hugging Face model folder (`url` ends with `/`): config and tokenizer files, then
 * `model.safetensors`, or the shards `model.safetensors.index.json` lists when there is none.
 */
async function fetchFolder(url) {
  const files = [];
  let base = 0;
  let source = 'cache';
  const add = async (name, optional = false) => {
    const got = await fetchFile(url + name, { base, optional });
    if (!got) return false;
    files.push({ name, bytes: got.bytes });
    base += got.bytes.length;
    if (got.source === 'network') source = 'network';
    return true;
  };
  await add('config.json');
  await add('tokenizer.json');
  await add('tokenizer_config.json', true);
  // The tokenizer is parsed while the weights are read (the read goes on off this thread).
  const tokenizer = parseTokenizer(files.slice());
  try {
    if (!(await add('model.safetensors', true))) {
      if (!(await add('model.safetensors.index.json', true))) {
        throw new Error(`${url} has neither model.safetensors nor model.safetensors.index.json`);
      }
      const index = JSON.parse(new TextDecoder().decode(files[files.length - 1].bytes));
      for (const shard of [...new Set(Object.values(index.weight_map ?? {}))].sort()) await add(shard);
    }
  } catch (e) {
    (await tokenizer)?.free();
    throw e;
  }
  return { files, source, tokenizer: await tokenizer };
}

/**
 * A folder's tokenizer parsed by the wasm build, or null if it cannot be (the engine's loader
 * then parses it again and reports why).
 */
async function parseTokenizer(files) {
  try {
    const { mod } = await wasmReady;
    return mod.WickTokenizer.fromFiles(files.map((f) => f.name), files.map((f) => f.bytes));
  } catch {
    return null;
  }
}

/** Total bytes of what a getter returned. */
const sizeOf = ({ bytes, files }) => (files ? files.reduce((n, f) => n + f.bytes.length, 0) : bytes.length);

/**
 * Builds the engine from what `getModel()` returns: `{ bytes, source }` for a GGUF file or
 * `{ files: [{ name, bytes }], source }` for a Hugging Face folder.
 */
async function load(getModel, name, threads, quantize, simd) {
  const t0 = performance.now();
  wasmReady ??= initWasm(threads, simd);
  try {
    const [model, { mod, wasm, build }] = await Promise.all([getModel(), wasmReady]);
    const bytes = sizeOf(model);
    wasmMemory = wasm.memory;
    WickEngine = mod.WickEngine;
    post(FromWorker.PROGRESS, { phase: 'init', loaded: bytes, total: bytes });
    await stopCurrent();
    const tokenizer = model.tokenizer ?? null;
    model.tokenizer = null; // fromFiles takes it over
    const next = model.files
      ? WickEngine.fromFiles(model.files.map((f) => f.name), model.files.map((f) => f.bytes), quantize ?? null, tokenizer)
      : new WickEngine(model.bytes);
    // Only a model that loaded replaces the current one, so a bad file costs nothing.
    engine?.free();
    engine = next;
    engineName = name;
    const info = JSON.parse(engine.info());
    post(FromWorker.READY, {
      info, source: model.source, name, bytes, build, memoryBytes: wasmMemory.buffer.byteLength,
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

/**
 * Runs the start of a conversation (the system prompt) into the engine's cache while the user
 * types: the first reply then prefills only the question. Skipped while a reply runs.
 */
function warm(messages) {
  if (!engine || current) return;
  try {
    engine.warmChat(JSON.stringify(messages));
  } catch (e) {
    if (isFatal(e)) {
      engine = null;
      wasmReady = null;
      post(FromWorker.ERROR, { message: `The engine crashed (${messageOf(e)}); load the model again.`, fatal: true });
    }
    // Anything else, the question itself meets and reports.
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
    case ToWorker.LOAD_URL: {
      const folder = data.url.endsWith('/');
      const name = folder ? data.url.split('/').at(-2) : data.url.split('/').pop();
      load(() => (folder ? fetchFolder(data.url) : fetchFile(data.url)), name, data.threads, data.quantize, data.simd);
      break;
    }
    case ToWorker.LOAD_FILES: {
      const read = async (f) => new Uint8Array(await f.arrayBuffer());
      const gguf = data.files.length === 1 && !data.files[0].name.endsWith('.safetensors');
      const name = gguf ? data.files[0].name : `${data.files.length} files`;
      load(async () => (gguf
        ? { bytes: await read(data.files[0]), source: 'file' }
        : { files: await Promise.all(data.files.map(async (f) => ({ name: f.name, bytes: await read(f) }))), source: 'file' }),
      name, data.threads, data.quantize, data.simd);
      break;
    }
    case ToWorker.GENERATE:
      generate(data);
      break;
    case ToWorker.CANCEL:
      if (current && current.id === data.id) current.cancelled = true;
      break;
    case ToWorker.WARM:
      warm(data.messages);
      break;
    case ToWorker.RESET:
      stopCurrent().then(() => engine?.reset());
      break;
    default:
      post(FromWorker.ERROR, { message: `unknown message ${data.type}`, fatal: false });
  }
};
