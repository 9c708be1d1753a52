// Compiled (never run) by tests/e2e/types.test.mjs: www/wick.d.ts types a web developer's use
// of the API, Wick's responses are OpenAI's types as the official `openai` package declares
// them, and engine.fetch is the fetch the client takes. A line marked @ts-expect-error must fail.
import OpenAI from 'openai';
import Wick, { WickError, load, cache, type WickEngine, type LoadProgress } from '../../www/wick.js';

export async function use(file: File): Promise<string> {
  const progress: LoadProgress[] = [];
  const engine: WickEngine = await Wick.load('HuggingFaceTB/SmolLM2-135M-Instruct', {
    threads: 2, contextLength: 2048, onProgress: (p) => progress.push(p), signal: new AbortController().signal,
    hubUrl: 'https://huggingface.co', revision: 'main', onCacheError: (e) => console.warn(e.code),
  });
  const restarts: string[] = [];
  const local = await load([file], {
    simd: 'simd128', quantize: 'q8', watchdogSeconds: 30,
    onRestart: (e) => restarts.push(`${e.phase} ${e.error.code} ${e.info?.restarts ?? 0} ${e.info?.verified ?? false}`),
  });
  // @ts-expect-error the watchdog takes seconds as a number
  await load([file], { watchdogSeconds: '30' });
  const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Hi' }];

  const reply: OpenAI.ChatCompletion = await engine.chat.completions.create({
    messages, temperature: 0, top_p: 0.9, top_k: 40, min_p: 0.05, repetition_penalty: 1.1, seed: 1, stop: ['\n'],
    frequency_penalty: 0.5, presence_penalty: 0.5, logprobs: true, top_logprobs: 2, n: 2, max_tokens: 64, logit_bias: { 42: -100 },
  });
  const logprob: OpenAI.ChatCompletionTokenLogprob | undefined = reply.choices[0].logprobs?.content?.[0];
  let text = reply.choices[0].message.content ?? '';
  for await (const chunk of await engine.chat.completions.create({ messages, stream: true, stream_options: { include_usage: true } })) {
    const typed: OpenAI.ChatCompletionChunk = chunk;
    text += typed.choices[0]?.delta.content ?? '';
    const cached: number | undefined = chunk.usage?.prompt_tokens_details.cached_tokens;
    void cached;
  }
  const completion: OpenAI.Completion = await local.completions.create({ prompt: 'Once', max_tokens: 8, logprobs: 2, echo: false });
  for await (const chunk of await local.completions.create({ prompt: ['a', 'b'], stream: true })) text += chunk.choices[0]?.text ?? '';

  const client = new OpenAI({ apiKey: 'none', baseURL: 'http://localhost/v1', fetch: engine.fetch, dangerouslyAllowBrowser: true });
  const viaClient = await client.chat.completions.create({ model: engine.info.id, messages });
  const ids: number[] = await engine.tokenize(text);
  const back: string = await engine.detokenize(ids);
  const warmed: number = (await engine.warm(messages)).cached_tokens;
  engine.interrupt();
  await engine.unload();
  const kept: { url: string; bytes: number; cachedAt: number | null; sha256: string | null; store: 'opfs' | 'cache' }[] = await cache.list();
  const freed: boolean = await Wick.cache.delete(kept[0].url);
  const { usage, quota } = await cache.estimate();
  try {
    await engine.chat.completions.create({ messages });
  } catch (e) {
    if (e instanceof WickError && (e.code === 'aborted' || e.code === 'quota')) return e.message;
  }
  // @ts-expect-error tools are not among Wick's fields
  await engine.chat.completions.create({ messages, tools: [] });
  // @ts-expect-error a WickError's code is one of the documented ones
  const bad: WickError['code'] = 'teapot';
  return [logprob?.token, completion.id, viaClient.id, back, warmed, freed, usage, quota, bad, progress.length].join();
}
