// Where a model's files are: what `Wick.load` was given (a GGUF URL, a Hugging Face-style folder
// URL, a hub repo id, or File objects) becomes a description the worker can fetch, and a folder
// becomes its files in the order the engine needs them.
import { WickError } from './error.js';
import { fetchFile, MAX_MODEL_BYTES } from './cache.js';
import { HEAD_BYTES, readMetadata, describe } from './gguf.js';

/** Where a hub repo id is looked up unless `hubUrl` says otherwise. */
export const DEFAULT_HUB = 'https://huggingface.co';

/** `org/name`, optionally followed by a path inside the repo (`org/name/model.Q4_1.gguf`). */
const HUB_ID = /^([A-Za-z0-9][\w.-]*)\/([\w.-]+)(?:\/(.+))?$/;

/**
 * @typedef {{ kind: 'url', url: string, folder: boolean, id: string, hub?: string }
 *   | { kind: 'files', files: File[], id: string }} ModelSource
 *   `hub`: the text that was read as a hub repo id
 */

/**
 * What `model` names, with URLs made absolute against `base` (the page). A string is a URL when
 * it has a scheme or starts with `/`, `./` or `../`; otherwise `org/name[/path]` is a hub repo,
 * read from `{hubUrl}/org/name/resolve/{revision}/…`. A URL (or hub path) ending in `/` is a
 * Hugging Face-style folder, anything else one GGUF file; a bare `org/name` is a folder.
 * @param {string | URL | File | File[] | FileList} model
 * @param {{ hubUrl?: string, revision?: string }} options
 * @param {string} base
 * @returns {ModelSource}
 */
export function describeModel(model, { hubUrl = DEFAULT_HUB, revision = 'main' } = {}, base) {
  if (typeof File !== 'undefined' && (model instanceof File || Array.isArray(model) || (typeof FileList !== 'undefined' && model instanceof FileList))) {
    const files = model instanceof File ? [model] : [...model];
    if (!files.length || !files.every((f) => f instanceof File)) {
      throw new WickError('invalid_request', 'Wick.load needs at least one File (a GGUF, or a model folder\'s files).');
    }
    const gguf = files.find((f) => f.name.endsWith('.gguf'));
    const folder = files[0].webkitRelativePath?.split('/')[0];
    return { kind: 'files', files, id: gguf?.name ?? (folder || 'local-model') };
  }
  const text = model instanceof URL ? model.href : model;
  if (typeof text !== 'string' || !text.trim()) {
    throw new WickError('invalid_request', 'Wick.load needs a model: a GGUF URL, a model folder URL ending in "/", a hub repo id "org/name", or File objects.');
  }
  const isUrl = /^[a-z][a-z0-9+.-]*:/i.test(text) || /^\.{0,2}\//.test(text);
  const hub = !isUrl && text.match(HUB_ID);
  if (!isUrl && !hub) {
    throw new WickError('invalid_request', `"${text}" is neither a URL nor a hub repo id "org/name"; for a file on this site write "./${text}" or "/${text}".`);
  }
  let url;
  let id;
  if (hub) {
    const [, org, name, path = ''] = hub;
    url = `${hubUrl.replace(/\/+$/, '')}/${org}/${name}/resolve/${encodeURIComponent(revision)}/${path}`;
    id = path && !path.endsWith('/') ? `${org}/${name}/${path}` : `${org}/${name}`;
  } else {
    url = new URL(text, base).href;
    id = decodeURIComponent(new URL(url).pathname.split('/').filter(Boolean).at(-1) ?? url);
  }
  return { kind: 'url', url, folder: url.endsWith('/'), id, ...(hub ? { hub: text } : {}) };
}

/**
 * @typedef {{ name: string, bytes: Uint8Array }} NamedBytes
 * @typedef {({ gguf: Uint8Array } | { files: NamedBytes[] }) & { source: string, verified: boolean, checked: Promise<boolean> }} ModelBytes
 *   `verified`: every file was checked against the model's manifest; `checked`: whether the
 *   kept copies' sha256 are right too (false: one was damaged, reported and deleted; load again)
 * @typedef {{
 *   wasm: Promise<{ mod: any }>,
 *   signal?: AbortSignal,
 *   onProgress?: (p: { loaded: number, total: number, file: string, phase: 'download'|'cache' }) => void,
 *   onCacheError?: (e: WickError) => void,
 *   fits?: (bytes: number, shape: ReturnType<typeof describe>) => void,
 *   deferCheck?: boolean,
 * }} FetchOptions
 */

