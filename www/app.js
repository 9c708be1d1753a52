// The chat UI, built on Wick's public API alone (wick.js): it loads a model into an engine and
// streams each reply with engine.chat.completions.create, or for a base model (one without a chat
// template) continues each message as raw text with engine.completions.create. Replies render as
// Markdown through DOMPurify (markdown.js); everything else the model or user wrote is inserted
// as text. Conversations are kept in IndexedDB (conversations.js), the app offline (offline.js).
import { Wick, WickError } from './wick.js';
import { markdownStream, renderMarkdown } from './markdown.js';
import {
  newConversation, listConversations, saveConversation, deleteConversation, clearConversations,
  conversationsSize, lastOpen, rememberOpen,
} from './conversations.js';
import { showConversations } from './chat-list.js';
import { startOffline, keepShell } from './offline.js';
import { showRestart } from './recovery.js';
import { ContextWindow } from './context-window.js';
import { allowedOrigins, originToConfirm, confirmOrigin } from './origin.js';
import { firstChoice, loadedBefore, rememberLoad, startingModel, serverModels } from './start-model.js';

const query = new URLSearchParams(location.search);
// Worker threads for the engine: ?threads=N, else one per core (never more than the cores).
const CORES = navigator.hardwareConcurrency || 1;
const THREADS = Math.min(CORES, Math.max(1, Math.floor(Number(query.get('threads'))) || CORES));
// ?simd=simd128 keeps to the plain SIMD builds even where relaxed SIMD runs.
const SIMD = query.get('simd') === 'simd128' ? 'simd128' : 'relaxed';
// ?context=N: tokens a conversation may hold (else the engine's default); older turns slide out.
const CONTEXT = Number(query.get('context')) || undefined;
const contextWindow = new ContextWindow();

const $ = (id) => document.getElementById(id);
const CHAT_PLACEHOLDER = $('input').placeholder;
const ui = {
  loader: $('loader'), progress: $('progress'), progressLabel: $('progress-label'),
  error: $('error'), messages: $('messages'), form: $('composer'), input: $('input'),
  send: $('send'), stop: $('stop'), status: $('status'), newChat: $('new-chat'), file: $('model-file'),
  modelChoice: $('model-choice'), quantize: $('quantize'), list: $('conversation-list'),
  sidebar: $('sidebar'), toggleList: $('toggle-list'), storage: $('storage-use'),
  clearChats: $('clear-chats'), clearModels: $('clear-models'),
};

/** @type {import('./wick.d.ts').WickEngine | null} */
let engine = null;
let modelName = '';
let modelLine = '';
let completionMode = false; // the model has no chat template: each message is continued as text
/** The open conversation; its `turns` are the finished messages `[{ role, content, note? }]`. */
let chat = newConversation();
let reply = null; // { el, text, question, controller, view } of the reply being streamed
let loading = null; // the AbortController of the load in progress

const mb = (n) => (n / 1e6).toFixed(1);

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function setBusy() {
  ui.input.disabled = !engine;
  ui.send.disabled = !engine || Boolean(reply);
  ui.stop.disabled = !reply;
  showActions();
}

/**
 * A message: its text in `.body` (a reply as Markdown, a question as text), then an optional
 * note and the buttons that act on it.
 */
function addMessage(role, text) {
  const el = document.createElement('div');
  el.className = `msg ${role}`;
  const body = document.createElement('div');
  body.className = 'body';
  if (role === 'assistant') renderMarkdown(body, text);
  else body.textContent = text;
  el.append(body);
  ui.messages.append(el);
  el.scrollIntoView({ block: 'end' });
  return el;
}

function addNote(el, note) {
  const span = document.createElement('span');
  span.className = 'note';
  span.textContent = note;
  el.append(span);
}

/** A button that shows its name from the stylesheet and says it to assistive technology. */
function actionButton(action, label) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `action ${action}`;
  b.dataset.action = action;
  b.setAttribute('aria-label', label);
  return b;
}

/** Copy on every reply; Regenerate on the last one, Edit on the last question (when idle). */
function showActions() {
  for (const bar of ui.messages.querySelectorAll('.actions')) bar.remove();
  const messages = [...ui.messages.querySelectorAll('.msg')];
  const idle = engine && !reply;
  messages.forEach((el, i) => {
    if (el.classList.contains('pending')) return;
    const buttons = [];
    const last = i === messages.length - 1;
    if (el.classList.contains('assistant')) {
      buttons.push(actionButton('copy', 'Copy reply'));
      if (last && idle) buttons.push(actionButton('regenerate', 'Regenerate reply'));
    } else if (idle && i >= messages.length - 2) {
      buttons.push(actionButton('edit', 'Edit and resend'));
    }
    if (!buttons.length) return;
    const bar = document.createElement('div');
    bar.className = 'actions';
    bar.append(...buttons);
    el.append(bar);
  });
}

