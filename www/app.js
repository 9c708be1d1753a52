// The chat UI, built on Wick's public API alone (wick.js): it loads a model into an engine and
// streams each reply with engine.chat.completions.create, or for a base model (one without a chat
// template) continues each message as raw text with engine.completions.create. Model output is
// only ever inserted as text (textContent), never as HTML.
import { Wick, WickError } from './wick.js';

// A Hugging Face folder of MLX-quantized safetensors (made from the GGUF by `wick quantize`).
const DEFAULT_MODEL = 'models/SmolLM2-135M-Instruct-MLX-4bit/';
const query = new URLSearchParams(location.search);
// Worker threads for the engine: ?threads=N, else one per core.
const THREADS = Math.max(1, Number(query.get('threads')) || navigator.hardwareConcurrency || 1);
// ?simd=simd128 keeps to the plain SIMD builds even where relaxed SIMD runs.
const SIMD = query.get('simd') === 'simd128' ? 'simd128' : 'relaxed';

const $ = (id) => document.getElementById(id);
const CHAT_PLACEHOLDER = $('input').placeholder;
const ui = {
  loader: $('loader'), progress: $('progress'), progressLabel: $('progress-label'),
  error: $('error'), messages: $('messages'), form: $('composer'), input: $('input'),
  send: $('send'), stop: $('stop'), status: $('status'), newChat: $('new-chat'), file: $('model-file'),
  modelChoice: $('model-choice'), quantize: $('quantize'),
};

/** @type {import('./wick.d.ts').WickEngine | null} */
let engine = null;
let modelName = '';
let modelLine = '';
let completionMode = false; // the model has no chat template: each message is continued as text
const conversation = []; // [{ role, content }] of finished turns
let reply = null; // { el, text, question, controller } of the reply being streamed
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
}

function addMessage(role, text) {
  const el = document.createElement('div');
  el.className = `msg ${role}`;
  el.textContent = text;
  ui.messages.append(el);
  el.scrollIntoView({ block: 'end' });
  return el;
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
  return { messages: [...systemMessages(), ...conversation, { role: 'user', content: question }], ...sampling };
}

function statusLine(usage, timings) {
  const cached = usage.prompt_tokens_details.cached_tokens;
  return `${modelLine} · ${usage.completion_tokens} tokens at ${timings.predicted_per_second.toFixed(1)} tok/s · ` +
    `prompt ${usage.prompt_tokens} tokens (${usage.prompt_tokens - cached} new, ${timings.prompt_per_second.toFixed(1)} tok/s) · ` +
    `first token ${(timings.first_token_ms / 1000).toFixed(2)} s`;
}

async function send() {
  const question = ui.input.value.trim();
  if (!engine || reply || !question) return;
  ui.error.hidden = true;
  ui.input.value = '';
  addMessage('user', question);
  const el = addMessage('assistant', '');
  el.classList.add('pending');
  const current = { el, text: '', question, controller: new AbortController() };
  reply = current;
  ui.status.textContent = 'Reading the prompt…';
  setBusy();
  let note = null;
  try {
    const body = request(question);
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
        el.textContent = current.text;
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
      el.remove();
      if (error.code === 'engine_crashed' || error.code === 'out_of_memory') dropEngine();
      finish(current, null);
      return;
    }
    note = '(stopped)';
    ui.status.textContent = `${modelLine} · stopped`;
  }
  finish(current, note);
}

/**
 * Ends a reply: it joins the conversation, with a note on why it ended, unless its message was
 * removed meanwhile (a failure, New chat, another model).
 */
function finish(r, note) {
  if (reply === r) reply = null;
  r.el.classList.remove('pending');
  if (r.el.isConnected) {
    // A text completion stands alone: the next message is continued by itself.
    if (!completionMode) conversation.push({ role: 'user', content: r.question }, { role: 'assistant', content: r.text });
    if (note) {
      const span = document.createElement('span');
      span.className = 'note';
      span.textContent = note;
      r.el.append(span);
    }
  }
  setBusy();
  ui.input.focus();
}

function dropEngine() {
  engine?.unload();
  engine = null;
  ui.status.textContent = 'No model loaded — pick a model or model files in Settings, or reload the page.';
}

const PHASES = { download: 'Downloading', cache: 'Reading from the browser cache' };

/** Loads a model; only one that loads replaces the current engine, so a bad file costs nothing. */
async function loadModel(model, name) {
  ui.error.hidden = true;
  loading?.abort();
  const controller = new AbortController();
  loading = controller;
  ui.loader.classList.remove('done');
  try {
    const next = await Wick.load(model, {
      threads: THREADS, simd: SIMD, quantize: ui.quantize.value || null, signal: controller.signal,
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
      reply?.controller.abort();
      reply = null;
      await engine.unload();
      conversation.length = 0;
      ui.messages.replaceChildren();
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
  } catch (e) {
    const error = WickError.from(e);
    if (error.code === 'aborted' && loading !== controller) return; // a newer load took over
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
}

ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});
ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    send();
  }
});
ui.stop.addEventListener('click', () => reply?.controller.abort());
ui.newChat.addEventListener('click', () => {
  reply?.controller.abort();
  reply = null;
  setBusy();
  conversation.length = 0;
  ui.messages.replaceChildren();
  warmUp();
});
ui.file.addEventListener('change', () => {
  const files = [...ui.file.files];
  if (!files.length) return;
  const gguf = files.length === 1 && !files[0].name.endsWith('.safetensors');
  const name = gguf ? files[0].name : `${files.length} files`;
  ui.status.textContent = `Loading ${files.map((f) => f.name).join(', ')}…`;
  loadModel(files, name);
});

/** A model path from the page (the model menu, ?model=) as a URL on this site. */
function loadPath(path) {
  const url = new URL(path, location.href).href;
  const name = path.endsWith('/') ? path.split('/').at(-2) : path.split('/').pop();
  loadModel(url, name);
}
ui.modelChoice.addEventListener('change', () => loadPath(ui.modelChoice.value));

/**
 * Adds every model the server holds to the model menu: Wick's dev server lists its models/
 * folder as JSON at models/ (a plain static host does not, and the menu keeps its own entries).
 */
async function listModels() {
  let models;
  try {
    const r = await fetch('models/', { headers: { Accept: 'application/json' } });
    models = r.ok ? await r.json() : [];
  } catch {
    return;
  }
  if (!Array.isArray(models)) return;
  const known = new Set([...ui.modelChoice.options].map((o) => o.value));
  for (const { path, name, bytes } of models) {
    if (typeof path !== 'string' || known.has(path)) continue;
    const kind = path.endsWith('/') ? 'safetensors folder' : 'GGUF';
    ui.modelChoice.append(new Option(`${name} · ${kind} · ${mb(bytes)} MB`, path));
  }
  if ([...ui.modelChoice.options].some((o) => o.value === startModel)) ui.modelChoice.value = startModel;
  ui.modelChoice.dataset.listed = String(models.length);
}

const startModel = query.get('model') ?? DEFAULT_MODEL;
if ([...ui.modelChoice.options].some((o) => o.value === startModel)) ui.modelChoice.value = startModel;
loadPath(startModel);
listModels();
setBusy();
