// The messages between the page (app.js) and the engine worker (worker.js).
// Every message is a plain object `{ type, ...payload }`; this file is the one place they are named.

/** Page → worker. */
export const ToWorker = Object.freeze({
  /**
   * `{ url, threads, simd, quantize }`: fetch a model (Cache API first) and build the engine: a
   * GGUF file, or a Hugging Face folder when `url` ends with `/` (config.json, tokenizer files,
   * safetensors). `threads` (> 1 picks the threaded build when the page is cross-origin
   * isolated) and `simd` ('relaxed': relaxed SIMD where the browser has it; 'simd128': never)
   * count only the first time; `quantize` ('q4', 'q8' or null) quantizes float weights at load.
   */
  LOAD_URL: 'load-url',
  /**
   * `{ files, threads, simd, quantize }`: build the engine from user-picked Files: one GGUF file, or
   * the files of a Hugging Face folder.
   */
  LOAD_FILES: 'load-files',
  /**
   * `{ id, messages: [{role, content}], params }`: start a reply and stream it; `{ id, raw, params }`
   * continues a raw prompt instead (benchmarks). `params` follows Rust's `SamplingParams`.
   */
  GENERATE: 'generate',
  /** `{ id }`: stop the reply in progress. */
  CANCEL: 'cancel',
  /** `{}`: forget the conversation's KV cache. */
  RESET: 'reset',
  /**
   * `{ messages }`: run the start of a conversation (the system prompt) into the KV cache while
   * the user types, so the first reply prefills only the question. Skipped while a reply runs.
   */
  WARM: 'warm',
});

/** Worker → page. */
export const FromWorker = Object.freeze({
  /** `{ phase: 'download'|'cache'|'init', loaded, total }`: model loading progress in bytes. */
  PROGRESS: 'progress',
  /**
   * `{ info, source: 'network'|'cache'|'file', name, bytes, loadSeconds, build, memoryBytes }`:
   * engine ready (`memoryBytes`: size of the wasm memory).
   */
  READY: 'ready',
  /** `{ id, done, total }`: prompt tokens run so far. */
  PREFILL: 'prefill',
  /** `{ id, text }`: a piece of the reply, to append as text. */
  TOKEN: 'token',
  /** `{ id, reason, text, stats, memoryBytes }`: the reply ended (text: a last piece, possibly empty). */
  DONE: 'done',
  /** `{ id?, message, fatal }`: something failed; `fatal` means the model must be loaded again. */
  ERROR: 'error',
});

/** Name of the Cache API store that keeps downloaded weights across reloads. */
export const MODEL_CACHE = 'wick-models-v1';