/**
 * The bytes of the model `source` names. `onProgress` counts the bytes of all its files
 * together (`total` grows as each file's size becomes known); `wasm` is the engine's build,
 * which knows what a folder holds; `fits` judges a GGUF from its size and the shape its
 * head gives before the download starts, and throws if the engine could not hold it;
 * `deferCheck`: kept copies are returned before their sha256 is known (cache.js's fetchFile),
 * to be awaited in `checked` once the engine is built.
 * @param {ModelSource} source
 * @param {FetchOptions} options
 * @returns {Promise<ModelBytes>}
 */
export async function fetchModel(source, options) {
  if (source.kind === 'files') return readFiles(source.files);
  return source.folder ? fetchFolder(source.url, options) : fetchGguf(source.url, options);
}

/** User-picked files: one GGUF, or a model folder's files. */
async function readFiles(files) {
  const read = async (f) => new Uint8Array(await f.arrayBuffer());
  const total = files.reduce((n, f) => n + f.size, 0);
  if (total > MAX_MODEL_BYTES) {
    throw new WickError('out_of_memory', `These files are ${(total / 2 ** 30).toFixed(1)} GiB; a model in the browser must fit in 4 GiB of WebAssembly memory.`);
  }
  if (files.length === 1 && !files[0].name.endsWith('.safetensors') && !files[0].name.endsWith('.json')) {
    return { gguf: await read(files[0]), source: 'file', verified: false, checked: Promise.resolve(true) };
  }
  return { files: await Promise.all(files.map(async (f) => ({ name: f.name, bytes: await read(f) }))), source: 'file', verified: false, checked: Promise.resolve(true) };
}

/** Progress over several files, read one after another or at once: the sums of their bytes. */
function progress(onProgress = () => {}) {
  const files = new Map();
  const sum = (key) => [...files.values()].reduce((n, f) => n + f[key], 0);
  return {
    file: (name) => ({
      onBytes: (loaded, total, phase) => {
        files.set(name, { loaded, total: total || loaded });
        onProgress({ loaded: sum('loaded'), total: sum('total'), file: name, phase });
      },
      finish: (bytes) => files.set(name, { loaded: bytes.length, total: bytes.length }),
    }),
  };
}

/** Files a manifest may name that are read before the engine says which it needs (no paths). */
const EARLY_NAME = /^[\w-][\w.-]*\.(json|jinja|safetensors)$/;
/** At most this many of them. */
const MAX_EARLY = 64;

/**
 * The first `n` bytes of `url` (a ranged GET; from a server that ignores the range, the first `n`
 * bytes of the whole file, the rest left unread), or null if they cannot be had.
 */
async function fetchHead(url, n, signal) {
  let response;
  try {
    response = await fetch(url, { headers: { Range: `bytes=0-${n - 1}` }, signal, cache: 'no-store', mode: 'cors', credentials: 'same-origin' });
  } catch (e) {
    if (signal?.aborted) throw new WickError('aborted', `The download of ${url} was aborted.`);
    return null;
  }
  if (!response.ok || !response.body) return null;
  const reader = response.body.getReader();
  const head = new Uint8Array(n);
  let got = 0;
  try {
    while (got < n) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, n - got);
      head.set(value.subarray(0, take), got);
      got += take;
    }
  } catch {
    // A broken read leaves what arrived.
  } finally {
    reader.cancel().catch(() => {});
  }
  return head.subarray(0, got);
}

/** Name of a model folder's manifest; a GGUF's is its own name followed by `.manifest.json`. */
export const MANIFEST = 'manifest.json';

/**
 * A model's manifest: `{ "files": { NAME: { "size": BYTES, "sha256": HEX } } }`, written by
 * `wick quantize` and scripts/fetch-models.sh beside the model. Resolves to a Map from file name
 * to what that file must be, or null when the server has none (or cannot be reached: the files
 * are then checked against what was recorded when they were kept). Never kept in the browser's
 * cache, so it always says what the server holds now.
 * @returns {Promise<Map<string, import('./cache.js').Expected> | null>}
 */
async function fetchManifest(url, signal) {
  let response;
  try {
    response = await fetch(url, { signal, cache: 'no-store', mode: 'cors', credentials: 'same-origin' });
  } catch {
    if (signal?.aborted) throw new WickError('aborted', `The download of ${url} was aborted.`);
    return null;
  }
  if (!response.ok) return null;
  const bad = (why) => new WickError('model_format', `${url} is not a model manifest: ${why}.`);
  let json;
  try {
    json = JSON.parse(await response.text());
  } catch (e) {
    throw bad(e.message);
  }
  if (!json || typeof json.files !== 'object' || !json.files) throw bad('it has no "files" object');
  const files = new Map();
  for (const [name, f] of Object.entries(json.files)) {
    if (!Number.isSafeInteger(f?.size) || f.size < 0) throw bad(`"${name}" has no size in bytes`);
    if (typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) throw bad(`"${name}" has no sha256 (64 lowercase hex digits)`);
    files.set(name, { size: f.size, sha256: f.sha256 });
  }
  return files;
}

