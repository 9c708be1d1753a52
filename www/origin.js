// Where the chat page may load a model from. Its own origin and the origins its
// `<meta name="wick-model-origins">` lists load at once; a model anywhere else (a `?model=` link
// to another site) loads only after the user says so in the page, since one link could
// otherwise make the tab download and run a stranger's model.

/**
 * The origins the page allows without asking: its own, and those in `wick-model-origins`
 * (space-separated; entries that are not URLs are ignored).
 * @param {Document} doc
 * @returns {Set<string>}
 */
export function allowedOrigins(doc = document) {
  const listed = doc.querySelector('meta[name="wick-model-origins"]')?.content ?? '';
  const origins = new Set([new URL(doc.baseURI).origin]);
  for (const entry of listed.split(/\s+/).filter(Boolean)) {
    try {
      origins.add(new URL(entry).origin);
    } catch {
      // not a URL: ignored
    }
  }
  return origins;
}

/**
 * The origin of `url` when the page must ask before loading from it, else null. A URL whose
 * origin is opaque (`data:`, `blob:`, `javascript:`) always asks.
 * @param {string} url an absolute URL
 * @param {Set<string>} allowed
 */
export function originToConfirm(url, allowed) {
  let origin;
  try {
    origin = new URL(url).origin;
  } catch {
    return url;
  }
  return origin !== 'null' && allowed.has(origin) ? null : origin === 'null' ? url : origin;
}

/**
 * Asks in the page (not a browser dialog) whether to load `url` from `origin`: a panel inserted
 * before `before`, with the address as text and two buttons. Resolves to the answer.
 * @param {string} origin
 * @param {string} url
 * @param {Element} before
 * @returns {Promise<boolean>}
 */
export function confirmOrigin(origin, url, before) {
  const panel = document.createElement('section');
  panel.id = 'confirm-origin';
  panel.setAttribute('role', 'alertdialog');
  panel.setAttribute('aria-labelledby', 'confirm-origin-text');
  const text = document.createElement('p');
  text.id = 'confirm-origin-text';
  text.textContent = `This link asks to download and run a model from another site, ${origin}: ${url}. ` +
    'A model is code and data from whoever made it. Load it?';
  const yes = document.createElement('button');
  yes.type = 'button';
  yes.id = 'confirm-origin-load';
  yes.textContent = `Load from ${origin}`;
  const no = document.createElement('button');
  no.type = 'button';
  no.id = 'confirm-origin-cancel';
  no.textContent = 'Cancel';
  panel.append(text, yes, no);
  before.before(panel);
  no.focus();
  return new Promise((resolve) => {
    const answer = (ok) => {
      panel.remove();
      resolve(ok);
    };
    yes.addEventListener('click', () => answer(true), { once: true });
    no.addEventListener('click', () => answer(false), { once: true });
  });
}
