// The chat UI: sends the conversation to the engine worker and appends each text piece it
// streams back. Model output is only ever inserted as text (textContent), never as HTML.
import { ToWorker, FromWorker } from './protocol.js';

// A Hugging Face folder of MLX-quantized safetensors (made from the GGUF by `wick quantize`).
const DEFAULT_MODEL = 'models/SmolLM2-135M-Instruct-MLX-4bit/';
const query = new URLSearchParams(location.search);
// Worker threads for the engine: ?threads=N, else one per core.
const THREADS = Math.max(1, Number(query.get('threads')) || navigator.hardwareConcurrency || 1);
// ?simd=simd128 keeps to the plain SIMD builds even where relaxed SIMD runs.
const SIMD = query.get('simd') || 'relaxed';

const $ = (id) => document.getElementById(id);
const ui = {
  loader: $('loader'), progress: $('progress'), progressLabel: $('progress-label'),
  error: $('error'), messages: $('messages'), form: $('composer'), input: $('input'),
  send: $('send'), stop: $('stop'), status: $('status'), newChat: $('new-chat'), file: $('model-file'),
  modelChoice: $('model-choice'), quantize: $('quantize'),
};

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const conversation = []; // [{ role, content }] of finished turns
let ready = false;
let reply = null; // { id, el, text, started } of the reply being streamed
let nextId = 1;
let modelLine = '';

const mb = (n) => (n / 1e6).toFixed(1);

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function setBusy(busy) {
  ui.input.disabled = !ready;
  ui.send.disabled = !ready || busy;
  ui.stop.disabled = !busy;
}

function addMessage(role, text) {
  const el = document.createElement('div');
  el.className = `msg ${role}`;
  el.textContent = text;
  ui.messages.append(el);
  el.scrollIntoView({ block: 'end' });
  return el;
}

function params() {
  const num = (id) => Number($(id).value);
  return {
    temperature: num('temperature'), top_k: num('top_k'), top_p: num('top_p'),
    repeat_penalty: num('repeat_penalty'), max_tokens: num('max_tokens'), seed: num('seed'),
  };
}

function systemMessages() {
  const system = $('system').value.trim();
  return system ? [{ role: 'system', content: system }] : [];
}

function messagesFor(question) {
  return [...systemMessages(), ...conversation, { role: 'user', content: question }];
}

/** Lets the engine read the system prompt while the user types (a new conversation starts with it). */
function warmUp() {
  const messages = systemMessages();
  if (messages.length) worker.postMessage({ type: ToWorker.WARM, messages });
}

function send() {
  const question = ui.input.value.trim();
  if (!ready || reply || !question) return;
  ui.error.hidden = true;
  ui.input.value = '';
  addMessage('user', question);
  const el = addMessage('assistant', '');
  el.classList.add('pending');
  reply = { id: nextId++, el, text: '', question, started: performance.now() };
  worker.postMessage({ type: ToWorker.GENERATE, id: reply.id, messages: messagesFor(question), params: params() });
  ui.status.textContent = 'Reading the prompt…';
  setBusy(true);
}

function finishReply(reason, stats) {
  const r = reply;
  reply = null;
  r.el.classList.remove('pending');
  conversation.push({ role: 'user', content: r.question }, { role: 'assistant', content: r.text });
  if (reason === 'cancelled' || reason === 'max_tokens' || reason === 'context_full') {
    const note = document.createElement('span');
    note.className = 'note';
    note.textContent = { cancelled: '(stopped)', max_tokens: '(max tokens reached)', context_full: '(context window full)' }[reason];
    r.el.append(note);
  }
  const decode = stats.generated_tokens / Math.max(stats.decode_seconds, 1e-9);
  const prefill = stats.prefilled_tokens / Math.max(stats.prefill_seconds, 1e-9);
  ui.status.textContent = `${modelLine} · ${stats.generated_tokens} tokens at ${decode.toFixed(1)} tok/s · ` +
    `prompt ${stats.prompt_tokens} tokens (${stats.prefilled_tokens} new, ${prefill.toFixed(1)} tok/s) · ` +
    `first token ${stats.first_token_seconds.toFixed(2)} s`;
  setBusy(false);
  ui.input.focus();
}

