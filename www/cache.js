// Model files: downloaded with progress and kept across visits, under the URL a download ends at
// after redirects (so one file reached through two URLs is stored once), with a small API to see
// and delete what is kept. Used by the engine's worker and by `Wick.cache`. Files are kept in
// OPFS (www/opfs-store.js: read in one call, the fast way back on a returning visit) where the
// worker has sync access handles, else, or when OPFS throws, in the Cache API; both are read.
// Every file is checked: its size and sha256 against the model's manifest when there is one
// (else against what was recorded when it was kept), hashed as it streams in; a download that
// breaks off resumes with a Range request; a kept copy that is damaged is downloaded again; a
// Cache API that throws is treated as an empty one.
import { WickError } from './error.js';
import { sha256 } from './vendor/noble-hashes/sha2.js';
import { openOpfs, clearOpfs } from './opfs-store.js';

/** Name of the Cache API store that keeps downloaded model files. */
export const MODEL_CACHE = 'wick-models-v1';
/** Header of an entry that only records where a URL redirects to (not a file). */
const ALIAS = 'x-wick-alias-of';
/** Header of a file entry: when it was stored (ms since 1970). */
const CACHED_AT = 'x-wick-cached-at';
/** Header of a file entry: the sha256 of its bytes (hex), measured as they were downloaded. */
const SHA256 = 'x-wick-sha256';
/** Times in a row a broken download is resumed without getting any further before it fails. */
const MAX_RESUMES = 3;
/** Megabytes, for messages. */
const mb = (n) => (n / 1e6).toFixed(1);
/** wasm32 memory ends at 4 GiB, so no file past that can become a model. */
export const MAX_MODEL_BYTES = 4 * 2 ** 30;

/**
 * The Cache API store, or null where it is missing or refuses. Same shape as the OPFS store:
 * `match(url)` gives a Response (its body is the file), `put(url, bytes, headers)`, `keys()`,
 * `delete(url)`.
 */
async function openCacheApi() {
  if (typeof caches === 'undefined') return null;
  let cache;
  try {
    cache = await caches.open(MODEL_CACHE);
  } catch {
    return null;
  }
  return {
    kind: 'cache',
    match: async (url) => (await cache.match(url)) ?? null,
    put: (url, bytes, headers) => cache.put(url, new Response(bytes, { headers })),
    keys: async () => (await cache.keys()).map((r) => r.url),
    delete: (url) => cache.delete(url),
  };
}

/**
 * The stores, the one new files go to first: OPFS where this context reads it with sync access
 * handles (the engine's worker), then the Cache API. Either may be missing; with neither, files
 * come from the network each time. On the page (`Wick.cache`) both are listed, OPFS unhurried.
 */
async function openStores({ page = false } = {}) {
  const syncHandles = typeof FileSystemSyncAccessHandle !== 'undefined';
  const opfs = syncHandles || page ? await openOpfs({ create: syncHandles }) : null;
  return [opfs, await openCacheApi()].filter(Boolean);
}

/** `store.match(key)`, or null where the store throws (it is then taken as empty). */
async function match(store, key) {
  try {
    return (await store.match(key)) ?? null;
  } catch {
    return null;
  }
}

/** The URL of the file `url` leads to in the store: itself, or where it redirected to. */
async function resolve(store, url) {
  const hit = await match(store, url);
  return hit?.headers.get(ALIAS) ?? (hit ? url : null);
}

/**
 * What the stores keep: one entry per file, with the store it is in and the sha256 measured
 * when it was downloaded.
 * @returns {Promise<{ url: string, bytes: number, cachedAt: number | null, sha256: string | null, store: 'opfs'|'cache' }[]>}
 */
async function list() {
  const out = [];
  for (const store of await openStores({ page: true })) {
    for (const url of await store.keys().catch(() => [])) {
      const r = await match(store, url);
      if (!r || r.headers.has(ALIAS)) continue;
      const at = Number(r.headers.get(CACHED_AT));
      out.push({ url, bytes: Number(r.headers.get('content-length')) || 0, cachedAt: at || null, sha256: r.headers.get(SHA256), store: store.kind });
    }
  }
  return out;
}

/**
 * Whether the file `url` (or the file it redirected to) is kept.
 * @param {string} url
 */
async function has(url) {
  for (const store of await openStores({ page: true })) if (await resolve(store, absolute(url))) return true;
  return false;
}

/**
 * Forgets the file `url` leads to, and every URL that redirected to it. Resolves to whether
 * anything was kept.
 * @param {string} url
 */
async function remove(url) {
  let found = false;
  for (const store of await openStores({ page: true })) {
    const target = await resolve(store, absolute(url));
    if (!target) continue;
    await forget(store, target);
    found = true;
  }
  return found;
}

