// The chats a user keeps: one IndexedDB record per conversation, with a small API to list, save,
// delete and measure them. A record is `{ id, title, named, turns: [{ role, content, note? }],
// created, updated }` (`named`: the user gave the title; else it follows the first question).

const DB_NAME = 'wick-chat';
const STORE = 'conversations';
/** Which conversation was open, so a reload shows it again. */
const OPEN_KEY = 'wick-chat-open';

let db = null;

/** The database, opened (and created on first use) once. */
function openDb() {
  db ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'id' });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  return db;
}

/** Runs `f(store)` in one transaction; resolves to the result of the request `f` returns. */
async function withStore(mode, f) {
  const tx = (await openDb()).transaction(STORE, mode);
  const req = f(tx.objectStore(STORE));
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(req?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('the storage transaction was aborted'));
  });
}

/** A new, empty conversation (kept once `save` is called). */
export function newConversation() {
  const now = Date.now();
  return { id: crypto.randomUUID(), title: 'New chat', named: false, turns: [], created: now, updated: now };
}

/** Every kept conversation, the most recently changed first. */
export async function listConversations() {
  const all = await withStore('readonly', (s) => s.getAll());
  return all.sort((a, b) => b.updated - a.updated);
}

/** Keeps `conversation` (its title follows its first question unless the user named it). */
export async function saveConversation(conversation) {
  if (!conversation.named) {
    const first = conversation.turns.find((t) => t.role === 'user')?.content.trim().replace(/\s+/g, ' ');
    if (first) conversation.title = first.length > 48 ? `${first.slice(0, 47)}…` : first;
  }
  conversation.updated = Date.now();
  await withStore('readwrite', (s) => s.put(conversation));
}

/** Forgets one conversation. */
export async function deleteConversation(id) {
  await withStore('readwrite', (s) => s.delete(id));
}

/** Forgets every conversation. */
export async function clearConversations() {
  await withStore('readwrite', (s) => s.clear());
}

/** How many conversations are kept and about how many bytes their text takes. */
export async function conversationsSize() {
  const all = await listConversations();
  return { count: all.length, bytes: all.reduce((n, c) => n + new Blob([JSON.stringify(c)]).size, 0) };
}

/** The id of the conversation that was open last, or null. */
export function lastOpen() {
  try {
    return localStorage.getItem(OPEN_KEY);
  } catch {
    return null;
  }
}

/** Remembers which conversation is open (null: none). */
export function rememberOpen(id) {
  try {
    if (id) localStorage.setItem(OPEN_KEY, id);
    else localStorage.removeItem(OPEN_KEY);
  } catch {
    // Storage may be refused (a private window); the list still works for this visit.
  }
}
