// Types of Wick's public API (www/wick.js). Hand-written; the response types follow OpenAI's
// published schemas (ChatCompletion, ChatCompletionChunk, Completion, the error body), with
// Wick's additions marked as such.

/** What kind of failure a WickError is. */
export type WickErrorCode =
  | 'model_format'
  | 'unsupported'
  | 'invalid_request'
  | 'context_length_exceeded'
  | 'model_not_found'
  | 'aborted'
  | 'out_of_memory'
  | 'network'
  | 'quota'
  | 'engine_crashed'
  | 'internal';

/** An error from Wick, with a stable code and a message a person can act on. */
export declare class WickError extends Error {
  constructor(code: WickErrorCode, message: string, options?: { param?: string | null; cause?: unknown });
  readonly name: 'WickError';
  readonly code: WickErrorCode;
  /** The request field at fault, if one is. */
  readonly param: string | null;
  /** The HTTP status `engine.fetch` answers this error with. */
  readonly status: number;
  toJSON(): { code: WickErrorCode; message: string; param: string | null };
  static from(e: unknown): WickError;
}

/** Loading progress: bytes of all the model's files together (`total` grows as sizes become known). */
export interface LoadProgress {
  loaded: number;
  total: number;
  /** The file being read (its URL, or the model's id while the engine is built). */
  file: string;
  /** Downloading, reading from the browser's cache, or building the engine. */
  phase: 'download' | 'cache' | 'init';
}

export interface LoadOptions {
  /** Threads for the engine (Web Workers). More than 1 needs a cross-origin-isolated page (COOP/COEP); default: one per core. */
  threads?: number;
  /** 'relaxed' (default) uses relaxed SIMD where the browser validates it; 'simd128' never does. */
  simd?: 'relaxed' | 'simd128';
  /** Most tokens a conversation may hold (prompt and reply); default 4096, at most the model's. Bounds the KV cache's memory; a model whose weights and KV cache cannot fit in wasm memory is refused before it downloads (`out_of_memory`). */
  contextLength?: number;
  /** Called as files download or are read from the cache, then while the engine is built. */
  onProgress?: (progress: LoadProgress) => void;
  /** Called when the model could not be kept in the browser's storage (code 'quota' when it is full), or a kept copy of a file was damaged and is downloaded again; the model still runs. */
  onCacheError?: (error: WickError) => void;
  /**
   * Called when the engine's worker crashed (a wasm trap, out of memory) or stopped answering:
   * 'crashed' as the requests in flight fail and a fresh worker starts loading the model again,
   * then 'restarted' (the next requests run on it; they waited meanwhile), or 'failed' when it
   * could not be loaded again or crashed again before any request succeeded (the engine is then
   * stopped).
   */
  onRestart?: (event: RestartEvent) => void;
  /** Seconds a busy engine may leave a ping unanswered before it counts as crashed; default 60, 0: no watchdog. */
  watchdogSeconds?: number;
  /** Aborting cancels the download (nothing half-downloaded is kept) and rejects with WickError('aborted'). */
  signal?: AbortSignal;
  /** Where hub repo ids are looked up; default 'https://huggingface.co'. */
  hubUrl?: string;
  /** The hub revision (branch, tag or commit); default 'main'. */
  revision?: string;
  /** Quantize a float model's weights at load: 'q4' or 'q8' (default null: keep them). */
  quantize?: 'q4' | 'q8' | null;
  /**
   * Keep the KV cache across reloads (default false): after each chat reply the conversation's
   * KV cache is snapshotted to OPFS (`Wick.kvCache`), and a later chat request whose prompt
   * starts with a kept snapshot's tokens restores it and prefills only the rest.
   */
  kvCache?: boolean;
  /** Called when a KV snapshot was written (with `kvCache: true`): after a reply, or of a warmed start. */
  onKvSaved?: (saved: { tokens: number; bytes: number }) => void;
}

/** A crash of the engine's worker and what became of it (`LoadOptions.onRestart`). */
export interface RestartEvent {
  phase: 'crashed' | 'restarted' | 'failed';
  /** The crash ('engine_crashed' or 'out_of_memory'); for 'failed', why the engine stopped. */
  error: WickError;
  /** For 'restarted': the engine as loaded again. */
  info?: EngineInfo;
}