/** Shows the open conversation's messages. */
function showChat() {
  ui.messages.replaceChildren();
  for (const turn of chat.turns) {
    const el = addMessage(turn.role, turn.content);
    if (turn.note) addNote(el, turn.note);
  }
  setBusy();
}

function systemMessages() {
  const system = $('system').value.trim();
  return system ? [{ role: 'system', content: system }] : [];
}

/** Lets the engine read the system prompt while the user types (a new conversation starts with it). */
function warmUp() {
  const messages = systemMessages();
  if (engine && !completionMode && messages.length) engine.warm(messages).catch(() => {}); // the next question meets any error
}

function request(question) {
  const num = (id) => Number($(id).value);
  const sampling = {
    stream: true,
    stream_options: { include_usage: true },
    temperature: num('temperature'), top_k: num('top_k'), top_p: num('top_p'),
    repetition_penalty: num('repeat_penalty'), max_tokens: num('max_tokens'), seed: num('seed'),
  };
  if (completionMode) return { prompt: question, ...sampling };
  const history = chat.turns.map(({ role, content }) => ({ role, content }));
  return { messages: [...systemMessages(), ...history, { role: 'user', content: question }], ...sampling };
}

function statusLine(usage, timings) {
  const cached = usage.prompt_tokens_details.cached_tokens;
  return `${modelLine} · ${usage.completion_tokens} tokens at ${timings.predicted_per_second.toFixed(1)} tok/s · ` +
    `prompt ${usage.prompt_tokens} tokens (${usage.prompt_tokens - cached} new, ${timings.prompt_per_second.toFixed(1)} tok/s) · ` +
    `first token ${(timings.first_token_ms / 1000).toFixed(2)} s`;
}

async function send(question) {
  if (!engine || reply || !question) return;
  ui.error.hidden = true;
  addMessage('user', question);
  const el = addMessage('assistant', '');
  el.classList.add('pending');
  const view = markdownStream(el.querySelector('.body'));
  const current = { el, text: '', question, controller: new AbortController(), view, chat };
  reply = current;
  ui.status.textContent = 'Reading the prompt…';
  setBusy();
  let note = null;
  try {
    const body = request(question);
    const left = completionMode ? null : await contextWindow.fit(engine, body);
    if (left) el.previousElementSibling.before(addMessage('notice', left)); // before the question
    const api = completionMode ? engine.completions : engine.chat.completions;
    const stream = await api.create({ ...body, signal: current.controller.signal });
    let finished = null;
    let usage = null;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      const piece = completionMode ? choice?.text : choice?.delta.content;
      if (piece) {
        if (!current.text) ui.status.textContent = 'Writing…';
        current.text += piece;
        view.update(current.text);
        el.scrollIntoView({ block: 'end' });
      }
      if (choice?.finish_reason) finished = choice.finish_reason;
      if (chunk.usage) {
        usage = chunk.usage;
        ui.status.textContent = statusLine(chunk.usage, chunk.timings);
      }
    }
    if (finished === 'length') note = usage && usage.completion_tokens < body.max_tokens ? '(context window full)' : '(max tokens reached)';
  } catch (e) {
    const error = WickError.from(e);
    if (error.code !== 'aborted') {
      showError(error.message);
      // The question goes back to the text box, out of the conversation.
      el.previousElementSibling?.remove();
      el.remove();
      if (!ui.input.value) ui.input.value = question;
      finish(current, null);
      return;
    }
    note = '(stopped)';
    ui.status.textContent = `${modelLine} · stopped`;
  }
  finish(current, note);
}

/**
 * Ends a reply: it joins its conversation (which is kept), with a note on why it ended, unless
 * its message was removed meanwhile (a failure, New chat, another model or conversation).
 */
function finish(r, note) {
  if (reply === r) reply = null;
  r.el.classList.remove('pending');
  r.view.flush();
  if (r.el.isConnected) {
    r.chat.turns.push({ role: 'user', content: r.question }, { role: 'assistant', content: r.text, ...(note ? { note } : {}) });
    if (note) addNote(r.el, note);
    keep(r.chat);
  }
  setBusy();
  ui.input.focus();
}

