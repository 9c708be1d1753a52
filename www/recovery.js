// What the chat page shows when its engine crashes. wick.js does the recovery itself: the
// requests in flight fail, a fresh worker (a new wasm instance) loads the model again, and the
// next question runs on it; the conversation stays on the page and is sent again in full.

/**
 * `LoadOptions.onRestart` for the chat page: the status line and the error banner say what
 * happened; the loader (which shows the model being read again) hides once it is back.
 * @param {{ error: HTMLElement, status: HTMLElement, loader: HTMLElement }} ui
 * @param {import('./wick.d.ts').RestartEvent} event
 * @param {() => void} dropEngine called when the engine could not be restarted
 */
export function showRestart(ui, { phase, error, info }, dropEngine) {
  const banner = (text) => {
    ui.error.textContent = text;
    ui.error.hidden = false;
  };
  if (phase === 'crashed') {
    ui.status.textContent = `The engine crashed (${error.code}); restarting it in a fresh worker and loading the model again…`;
  } else if (phase === 'restarted') {
    ui.loader.classList.add('done');
    banner(`${error.message} The engine was restarted and the model loaded again (${info.loadSeconds.toFixed(1)} s); the conversation is kept — send your message again.`);
    ui.status.textContent = `Restarted after a crash (${error.code}); ready.`;
  } else {
    ui.loader.classList.add('done');
    banner(error.message);
    dropEngine();
  }
}