/** What an engine runs and how. */
export interface EngineInfo {
  /** The model's id: the hub repo id, or the last part of its URL, or the GGUF file's name. `model` in requests must be this (or left out). */
  id: string;
  name: string;
  architecture: string;
  /** 'GGUF', 'safetensors, MLX 4-bit', 'safetensors, float'… */
  format: string;
  /** A GGUF's file type as llama.cpp names it ('Q4_K_M', 'Q4_1'…); for safetensors the format's quantization ('MLX 4-bit', 'float'…). */
  quantization: string;
  /** Whether the model has a chat template; without one it is a base model, meant for `completions`. */
  chat_template: boolean;
  vocab_size: number;
  hidden_size: number;
  n_layers: number;
  n_heads: number;
  n_kv_heads: number;
  /** Tokens a conversation may hold: the contextLength asked for, else 4096, at most the model's. */
  context_length: number;
  /** Tokens the model was made for. */
  model_context_length: number;
  /** Where the weights came from. */
  source: 'network' | 'cache' | 'file';
  /** Size of the model's files. */
  bytes: number;
  loadSeconds: number;
  /** The wasm build running: SIMD flavour and thread count. */
  build: { simd: 'relaxed-simd' | 'simd128'; threads: number };
  /** Size of the engine's wasm memory after the last request. */
  memoryBytes: number;
  /** Whether every file was checked against the model's manifest (sizes and sha256). */
  verified: boolean;
  /** Times the engine's worker crashed and was started again with the model. */
  restarts: number;
}

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant';
  content: string | Array<{ type: 'text'; text: string }> | null;
  /** An assistant message read back from a ChatCompletion may carry these, empty. */
  refusal?: null;
  annotations?: [];
}

/** Fields both endpoints take. Absent sampling fields take Wick's defaults (shown). */
interface SamplingFields {
  /** Must be the engine's `info.id`, or absent. */
  model?: string;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean; include_obfuscation?: false } | null;
  max_tokens?: number | null;
  /** 0.7; 0 is greedy. */
  temperature?: number | null;
  /** 0.9. */
  top_p?: number | null;
  /** Random when absent. Choice i of `n` uses seed + i. */
  seed?: number | null;
  /** Up to 4 strings; the reply ends before the first one met, which is not shown. */
  stop?: string | string[] | null;
  /** −2…2, over the tokens of the reply so far. */
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  /** Token id → −100…100, added to its logit. */
  logit_bias?: Record<string, number> | null;
  /** Choices, run one after another (the prompt is prefilled once). */
  n?: number | null;
  /** Has no effect (OpenAI uses it to monitor abuse). */
  user?: string;
  /** Aborting ends the request with WickError('aborted'). (Wick; not over HTTP.) */
  signal?: AbortSignal;
  /** Wick: keep the k most likely tokens (40; 0 = all). */
  top_k?: number;
  /** Wick: drop tokens less likely than min_p × the most likely one's (0 = off), before temperature. */
  min_p?: number;
  /** Wick: divide recent tokens' logits by this (1 = off). */
  repetition_penalty?: number;
  /** Wick: generate through end-of-turn tokens (benchmarks). */
  ignore_eos?: boolean;
  /** Wick: false forgets the KV cache first, so the whole prompt runs again (benchmarks); default true. */
  cache_prompt?: boolean;
  /** Wick: beam search of this width (1…64) instead of sampling: the reply with the highest total
   * log-probability among those the beams kept; temperature, top_p/top_k/min_p and seed do not
   * apply. Not with n > 1, stream, logprobs, penalties or logit_bias. */
  beams?: number;
  /** Wick: with beams, rank replies by total log-probability / length^length_penalty (0 = off). */
  length_penalty?: number;
}

/** What a chat reply must be. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name: string; schema?: Record<string, unknown>; strict?: boolean | null; description?: string } };

export interface ChatCompletionCreateParams extends SamplingFields {
  messages: ChatMessage[];
  /** Default: until the context is full or the model ends its turn. */
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  /** 0…20 alternatives per token (needs logprobs). */
  top_logprobs?: number | null;
  /**
   * `json_object`: the reply is a JSON object; `json_schema`: JSON valid under `schema` (always
   * enforced, strict or not). A schema the engine cannot follow is a WickError before any token.
   */
  response_format?: ResponseFormat | null;
  modalities?: ['text'] | null;
  store?: false | null;
  service_tier?: 'auto' | 'default' | null;
}

