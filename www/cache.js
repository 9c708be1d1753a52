// Model files: downloaded with progress and kept in the Cache API across visits, under the URL a
// download ends at after redirects (so one file reached through two URLs is stored once), with a
// small API to see and delete what is kept. Used by the engine's worker and by `Wick.cache`.
import { WickError } from './error.js';

/** Name of the Cache API store that keeps downloaded model files. */
export const MODEL_CACHE = 'wick-models-v1';
/** Header of an entry that only records where a URL redirects to (not a file). */
const ALIAS = 'x-wick-alias-of';
/** Header of a file entry: when it was stored (ms since 1970). */
const CACHED_AT = 'x-wick-cached-at';
/** wasm32 memory ends at 4 GiB, so no file past that can become a model. */
export const MAX_MODEL_BYTES = 4 * 2 ** 30;

/** The store, or null where the Cache API is missing or refuses (then files come from the network). */
async function openCache() {
  if (typeof caches === 'undefined') return null;
  try {
    return await caches.open(MODEL_CACHE);
  } catch {
    return null;
  }
}

/** The URL of the file `url` leads to in the store: itself, or where it redirected to. */
async function resolve(cache, url) {
  const hit = await cache.match(url);
  return hit?.headers.get(ALIAS) ?? (hit ? url : null);
}

/**
 * What the store keeps: one entry per file.
 * @returns {Promise<{ url: string, bytes: number, cachedAt: number | null }[]>}
 */
async function list() {
  const cache = await openCache();
  if (!cache) return [];
  const out = [];
  for (const request of await cache.keys()) {
    const r = await cache.match(request);
    if (!r || r.headers.has(ALIAS)) continue;
    const at = Number(r.headers.get(CACHED_AT));
    out.push({ url: request.url, bytes: Number(r.headers.get('content-length')) || 0, cachedAt: at || null });
  }
  return out;
}

/**
 * Whether the file `url` (or the file it redirected to) is kept.
 * @param {string} url
 */
async function has(url) {
  const cache = await openCache();
  return Boolean(cache && (await resolve(cache, absolute(url))));
}

/**
 * Forgets the file `url` leads to, and every URL that redirected to it. Resolves to whether
 * anything was kept.
 * @param {string} url
 */
async function remove(url) {
  const cache = await openCache();
  if (!cache) return false;
  const target = await resolve(cache, absolute(url));
  if (!target) return false;
  for (const request of await cache.keys()) {
    const r = await cache.match(request);
    if (request.url === target || r?.headers.get(ALIAS) === target) await cache.delete(request);
  }
  return true;
}

/** Forgets every kept model file. */
async function clear() {
  return typeof caches === 'undefined' ? false : caches.delete(MODEL_CACHE);
}

/**
 * The browser's storage figures for this origin (`navigator.storage.estimate()`), and what the
 * kept model files take.
 * @returns {Promise<{ usage: number, quota: number, models: number }>}
 */
async function estimate() {
  const { usage = 0, quota = 0 } = (await navigator.storage?.estimate?.()) ?? {};
  const models = (await list()).reduce((n, f) => n + f.bytes, 0);
  return { usage, quota, models };
}

/** `Wick.cache`: what the store keeps, and ways to free it. */
export const modelCache = Object.freeze({ list, has, delete: remove, clear, estimate });

/** `url` made absolute against the page (or worker) it is used from. */
const absolute = (url) => new URL(url, globalThis.location?.href).href;

/**
 * Reads a Response body into one Uint8Array, calling `onBytes(loaded, total)` as it goes
 * (`total` is 0 while unknown). With a known length the buffer is allocated once up front.
 */
async function readBody(response, url, onBytes) {
  const declared = Number(response.headers.get('content-length')) || 0;
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    onBytes(bytes.length, bytes.length);
    return bytes;
  }
  let buffer = new Uint8Array(declared);
  let loaded = 0;
  let lastReport = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.length > buffer.length) {
      // The server sent more than it declared (or nothing was declared): grow by doubling.
      const grown = new Uint8Array(Math.max(2 * buffer.length, loaded + value.length, 1 << 20));
      grown.set(buffer.subarray(0, loaded));
      buffer = grown;
    }
    buffer.set(value, loaded);
    loaded += value.length;
    const now = performance.now();
    if (now - lastReport > 50) {
      onBytes(loaded, declared);
      lastReport = now;
    }
  }
  if (declared && loaded < declared) {
    throw new WickError('network', `The download of ${url} ended early: ${loaded} of ${declared} bytes arrived. Check the connection and load again.`);
  }
  onBytes(loaded, loaded);
  return loaded === buffer.length ? buffer : buffer.slice(0, loaded);
}

