//! The JavaScript boundary (wasm-bindgen): the only file that knows about JS.
//!
//! Results cross as JSON strings (the worker parses them); every error becomes a JS `Error`
//! whose message is the Rust error's text and whose `code` says what kind of failure it is
//! (`www/wick.js` turns it into a `WickError` with that code).

use candle_core::Device;
use wasm_bindgen::prelude::*;

use crate::chat::Message;
use crate::error::Error;
use crate::sample::SamplingParams;
use crate::session::Engine;
use crate::train::{TrainOptions, Trainer};
use crate::weights::folder::{self, ModelFolder};
use crate::weights::safetensors::Bytes;

/// A file JavaScript fetched, left in JS memory: the loader copies one tensor at a time into
/// wasm, so wasm memory never holds the whole file beside the weights made from it.
struct JsBytes(js_sys::Uint8Array);

impl Bytes for JsBytes {
    fn len(&self) -> usize {
        self.0.length() as usize
    }
    fn read(&self, range: std::ops::Range<usize>) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Owned(
            self.0
                .subarray(range.start as u32, range.end as u32)
                .to_vec(),
        )
    }
}

/// `initThreadPool(n)`: starts `n` Web Workers for rayon (the threaded build only).
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// The files JavaScript passed (`names[i]` names the `Uint8Array` `files[i]`), left in JS memory.
fn js_files(names: Vec<String>, files: &js_sys::Array) -> Result<Vec<(String, JsBytes)>, JsValue> {
    if files.length() as usize != names.len() {
        return Err(coded("one name per file is needed", "invalid_request"));
    }
    // Each is taken as it is: `new Uint8Array(array)` would copy it (100 MB of weights, 60 ms).
    names
        .into_iter()
        .zip(files.iter())
        .map(|(n, f)| match f.dyn_into::<js_sys::Uint8Array>() {
            Ok(bytes) => Ok((n, JsBytes(bytes))),
            Err(_) => Err(coded(
                &format!("{n} is not a Uint8Array"),
                "invalid_request",
            )),
        })
        .collect()
}

/// [`js_files`] as the loader's sources.
fn sources(files: &[(String, JsBytes)]) -> Vec<(String, &dyn Bytes)> {
    files
        .iter()
        .map(|(n, b)| (n.clone(), b as &dyn Bytes))
        .collect()
}

/// A JS `Error` with `message` and a `code` property.
fn coded(message: &str, code: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&error, &"code".into(), &code.into());
    error.into()
}

/// An error met while loading a model: the files are wrong, or ask for what Wick lacks.
fn load_error(e: Error) -> JsValue {
    let code = match e {
        Error::UnsupportedArchitecture(_) | Error::UnsupportedQuantization { .. } => "unsupported",
        Error::Tokenizer(ref m) if m.contains("not supported") => "unsupported",
        _ => "model_format",
    };
    coded(&e.to_string(), code)
}

/// An error met while serving a request: the request is at fault, unless the computation failed.
fn request_error(e: Error) -> JsValue {
    let code = match e {
        Error::ContextOverflow { .. } => "context_length_exceeded",
        Error::Candle(_) | Error::Io { .. } => "internal",
        _ => "invalid_request",
    };
    coded(&e.to_string(), code)
}

/// A request that does not parse (the JSON the worker builds from the page's request).
fn bad_json(e: serde_json::Error) -> JsValue {
    coded(&format!("invalid request: {e}"), "invalid_request")
}

fn to_json(v: &impl serde::Serialize) -> Result<String, JsValue> {
    serde_json::to_string(v).map_err(|e| coded(&e.to_string(), "internal"))
}

/// Installs the panic hook so a Rust panic shows its message in the console.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The most tokens [`WickEngine::warm_chat`] runs: a fraction of a second, so a question sent
/// meanwhile hardly waits.
const WARM_MAX_TOKENS: usize = 128;

/// `folderFiles()`: what a fetcher asks for in a model folder, as JSON
/// `{"files": [{"name", "required"}…], "weights": "model.safetensors", "index": "…index.json"}`:
/// the files in order, then the weights, or when there are none the index and the shards that
/// [`index_shards`] lists.
#[wasm_bindgen(js_name = folderFiles)]
pub fn folder_files() -> Result<String, JsValue> {
    to_json(&serde_json::json!({
        "files": folder::FILES,
        "weights": folder::WEIGHTS,
        "index": folder::INDEX,
    }))
}

