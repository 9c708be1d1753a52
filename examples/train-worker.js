// Trains a small model in this Web Worker on the single-threaded wasm build, one optimizer step
// per turn of the event loop (so a Stop lands between steps), then loads the trained folder into
// the usual engine and generates from it.
import { ToTrainer, FromTrainer } from './train-protocol.js';

let wasm = null; // the wasm module, once initialized
let trainer = null;
let engine = null;
let stopRequested = false;
let busy = false;

const post = (type, payload = {}) => self.postMessage({ type, ...payload });
const messageOf = (e) => (e && e.message) || String(e);

/** The single-threaded build (training runs Candle's own CPU ops, not Wick's thread team). */
async function wasmModule() {
  wasm ??= import('../www/pkg/wick.js').then(async (mod) => {
    await mod.default();
    return mod;
  });
  return wasm;
}

/** Resolves on the next turn of the event loop (no timer clamping), letting messages in. */
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()?.();
const nextTurn = () => new Promise((resolve) => {
  waiting.push(resolve);
  channel.port2.postMessage(null);
});

/** A trap leaves the instance unusable: forget it, so the next message starts a fresh one. */
function fail(e, id) {
  if (e instanceof WebAssembly.RuntimeError) {
    wasm = null;
    trainer = null;
    engine = null;
  }
  post(FromTrainer.ERROR, { id, message: messageOf(e) });
}

async function train({ text, options }) {
  if (busy) return post(FromTrainer.ERROR, { message: 'Training or generation is already running.' });
  busy = true;
  stopRequested = false;
  try {
    const mod = await wasmModule();
    trainer?.free();
    trainer = null;
    const t0 = performance.now();
    trainer = new mod.WickTrainer(text, JSON.stringify(options));
    post(FromTrainer.STARTED, { info: JSON.parse(trainer.info()), setupSeconds: (performance.now() - t0) / 1000 });
    while (!trainer.done() && !stopRequested) {
      await nextTurn();
      post(FromTrainer.STEP, JSON.parse(trainer.step()));
    }
    const heldOutLoss = trainer.heldOutLoss() ?? null;
    const files = trainer.files();
    const model = files.filter((f) => f.name !== 'loss.svg');
    const next = mod.WickEngine.fromFiles(model.map((f) => f.name), model.map((f) => f.bytes), null);
    engine?.free();
    engine = next;
    post(FromTrainer.TRAINED, {
      files: files.map(({ name, bytes }) => ({ name, bytes })), info: JSON.parse(engine.info()), heldOutLoss,
    });
  } catch (e) {
    fail(e);
  } finally {
    busy = false;
  }
}

async function generate({ id, prompt, messages, params }) {
  if (!engine) return post(FromTrainer.ERROR, { id, message: 'Train a model first.' });
  if (busy) return post(FromTrainer.ERROR, { id, message: 'Training or generation is already running.' });
  busy = true;
  try {
    const json = JSON.stringify(params ?? {});
    if (messages) {
      engine.startChat(JSON.stringify(messages), json);
    } else {
      engine.reset();
      engine.startRaw(prompt, json);
    }
    for (;;) {
      await nextTurn();
      const ev = JSON.parse(engine.step());
      if (ev.kind === 'token') post(FromTrainer.TOKEN, { id, text: ev.text });
      else if (ev.kind === 'done') {
        post(FromTrainer.DONE, { id, reason: ev.reason, text: ev.text, stats: JSON.parse(engine.stats()) });
        return;
      }
    }
  } catch (e) {
    fail(e, id);
  } finally {
    busy = false;
  }
}

self.onmessage = ({ data }) => {
  switch (data.type) {
    case ToTrainer.TRAIN:
      train(data);
      break;
    case ToTrainer.STOP:
      stopRequested = true;
      break;
    case ToTrainer.GENERATE:
      generate(data);
      break;
    default:
      post(FromTrainer.ERROR, { message: `unknown message ${data.type}` });
  }
};