/** A fetch that turns failures into WickErrors. */
async function request(url, init) {
  try {
    return await fetch(url, { mode: 'cors', credentials: 'same-origin', ...init });
  } catch (e) {
    if (init.signal?.aborted || e?.name === 'AbortError') throw new WickError('aborted', `The download of ${url} was aborted.`);
    throw new WickError('network', `Could not download ${url} (${e.message}): the network is unreachable, or the server does not allow this page's origin (CORS).`);
  }
}

/** The error for a response that is not a file. */
function httpError(url, response) {
  if (response.status === 404 || response.status === 410) {
    return new WickError('model_not_found', `${url} does not exist (HTTP ${response.status}).`);
  }
  return new WickError('network', `Could not download ${url}: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}.`);
}

/**
 * One model file's bytes: from the store when it keeps the file `url` leads to, else from the
 * network (following redirects), and then kept. A HEAD request first learns where `url` leads
 * and how big the file is, so a file kept under its final URL is not downloaded again and one
 * too big for wasm memory is refused before downloading (a server that refuses HEAD is just
 * asked with GET).
 * @param {string} url absolute URL
 * @param {{ optional?: boolean, signal?: AbortSignal, onBytes?: (loaded: number, total: number, phase: 'download'|'cache') => void, onCacheError?: (e: WickError) => void, beforeDownload?: (url: string, size: number) => Promise<void> }} [options]
 *   `optional`: a missing file gives null instead of an error; `onCacheError`: the file could
 *   not be kept (a full quota, say); it is still returned; `beforeDownload`: called with the
 *   file's final URL and size (from HEAD) before a download starts; what it throws stops it.
 * @returns {Promise<{ url: string, bytes: Uint8Array, source: 'network'|'cache' } | null>}
 */
export async function fetchFile(url, { optional = false, signal, onBytes = () => {}, onCacheError = () => {}, beforeDownload } = {}) {
  const cache = await openCache();
  const fromCache = async (key) => {
    const hit = key && cache && (await cache.match(key));
    if (!hit) return null;
    return { url: key, bytes: await readBody(hit, key, (l, t) => onBytes(l, t, 'cache')), source: 'cache' };
  };
  const kept = cache && (await fromCache(await resolve(cache, url)));
  if (kept) return kept;

  let target = url;
  let head = null;
  try {
    head = await request(url, { method: 'HEAD', signal, cache: 'no-store' });
  } catch (e) {
    if (e.code === 'aborted') throw e;
    // Some servers refuse HEAD (a URL signed for GET only): the GET says what is wrong, if anything.
  }
  if (head?.ok) {
    target = head.url || url;
    const size = Number(head.headers.get('content-length')) || 0;
    if (size > MAX_MODEL_BYTES) {
      throw new WickError('out_of_memory', `${url} is ${(size / 2 ** 30).toFixed(1)} GiB; a model in the browser must fit in 4 GiB of WebAssembly memory.`);
    }
    const other = target !== url && (await fromCache(target));
    if (other) {
      await keep(cache, url, new Response('', { headers: { [ALIAS]: target } }), onCacheError);
      return other;
    }
    if (size && beforeDownload) await beforeDownload(target, size);
  } else if (head?.status === 404 || head?.status === 410) {
    if (optional) return null;
    throw httpError(url, head);
  }

  const response = await request(target, { signal, cache: 'no-store' });
  if (!response.ok) {
    if ((response.status === 404 || response.status === 410) && optional) return null;
    throw httpError(url, response);
  }
  target = response.url || target;
  let bytes;
  try {
    bytes = await readBody(response, url, (l, t) => onBytes(l, t, 'download'));
  } catch (e) {
    if (signal?.aborted || e?.name === 'AbortError') throw new WickError('aborted', `The download of ${url} was aborted.`);
    if (e instanceof WickError) throw e;
    throw WickError.from(e);
  }
  const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length), [CACHED_AT]: String(Date.now()) };
  // The file first, then the alias, so an alias never points at nothing.
  if (await keep(cache, target, new Response(bytes, { headers }), onCacheError) && target !== url) {
    await keep(cache, url, new Response('', { headers: { [ALIAS]: target } }), onCacheError);
  }
  return { url: target, bytes, source: 'network' };
}

/** Puts an entry in the store; a failure (a full quota, say) is reported, not thrown. */
async function keep(cache, url, response, onCacheError) {
  if (!cache) return false;
  try {
    await cache.put(url, response);
    return true;
  } catch (e) {
    const error = WickError.from(e);
    onCacheError(error.code === 'quota'
      ? new WickError('quota', `The model could not be kept in the browser's storage, which is full (${e.message}); it runs from memory, and the next visit downloads it again. Free space with Wick.cache.delete() or clear().`)
      : new WickError(error.code, `The model could not be kept in the browser's storage: ${error.message}`));
    return false;
  }
}
