// Hashes a kept model file on a thread of its own (cache.js): the engine's worker builds the
// engine from the same bytes meanwhile. Gets `{ bytes }` (a copy, transferred), answers
// `{ hex }` (the sha256 in lowercase hex) or `{ error }`.
self.onmessage = async ({ data }) => {
  try {
    const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', data.bytes));
    self.postMessage({ hex: Array.from(sum, (b) => b.toString(16).padStart(2, '0')).join('') });
  } catch (e) {
    self.postMessage({ error: String(e?.message ?? e) });
  }
};
