// Model files kept in the origin private file system (OPFS), for cache.js. In the engine's worker
// a file is read with a sync access handle in one call into one buffer: 100 MB in tens of
// milliseconds, where a Cache API body streams in chunks that are copied again. Each kept URL is
// two files in the folder `weights/`, both named by the sha256 of the URL: KEY holds the bytes,
// KEY.json `{ url, headers, modified }` (what cache.js records: size, sha256, when; or an alias;
// and when KEY was last written). The .json is written last, so a file whose write broke off has
// none and is not seen. The store has the shape of cache.js's Cache API store: match, put, keys,
// delete.
import { sha256 } from './vendor/noble-hashes/sha2.js';

/** The OPFS folder model files are kept in (other features keep theirs in other folders). */
export const WEIGHTS_DIR = 'weights';

/** The file name a URL is kept under: its sha256, in hex. */
const keyOf = (url) => Array.from(sha256(new TextEncoder().encode(url)), (b) => b.toString(16).padStart(2, '0')).join('');

/** The folder, or null where this context has no OPFS (or it refuses). */
async function openDir(create) {
  if (typeof navigator === 'undefined' || typeof navigator.storage?.getDirectory !== 'function') return null;
  try {
    return await (await navigator.storage.getDirectory()).getDirectoryHandle(WEIGHTS_DIR, { create });
  } catch {
    return null;
  }
}

/** A file's bytes: through a sync access handle where the context has them, else as a Blob. */
async function readBytes(dir, name) {
  const handle = await dir.getFileHandle(name);
  if (typeof handle.createSyncAccessHandle === 'function') {
    // Another engine reading the same file holds its lock: read it the slower way then.
    const access = await handle.createSyncAccessHandle().catch(() => null);
    if (access) {
      try {
        const bytes = new Uint8Array(access.getSize());
        const n = access.read(bytes, { at: 0 });
        return n === bytes.length ? bytes : bytes.subarray(0, n);
      } finally {
        access.close();
      }
    }
  }
  return new Uint8Array(await (await handle.getFile()).arrayBuffer());
}

/** Writes `bytes` as file `name` (replacing it); a failed write leaves no file behind. */
async function writeBytes(dir, name, bytes) {
  const handle = await dir.getFileHandle(name, { create: true });
  try {
    if (typeof handle.createSyncAccessHandle === 'function') {
      const access = await handle.createSyncAccessHandle();
      try {
        access.truncate(0);
        for (let at = 0; at < bytes.length;) {
          const n = access.write(bytes.subarray(at), { at });
          if (!n) throw new DOMException(`OPFS accepted no bytes of ${name} at ${at}`, 'UnknownError');
          at += n;
        }
        access.flush();
      } finally {
        access.close();
      }
    } else {
      const out = await handle.createWritable();
      await out.write(bytes);
      await out.close();
    }
  } catch (e) {
    await dir.removeEntry(name).catch(() => {});
    throw e;
  }
}

/** When file `name` was last written (ms since the epoch), or null when it cannot be told. */
async function lastModified(dir, name) {
  try {
    return (await (await dir.getFileHandle(name)).getFile()).lastModified;
  } catch {
    return null;
  }
}

/** What KEY.json records, or null when it is missing or unreadable. */
async function readRecord(dir, key) {
  try {
    const record = JSON.parse(new TextDecoder().decode(await readBytes(dir, `${key}.json`)));
    return typeof record?.url === 'string' && record.headers && typeof record.headers === 'object' ? record : null;
  } catch {
    return null;
  }
}

/**
 * The OPFS store, or null where this context has none. `match(url)` gives `{ headers, unchanged,
 * checkedRight(), read() }` (`read` resolves to the bytes) or null; `put(url, bytes, headers)`;
 * `keys()` the kept URLs; `delete(url)`. Its methods throw what OPFS throws (cache.js treats that as an empty store).
 * @param {{ create?: boolean }} [options] `create`: make the folder if missing (for writing)
 */
export async function openOpfs({ create = true } = {}) {
  const dir = await openDir(create);
  if (!dir) return null;
  return {
    kind: 'opfs',
    async match(url) {
      const key = keyOf(url);
      const record = await readRecord(dir, key);
      if (!record || record.url !== url) return null;
      // Unchanged: KEY was not written since it was kept (its bytes are the ones hashed then).
      const modified = await lastModified(dir, key);
      const unchanged = typeof record.modified === 'number' && record.modified === modified;
      // After its bytes hashed right: KEY's time is recorded (records kept before they held one,
      // or a copy rewritten since), so the next load trusts it unhashed, unless KEY changed.
      const checkedRight = async () => {
        if (unchanged || modified === null || (await lastModified(dir, key)) !== modified) return;
        await writeBytes(dir, `${key}.json`, new TextEncoder().encode(JSON.stringify({ ...record, modified })));
      };
      return { headers: new Headers(record.headers), unchanged, checkedRight, read: () => readBytes(dir, key) };
    },
    async put(url, bytes, headers) {
      const key = keyOf(url);
      await dir.removeEntry(`${key}.json`).catch(() => {});
      await writeBytes(dir, key, bytes ?? new Uint8Array(0));
      const modified = await lastModified(dir, key);
      await writeBytes(dir, `${key}.json`, new TextEncoder().encode(JSON.stringify({ url, headers, modified })));
    },
    async keys() {
      const urls = [];
      for await (const name of dir.keys()) {
        if (!name.endsWith('.json')) continue;
        const record = await readRecord(dir, name.slice(0, -5));
        if (record) urls.push(record.url);
      }
      return urls;
    },
    async delete(url) {
      const key = keyOf(url);
      await dir.removeEntry(`${key}.json`).catch(() => {});
      await dir.removeEntry(key).catch(() => {});
    },
  };
}

/** Deletes the whole folder; resolves to whether there was one. */
export async function clearOpfs() {
  if (typeof navigator === 'undefined' || typeof navigator.storage?.getDirectory !== 'function') return false;
  try {
    await (await navigator.storage.getDirectory()).removeEntry(WEIGHTS_DIR, { recursive: true });
    return true;
  } catch {
    return false;
  }
}
