// Replies as Markdown: `marked` turns the model's text into HTML and DOMPurify cleans it before
// anything reaches the page (both vendored from npm into www/vendor/ by scripts/vendor-js.sh).
// Raw HTML in the text is shown as text, images are dropped (a made-up image URL would leak the
// chat to a server), and links open in a new tab without a referrer.
import { Marked } from './vendor/marked.esm.js';
import DOMPurify from './vendor/purify.es.mjs';

/** `&`, `<`, `>`, `"` and `'` as entities, so marked's output shows them as text. */
const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const parser = new Marked({
  gfm: true,
  breaks: true, // a model's single newlines are meant as line breaks
  renderer: { html: ({ text }) => escapeHtml(text) },
});

/** The elements Markdown makes; everything else is removed. */
const PURIFY = {
  ALLOWED_TAGS: [
    'p', 'br', 'hr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'strong', 'em', 'del', 'code', 'pre',
    'blockquote', 'ul', 'ol', 'li', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'a',
  ],
  ALLOWED_ATTR: ['href', 'title', 'align', 'start', 'class'],
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
  // marked marks a fenced block's language as class="language-x"; no other class is kept.
  const cls = node.getAttribute('class');
  if (cls !== null && !(node.tagName === 'CODE' && /^language-[\w+#.-]+$/.test(cls))) node.removeAttribute('class');
});
DOMPurify.addHook('uponSanitizeAttribute', (node, data) => {
  // target and rel are set by the hook above, never taken from the text.
  if (data.attrName === 'target' || data.attrName === 'rel') data.keepAttr = false;
});

/** `text` as a clean DOM fragment: each code block gets a copy button. */
export function markdownFragment(text) {
  const fragment = DOMPurify.sanitize(parser.parse(text, { async: false }), PURIFY);
  for (const pre of fragment.querySelectorAll('pre')) {
    const box = document.createElement('div');
    box.className = 'code';
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'copy-code';
    copy.setAttribute('aria-label', 'Copy code');
    pre.replaceWith(box);
    box.append(copy, pre);
  }
  return fragment;
}

/** Replaces what `el` shows with `text` rendered as Markdown. */
export function renderMarkdown(el, text) {
  el.replaceChildren(markdownFragment(text));
}

/**
 * Renders a reply that grows token by token into `el`, at most once per animation frame, always
 * into the same element (so the page never shows it empty or half-replaced).
 * `update(text)` records the newest text; `flush()` renders it now (at the end of a reply).
 */
export function markdownStream(el) {
  let text = '';
  let frame = 0;
  let renders = 0;
  const render = () => {
    frame = 0;
    renders += 1;
    renderMarkdown(el, text);
  };
  return {
    update(next) {
      text = next;
      if (!frame) frame = requestAnimationFrame(render);
    },
    flush() {
      if (frame) cancelAnimationFrame(frame);
      render();
    },
    get renders() {
      return renders;
    },
  };
}
