// The training page: sends the text and options to the worker, draws the loss as it falls,
// then completes text or chats with the trained model and offers its files for download.
// Everything from the corpus or the model is inserted as text, never as HTML.
import { ToTrainer, FromTrainer } from './train-protocol.js';
import { zip } from './zip.js';

const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL('./train-worker.js', import.meta.url), { type: 'module' });
const SVG = 'http://www.w3.org/2000/svg';
const OPTIONS = ['steps', 'layers', 'dim', 'heads', 'kv_heads', 'context', 'batch', 'lr', 'vocab', 'seed'];

let losses = [];
let stepTimes = { tokens: 0, seconds: 0 };
let chat = []; // the conversation so far, for Chat
let nextId = 1;
let current = null; // { id, node } of the generation in progress
const downloads = []; // object URLs to revoke when a new model replaces them

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = false;
}

function setTraining(on) {
  $('train').disabled = on;
  $('stop').disabled = !on;
  document.body.dataset.state = on ? 'training' : document.body.dataset.state;
}

function setGenerating(on) {
  $('complete').disabled = on;
  $('chat').disabled = on;
}

const fmt = (n) => Math.round(n).toLocaleString('en-US');

// --- The corpus: pasted, dropped or chosen ----------------------------------------------------
function showSize() {
  const text = $('corpus').value;
  $('corpus-size').textContent = text ? `${fmt(new TextEncoder().encode(text).length)} bytes` : '';
}

async function readFile(file) {
  if (!file) return;
  try {
    $('corpus').value = await file.text();
    showSize();
  } catch (e) {
    showError(`Could not read ${file.name}: ${e.message}`);
  }
}

$('corpus').addEventListener('input', showSize);
$('corpus-file').addEventListener('change', (e) => readFile(e.target.files[0]));
$('corpus').addEventListener('dragover', (e) => {
  e.preventDefault();
  $('corpus').classList.add('dropping');
});
$('corpus').addEventListener('dragleave', () => $('corpus').classList.remove('dropping'));
$('corpus').addEventListener('drop', (e) => {
  e.preventDefault();
  $('corpus').classList.remove('dropping');
  readFile(e.dataTransfer.files[0]);
});

// --- The chart: an SVG polyline of the loss per step, redrawn as steps arrive ---------------
function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawChart(totalSteps) {
  const chart = $('chart');
  const [w, h, left, right, top, bottom] = [480, 200, 44, 10, 18, 24];
  const lo = Math.min(...losses);
  const hi = Math.max(...losses, lo + 1e-3);
  const x = (i) => left + ((w - left - right) * i) / Math.max(1, totalSteps - 1);
  const y = (l) => top + ((h - top - bottom) * (hi - l)) / (hi - lo);
  chart.replaceChildren(
    el('line', { x1: left, y1: top, x2: left, y2: h - bottom, stroke: '#888' }),
    el('line', { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, stroke: '#888' }),
    el('text', { x: left - 4, y: top + 4, 'text-anchor': 'end' }, hi.toFixed(2)),
    el('text', { x: left - 4, y: h - bottom, 'text-anchor': 'end' }, lo.toFixed(2)),
    el('text', { x: left, y: h - bottom + 14 }, '1'),
    el('text', { x: w - right, y: h - bottom + 14, 'text-anchor': 'end' }, String(totalSteps)),
    el('text', { x: left, y: 12 }, `loss ${losses[0].toFixed(3)} → ${losses.at(-1).toFixed(3)}`),
    el('polyline', {
      fill: 'none', stroke: '#2a6fdb', 'stroke-width': 1.5,
      points: losses.map((l, i) => `${x(i).toFixed(1)},${y(l).toFixed(1)}`).join(' '),
    }),
  );
}

// --- Training -------------------------------------------------------------------------------
$('train').addEventListener('click', () => {
  $('error').hidden = true;
  const options = {};
  for (const k of OPTIONS) options[k] = Number($(k).value);
  losses = [];
  stepTimes = { tokens: 0, seconds: 0 };
  $('loss-log').textContent = '';
  $('chart').replaceChildren();
  $('use').hidden = true;
  $('status').textContent = 'Training the tokenizer…';
  document.body.dataset.state = 'training';
  setTraining(true);
  worker.postMessage({ type: ToTrainer.TRAIN, text: $('corpus').value, options });
});

