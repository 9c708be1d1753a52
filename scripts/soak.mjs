// Soak and cancel storm in headless Chromium (figures for the notes, not a test in CI):
//   1. 30 turns of 256 generated tokens in one conversation, slid by www/context-window.js, with
//      the engine's wasm memory after each turn: it must stay flat once the KV cache is at its cap;
//   2. 100 Stops at random points of a streamed reply, each followed by a question whose reply
//      must be right.
//   node scripts/soak.mjs [--turns 30] [--stops 100] [--context 1024] [--threads N]
import { openBrowser } from '../tests/e2e/browser.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const TURNS = arg('--turns', 30);
const STOPS = arg('--stops', 100);
const CONTEXT = arg('--context', 1024);
const THREADS = arg('--threads', 1);
const MODEL = '/models/SmolLM2-135M-Instruct-MLX-4bit/';

const browser = await openBrowser({ alsoServe: ['tests/e2e/pages'] });
try {
  const page = await browser.context.newPage();
  page.on('console', (m) => m.type() === 'error' && console.error(`page: ${m.text()}`));
  page.on('crash', () => console.error('the page crashed'));
  // Each turn as it ends, so a run cut short still shows its figures.
  await page.exposeFunction('report', (line) => console.error(line));
  await page.goto(`${browser.base}tests/e2e/pages/api.html`);
  const r = await page.evaluate(async ({ model, turns, stops, context, threads }) => {
    const { Wick } = await import('/www/wick.js');
    const { ContextWindow } = await import('/www/context-window.js');
    const engine = await Wick.load(model, { threads, contextLength: context });
    const system = { role: 'system', content: 'You are a helpful AI assistant.' };
    const topics = ['the sea', 'mountains', 'bread', 'trains', 'the moon', 'gardens', 'music', 'rain', 'cities', 'bees'];
    const window_ = new ContextWindow();
    const conversation = [];
    const soak = [];
    for (let t = 0; t < turns; t++) {
      const question = { role: 'user', content: `Write a long story about ${topics[t % topics.length]}.` };
      const body = { messages: [system, ...conversation, question], max_tokens: 256, temperature: 0.7, seed: t, ignore_eos: true };
      const slid = await window_.fit(engine, body);
      const t0 = performance.now();
      const reply = await engine.chat.completions.create(body);
      conversation.push(question, { role: 'assistant', content: reply.choices[0].message.content });
      soak.push({
        turn: t + 1, sent: body.messages.length, slid: Boolean(slid), prompt: reply.usage.prompt_tokens,
        cached: reply.usage.prompt_tokens_details.cached_tokens, generated: reply.usage.completion_tokens,
        seconds: (performance.now() - t0) / 1000, memory: engine.info.memoryBytes,
      });
      await window.report(JSON.stringify(soak.at(-1)));
    }
    const storm = { stops: 0, correct: 0, wrong: [], delays: [], tokensBeforeStop: [], seconds: 0 };
    const t0 = performance.now();
    const france = [system, { role: 'user', content: 'What is the capital of France?' }];
    for (let i = 0; i < stops; i++) {
      const controller = new AbortController();
      const delay = Math.random() * 400;
      storm.delays.push(delay);
      let tokens = 0;
      const timer = setTimeout(() => controller.abort(), delay);
      try {
        const stream = await engine.chat.completions.create({ messages: [system, { role: 'user', content: `Tell me about ${topics[i % topics.length]}.` }], max_tokens: 200, ignore_eos: true, stream: true, signal: controller.signal });
        for await (const chunk of stream) if (chunk.choices[0]?.delta.content) tokens += 1;
      } catch (e) {
        if (e.code !== 'aborted') throw e;
        storm.stops += 1;
      }
      clearTimeout(timer);
      storm.tokensBeforeStop.push(tokens);
      const answer = (await engine.chat.completions.create({ messages: france, temperature: 0, max_tokens: 16 })).choices[0].message.content;
      if (/Paris/.test(answer)) storm.correct += 1;
      else storm.wrong.push(answer);
      if (i % 10 === 9) await window.report(`stops ${i + 1}: ${storm.stops} stopped, ${storm.correct} correct`);
    }
    storm.seconds = (performance.now() - t0) / 1000;
    const info = engine.info;
    await engine.unload();
    return { soak, storm, build: info.build, context: info.context_length };
  }, { model: MODEL, turns: TURNS, stops: STOPS, context: CONTEXT, threads: THREADS });

  const mb = (n) => (n / 2 ** 20).toFixed(1);
  console.log(`Soak: ${TURNS} turns of 256 tokens, context ${r.context}, wasm ${r.build.simd} ${r.build.threads} thread(s)`);
  console.log('| turn | messages sent | slid | prompt | cached | generated | s | wasm memory MiB |');
  console.log('|---:|---:|:---:|---:|---:|---:|---:|---:|');
  for (const s of r.soak) console.log(`| ${s.turn} | ${s.sent} | ${s.slid ? 'yes' : ''} | ${s.prompt} | ${s.cached} | ${s.generated} | ${s.seconds.toFixed(1)} | ${mb(s.memory)} |`);
  // The KV cache is at its cap after the first turn that held the most tokens.
  const peak = Math.max(...r.soak.map((s) => s.prompt + s.generated));
  const tail = r.soak.slice(r.soak.findIndex((s) => s.prompt + s.generated === peak) + 1);
  const grew = tail.at(-1).memory - tail[0].memory;
  console.log(`wasm memory from turn ${tail[0].turn} to ${tail.at(-1).turn}: ${mb(tail[0].memory)} → ${mb(tail.at(-1).memory)} MiB (${grew === 0 ? 'flat' : `${mb(grew)} MiB more`})`);
  const t = r.storm.tokensBeforeStop.slice().sort((a, b) => a - b);
  console.log(`Cancel storm: ${r.storm.stops} of ${STOPS} requests stopped (random delays 0–400 ms; tokens streamed before the stop: median ${t[t.length >> 1]}, max ${t.at(-1)}), ${r.storm.correct} of ${STOPS} following replies correct, ${r.storm.seconds.toFixed(0)} s in all`);
  if (r.storm.wrong.length) console.log(`wrong replies: ${JSON.stringify(r.storm.wrong.slice(0, 5))}`);
  process.exitCode = r.storm.correct === STOPS && grew === 0 ? 0 : 1;
} finally {
  await browser.close();
}