/** Deletes the entry of file `target` and every alias that leads to it. */
async function forget(store, target) {
  for (const url of await store.keys().catch(() => [])) {
    const r = await match(store, url);
    if (url === target || r?.headers.get(ALIAS) === target) await store.delete(url).catch(() => {});
  }
}

/** Forgets every kept model file, in both stores. */
async function clear() {
  const opfs = await clearOpfs();
  const cache = typeof caches === 'undefined' ? false : await caches.delete(MODEL_CACHE).catch(() => false);
  return opfs || cache;
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
 * Reads a kept Response body into one Uint8Array, calling `onBytes(loaded, total)` as it goes
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
    throw new WickError('network', `${url} ended early: ${loaded} of its ${declared} bytes could be read`);
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

/** Lowercase hex of `bytes`. */
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** The sha256 of `bytes` in one go: Web Crypto where the context has it (fast), else in JS. */
async function digest(bytes) {
  if (globalThis.crypto?.subtle) return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
  return hex(sha256(bytes));
}

/** Files this large are hashed by www/sha256-worker.js when the caller builds on them meanwhile. */
const HASH_ASIDE_BYTES = 16 << 20;

/**
 * The sha256 of `bytes`, hashed on another thread (a copy goes to www/sha256-worker.js: Web
 * Crypto holds up the thread that calls it while it hashes); here where that worker cannot start.
 */
function digestAside(bytes) {
  if (typeof Worker === 'undefined') return digest(bytes);
  return new Promise((resolve) => {
    let worker;
    try {
      worker = new Worker(new URL('./sha256-worker.js', import.meta.url), { type: 'module' });
    } catch {
      resolve(digest(bytes));
      return;
    }
    const here = () => {
      worker.terminate();
      resolve(digest(bytes));
    };
    worker.onerror = here;
    worker.onmessage = ({ data }) => {
      if (typeof data?.hex !== 'string') return here();
      worker.terminate();
      resolve(data.hex);
    };
    const copy = bytes.slice();
    worker.postMessage({ bytes: copy }, [copy.buffer]);
  });
}

/**
 * @typedef {{ size: number, sha256: string }} Expected a file's size and sha256, from its manifest
 */

/**
 * A kept copy of a file: its bytes, or null with `onDamaged(why)` called when they are not whole
 * (a truncated body, a size other than the manifest's or than what was recorded when it was
 * kept); and `checked`, a promise of whether its sha256 is right as well (`onDamaged` is called
 * when it is not; true at once for a file the store says was not written since it was kept with
 * that sha256); `aside`: a large file is hashed on another thread (digestAside).
 * @returns {Promise<{ bytes: Uint8Array, checked: Promise<boolean> } | null>}
 */
async function readKept(hit, key, expect, onBytes, onDamaged, aside = false) {
  let bytes;
  try {
    if (hit.read) {
      bytes = await hit.read();
      onBytes(bytes.length, bytes.length, 'cache');
    } else {
      bytes = await readBody(hit, key, (l, t) => onBytes(l, t, 'cache'));
    }
  } catch (e) {
    onDamaged(WickError.from(e).message);
    return null;
  }
  const size = expect?.size ?? (Number(hit.headers.get('content-length')) || bytes.length);
  if (bytes.length !== size) {
    onDamaged(`it holds ${bytes.length} bytes, ${expect ? 'the manifest says' : 'it was kept with'} ${size}`);
    return null;
  }
  const want = expect?.sha256 ?? hit.headers.get(SHA256);
  // A kept file not written since it was hashed at download is not hashed again on every load
  // (100 MB took ~150 ms of a returning visit); a rewritten one is.
  const recorded = hit.headers.get(SHA256) === want;
  const trusted = hit.unchanged === true && recorded;
  const checked = !want || trusted ? Promise.resolve(true) : (aside && bytes.length >= HASH_ASIDE_BYTES ? digestAside : digest)(bytes).then((got) => {
    if (got === want) {
      if (recorded) hit.checkedRight?.().catch(() => {});
      return true;
    }
    onDamaged(`its sha256 is ${got}, ${expect ? 'the manifest says' : 'it was kept with'} ${want}`);
    return false;
  });
  return { bytes, checked };
}

/**
 * One model file's bytes: from the store when it keeps the file `url` leads to, else from the
 * network (following redirects), and then kept. A HEAD request first learns where `url` leads
 * and how big the file is, so a file kept under its final URL is not downloaded again and one
 * too big for wasm memory is refused before downloading (a server that refuses HEAD is just
 * asked with GET).
 * @param {string} url absolute URL
 * @param {{ optional?: boolean, signal?: AbortSignal, expect?: Expected | null, onBytes?: (loaded: number, total: number, phase: 'download'|'cache') => void, onCacheError?: (e: WickError) => void, beforeDownload?: (url: string, size: number) => Promise<void> }} [options]
 *   `optional`: a missing file gives null instead of an error; `expect`: the size and sha256 the
 *   bytes must have (a kept copy that differs is downloaded again; a download that differs
 *   fails); `onCacheError`: the file could not be kept (a full quota, say), or a kept copy was
 *   damaged; it is still returned; `beforeDownload`: called with the file's final URL and size
 *   (from HEAD) before a download starts; what it throws stops it; `deferCheck`: a kept copy
 *   of the right size is returned before its sha256 is known, with `checked` (see readKept), so
 *   the engine is built while a large one is hashed on another thread; a damaged one is reported and deleted, and the
 *   caller loads again.
 * @returns {Promise<{ url: string, bytes: Uint8Array, source: 'network'|'cache', sha256: string | null, checked?: Promise<boolean> } | null>}
 */
export async function fetchFile(url, { optional = false, signal, expect = null, onBytes = () => {}, onCacheError = () => {}, beforeDownload, deferCheck = false } = {}) {
  const stores = await openStores();
  /** The checked copy of the file `at` leads to, from the first store that has a whole one. */
  const fromStores = async (at) => {
    for (const store of stores) {
      // The entry of `at` itself, unless it is an alias of the file it redirected to.
      const own = await match(store, at);
      const key = own?.headers.get(ALIAS) ?? (own ? at : null);
      const hit = key === at ? own : key && (await match(store, key));
      if (!hit) continue;
      const kept = await readKept(hit, key, expect, onBytes, (why) => {
        onCacheError(new WickError('model_format', `The browser's copy of ${key} was damaged (${why}); it is downloaded again.`));
      }, deferCheck);
      const file = kept && { url: key, bytes: kept.bytes, source: 'cache', sha256: expect?.sha256 ?? hit.headers.get(SHA256) };
      if (kept && deferCheck) {
        file.checked = kept.checked.then(async (whole) => whole || (await forget(store, key), false));
        return { file, store };
      }
      if (!kept || !(await kept.checked)) {
        await forget(store, key);
        continue;
      }
      return { file, store };
    }
    return null;
  };
  const found = await fromStores(url);
  if (found) return found.file;

  let target = url;
  let head = null;
  let store = stores; // where the download is kept: nowhere when the pre-flight finds no room
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
    const other = target !== url && (await fromStores(target));
    if (other) {
      await keep([other.store], url, null, { [ALIAS]: target }, onCacheError);
      return other.file;
    }
    if (size && beforeDownload) await beforeDownload(target, size);
    // Pre-flight for the store: a file larger than the room the browser has left for this site
    // is not kept (and says so now, not after the download).
    const room = size && stores.length ? await storageRoom() : Infinity;
    if (size > room) {
      onCacheError(new WickError('quota', `The model could not be kept in the browser's storage, which is full (${mb(room)} MB left for this site, ${mb(size)} MB needed); it runs from memory, and the next visit downloads it again. Free space with Wick.cache.delete() or clear().`));
      store = [];
    }
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
  const { bytes, sha256: hash } = await download(url, target, response, { signal, expect, onBytes: (l, t) => onBytes(l, t, 'download') });
  const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length), [CACHED_AT]: String(Date.now()), [SHA256]: hash };
  // The file first, then the alias (in the same store), so an alias never points at nothing.
  const keptIn = await keep(store, target, bytes, headers, onCacheError);
  if (keptIn && target !== url) await keep([keptIn], url, null, { [ALIAS]: target }, onCacheError);
  return { url: target, bytes, source: 'network', sha256: hash };
}

