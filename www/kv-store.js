// KV snapshots in the origin private file system (OPFS), so a conversation continues after a
// reload without running its prompt again. The engine writes and checks the bytes (a header with
// the model's id and the tokens, the keys and values, a checksum: Rust's `Engine::save_kv`); this
// module only files them: `kv/<model id>/<tokens>-<hash of the tokens>.kv`, a bounded number of
// them. The page lists, sizes and clears them (`Wick.kvCache`); the worker saves after a reply and
// restores before one. A warmed conversation start (the system prompt, `engine.warm`) is kept as
// `warm-<tokens>-<hash>.kv`: a longer snapshot of the same conversation does not replace it, so a
// returning visit restores it instead of prefilling the system prompt again.

/** The OPFS directory snapshots live in (other stores keep their own directories). */
export const KV_DIR = 'kv';
/** Snapshots kept at most; the least recently used go first. */
export const MAX_SNAPSHOTS = 8;
/** Bytes of snapshots kept at most (a 1,000-token SmolLM2-135M conversation takes 46 MB). */
export const MAX_BYTES = 512 * 2 ** 20;

/** The `kv/` directory handle, or null when it does not exist and `create` is false. */
async function root(create) {
  const opfs = await navigator.storage.getDirectory();
  try {
    return await opfs.getDirectoryHandle(KV_DIR, { create });
  } catch (e) {
    if (e.name === 'NotFoundError') return null;
    throw e;
  }
}

