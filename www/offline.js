// Offline use: registers the service worker (sw.js, at the site's root so it serves the page),
// which keeps the app shell and the wasm build this browser runs; the model weights are kept by
// cache.js already. On a first visit the page waits (briefly) until the worker controls it, so
// the engine's worker and its wasm are fetched through it and kept.

/** How long a first visit waits for the service worker before loading without it. */
const CLAIM_TIMEOUT_MS = 5000;

/**
 * Registers the service worker; resolves once it controls this page (or at once where service
 * workers are missing or refused: then the app works online only).
 * @returns {Promise<boolean>} whether the page is controlled
 */
export async function startOffline() {
  const sw = navigator.serviceWorker;
  if (!sw) return false;
  try {
    await sw.register(new URL('../sw.js', import.meta.url), { scope: new URL('../', import.meta.url).pathname });
  } catch (e) {
    console.warn(`offline use unavailable: ${e.message}`);
    return false;
  }
  if (!sw.controller) {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, CLAIM_TIMEOUT_MS);
      sw.addEventListener('controllerchange', () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }
  return Boolean(sw.controller);
}

/**
 * Asks the service worker to keep what this page has loaded so far (the page itself and the
 * scripts and styles it fetched before the worker controlled it). Resolves to whether the app
 * shell is kept.
 */
export async function keepShell() {
  const controller = navigator.serviceWorker?.controller;
  if (!controller) return false;
  const urls = [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)];
  const channel = new MessageChannel();
  const answer = new Promise((resolve) => {
    channel.port1.onmessage = ({ data }) => resolve(Boolean(data?.kept));
  });
  controller.postMessage({ type: 'keep', urls }, [channel.port2]);
  return answer;
}