/** Stops the reply being written, if any (it is not kept). */
function dropReply() {
  reply?.controller.abort();
  reply = null;
}

/** Keeps `c` in IndexedDB and redraws the list; a storage failure is shown, the chat goes on. */
async function keep(c) {
  try {
    await saveConversation(c);
    rememberOpen(c.id);
  } catch (e) {
    console.warn(`could not keep the conversation: ${e.message}`);
  }
  await showList();
}

async function showList() {
  let all = [];
  try {
    all = await listConversations();
  } catch (e) {
    console.warn(`could not read the kept conversations: ${e.message}`);
  }
  showConversations(ui.list, all, chat.id, { open: openChat, rename: renameChat, remove: removeChat });
  showStorage();
}

async function openChat(id) {
  const found = (await listConversations()).find((c) => c.id === id);
  if (!found) return;
  dropReply();
  chat = found;
  rememberOpen(id);
  showChat();
  await showList();
  closeSidebar();
  ui.input.focus();
}

async function renameChat(id, title) {
  if (title) {
    const found = id === chat.id ? chat : (await listConversations()).find((c) => c.id === id);
    if (found) {
      found.title = title;
      found.named = true;
      await saveConversation(found).catch((e) => showError(`Could not rename: ${e.message}`));
    }
  }
  await showList();
  ui.list.querySelector(`li[data-id="${CSS.escape(id)}"] .rename`)?.focus();
}

async function removeChat(id) {
  await deleteConversation(id).catch((e) => showError(`Could not delete: ${e.message}`));
  if (id === chat.id) startChat();
  await showList();
  ui.newChat.focus();
}

/** Opens a new, empty conversation (kept from its first reply on). */
function startChat() {
  dropReply();
  chat = newConversation();
  rememberOpen(null);
  showChat();
  warmUp();
}

/** Sends the last question again in place of its reply. */
function regenerate() {
  const turns = chat.turns;
  if (reply || turns.length < 2 || turns.at(-1).role !== 'assistant') return;
  const question = turns.at(-2).content;
  chat.turns = turns.slice(0, -2);
  showChat();
  send(question);
}

/** Turns the last question into a text box; sending it replaces the question and its reply. */
function editLast(el) {
  const index = chat.turns.findLastIndex((t) => t.role === 'user');
  if (reply || index < 0) return;
  const form = document.createElement('form');
  form.className = 'edit';
  const box = document.createElement('textarea');
  box.value = chat.turns[index].content;
  box.rows = Math.min(8, box.value.split('\n').length + 1);
  box.setAttribute('aria-label', 'Edit your message');
  const resend = document.createElement('button');
  resend.type = 'submit';
  resend.textContent = 'Send';
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.textContent = 'Cancel';
  form.append(box, resend, cancel);
  el.replaceChildren(form);
  box.focus();
  const submit = () => {
    const question = box.value.trim();
    if (!question || !engine || reply) return;
    chat.turns = chat.turns.slice(0, index);
    showChat();
    send(question);
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
  });
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      submit();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      showChat();
    }
  });
  cancel.addEventListener('click', () => showChat());
}

/** Copies `text`, saying so on the button that asked. */
async function copy(button, text) {
  try {
    await navigator.clipboard.writeText(text);
    button.dataset.done = 'copied';
  } catch {
    button.dataset.done = 'failed';
  }
  setTimeout(() => delete button.dataset.done, 1500);
}

/** What this site keeps in the browser, for the storage panel. */
async function showStorage() {
  try {
    const [{ usage, quota, models }, chats, kv] = await Promise.all([Wick.cache.estimate(), conversationsSize(), Wick.kvCache.estimate()]);
    const offline = navigator.serviceWorker?.controller ? 'works offline' : 'online only';
    ui.storage.textContent = `${mb(usage)} MB used of ${mb(quota)} MB: downloaded models ${mb(models)} MB, ` +
      `${chats.count} chat${chats.count === 1 ? '' : 's'} ${(chats.bytes / 1e3).toFixed(1)} kB, ` +
      `${kv.count} KV snapshot${kv.count === 1 ? '' : 's'} ${mb(kv.bytes)} MB · ${offline}`;
  } catch (e) {
    ui.storage.textContent = `Storage figures unavailable (${e.message}).`;
  }
}

function closeSidebar() {
  ui.sidebar.classList.remove('open');
  ui.toggleList.setAttribute('aria-expanded', 'false');
}