async function fetchGguf(url, { signal, onProgress, onCacheError, fits, deferCheck }) {
  const file = progress(onProgress).file(url);
  // Before downloading, the head of the file says the model's shape, so that with the size the
  // engine's memory can be judged (a head that cannot be read leaves only the size to judge).
  const beforeDownload = fits && (async (target, size) => {
    const head = await fetchHead(target, HEAD_BYTES, signal);
    const meta = head && readMetadata(head);
    fits(size, describe(meta ?? new Map()));
  });
  const manifestUrl = new URL(url);
  manifestUrl.pathname += `.${MANIFEST}`;
  const manifest = await fetchManifest(manifestUrl.href, signal);
  const expect = manifest?.get(decodeURIComponent(new URL(url).pathname.split('/').at(-1))) ?? null;
  const got = await fetchFile(url, { signal, expect, onBytes: file.onBytes, onCacheError, beforeDownload, deferCheck });
  return { gguf: got.bytes, source: got.source, verified: Boolean(expect), checked: got.checked ?? Promise.resolve(true) };
}

/**
 * A Hugging Face folder (`url` ends with `/`): the files the engine's folder reader asks for
 * (`folderFiles()`: config.json, the tokenizer files, chat_template.jinja), then the weights, or
 * the index and the shards it lists (`indexShards()`).
 */
async function fetchFolder(url, { signal, onProgress, onCacheError, wasm, deferCheck }) {
  const files = [];
  const checks = [];
  const sources = new Set();
  const counter = progress(onProgress);
  const manifest = await fetchManifest(url + MANIFEST, signal);
  let verified = Boolean(manifest);
  /** Records the file `name` that fetchFile gave (null: an optional file that is missing). */
  const took = (name, got) => {
    if (!got) return null;
    if (got.checked) checks.push(got.checked);
    if (!manifest?.get(name)) verified = false;
    counter.file(url + name).finish(got.bytes);
    files.push({ name, bytes: got.bytes });
    sources.add(got.source);
    return got.bytes;
  };
  const fetchOne = (name, optional) => fetchFile(url + name, { optional, signal, expect: manifest?.get(name) ?? null, onBytes: counter.file(url + name).onBytes, onCacheError, deferCheck });
  // The files the manifest names are read at once, while the engine's wasm starts (it says
  // which of them the engine needs, in what order); a kept copy is read in tens of milliseconds.
  const early = new Map([...(manifest?.keys() ?? [])].filter((n) => EARLY_NAME.test(n)).slice(0, MAX_EARLY).map((name) => {
    const read = fetchOne(name, true);
    read.catch(() => {}); // awaited below if the engine needs the file; its error is told there
    return [name, read];
  }));
  /** File `name`: read early, or now; a required file the early read found missing gives its error. */
  const get = async (name, optional) => {
    const got = early.has(name) ? await early.get(name) : await fetchOne(name, optional);
    return got || optional ? got : fetchOne(name, false);
  };
  const add = async (name, optional = false) => took(name, await get(name, optional));
  const { mod } = await wasm;
  const layout = JSON.parse(mod.folderFiles());
  // The small files are read at once (each costs a few storage round trips), the template last:
  // one in tokenizer_config.json makes chat_template.jinja moot, and not asking spares a 404.
  const template = layout.files.find((f) => f.name === 'chat_template.jinja');
  const small = layout.files.filter((f) => f !== template);
  const read = await Promise.all(small.map(({ name, required }) => get(name, !required)));
  small.forEach(({ name }, i) => took(name, read[i]));
  const config = files.find((f) => f.name === 'tokenizer_config.json');
  if (template && !(config && new TextDecoder().decode(config.bytes).includes('"chat_template"'))) await add(template.name, !template.required);
  if (!(await add(layout.weights, true))) {
    const index = await add(layout.index, true);
    if (!index) {
      throw new WickError('model_not_found', `${url} has neither ${layout.weights} nor ${layout.index}.`);
    }
    let shards;
    try {
      shards = mod.indexShards(index);
    } catch (e) {
      throw WickError.from(e);
    }
    for (const shard of shards) {
      if (!/^[\w.-]+\.safetensors$/.test(shard)) {
        throw new WickError('model_format', `${layout.index} names a shard "${shard}" that is not a plain .safetensors file name.`);
      }
      await add(shard);
    }
  }
  const checked = Promise.all(checks).then((all) => all.every(Boolean));
  return { files, source: sources.has('network') ? 'network' : 'cache', verified, checked };
}
