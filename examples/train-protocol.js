// The messages between the training page (train.js) and its worker (train-worker.js).

/** Page → worker. */
export const ToTrainer = Object.freeze({
  /** `{ text, options }`: train a new model on `text` (options: see WickTrainer in src/web.rs). */
  TRAIN: 'train',
  /** Stop training after the current step; the model trained so far is kept. */
  STOP: 'stop',
  /** `{ id, prompt }` (a completion) or `{ id, messages }` (a chat), with `params`. */
  GENERATE: 'generate',
});

/** Worker → page. */
export const FromTrainer = Object.freeze({
  /** `{ info, setupSeconds }`: the tokenizer is trained and the model built. */
  STARTED: 'started',
  /** `{ step, steps, loss, lr, grad_norm, tokens, seconds }` of one optimizer step. */
  STEP: 'step',
  /**
   * `{ files: [{ name, bytes }], info, heldOutLoss }`: the trained folder, loaded into the
   * engine, and the loss on the text's last 5% (never trained on; null for a short text).
   */
  TRAINED: 'trained',
  /** `{ id, text }`: a piece of generated text. */
  TOKEN: 'token',
  /** `{ id, reason, text, stats }`: the generation ended. */
  DONE: 'done',
  /** `{ id?, message }`: something failed; the worker goes on. */
  ERROR: 'error',
});