function dropEngine() {
  engine?.unload();
  engine = null;
  ui.status.textContent = 'No model loaded — pick a model or model files in Settings, or reload the page.';
}

const PHASES = { download: 'Downloading', cache: 'Reading from the browser cache' };

/**
 * Loads a model; only one that loads replaces the current engine, so a bad file costs nothing.
 * Resolves to whether it loaded.
 */
async function loadModel(model, name) {
  ui.error.hidden = true;
  loading?.abort();
  const controller = new AbortController();
  loading = controller;
  ui.loader.classList.remove('done');
  try {
    const next = await Wick.load(model, {
      threads: THREADS, simd: SIMD, contextLength: CONTEXT, quantize: ui.quantize.value || null, signal: controller.signal,
      // Each reply's KV cache is kept, so a reloaded conversation continues without its prefill.
      kvCache: true, onKvSaved: () => showStorage(),
      onRestart: (e) => showRestart(ui, e, dropEngine),
      onProgress: ({ loaded, total, phase }) => {
        ui.loader.classList.remove('done');
        ui.progress.max = total || 1;
        ui.progress.value = phase === 'init' ? ui.progress.max : loaded;
        ui.progressLabel.textContent = phase === 'init'
          ? `Preparing the model (${mb(total)} MB)…`
          : `${PHASES[phase]} the model: ${mb(loaded)} / ${total ? mb(total) : '?'} MB`;
      },
      onCacheError: (e) => console.warn(e.message),
    });
    if (engine) {
      // A new model starts a new conversation.
      dropReply();
      await engine.unload();
      engine = null;
      startChat();
    }
    engine = next;
    const { info } = next;
    modelName = name;
    const { build } = info;
    completionMode = !info.chat_template;
    ui.input.placeholder = completionMode
      ? 'Write the start of a text for the model to continue… (Enter to send, Shift+Enter for a new line)'
      : CHAT_PLACEHOLDER;
    // A GGUF's format says nothing of its quantization; a safetensors format names it already.
    const format = info.format === 'GGUF' ? `GGUF ${info.quantization}` : info.format;
    const context = info.context_length === info.model_context_length ? `${info.context_length}` : `${info.context_length} of ${info.model_context_length}`;
    modelLine = `${name} (${format}, ${info.architecture}, ${info.n_layers} layers, context ${context} tokens) · ` +
      `${completionMode ? 'text completion (base model, no chat template)' : 'chat'} · wasm ${build.simd}, ${build.threads} thread${build.threads === 1 ? '' : 's'}`;
    ui.status.textContent = `Ready: ${modelLine} · loaded from ${info.source} in ${info.loadSeconds.toFixed(1)} s, ${mb(info.memoryBytes)} MB of wasm memory`;
    warmUp();
    return true;
  } catch (e) {
    const error = WickError.from(e);
    if (error.code === 'aborted' && loading !== controller) return false; // a newer load took over
    const keeping = engine ? ` Still using ${modelName}.` : '';
    showError(`Could not load ${name}: ${error.message}${keeping}`);
    if (!engine) ui.status.textContent = 'No model loaded — pick a model or model files in Settings, or reload the page.';
  } finally {
    if (loading === controller) {
      loading = null;
      ui.loader.classList.add('done');
    }
    setBusy();
    if (engine) ui.input.focus();
  }
  return false;
}

ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  sendInput();
});
ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    sendInput();
  }
});

/** Sends what the text box holds. */
function sendInput() {
  const question = ui.input.value.trim();
  if (!engine || reply || !question) return;
  ui.input.value = '';
  send(question);
}

