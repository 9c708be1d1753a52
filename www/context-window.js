// Long conversations on the chat page: before each question, the oldest turns that would not fit
// in the context window beside the reply (max_tokens) are left out; the system prompt is kept.
// Messages are counted with engine.tokenize. When the window has to slide, it slides a quarter of
// the context further than needed, so that the next questions begin with the same tokens and the
// engine's KV cache reuses them (only the system prompt is reused on the turn that slides).

/** Tokens a chat template adds around one message (role markers, separators), at most. */
const PER_MESSAGE = 8;
/** Tokens a template adds once (start token, the reply's header, a default system prompt). */
const PER_PROMPT = 64;

/** Which turns of a conversation are still sent, from one question to the next. */
export class ContextWindow {
  /** @type {{ index: number, role: string, content: string } | null} the first turn still sent */
  #first = null;
  /** @type {Map<string, number>} tokens of each message text counted so far */
  #counts = new Map();

  /**
   * Leaves the oldest turns of `body.messages` out (in place) until the prompt and
   * `body.max_tokens` fit the engine's context; resolves to a sentence for the page when turns
   * were newly left out, else null.
   * @param {import('./wick.d.ts').WickEngine} engine
   * @param {{ messages: { role: string, content: string }[], max_tokens: number }} body
   */
  async fit(engine, body) {
    const context = engine.info.context_length;
    let n = 0;
    while (n < body.messages.length - 1 && ['system', 'developer'].includes(body.messages[n].role)) n += 1;
    const system = body.messages.slice(0, n);
    const turns = body.messages.slice(system.length, -1);
    const question = body.messages.at(-1);
    const f = this.#first;
    let start = f && turns[f.index]?.role === f.role && turns[f.index]?.content === f.content ? f.index : 0;
    const count = async (m) => {
      const text = typeof m.content === 'string' ? m.content : JSON.stringify(m.content);
      if (!this.#counts.has(text)) {
        if (this.#counts.size > 10_000) this.#counts.clear();
        this.#counts.set(text, (await engine.tokenize(text)).length);
      }
      return this.#counts.get(text) + PER_MESSAGE;
    };
    const fixed = PER_PROMPT + body.max_tokens + (await count(question)) + (await sum(system, count));
    const sizes = [];
    for (const m of turns) sizes.push(await count(m));
    const kept = (s) => sizes.slice(s).reduce((a, b) => a + b, 0);
    const before = start;
    if (fixed + kept(start) > context) {
      // Slide past the turns that do not fit, and a quarter of the context more.
      const target = context - Math.floor(context / 4);
      while (start < turns.length && fixed + kept(start) > target) {
        start += 1;
        while (start < turns.length && turns[start].role !== 'user') start += 1; // a whole exchange at a time
      }
    }
    this.#first = { index: start, role: (turns[start] ?? question).role, content: (turns[start] ?? question).content };
    body.messages = [...system, ...turns.slice(start), question];
    const newly = start - before;
    if (!newly) return null;
    const all = start === turns.length ? 'All' : `The ${start}`;
    return `${all} earlier message${start === 1 ? '' : 's'} no longer fit in the ${context}-token context window beside a reply of up to ${body.max_tokens} tokens, so the model no longer sees ${start === 1 ? 'it' : 'them'} (the system prompt is kept).`;
  }
}

/** The sum of `f(item)` over `items`, one after another. */
async function sum(items, f) {
  let total = 0;
  for (const item of items) total += await f(item);
  return total;
}
