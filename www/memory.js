// Whether a model fits in the engine's WebAssembly memory, judged before its download starts (from
// the file's size and the shape its GGUF head gives) and again before the engine is built, so a
// model too big for the tab gets a readable error instead of a crash halfway through loading.
import { WickError } from './error.js';

/**
 * The most WebAssembly memory an engine can have, in bytes: wasm32 addresses 4 GiB, which the
 * single-threaded builds may grow to and the threaded ones are capped at (`--max-memory` in
 * scripts/build-wasm.sh).
 */
export const WASM_MAX_BYTES = 4 * 2 ** 30;

/** Tokens a conversation may hold unless `contextLength` says otherwise (capped by the model). */
export const DEFAULT_CONTEXT = 4096;

const gib = (n) => `${(n / 2 ** 30).toFixed(2)} GiB`;

/**
 * The wasm memory a GGUF model needs: the file (the weights Wick's own kernels run are read in
 * place), the KV cache (f32 keys and values of every layer for `context` tokens, grown by
 * doubling, so up to 1.5× while it grows), and working memory: room for a second copy of the
 * weights (the types only Candle's kernels run, Q3_K or Q5_K say, are copied out of the file; the
 * types Wick's own kernels run are read in place: measured 1.07× the file in wasm memory for
 * Qwen2.5-0.5B Q4_K_M), activations, logits and the allocator's slack.
 * @param {number} fileBytes
 * @param {ReturnType<import('./gguf.js').describe>} shape
 * @param {number | undefined} contextLength the contextLength asked for
 */
export function estimate(fileBytes, shape, contextLength) {
  const context = Math.min(contextLength ?? DEFAULT_CONTEXT, shape.contextLength ?? Infinity);
  const known = shape.layers && shape.kvHeads && shape.keyLength && shape.valueLength;
  const perToken = known ? shape.layers * shape.kvHeads * (shape.keyLength + shape.valueLength) * 4 : 0;
  const working = fileBytes + 64 * 2 ** 20 + (shape.vocab ?? 0) * 4 * 4;
  return { weights: fileBytes, perToken, context, kv: perToken * context * 1.5, working, total: fileBytes + perToken * context * 1.5 + working };
}

/**
 * Throws `out_of_memory` when the model `name` (a GGUF of `fileBytes` with metadata `shape`) cannot
 * fit in `maxBytes` of wasm memory with `contextLength` tokens of context, saying what would.
 */
export function checkFits(name, fileBytes, shape, contextLength, maxBytes = WASM_MAX_BYTES) {
  const e = estimate(fileBytes, shape, contextLength);
  const parts = `weights ${gib(e.weights)} + KV cache for ${e.context} tokens ${gib(e.kv)} + working memory ${gib(e.working)}`;
  const advise = (limit) => {
    const room = limit - e.weights - e.working;
    const fits = e.perToken ? Math.floor(room / (e.perToken * 1.5) / 256) * 256 : 0;
    return fits >= 256
      ? `Load it with a smaller contextLength (about ${fits} tokens fit) or pick a smaller model.`
      : 'Its weights alone leave no room: pick a smaller model (or a smaller quantization of it).';
  };
  const refuse = (why, limit) => {
    throw new WickError('out_of_memory', `${name} needs about ${gib(e.total)} of WebAssembly memory (${parts}), ${why}. ${advise(limit)}`);
  };
  if (e.total > maxBytes) refuse(`more than the ${gib(maxBytes)} a wasm engine in this browser can have`, maxBytes);
  // The device's own memory (Chromium reports it in GiB, rounded down and capped at 8; other
  // browsers not at all): an engine larger than that would be killed with its tab.
  const device = Number(globalThis.navigator?.deviceMemory) * 2 ** 30;
  if (device > 0 && e.total > device) refuse(`more than this device's ${gib(device)} of memory`, device);
  // What the browser will really grant now: a trial memory grown to the whole size (address space
  // only; nothing is written, and it is dropped at once).
  if (!canReserve(e.total)) refuse('and the browser could not set that much aside right now (close other tabs, or ask for less)', Math.min(maxBytes, e.total / 2));
  return e;
}

/** Whether a WebAssembly memory of `bytes` can be made now (a trial grow, then dropped). */
export function canReserve(bytes) {
  const pages = Math.ceil(bytes / 65536);
  try {
    const trial = new WebAssembly.Memory({ initial: 0, maximum: pages });
    trial.grow(pages);
    return true;
  } catch {
    return false;
  }
}