ui.stop.addEventListener('click', () => reply?.controller.abort());
ui.newChat.addEventListener('click', () => {
  startChat();
  showList();
  closeSidebar();
  ui.input.focus();
});
ui.messages.addEventListener('click', (e) => {
  const button = e.target.closest('button');
  const el = button?.closest('.msg');
  if (!el) return;
  if (button.classList.contains('copy-code')) copy(button, button.nextElementSibling.textContent);
  else if (button.dataset.action === 'copy') copy(button, chat.turns[[...ui.messages.children].indexOf(el)]?.content ?? '');
  else if (button.dataset.action === 'regenerate') regenerate();
  else if (button.dataset.action === 'edit') editLast(el);
});
ui.toggleList.addEventListener('click', () => {
  const open = ui.sidebar.classList.toggle('open');
  ui.toggleList.setAttribute('aria-expanded', String(open));
  if (open) ui.newChat.focus();
});
ui.sidebar.addEventListener('keydown', (e) => {
  // Escape folds the list away again at phone width (where it is a panel over the chat).
  if (e.key === 'Escape' && ui.sidebar.classList.contains('open') && !e.target.classList.contains('rename-box')) {
    closeSidebar();
    ui.toggleList.focus();
  }
});
ui.clearChats.addEventListener('click', async () => {
  dropReply();
  // A conversation's KV snapshots go with it.
  await Promise.all([clearConversations(), Wick.kvCache.clear()]).catch((e) => showError(`Could not delete the chats: ${e.message}`));
  startChat();
  await showList();
});
ui.clearModels.addEventListener('click', async () => {
  // The model in use stays loaded; the next visit downloads it again.
  await Wick.cache.clear().catch((e) => showError(`Could not delete the models: ${e.message}`));
  await showStorage();
});
ui.file.addEventListener('change', () => {
  const files = [...ui.file.files];
  if (!files.length) return;
  const gguf = files.length === 1 && !files[0].name.endsWith('.safetensors');
  const name = gguf ? files[0].name : `${files.length} files`;
  ui.status.textContent = `Loading ${files.map((f) => f.name).join(', ')}…`;
  loadModel(files, name);
});

/**
 * A model path from the page (the model menu, ?model=) as a URL; one on a site the page does
 * not list (origin.js) loads only once the user agrees.
 */
async function loadPath(path) {
  const url = new URL(path, location.href).href;
  const name = path.endsWith('/') ? path.split('/').at(-2) : path.split('/').pop();
  const origin = originToConfirm(url, allowedOrigins());
  if (origin && !(await confirmOrigin(origin, url, ui.loader))) {
    ui.loader.classList.add('done');
    if (!engine) ui.status.textContent = 'No model loaded — the link named a model on another site; pick a model in Settings.';
    return false;
  }
  const loaded = await loadModel(url, name);
  rememberLoad(path, loaded);
  return loaded;
}
ui.modelChoice.addEventListener('change', () => loadPath(ui.modelChoice.value));

/** Adds `models` (from {@link serverModels}) to the model menu, which keeps its own entries. */
function listModels(models) {
  const known = new Set([...ui.modelChoice.options].map((o) => o.value));
  for (const { path, name, bytes } of models) {
    if (known.has(path)) continue;
    const kind = path.endsWith('/') ? 'safetensors folder' : 'GGUF';
    ui.modelChoice.append(new Option(`${name} · ${kind} · ${mb(bytes)} MB`, path));
  }
  if ([...ui.modelChoice.options].some((o) => o.value === startModel)) ui.modelChoice.value = startModel;
  ui.modelChoice.dataset.listed = String(models.length);
}

/** Reopens the conversation that was open before the reload, if it is still kept. */
async function restoreChat() {
  const id = lastOpen();
  let found = null;
  try {
    found = id && (await listConversations()).find((c) => c.id === id);
  } catch (e) {
    console.warn(`could not read the kept conversations: ${e.message}`);
  }
  if (found && !reply) {
    chat = found;
    showChat();
  }
  await showList();
}

let startModel = firstChoice(query);
if ([...ui.modelChoice.options].some((o) => o.value === startModel)) ui.modelChoice.value = startModel;
setBusy();
restoreChat();
// The engine's worker and wasm are fetched once the service worker serves the page, so they are
// kept for offline use too; the server's models are listed meanwhile.
const controlledAtStart = Boolean(navigator.serviceWorker?.controller);
/** How long after the model loads the Storage panel is first measured. */
const STORAGE_DELAY_MS = 2000;
// Storage is measured a moment after the model is in: listing OPFS and IndexedDB meanwhile
// would slow the load and the first reply.
const start = () => loadPath(startModel).finally(() => setTimeout(showStorage, STORAGE_DELAY_MS));
// A returning visit (the service worker serves the page) to the model that loaded last time
// starts it at once, without waiting for the server's list; if it no longer loads, the list
// decides as on a first visit.
const early = controlledAtStart && loadedBefore(startModel) ? start() : null;
Promise.all([startOffline(), serverModels()]).then(async ([controlled, listed]) => {
  const model = startingModel(query, listed);
  if (!early) startModel = model;
  listModels(listed);
  // A page the service worker served from the start had every file kept as it came.
  if (controlled && !controlledAtStart) keepShell();
  if (!early) start();
  else if (!(await early) && !engine && model !== startModel) {
    startModel = model;
    ui.modelChoice.value = model;
    start();
  }
});