export interface CompletionCreateParams extends SamplingFields {
  prompt: string | string[];
  /** Default 16, as in OpenAI's API. */
  max_tokens?: number | null;
  /** 0…5 alternatives per token. */
  logprobs?: number | null;
  /** Put the prompt before the completion in `text`. */
  echo?: boolean | null;
}

export interface TopLogprob {
  token: string;
  bytes: number[] | null;
  logprob: number;
}

export interface ChatCompletionTokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** `cached_tokens`: prompt tokens the KV cache held already (not run again). */
  prompt_tokens_details: { cached_tokens: number; audio_tokens: number };
  completion_tokens_details: {
    reasoning_tokens: number;
    audio_tokens: number;
    accepted_prediction_tokens: number;
    rejected_prediction_tokens: number;
  };
}

/** Wick: llama.cpp-style figures of a request (prompt tokens run and tokens generated, with their times). */
export interface Timings {
  prompt_n: number;
  prompt_ms: number;
  prompt_per_second: number;
  predicted_n: number;
  predicted_ms: number;
  predicted_per_second: number;
  first_token_ms: number;
}

export type FinishReason = 'stop' | 'length';

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string; refusal: null; annotations: [] };
    logprobs: { content: ChatCompletionTokenLogprob[]; refusal: null } | null;
    finish_reason: FinishReason;
  }>;
  usage: CompletionUsage;
  timings: Timings;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  system_fingerprint: string;
  /** Empty in the last chunk of a stream that asked for usage. */
  choices: Array<{
    index: number;
    /** `role` comes first (with content ''), then `content` pieces, then an empty delta with the finish_reason. */
    delta: { role?: 'assistant'; content?: string };
    logprobs: { content: ChatCompletionTokenLogprob[]; refusal: null } | null;
    finish_reason: FinishReason | null;
  }>;
  /** With stream_options.include_usage: null in every chunk but the last, which carries it. */
  usage?: CompletionUsage | null;
  /** Wick: in the usage chunk. */
  timings?: Timings;
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{ text: string; index: number; logprobs: CompletionLogprobs | null; finish_reason: FinishReason }>;
  usage: CompletionUsage;
  timings: Timings;
}

/** A streamed piece of a Completion: finish_reason is null until a choice ends. */
export interface CompletionChunk {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  system_fingerprint: string;
  /** Empty in the last chunk of a stream that asked for usage. */
  choices: Array<{ text: string; index: number; logprobs: CompletionLogprobs | null; finish_reason: FinishReason | null }>;
  /** With stream_options.include_usage: null in every chunk but the last, which carries it. */
  usage?: CompletionUsage | null;
  /** Wick: in the usage chunk. */
  timings?: Timings;
}

/** OpenAI's error body, as `engine.fetch` answers it. */
export interface ErrorBody {
  error: { message: string; type: 'invalid_request_error' | 'server_error'; param: string | null; code: WickErrorCode | 'unknown_url' };
}

export interface RequestOptions {
  signal?: AbortSignal;
}

