// Wick's service worker: keeps the app shell and the wasm build in use, so after one visit the
// page opens and answers with the network off (the weights are in OPFS or the Cache API via
// cache.js). The page and the wasm builds go network first, so a rebuilt wasm or an edited page
// is seen at once, with the kept copy as the fallback. The app's scripts and styles are served
// from their kept copies (a returning visit loads its two dozen modules in tens of milliseconds
// rather than hundreds) and checked against the network in one batch once the page is quiet: an
// edited script is seen on the next load. Responses are kept whole, headers included: COOP/COEP
// stay, so a page served from here is still cross-origin isolated and runs the threaded build.
const SHELL = 'wick-shell-v1';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

/** Model weights are kept by cache.js, ranges and HEADs are not files: those go straight out. */
function handled(request) {
  if (request.method !== 'GET' || request.headers.has('range')) return false;
  const url = new URL(request.url);
  return url.origin === location.origin && !/\.(gguf|safetensors)$/i.test(url.pathname);
}

/**
 * Keeps `response` for `request` unless the kept copy has the same ETag. A 404 is kept too: a
 * model folder's optional files (chat_template.jinja, say) must read as missing offline.
 */
async function keep(cache, request, response) {
  if (!response.ok && response.status !== 404) return;
  if (response.type === 'opaque' || response.status === 206) return;
  const etag = response.headers.get('etag');
  const old = etag && (await cache.match(request));
  if (old && old.headers.get('etag') === etag) return;
  await cache.put(request, response);
}

async function networkFirst(event) {
  const { request } = event;
  const cache = await caches.open(SHELL);
  try {
    const response = await fetch(request);
    event.waitUntil(keep(cache, request, response.clone()).catch(() => {}));
    return response;
  } catch (e) {
    const kept = (await cache.match(request)) ?? (request.mode === 'navigate' ? await cache.match(request, { ignoreSearch: true }) : null);
    if (kept) return kept;
    throw e;
  }
}

/** The app's own scripts and styles (not the wasm builds' glue, which must match its wasm). */
function shellCode(request) {
  const { pathname } = new URL(request.url);
  return request.mode !== 'navigate' && /\.(m?js|css)$/.test(pathname) && !/\/pkg[^/]*\//.test(pathname);
}

/** Scripts and styles served from their kept copies since the last check, by URL. */
const unchecked = new Map();
/** When the last of them was served, and the check that will run once the page is quiet. */
let lastServed = 0;
let checking = null;
/**
 * How long no kept script may be served before they are checked: the page has loaded, and its
 * model too (the check's requests and cache reads would compete with it for the CPU).
 */
const QUIET_MS = 5000;

/**
 * Checks the scripts served from kept copies against the network, all in one batch, and keeps
 * the new ones together: a page never loads some scripts of one version and some of another
 * unless it opens while the batch is being written.
 */
function checkLater(event, request) {
  unchecked.set(request.url, request);
  lastServed = Date.now();
  checking ??= (async () => {
    while (Date.now() - lastServed < QUIET_MS) await new Promise((r) => setTimeout(r, QUIET_MS));
    const batch = [...unchecked.values()];
    unchecked.clear();
    checking = null;
    const fresh = await Promise.all(batch.map((q) => fetch(q, { cache: 'no-store' }).catch(() => null)));
    const cache = await caches.open(SHELL);
    await Promise.all(batch.map((q, i) => fresh[i] && keep(cache, q, fresh[i]).catch(() => {})));
  })();
  event.waitUntil(checking);
}

/** A script or style from its kept copy (checked later), else from the network. */
async function keptFirst(event) {
  const kept = await (await caches.open(SHELL)).match(event.request);
  if (!kept) return networkFirst(event);
  checkLater(event, event.request);
  return kept;
}

self.addEventListener('fetch', (event) => {
  if (!handled(event.request)) return;
  event.respondWith(shellCode(event.request) ? keptFirst(event) : networkFirst(event));
});

/** The page asks to keep what it loaded before this worker controlled it. */
self.addEventListener('message', (event) => {
  if (event.data?.type !== 'keep' || !Array.isArray(event.data.urls)) return;
  const reply = event.ports[0];
  event.waitUntil((async () => {
    const cache = await caches.open(SHELL);
    let kept = true;
    for (const url of new Set(event.data.urls)) {
      const request = new Request(url);
      if (!handled(request) || (await cache.match(request))) continue;
      try {
        await keep(cache, request, await fetch(request));
      } catch {
        kept = false;
      }
    }
    reply?.postMessage({ kept });
  })());
});
