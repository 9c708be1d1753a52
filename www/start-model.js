// Which model the page starts with, and what the server offers: ?model= names one, else the
// default MLX folder, or the GGUF it is made from while a first run of scripts/dev.sh is still
// writing the folder. A returning visit to the model that loaded last starts it at once, without
// waiting for the server's list (localStorage remembers it).

// A Hugging Face folder of MLX-quantized safetensors (made from the GGUF by `wick quantize`).
const DEFAULT_MODEL = 'models/SmolLM2-135M-Instruct-MLX-4bit/';
// The GGUF it is made from: the same replies.
const DEFAULT_GGUF = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
/** Where the path of the model that loaded last is kept. */
const LOADED_KEY = 'wick-loaded-model';

/** The model `query` (the page's URL parameters) names, else the default. */
export const firstChoice = (query) => query.get('model') ?? DEFAULT_MODEL;

/** `localStorage[LOADED_KEY]`, or null where storage is refused (a private window). */
function loadedLast() {
  try {
    return localStorage.getItem(LOADED_KEY);
  } catch {
    return null;
  }
}

/** Whether `path` loaded last time: the page may start it before the server's list comes. */
export const loadedBefore = (path) => loadedLast() === path;

/** Records how loading `path` went (refused storage only costs the next visit a wait). */
export function rememberLoad(path, loaded) {
  try {
    if (loaded) localStorage.setItem(LOADED_KEY, path);
    else if (loadedLast() === path) localStorage.removeItem(LOADED_KEY);
  } catch {
    // Nothing to do: see above.
  }
}

/**
 * The model to start once the server's models are `listed`: the first choice, unless that is the
 * default folder and the server lists only its GGUF (a first run, still writing the folder).
 */
export function startingModel(query, listed) {
  const has = (path) => listed.some((m) => m.path === path);
  const choice = firstChoice(query);
  return choice === DEFAULT_MODEL && !query.has('model') && has(DEFAULT_GGUF) && !has(DEFAULT_MODEL) ? DEFAULT_GGUF : choice;
}

/**
 * The models the server holds: Wick's dev server lists its models/ folder as JSON at models/
 * (`[{ path, name, bytes }]`); a plain static host lists none.
 */
export async function serverModels() {
  try {
    const r = await fetch('models/', { headers: { Accept: 'application/json' } });
    const models = r.ok ? await r.json() : [];
    return Array.isArray(models) ? models.filter((m) => typeof m?.path === 'string') : [];
  } catch {
    return [];
  }
}