/** A loaded model in its own Web Worker. Requests run one after another. */
export interface WickEngine {
  readonly info: Readonly<EngineInfo>;
  readonly chat: {
    readonly completions: {
      create(body: ChatCompletionCreateParams & { stream?: false | null }, options?: RequestOptions): Promise<ChatCompletion>;
      create(body: ChatCompletionCreateParams & { stream: true }, options?: RequestOptions): Promise<AsyncIterable<ChatCompletionChunk>>;
    };
  };
  readonly completions: {
    create(body: CompletionCreateParams & { stream?: false | null }, options?: RequestOptions): Promise<Completion>;
    create(body: CompletionCreateParams & { stream: true }, options?: RequestOptions): Promise<AsyncIterable<CompletionChunk>>;
  };
  /**
   * A `fetch` serving OpenAI's HTTP API: POST …/chat/completions and …/completions (JSON, or
   * server-sent events ending in `data: [DONE]`), GET …/models and …/models/{id}; errors are
   * OpenAI's error body with status 400/404/500.
   */
  readonly fetch: (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;
  /** Token ids of text read as a raw prompt. */
  tokenize(text: string): Promise<number[]>;
  /** Text of token ids, control tokens written out. */
  detokenize(ids: number[]): Promise<string>;
  /**
   * What the engine's stage timers counted since the last call, per phase, then turns them on
   * or off (a benchmark aid, like `wick bench --profile`).
   */
  profile(on: boolean): Promise<{ prefill: PhaseProfile; decode: PhaseProfile }>;
  /**
   * Runs the start of a conversation into the KV cache ahead of the next request; with the load
   * option `kvCache`, from its kept snapshot when a visit before warmed it (`restored_tokens`).
   */
  warm(messages: ChatMessage[]): Promise<{ cached_tokens: number; restored_tokens: number }>;
  /**
   * A snapshot of the KV cache (model id, tokens, keys and values, checksum); with `messages` (a
   * finished conversation, the reply last) of what that conversation agrees with.
   */
  saveKv(messages?: ChatMessage[]): Promise<Uint8Array>;
  /**
   * Restores a `saveKv` snapshot before a reply to `messages` (it then prefills only the rest);
   * fails with 'invalid_request', the cache left as it was, for another model's snapshot, one
   * whose tokens do not start the prompt, or a corrupt or truncated one.
   */
  restoreKv(bytes: Uint8Array, messages: ChatMessage[]): Promise<{ cached_tokens: number }>;
  /** Stops every running and waiting request (each fails with WickError('aborted')). */
  interrupt(): void;
  /** Frees the engine's worker and memory. */
  unload(): Promise<void>;
}

export interface CachedFile {
  /** The file's URL after redirects (the key it is kept under). */
  url: string;
  bytes: number;
  /** When it was kept, ms since 1970 (null if unknown). */
  cachedAt: number | null;
  /** The sha256 (hex) measured as it was downloaded (null if unknown). */
  sha256: string | null;
  /** Where it is kept: the origin private file system, or the Cache API (a browser without OPFS). */
  store: 'opfs' | 'cache';
}

export interface ModelCache {
  /** Every kept file, from both stores. */
  list(): Promise<CachedFile[]>;
  /** Whether the file a URL leads to (after redirects) is kept. */
  has(url: string): Promise<boolean>;
  /** Forgets that file and every URL that led to it; resolves to whether it was kept. */
  delete(url: string): Promise<boolean>;
  clear(): Promise<boolean>;
  /** navigator.storage.estimate(), plus what the kept model files take. */
  estimate(): Promise<{ usage: number; quota: number; models: number }>;
}

export interface KvSnapshot {
  /** The model's id (a fingerprint of its file). */
  model: string;
  name: string;
  /** Tokens it holds. */
  tokens: number;
  /** The sha256 of its tokens (the first 32 hex digits), as in its name. */
  hash: string;
  /** A warmed conversation start (`engine.warm`), kept when longer snapshots of it are written. */
  warm: boolean;
  bytes: number;
  /** When it was written, ms since 1970. */
  modified: number;
}

export interface KvCache {
  list(): Promise<KvSnapshot[]>;
  estimate(): Promise<{ count: number; bytes: number }>;
  clear(): Promise<void>;
}

/**
 * Loads a model into a new engine. `model`: a GGUF URL; a Hugging Face-style folder URL ending in
 * '/'; a hub repo id 'org/name' (a folder) or 'org/name/file.gguf', read from
 * `{hubUrl}/org/name/resolve/{revision}/…`; or File objects. A string is a URL when it has a
 * scheme or starts with '/', './' or '../'.
 */
export declare function load(model: string | URL | File | File[] | FileList, options?: LoadOptions): Promise<WickEngine>;
export declare const cache: ModelCache;
export declare const kvCache: KvCache;
export declare const Wick: { load: typeof load; cache: ModelCache; kvCache: KvCache; WickError: typeof WickError };
export default Wick;

/** One phase's counts from the stage timers: its forwards, their wall time, each stage's time. */
export interface PhaseProfile {
  /** Forwards run: prefill chunks, or decode steps. */
  forwards: number;
  /** Their wall time, start to finish (s). */
  seconds: number;
  /** Each stage's time (s) and calls, in the order the data meets them. */
  stages: { stage: string; seconds: number; calls: number }[];
}
