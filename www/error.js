// WickError: the one error type of Wick's JavaScript API, with a stable `code` a program can
// branch on and a message a person can act on. Shared by the page side and the engine's worker.

/**
 * What kind of failure a WickError is, and the HTTP status `engine.fetch` answers it with.
 * @type {Readonly<Record<string, number>>}
 */
export const ERROR_STATUS = Object.freeze({
  /** The model's files are not a model Wick can read (wrong format, truncated, inconsistent). */
  model_format: 400,
  /** The request or the model uses something Wick does not do (a field, an architecture…). */
  unsupported: 400,
  /** A request value is out of range or malformed. */
  invalid_request: 400,
  /** The prompt and the reply do not fit the context window. */
  context_length_exceeded: 400,
  /** The `model` of a request is not the loaded one, or a model file does not exist. */
  model_not_found: 404,
  /** The caller aborted (an AbortSignal, `interrupt()` or `unload()`). */
  aborted: 499,
  /** The model needs more memory than this browser gives a tab. */
  out_of_memory: 500,
  /** A download failed (offline, a server error, a CORS refusal). */
  network: 502,
  /** The browser's storage is full, so the model could not be cached (it still runs). */
  quota: 507,
  /** The engine stopped working (a wasm trap or a dead worker); load the model again. */
  engine_crashed: 500,
  /** Something inside Wick failed that should not have: a bug to report. */
  internal: 500,
});

/** An error from Wick, with a stable `code` (one of ERROR_STATUS's keys). */
export class WickError extends Error {
  /**
   * @param {string} code one of ERROR_STATUS's keys
   * @param {string} message what went wrong, in words a person can act on
   * @param {{ param?: string | null, cause?: unknown }} [options] the request field at fault
   */
  constructor(code, message, { param = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'WickError';
    /** @type {string} */
    this.code = code in ERROR_STATUS ? code : 'internal';
    /** @type {string | null} */
    this.param = param;
  }

  /** The HTTP status `engine.fetch` answers this error with. */
  get status() {
    return ERROR_STATUS[this.code];
  }

  /** A plain object that crosses postMessage: `{ code, message, param }`. */
  toJSON() {
    return { code: this.code, message: this.message, param: this.param };
  }

  /**
   * Rebuilds a WickError from what crossed postMessage, or from any thrown value: an Error with
   * a `code` (from Rust) keeps it, an AbortError is `aborted`, a RangeError from an allocation
   * is `out_of_memory`, a wasm trap `engine_crashed`.
   * @param {unknown} e
   * @returns {WickError}
   */
  static from(e) {
    if (e instanceof WickError) return e;
    const any = /** @type {any} */ (e);
    const message = (any && any.message) || String(e);
    if (any && typeof any.code === 'string' && any.code in ERROR_STATUS) {
      return new WickError(any.code, message, { param: any.param ?? null });
    }
    if (any?.name === 'AbortError') return new WickError('aborted', 'The request was aborted.');
    if (any?.name === 'QuotaExceededError') return new WickError('quota', `The browser's storage is full: ${message}`);
    if (isOutOfMemory(e)) {
      return new WickError('out_of_memory', `Out of memory (${message}): this model needs more memory than this browser gives the tab; try a smaller model or a smaller contextLength.`);
    }
    if (typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError) {
      return new WickError('engine_crashed', `The engine crashed (${message}).`);
    }
    return new WickError('internal', message, { cause: e });
  }
}

/**
 * Whether `e` says memory ran out: a failed ArrayBuffer or wasm memory allocation, or a wasm
 * trap whose message names memory.
 * @param {unknown} e
 */
export function isOutOfMemory(e) {
  const message = String(/** @type {any} */ (e)?.message ?? '');
  const wasmTrap = typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError;
  return ((e instanceof RangeError || wasmTrap) && /memory|allocation failed|array buffer/i.test(message));
}
