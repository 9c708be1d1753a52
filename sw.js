// Wick's service worker: keeps the app shell and the wasm build in use, so after one visit the
// page opens and answers with the network off (the weights are in the Cache API via cache.js).
// Network first, so a rebuilt wasm or an edited page is seen at once; the kept copy is the
// fallback. Responses are kept whole, headers included: COOP/COEP stay, so a page served from
// here is still cross-origin isolated and runs the threaded build.
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

self.addEventListener('fetch', (event) => {
  if (handled(event.request)) event.respondWith(networkFirst(event));
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
