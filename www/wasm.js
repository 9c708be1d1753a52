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

/**
 * Loads and starts a build: `threads` > 1 picks the threaded one when this context is
 * cross-origin isolated (SharedArrayBuffer), falling back to one thread if that fails; `simd`
 * 'simd128' keeps to the plain SIMD builds.
 * @param {number} threads
 * @param {'relaxed'|'simd128'} simd
 * @returns {Promise<{ mod: any, exports: any, memory: WebAssembly.Memory, build: { simd: 'relaxed-simd'|'simd128', threads: number } }>}
 *   `exports`: the instance's raw exports (the worker's test hooks use its allocator)
 */
export async function loadWasm(threads, simd) {
  const relaxed = simd !== 'simd128' && hasRelaxedSimd();
  const suffix = relaxed ? '-relaxed' : '';
  const flavour = relaxed ? 'relaxed-simd' : 'simd128';
  if (threads > 1 && self.crossOriginIsolated) {
    try {
      const mod = await import(`./pkg-threads${suffix}/wick.js`);
      const wasm = await mod.default();
      await mod.initThreadPool(threads);
      return { mod, exports: wasm, memory: wasm.memory, build: { simd: flavour, threads } };
    } catch (e) {
      console.warn(`threaded build unavailable (${e.message}); using one thread`);
    }
  }
  const mod = await import(`./pkg${suffix}/wick.js`);
  const wasm = await mod.default();
  return { mod, exports: wasm, memory: wasm.memory, build: { simd: flavour, threads: 1 } };
}