worker.onmessage = ({ data }) => {
  switch (data.type) {
    case FromWorker.PROGRESS: {
      ui.loader.classList.remove('done');
      const verb = { download: 'Downloading', cache: 'Reading from the browser cache', init: 'Preparing' }[data.phase];
      ui.progress.max = data.total || 1;
      ui.progress.value = data.phase === 'init' ? ui.progress.max : data.loaded;
      ui.progressLabel.textContent = data.phase === 'init'
        ? `Preparing the model (${mb(data.total)} MB)…`
        : `${verb} the model: ${mb(data.loaded)} / ${data.total ? mb(data.total) : '?'} MB`;
      break;
    }
    case FromWorker.READY: {
      if (ready) {
        // A new model starts a new conversation.
        conversation.length = 0;
        ui.messages.replaceChildren();
      }
      ready = true;
      ui.loader.classList.add('done');
      const { info, build } = data;
      modelLine = `${data.name} (${info.format}, ${info.architecture}, ${info.n_layers} layers) · wasm ${build.simd}, ${build.threads} thread${build.threads === 1 ? '' : 's'}`;
      ui.status.textContent = `Ready: ${modelLine} · loaded from ${data.source} in ${data.loadSeconds.toFixed(1)} s`;
      setBusy(false);
      ui.input.focus();
      warmUp();
      break;
    }
    case FromWorker.PREFILL:
      if (reply?.id === data.id) ui.status.textContent = `Reading the prompt… ${data.done} / ${data.total} tokens`;
      break;
    case FromWorker.TOKEN:
      if (reply?.id !== data.id) break;
      reply.text += data.text;
      reply.el.textContent = reply.text;
      if (reply.text.length === data.text.length) ui.status.textContent = 'Writing…';
      reply.el.scrollIntoView({ block: 'end' });
      break;
    case FromWorker.DONE:
      if (reply?.id !== data.id) break;
      reply.text += data.text;
      reply.el.textContent = reply.text;
      finishReply(data.reason, data.stats);
      break;
    case FromWorker.ERROR:
      showError(data.message);
      if (reply && (data.id === undefined || data.id === reply.id)) {
        reply.el.remove();
        reply = null;
      }
      if (data.fatal) {
        ready = false;
        ui.loader.classList.add('done');
        ui.status.textContent = 'No model loaded — pick a model or model files in Settings, or reload the page.';
      }
      setBusy(false);
      break;
  }
};

worker.onerror = (e) => showError(`The engine worker failed: ${e.message}`);

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
ui.stop.addEventListener('click', () => reply && worker.postMessage({ type: ToWorker.CANCEL, id: reply.id }));
ui.newChat.addEventListener('click', () => {
  if (reply) worker.postMessage({ type: ToWorker.CANCEL, id: reply.id });
  reply = null;
  setBusy(false);
  conversation.length = 0;
  ui.messages.replaceChildren();
  worker.postMessage({ type: ToWorker.RESET });
  warmUp();
});
ui.file.addEventListener('change', () => {
  const files = [...ui.file.files];
  if (!files.length) return;
  ui.error.hidden = true;
  ui.status.textContent = `Loading ${files.map((f) => f.name).join(', ')}…`;
  worker.postMessage({ type: ToWorker.LOAD_FILES, files, threads: THREADS, simd: SIMD, quantize: ui.quantize.value || null });
});

function loadUrl(path) {
  ui.error.hidden = true;
  const url = new URL(path, location.href).href;
  worker.postMessage({ type: ToWorker.LOAD_URL, url, threads: THREADS, simd: SIMD, quantize: ui.quantize.value || null });
}
ui.modelChoice.addEventListener('change', () => loadUrl(ui.modelChoice.value));

const startModel = query.get('model') ?? DEFAULT_MODEL;
if ([...ui.modelChoice.options].some((o) => o.value === startModel)) ui.modelChoice.value = startModel;
loadUrl(startModel);
setBusy(false);