/** The first byte a 206 answer holds (its Content-Range `bytes START-END/TOTAL`), or -1. */
function rangeStart(response) {
  const m = response.headers.get('content-range')?.match(/^bytes (\d+)-\d+\/(\d+|\*)$/);
  return m ? Number(m[1]) : -1;
}

/** Resolves after `ms`, or rejects with `aborted` when `signal` aborts first. */
function pause(ms, signal, url) {
  return new Promise((resolve, reject) => {
    const aborted = () => new WickError('aborted', `The download of ${url} was aborted.`);
    if (signal?.aborted) return reject(aborted());
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Reads a download to its end, hashing it as it streams in. When the connection breaks or the
 * body ends short of the size, it asks for the rest (`Range: bytes=N-`) and goes on from there
 * (a server that answers with the whole file again is read from the start), up to MAX_RESUMES
 * times in a row without progress. With `expect`, a size that differs fails as soon as it shows
 * and a sha256 that differs at the end.
 * @returns {Promise<{ bytes: Uint8Array, sha256: string }>}
 */
async function download(url, target, first, { signal, expect, onBytes }) {
  const declared = Number(first.headers.get('content-length')) || 0;
  if (expect && declared && declared !== expect.size) {
    throw new WickError('network', `${url} is ${declared} bytes on the server, but the model's manifest says ${expect.size}: one of them is out of date.`);
  }
  const total = expect?.size || declared;
  let buffer = new Uint8Array(total);
  let loaded = 0;
  let hash = sha256.create();
  let response = first;
  let stalls = 0;
  let lastReport = 0;
  for (;;) {
    const from = loaded;
    let broke = null;
    if (response) {
      try {
        const reader = response.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (expect && loaded + value.length > expect.size) {
            throw new WickError('network', `${url} sent more than the ${expect.size} bytes its manifest lists.`);
          }
          if (loaded + value.length > buffer.length) {
            // Nothing was declared (or a compressed length): grow by doubling.
            const grown = new Uint8Array(Math.max(2 * buffer.length, loaded + value.length, 1 << 20));
            grown.set(buffer.subarray(0, loaded));
            buffer = grown;
          }
          buffer.set(value, loaded);
          hash.update(value);
          loaded += value.length;
          const now = performance.now();
          if (now - lastReport > 50) {
            onBytes(loaded, total);
            lastReport = now;
          }
        }
      } catch (e) {
        if (signal?.aborted || e?.name === 'AbortError') throw new WickError('aborted', `The download of ${url} was aborted.`);
        if (e instanceof WickError) throw e;
        broke = e;
      }
      if (!broke && (!total || loaded >= total)) break;
    }
    // The connection broke off, or the body ended early: ask for the rest.
    stalls = loaded > from ? 1 : stalls + 1;
    if (stalls > MAX_RESUMES) {
      const why = broke ? ` (${broke.message})` : '';
      throw new WickError('network', `The download of ${url} ended early: ${loaded} of ${total || '?'} bytes arrived${why}, and resuming it failed ${MAX_RESUMES} times. Check the connection and load again.`);
    }
    await pause(250 * (stalls - 1), signal, url);
    try {
      response = await request(target, { signal, cache: 'no-store', headers: { Range: `bytes=${loaded}-` } });
    } catch (e) {
      if (e.code === 'aborted') throw e;
      response = null; // unreachable for now: counts as a try
      continue;
    }
    const start = rangeStart(response);
    const rest = Number(response.headers.get('content-length'));
    // A CDN that does not expose Content-Range to this origin still sends the bytes asked for.
    if (response.status === 206 && (start === loaded || (start === -1 && (!total || rest === total - loaded)))) continue;
    if (response.status === 200) {
      // The server ignores ranges: the whole file again, from its first byte.
      loaded = 0;
      hash = sha256.create();
      continue;
    }
    if (!response.ok) throw httpError(url, response);
    throw new WickError('network', `${url} answered a request for its bytes from ${loaded} on with other bytes (${response.headers.get('content-range') ?? 'no Content-Range'}).`);
  }
  onBytes(loaded, loaded);
  const bytes = loaded === buffer.length ? buffer : buffer.slice(0, loaded);
  const got = hex(hash.digest());
  if (expect && (loaded !== expect.size || got !== expect.sha256)) {
    throw new WickError('network', `The download of ${url} does not match the model's manifest (${loaded} bytes with sha256 ${got}; the manifest says ${expect.size} bytes with ${expect.sha256}): it was damaged on the way, or the file changed. Load it again.`);
  }
  return { bytes, sha256: got };
}

/** Bytes the browser's storage has left for this site (`navigator.storage.estimate()`), or Infinity when it cannot say. */
async function storageRoom() {
  try {
    const { usage, quota } = await navigator.storage.estimate();
    return Number.isFinite(quota) && quota > 0 ? Math.max(0, quota - (usage ?? 0)) : Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * Puts an entry (`bytes` null: an alias, headers only) in the first of `stores` that takes it,
 * and resolves to that store, or null. A full quota is reported at once; another failure moves
 * on to the next store (OPFS that throws leaves the Cache API), and only the last is reported.
 */
async function keep(stores, url, bytes, headers, onCacheError) {
  let failure = null;
  for (const store of stores) {
    try {
      await store.put(url, bytes ?? new Uint8Array(0), headers);
      return store;
    } catch (e) {
      failure = e;
      if (WickError.from(e).code === 'quota') break;
    }
  }
  if (failure) {
    const error = WickError.from(failure);
    onCacheError(error.code === 'quota'
      ? new WickError('quota', `The model could not be kept in the browser's storage, which is full (${failure.message}); it runs from memory, and the next visit downloads it again. Free space with Wick.cache.delete() or clear().`)
      : new WickError(error.code, `The model could not be kept in the browser's storage: ${error.message}`));
  }
  return null;
}
