// Choosing the wasm build: threaded when the page is cross-origin isolated and more than one
// thread is wanted, single-threaded otherwise; each with relaxed SIMD where the browser has it.
// The four builds are made by scripts/build-wasm.sh.

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
export const hasRelaxedSimd = () => WebAssembly.validate(RELAXED_SIMD_PROBE);

/** The four builds, each with what it needs. */
const BUILDS = [
  { dir: 'pkg-threads-relaxed', threads: true, relaxed: true },
  { dir: 'pkg-threads', threads: true, relaxed: false },
  { dir: 'pkg-relaxed', threads: false, relaxed: true },
  { dir: 'pkg', threads: false, relaxed: false },
];

/**
 * The builds this context can run, best first: with relaxed SIMD before without, and the
 * threaded ones first when more than one thread is wanted (else last, run on one thread). A
 * first run of scripts/dev.sh serves before every build exists, so the next one is tried too.
 */
export function buildOrder(threads, simd, isolated = self.crossOriginIsolated) {
  const relaxed = simd !== 'simd128' && hasRelaxedSimd();
  const threaded = threads > 1 && isolated;
  const rank = (b) => (b.threads === threaded ? 0 : 2) + (b.relaxed ? 0 : 1);
  return BUILDS.filter((b) => (relaxed || !b.relaxed) && (!b.threads || isolated)).sort((a, b) => rank(a) - rank(b));
}

/** The service worker's store (sw.js). */
const SHELL = 'wick-shell-v1';

/**
 * Where build `dir`'s wasm is read from, or null when the server says it is not there (not
 * built yet). The service worker's kept copy when the server still holds the same file (same
 * ETag), or when the server cannot be reached: Chromium instantiates a Cache Storage response
 * from its cache of compiled code (about 25 ms for the 11 MB threaded build, against 110 ms for
 * one through the network). Else its URL (fetched through the service worker, which keeps it).
 */
async function wasmSource(dir) {
  const url = new URL(`./${dir}/wick_bg.wasm`, import.meta.url).href;
  const [head, kept] = await Promise.all([
    fetch(url, { method: 'HEAD', cache: 'no-store' }).catch(() => null),
    typeof caches === 'undefined' ? null : caches.open(SHELL).then((c) => c.match(url)).catch(() => null),
  ]);
  if (head && !head.ok) return head.status === 404 ? null : url;
  const etag = head?.headers.get('etag');
  return kept && (!head || (etag && kept.headers.get('etag') === etag)) ? kept : url;
}

/** The build this worker started, once asked. */
let started = null;

/**
 * Loads and starts a build: `threads` > 1 picks a threaded one when this context is
 * cross-origin isolated (SharedArrayBuffer), else (or if that fails) a single-threaded one;
 * `simd` 'simd128' keeps to the plain SIMD builds. Only builds the server holds are tried.
 * `onModule` gets the wasm-bindgen module as soon as it is instantiated, before the thread
 * pool is up (its pure functions can be called meanwhile).
 * @param {number} threads
 * @param {'relaxed'|'simd128'} simd
 * @param {(mod: any) => void} [onModule]
 * @returns {Promise<{ mod: any, exports: any, memory: WebAssembly.Memory, build: { simd: 'relaxed-simd'|'simd128', threads: number } }>}
 *   `exports`: the instance's raw exports (the worker's test hooks use its allocator)
 */
export function loadWasm(threads, simd, onModule = () => {}) {
  // One instance per worker: a second call (the model loaded again) gets the same one.
  started ??= start(threads, simd, onModule);
  started.then(({ mod }) => onModule(mod), () => {});
  return started;
}

async function start(threads, simd, onModule) {
  const tried = [];
  for (const b of buildOrder(threads, simd)) {
    const glue = import(`./${b.dir}/wick.js`);
    glue.catch(() => {}); // a build that is not there: its source below says so
    const source = await wasmSource(b.dir);
    if (!source) {
      tried.push(`${b.dir} is not built`);
      continue;
    }
    try {
      const mod = await glue;
      const wasm = await mod.default({ module_or_path: source });
      onModule(mod);
      const n = b.threads ? Math.max(1, threads) : 1;
      if (b.threads) await mod.initThreadPool(n);
      return { mod, exports: wasm, memory: wasm.memory, build: { simd: b.relaxed ? 'relaxed-simd' : 'simd128', threads: n } };
    } catch (e) {
      console.warn(`wasm build ${b.dir} unavailable (${e.message})`);
      tried.push(`${b.dir}: ${e.message}`);
    }
  }
  throw new Error(`no wasm build could be started (${tried.join('; ')}); scripts/build-wasm.sh builds them, and scripts/dev.sh builds the rest in the background while it serves the first`);
}