$('stop').addEventListener('click', () => worker.postMessage({ type: ToTrainer.STOP }));

function onStep(r) {
  losses.push(r.loss);
  stepTimes.tokens += r.tokens;
  stepTimes.seconds += r.seconds;
  const rate = r.tokens / Math.max(r.seconds, 1e-9);
  $('loss-log').append(`${r.step}\t${r.loss.toFixed(4)}\t${fmt(rate)} tok/s\n`);
  $('status').textContent = `Step ${r.step}/${r.steps} · loss ${r.loss.toFixed(3)} · ${fmt(rate)} tok/s`;
  drawChart(r.steps);
}

function onTrained({ files, info, heldOutLoss }) {
  setTraining(false);
  document.body.dataset.state = 'trained';
  const avg = stepTimes.tokens / Math.max(stepTimes.seconds, 1e-9);
  const heldOut = heldOutLoss === null ? '' : `, held-out ${heldOutLoss.toFixed(3)}`;
  $('status').textContent = `Trained ${losses.length} steps: loss ${losses[0].toFixed(3)} → ${losses.at(-1).toFixed(3)}${heldOut}, ` +
    `${fmt(avg)} tok/s on average · ${info.n_layers} layers, vocabulary ${info.vocab_size}, ${info.format}`;
  for (const url of downloads.splice(0)) URL.revokeObjectURL(url);
  const list = $('downloads');
  list.replaceChildren();
  const link = (name, blob) => {
    const url = URL.createObjectURL(blob);
    downloads.push(url);
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.textContent = `${name} (${fmt(blob.size)} bytes)`;
    const li = document.createElement('li');
    li.append(a);
    list.append(li);
  };
  link('wick-trained-model.zip', new Blob([zip(files.filter((f) => f.name !== 'loss.svg'))], { type: 'application/zip' }));
  for (const f of files) link(f.name, new Blob([f.bytes], { type: f.name.endsWith('.svg') ? 'image/svg+xml' : 'application/octet-stream' }));
  chat = [];
  $('output').replaceChildren();
  $('use').hidden = false;
}

// --- Using the model --------------------------------------------------------------------------
function params() {
  return { temperature: Number($('temperature').value), max_tokens: Number($('max_tokens').value), seed: 42 };
}

function startGeneration(payload, lead) {
  $('error').hidden = true;
  const id = nextId++;
  const node = document.createElement('span');
  $('output').replaceChildren(...lead, node);
  current = { id, node, chat: !!payload.messages };
  setGenerating(true);
  worker.postMessage({ type: ToTrainer.GENERATE, id, params: params(), ...payload });
}

$('complete').addEventListener('click', () => {
  const prompt = $('prompt').value;
  chat = [];
  startGeneration({ prompt }, [document.createTextNode(prompt)]);
});

$('chat').addEventListener('click', () => {
  const question = $('prompt').value;
  chat.push({ role: 'user', content: question });
  const you = document.createElement('div');
  you.className = 'you';
  you.textContent = question;
  startGeneration({ messages: chat.slice() }, [you]);
});

worker.onmessage = ({ data }) => {
  switch (data.type) {
    case FromTrainer.STARTED:
      $('status').textContent = `Tokenizer ready in ${data.setupSeconds.toFixed(2)} s: ${fmt(data.info.corpus_tokens)} tokens, ` +
        `vocabulary ${data.info.vocab_size}; model of ${fmt(data.info.parameters)} parameters. Training…`;
      break;
    case FromTrainer.STEP:
      onStep(data);
      break;
    case FromTrainer.TRAINED:
      onTrained(data);
      break;
    case FromTrainer.TOKEN:
      if (current?.id === data.id) current.node.append(data.text);
      break;
    case FromTrainer.DONE:
      if (current?.id === data.id) {
        current.node.append(data.text);
        if (current.chat) chat.push({ role: 'assistant', content: current.node.textContent });
        current = null;
        setGenerating(false);
        document.body.dataset.generated = String(nextId - 1);
      }
      break;
    case FromTrainer.ERROR:
      showError(data.message);
      if (data.id !== undefined && current?.id === data.id) {
        current = null;
        setGenerating(false);
      } else if (document.body.dataset.state === 'training') {
        setTraining(false);
        document.body.dataset.state = 'error';
      }
      break;
    default:
      break;
  }
};
worker.onerror = (e) => showError(`The worker failed: ${e.message}`);