/** The hex sha256 of the first `n` tokens of `ids`, as little-endian u32. */
async function prefixHash(ids, n) {
  const bytes = new Uint8Array(Uint32Array.from(ids.subarray ? ids.subarray(0, n) : ids.slice(0, n)).buffer);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest.subarray(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A snapshot's file name says how many tokens it holds and which, and whether it is a warm start. */
const fileName = (tokens, hash, warm) => `${warm ? 'warm-' : ''}${tokens}-${hash}.kv`;
const parseName = (name) => {
  const m = /^(warm-)?(\d+)-([0-9a-f]{32})\.kv$/.exec(name);
  return m ? { tokens: Number(m[2]), hash: m[3], warm: Boolean(m[1]) } : null;
};

/**
 * Every snapshot kept: `{ model, name, tokens, hash, bytes, modified }`.
 * @returns {Promise<Array<{ model: string, name: string, tokens: number, hash: string, bytes: number, modified: number }>>}
 */
export async function list() {
  const kv = await root(false);
  if (!kv) return [];
  const out = [];
  for await (const [model, dir] of kv.entries()) {
    if (dir.kind !== 'directory') continue;
    for await (const [name, handle] of dir.entries()) {
      const parsed = handle.kind === 'file' && parseName(name);
      if (!parsed) continue;
      const file = await handle.getFile();
      out.push({ model, name, ...parsed, bytes: file.size, modified: file.lastModified });
    }
  }
  return out;
}

/** How many snapshots are kept and their bytes: `{ count, bytes }`. */
export async function estimate() {
  const all = await list();
  return { count: all.length, bytes: all.reduce((n, s) => n + s.bytes, 0) };
}

/** Deletes one snapshot (no error if it is gone). */
export async function remove(model, name) {
  const kv = await root(false);
  const dir = kv && await kv.getDirectoryHandle(model).catch(() => null);
  await dir?.removeEntry(name).catch(() => {});
}

/**
 * Deletes every snapshot. A snapshot the worker is writing (it saves after each reply) keeps its
 * file from being removed until it is closed: clear waits for that, for up to about 3 s, rather
 * than fail.
 */
export async function clear() {
  const opfs = await navigator.storage.getDirectory();
  for (let wait = 25; ; wait *= 2) {
    try {
      await opfs.removeEntry(KV_DIR, { recursive: true });
      return;
    } catch (e) {
      if (e.name === 'NotFoundError') return;
      if (e.name !== 'NoModificationAllowedError' || wait > 1600) throw e;
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** Keeps at most MAX_SNAPSHOTS and MAX_BYTES, dropping the least recently used first. */
async function prune() {
  const all = (await list()).sort((a, b) => b.modified - a.modified);
  let bytes = 0;
  for (const [i, s] of all.entries()) {
    bytes += s.bytes;
    if (i >= MAX_SNAPSHOTS || bytes > MAX_BYTES) await remove(s.model, s.name);
  }
}

/**
 * Snapshots the open conversation after a reply: `messages` ends with the reply (null: the whole
 * cache, a warmed conversation start, kept as a warm snapshot). Snapshots of shorter prefixes of
 * the same conversation are dropped (the new one holds them), warm ones excepted. Returns what
 * was written, `{ model, name, tokens, bytes }`.
 * @param {any} engine the worker's WickEngine
 * @param {Array<{ role: string, content: string }> | null} messages
 */
export async function save(engine, messages) {
  const model = engine.modelId();
  const warm = messages === null;
  const bytes = engine.saveKv(warm ? undefined : JSON.stringify(messages));
  // The tokens a snapshot holds are in its header, after 64 bytes; their count at byte 60.
  const tokens = new DataView(bytes.buffer, bytes.byteOffset).getUint32(60, true);
  const ids = new Uint32Array(bytes.buffer.slice(bytes.byteOffset + 64, bytes.byteOffset + 64 + 4 * tokens));
  const name = fileName(tokens, await prefixHash(ids, tokens), warm);
  const dir = await (await root(true)).getDirectoryHandle(model, { create: true });
  const writable = await (await dir.getFileHandle(name, { create: true })).createWritable();
  await writable.write(bytes);
  await writable.close();
  for await (const [other] of dir.entries()) {
    const s = parseName(other);
    if (s && !s.warm && s.tokens < tokens && s.hash === await prefixHash(ids, s.tokens)) await dir.removeEntry(other).catch(() => {});
  }
  await prune();
  return { model, name, tokens, bytes: bytes.length };
}

/**
 * Before a reply to `messages`: restores the longest kept snapshot of this model whose tokens
 * start the prompt and go past what the cache holds. The engine checks the snapshot whole; one it
 * refuses is deleted, and the reply prefills as it would have. Returns `{ restored }` (tokens now
 * cached from a snapshot, 0 if none) and `refused` (the engine's reason) when one was refused.
 * `ids`: the tokens to restore toward, when not the prompt of a reply (a warmed start's).
 * `busy()` is asked just before the engine restores: true (a reply started meanwhile) leaves
 * its cache alone.
 * @param {any} engine the worker's WickEngine
 * @param {Array<{ role: string, content: string }>} messages
 * @param {{ ids?: Uint32Array, busy?: () => boolean }} [options]
 * @returns {Promise<{ restored: number, refused?: string }>}
 */
export async function restore(engine, messages, { ids = null, busy = () => false } = {}) {
  const model = engine.modelId();
  const kv = await root(false);
  const dir = kv && await kv.getDirectoryHandle(model).catch(() => null);
  if (!dir) return { restored: 0 };
  ids ??= engine.chatTokens(JSON.stringify(messages));
  const have = engine.cachedPrefix(ids);
  const found = [];
  for await (const [name, handle] of dir.entries()) {
    const s = handle.kind === 'file' && parseName(name);
    if (s && s.tokens > have && s.tokens <= ids.length) found.push({ name, handle, ...s });
  }
  found.sort((a, b) => b.tokens - a.tokens);
  for (const s of found) {
    if (s.hash !== await prefixHash(ids, s.tokens)) continue;
    const bytes = new Uint8Array(await (await s.handle.getFile()).arrayBuffer());
    if (busy()) return { restored: 0 };
    try {
      return { restored: engine.restoreKv(bytes, ids) };
    } catch (e) {
      await dir.removeEntry(s.name).catch(() => {});
      return { restored: 0, refused: e.message };
    }
  }
  return { restored: 0 };
}

/** The page's view of the store: `list()`, `estimate()`, `clear()`. */
export const kvCache = Object.freeze({ list, estimate, clear });