/// `indexShards(bytes)`: the shard files a `model.safetensors.index.json` lists, sorted, each once.
#[wasm_bindgen(js_name = indexShards)]
pub fn index_shards(index: &[u8]) -> Result<Vec<String>, JsValue> {
    folder::index_shards(index).map_err(load_error)
}

/// A loaded model with its conversation, driven one step at a time from JavaScript.
#[wasm_bindgen]
pub struct WickEngine {
    engine: Engine,
    /// What was loaded, in words ("GGUF", "safetensors, MLX 4-bit" …).
    format: String,
}

#[wasm_bindgen]
impl WickEngine {
    /// Loads a GGUF model from its bytes, which become the storage of the weights (one copy).
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: Vec<u8>) -> Result<WickEngine, JsValue> {
        let engine = Engine::from_gguf_vec(bytes, &Device::Cpu).map_err(load_error)?;
        let format = "GGUF".to_string();
        Ok(Self { engine, format })
    }

    /// Loads a Hugging Face model folder from its files (`names[i]` is the name of the
    /// `Uint8Array` `files[i]`): config.json, tokenizer files and safetensors, float or
    /// MLX-quantized. `quantize` ("q4" or "q8") quantizes float weights at load. In the threaded
    /// build the tokenizer is parsed on a pool thread while the model is built.
    #[wasm_bindgen(js_name = fromFiles)]
    pub fn from_files(
        names: Vec<String>,
        files: js_sys::Array,
        quantize: Option<String>,
    ) -> Result<WickEngine, JsValue> {
        let quantize = match quantize.as_deref() {
            None | Some("") | Some("none") => None,
            Some("q4") => Some((4, 32)),
            Some("q8") => Some((8, 32)),
            Some(other) => {
                let message = format!("unknown quantization \"{other}\" (q4, q8 or none)");
                return Err(coded(&message, "invalid_request"));
            }
        };
        let files = js_files(names, &files)?;
        let sources = sources(&files);
        let folder = ModelFolder::new(&sources);
        let engine = Engine::from_folder(&folder, &Device::Cpu, quantize).map_err(load_error)?;
        let bits = folder.mlx_bits();
        let format = match (bits, quantize) {
            (Some(b), _) => format!("safetensors, MLX {b}-bit"),
            (None, Some((b, _))) => format!("safetensors, float → {b}-bit at load"),
            (None, None) => "safetensors, float".to_string(),
        };
        Ok(Self { engine, format })
    }

    /// The model's configuration as JSON (`context_length`: what a conversation may hold;
    /// `model_context_length`: what the model was trained for; `chat_template`: whether the
    /// model has one, else it is a base model that only continues text).
    pub fn info(&self) -> Result<String, JsValue> {
        let c = self.engine.config();
        to_json(&serde_json::json!({
            "architecture": c.architecture,
            "format": self.format,
            "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size,
            "n_layers": c.n_layers,
            "n_heads": c.n_heads,
            "n_kv_heads": c.n_kv_heads,
            "context_length": self.engine.context_length(),
            "model_context_length": c.context_length,
            "chat_template": self.engine.has_chat_template(),
        }))
    }

    /// Starts a reply to `messages` (JSON `[{role, content}]`) with `params` (JSON, fields optional).
    #[wasm_bindgen(js_name = startChat)]
    pub fn start_chat(&mut self, messages: &str, params: &str) -> Result<(), JsValue> {
        let messages: Vec<Message> = serde_json::from_str(messages).map_err(bad_json)?;
        let params: SamplingParams = serde_json::from_str(params).map_err(bad_json)?;
        self.engine
            .start_chat(&messages, params)
            .map_err(request_error)
    }

    /// Runs the start of a conversation (`messages` as JSON, the system prompt say) into the
    /// cache while the user types, up to one prefill chunk; returns the tokens cached.
    #[wasm_bindgen(js_name = warmChat)]
    pub fn warm_chat(&mut self, messages: &str) -> Result<usize, JsValue> {
        let messages: Vec<Message> = serde_json::from_str(messages).map_err(bad_json)?;
        self.engine
            .warm_chat(&messages, WARM_MAX_TOKENS)
            .map_err(request_error)
    }

    /// Starts a continuation of a raw prompt.
    #[wasm_bindgen(js_name = startRaw)]
    pub fn start_raw(&mut self, prompt: &str, params: &str) -> Result<(), JsValue> {
        let params: SamplingParams = serde_json::from_str(params).map_err(bad_json)?;
        self.engine.start(prompt, params).map_err(request_error)
    }

    /// Advances the reply by one step; returns the event as JSON
    /// (`{"kind":"prefill"|"token"|"done", …}`).
    pub fn step(&mut self) -> Result<String, JsValue> {
        let event = self.engine.step().map_err(request_error)?;
        to_json(&event)
    }

    /// Stops the reply in progress; returns its final event as JSON, or `null` if none was running.
    pub fn cancel(&mut self) -> Result<String, JsValue> {
        to_json(&self.engine.cancel())
    }

    /// Counters of the current or last reply as JSON.
    pub fn stats(&self) -> Result<String, JsValue> {
        to_json(self.engine.stats())
    }

    /// The token ids of `text` as the engine reads a raw prompt (special tokens written in it
    /// count, and the model's start token comes first if it adds one).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        self.engine.tokenizer().encode(text).map_err(request_error)
    }

    /// The text of token ids, control tokens written out (the inverse of [`Self::tokenize`]).
    pub fn detokenize(&self, ids: Vec<u32>) -> Result<String, JsValue> {
        self.engine
            .tokenizer()
            .decode_all(&ids)
            .map_err(request_error)
    }

    /// Limits a conversation (prompt and reply) to `n` tokens, which also bounds the KV cache's
    /// memory; returns the limit set (at most the model's context length).
    #[wasm_bindgen(js_name = setContextLength)]
    pub fn set_context_length(&mut self, n: usize) -> usize {
        self.engine.set_context_length(n)
    }

    /// Last-position logits of a raw prompt, run from an empty cache (parity checks, debugging).
    #[wasm_bindgen(js_name = promptLogits)]
    pub fn prompt_logits(&mut self, prompt: &str) -> Result<Vec<f32>, JsValue> {
        let ids = self
            .engine
            .tokenizer()
            .encode(prompt)
            .map_err(request_error)?;
        self.engine.reset();
        let logits = self
            .engine
            .model_mut()
            .forward(&ids)
            .map_err(request_error)?;
        let logits = logits.to_vec1::<f32>().map_err(|e| request_error(e.into()));
        self.engine.reset();
        logits
    }

    /// The model's identity, which its KV snapshots carry, as 64 hex digits: a fingerprint of
    /// the file it was loaded from (its header and samples of every tensor).
    #[wasm_bindgen(js_name = modelId)]
    pub fn model_id(&mut self) -> Result<String, JsValue> {
        let id = self.engine.model_id().map_err(request_error)?;
        Ok(id.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The prompt tokens a reply to `messages` (JSON `[{role, content}]`) runs.
    #[wasm_bindgen(js_name = chatTokens)]
    pub fn chat_tokens(&self, messages: &str) -> Result<Vec<u32>, JsValue> {
        let messages: Vec<Message> = serde_json::from_str(messages).map_err(bad_json)?;
        self.engine.chat_tokens(&messages).map_err(request_error)
    }

    /// The tokens [`Self::warm_chat`] runs for `messages` (JSON `[{role, content}]`): the
    /// start of a conversation, without a generation prompt.
    #[wasm_bindgen(js_name = warmTokens)]
    pub fn warm_tokens(&self, messages: &str) -> Result<Vec<u32>, JsValue> {
        let messages: Vec<Message> = serde_json::from_str(messages).map_err(bad_json)?;
        self.engine.start_tokens(&messages).map_err(request_error)
    }

    /// How many leading tokens of `ids` the KV cache holds already.
    #[wasm_bindgen(js_name = cachedPrefix)]
    pub fn cached_prefix(&self, ids: Vec<u32>) -> usize {
        self.engine.cached_prefix_of(&ids)
    }

    /// A snapshot of the KV cache as bytes: of what a finished conversation `messages` (JSON,
    /// the last message the reply) agrees with, or of the whole cache without it.
    #[wasm_bindgen(js_name = saveKv)]
    pub fn save_kv(&mut self, messages: Option<String>) -> Result<Vec<u8>, JsValue> {
        match messages {
            Some(m) => {
                let messages: Vec<Message> = serde_json::from_str(&m).map_err(bad_json)?;
                self.engine.save_chat_kv(&messages)
            }
            None => self.engine.save_kv(),
        }
        .map_err(request_error)
    }

    /// Restores a snapshot [`Self::save_kv`] wrote, if it is whole, of this model, and its tokens
    /// start the prompt `ids`; returns the tokens now cached. A refused snapshot leaves the cache.
    #[wasm_bindgen(js_name = restoreKv)]
    pub fn restore_kv(&mut self, bytes: &[u8], ids: Vec<u32>) -> Result<usize, JsValue> {
        self.engine.restore_kv(bytes, &ids).map_err(request_error)
    }

    /// Forgets the conversation.
    pub fn reset(&mut self) {
        self.engine.reset();
    }

    /// Tokens currently held in the KV cache.
    #[wasm_bindgen(js_name = cachedTokens)]
    pub fn cached_tokens(&self) -> usize {
        self.engine.cached_tokens()
    }

    /// What the stage timers counted since the last call, as JSON `{ prefill, decode }` (each
    /// `{ forwards, seconds, stages: [{ stage, seconds, calls }] }`), then turns them on or off
    /// (`wick bench --profile`'s timers, for the browser bench; off they cost nothing).
    pub fn profile(&self, on: bool) -> Result<String, JsValue> {
        use crate::model::profile;
        let phase = |p: profile::PhaseProfile| {
            let stages: Vec<_> = p
                .stages
                .iter()
                .map(|(s, secs, calls)| {
                    serde_json::json!({ "stage": s.name(), "seconds": secs, "calls": calls })
                })
                .collect();
            serde_json::json!({ "forwards": p.forwards, "seconds": p.seconds, "stages": stages })
        };
        let [prefill, decode] = profile::take_phases();
        profile::set_enabled(on);
        to_json(&serde_json::json!({ "prefill": phase(prefill), "decode": phase(decode) }))
    }
}

/// A small model being trained from scratch on text the user gave, one optimizer step per call
/// to [`WickTrainer::step`], so the worker yields between steps.
#[wasm_bindgen]
pub struct WickTrainer {
    trainer: Trainer,
}

#[wasm_bindgen]
impl WickTrainer {
    /// Trains the tokenizer on `text` and builds the initial model; `options` is JSON with any
    /// of `layers`, `dim`, `heads`, `kv_heads`, `context`, `steps`, `lr`, `batch`, `seed`,
    /// `vocab` (the rest take the CLI's defaults).
    #[wasm_bindgen(constructor)]
    pub fn new(text: &str, options: &str) -> Result<WickTrainer, JsValue> {
        let opts: TrainOptions = serde_json::from_str(options).map_err(bad_json)?;
        let trainer = Trainer::new(text, opts).map_err(request_error)?;
        Ok(Self { trainer })
    }

    /// What is being trained, as JSON: the options, the model's shape, its parameter count and
    /// the corpus's length in tokens.
    pub fn info(&self) -> Result<String, JsValue> {
        let t = &self.trainer;
        let c = t.config();
        to_json(&serde_json::json!({
            "options": t.options(),
            "parameters": t.parameters(),
            "corpus_tokens": t.corpus_tokens(),
            "vocab_size": c.vocab_size,
            "n_layers": c.n_layers,
            "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size,
            "n_heads": c.n_heads,
            "n_kv_heads": c.n_kv_heads,
            "context_length": c.context_length,
        }))
    }

    /// One optimizer step; returns its report as JSON (`{step, steps, loss, lr, grad_norm,
    /// tokens, seconds}`).
    pub fn step(&mut self) -> Result<String, JsValue> {
        let report = self.trainer.step().map_err(request_error)?;
        to_json(&report)
    }

    /// Whether every step is done.
    pub fn done(&self) -> bool {
        self.trainer.done()
    }

    /// Mean loss on the end of the text that training never saw, or `undefined` when the text
    /// was too short to hold any out.
    #[wasm_bindgen(js_name = heldOutLoss)]
    pub fn held_out_loss(&self) -> Result<Option<f32>, JsValue> {
        self.trainer.held_out_loss().map_err(request_error)
    }

    /// The trained model as a Hugging Face folder, plus `loss.svg`: an array of
    /// `{name, bytes}` (`bytes` a `Uint8Array`), which [`WickEngine::from_files`] loads.
    pub fn files(&self) -> Result<js_sys::Array, JsValue> {
        let out = js_sys::Array::new();
        for (name, bytes) in self.trainer.files().map_err(request_error)? {
            let file = js_sys::Object::new();
            js_sys::Reflect::set(&file, &"name".into(), &name.into())
                .map_err(|_| coded("cannot build the file list", "internal"))?;
            let bytes = js_sys::Uint8Array::from(bytes.as_slice());
            js_sys::Reflect::set(&file, &"bytes".into(), &bytes)
                .map_err(|_| coded("cannot build the file list", "internal"))?;
            out.push(&file);
        }
        Ok(out)
    }
}
