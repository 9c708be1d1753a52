//! Stage 4 of the data flow: prompt → stream of text.
//!
//! An [`Engine`] owns the model, tokenizer and chat template. A generation advances one step per
//! call to [`Engine::step`] (a chunk of prompt, or one token) so a caller — the CLI's loop or the
//! browser worker — can stream text and cancel between steps. The KV cache outlives a reply: the
//! next prompt only prefills the tokens past the longest prefix already cached.
//!
//! What a step reports lives in `session/event.rs`; the steps of a beam-search reply in
//! `session/search.rs`; saving the KV cache to bytes and restoring it in `session/snapshot.rs`.

mod beside;
mod event;
mod search;
mod snapshot;

use std::sync::Arc;

use candle_core::{Device, Tensor};
use web_time::Instant;

pub use event::{Event, Stats, StopReason, TokenLogprob, TokenLogprobs};
use search::BeamReply;

use crate::chat::{ChatTemplate, Message};
use crate::constrain::{Constraint, Vocabulary};
use crate::error::{Error, Result};
use crate::kernels;
use crate::model::{Config, Model};
use crate::sample::{Sampler, SamplingParams};
use crate::stop::StopStrings;
use crate::tokenizer::{TextStream, Tokenizer};
use crate::weights::safetensors::Bytes;
use crate::weights::{Gguf, ModelFolder};

/// The context a conversation gets unless the caller asks for another (the CLI's `--context`),
/// capped by the model's own: it bounds the KV cache, which takes
/// [`Model::kv_bytes_at_limit`] at most.
pub const DEFAULT_CONTEXT_LENGTH: usize = 4096;

/// Prompt tokens fed per step, so a long prefill still yields to the caller now and then.
pub const PREFILL_CHUNK: usize = 128;

/// Runs `f` on a thread of rayon's pool with the pool's other threads kept awake as a team
/// ([`kernels::team`]). Called from outside, every parallel matmul would block its caller and
/// wake a worker, which in wasm costs more than a small matmul.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return kernels::team::scope(f);
    }
    rayon::scope(|_| kernels::team::scope(f))
}

struct Generation {
    sampler: Sampler,
    /// The grammar the reply must follow, if any.
    constraint: Option<Constraint>,
    params: SamplingParams,
    pending: Vec<u32>,
    total_prefill: usize,
    logits: Option<Tensor>,
    stream: TextStream,
    stop: StopStrings,
    /// Why the reply ends at the next step (the last token's event went out first).
    ending: Option<StopReason>,
    started: Instant,
    stats: Stats,
    /// The beam search and the reply it chose, when the parameters ask for one.
    beam: BeamReply,
}

/// A model ready to chat, with its conversation state.
pub struct Engine {
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    cached: Vec<u32>,
    generation: Option<Generation>,
    last_stats: Stats,
    /// Tokens the conversation may hold: the model's context length, or less if the caller
    /// asked (the KV cache never grows past it).
    context_length: usize,
    /// The vocabulary as the constraint stage reads it, built at the first constrained reply.
    vocabulary: Option<Vocabulary>,
    /// The model's identity, which KV snapshots carry: the file's fingerprint when the engine
    /// was loaded from one, else taken from the model at the first snapshot.
    model_id: Option<[u8; 32]>,
}

impl Engine {
    /// Builds an engine from the bytes of a GGUF file (copying the weights it keeps).
    pub fn from_gguf_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        Self::from_gguf(&Gguf::parse(bytes)?, device)
    }

    /// Builds an engine that keeps `file` as the storage of its weights where it can, so the
    /// file's bytes are not copied a second time (what the browser wants).
    pub fn from_gguf_vec(file: Vec<u8>, device: &Device) -> Result<Self> {
        let file = Arc::new(file);
        Self::from_gguf(&Gguf::parse_shared(&file)?, device)
    }

    /// Builds an engine on a memory map of the GGUF file at `path` (native only): Wick's own
    /// kernels read their weights from the map in place, and the pages of the tensors copied at
    /// load are released as they are copied, so the weights are in memory once.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_gguf_file(path: &str, device: &Device) -> Result<Self> {
        use crate::weights::mapped::{Mapped, MappedFile};
        let file = MappedFile::open(path)?;
        let g = Gguf::parse_shared(&file)?;
        let model = Model::from_gguf_source(
            &g,
            &Mapped {
                gguf: &g,
                file: &file,
            },
            device,
        )?;
        Self::with_model(&g, model)
    }

    fn from_gguf(g: &Gguf, device: &Device) -> Result<Self> {
        let model = Model::from_gguf(g, device)?;
        Self::with_model(g, model)
    }

    /// The engine of a model loaded from `g`, with the tokenizer and template of `g`.
    fn with_model(g: &Gguf, model: Model) -> Result<Self> {
        let tokenizer = Tokenizer::from_gguf(g)?;
        let template = ChatTemplate::new(
            g.get_str("tokenizer.chat_template").ok(),
            tokenizer.bos_token(),
            tokenizer.eos_token(),
        )?;
        let mut engine = Self::new(model, tokenizer, template);
        engine.model_id = Some(g.fingerprint());
        Ok(engine)
    }

    /// Builds an engine from the files of a Hugging Face model folder, by name (see
    /// [`ModelFolder`]). Weights may be float or MLX-quantized.
    pub fn from_hf_files(files: &[(String, Vec<u8>)], device: &Device) -> Result<Self> {
        Self::from_hf_files_with(files, device, None)
    }

    /// [`Engine::from_hf_files`], quantizing float matrices at load to `(bits, group_size)`
    /// when `quantize` is given (see [`crate::weights::HfModel::quantized_at_load`]).
    pub fn from_hf_files_with(
        files: &[(String, Vec<u8>)],
        device: &Device,
        quantize: Option<(usize, usize)>,
    ) -> Result<Self> {
        let sources: Vec<(String, &dyn Bytes)> = files
            .iter()
            .map(|(n, b)| (n.clone(), b as &dyn Bytes))
            .collect();
        Self::from_folder(&ModelFolder::new(&sources), device, quantize)
    }

    /// [`Engine::from_hf_files_with`] over a folder whose bytes are read a tensor at a time.
    /// The tokenizer and chat template are parsed on another thread while the model is built,
    /// where rayon has one.
    pub fn from_folder(
        folder: &ModelFolder,
        device: &Device,
        quantize: Option<(usize, usize)>,
    ) -> Result<Self> {
        let parsing = beside::Parsing::start(folder);
        let mut hf = folder.hf_model()?;
        if let Some((bits, group)) = quantize {
            hf = hf.quantized_at_load(bits, group)?;
        }
        // The same folder quantized at load is another model.
        let mut id = crate::weights::fingerprint::Fingerprint::new("quantized at load");
        id.add(&folder.fingerprint()?);
        id.add(format!("{quantize:?}").as_bytes());
        let model = Model::from_hf(&hf, device)?;
        let (tokenizer, template) = parsing.wait()?;
        let template = ChatTemplate::new(
            template.as_deref(),
            tokenizer.bos_token(),
            tokenizer.eos_token(),
        )?;
        let mut engine = Self::new(model, tokenizer, template);
        engine.model_id = Some(id.finish());
        Ok(engine)
    }

    /// Builds an engine from its parts.
    pub fn new(model: Model, tokenizer: Tokenizer, template: ChatTemplate) -> Self {
        let context_length = model.context_limit();
        Self {
            model,
            tokenizer,
            template,
            cached: Vec::new(),
            generation: None,
            last_stats: Stats::default(),
            context_length,
            vocabulary: None,
            model_id: None,
        }
    }

    /// Tokens the conversation may hold (prompt and reply together).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Limits the conversation to `n` tokens (at least 2, at most the model's context length);
    /// returns the limit set. A cache longer than that is forgotten.
    pub fn set_context_length(&mut self, n: usize) -> usize {
        self.context_length = n.clamp(2, self.model.config().context_length);
        if self.cached.len() >= self.context_length {
            self.reset();
        }
        self.model.set_context_limit(self.context_length);
        self.context_length
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        self.model.config()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model itself (for tests and benchmarks that need raw logits).
    pub fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }

    /// Whether the model has a chat template of its own. Without one (a base model) it is meant
    /// for text completion ([`Engine::start`]); chat falls back to ChatML.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_models_own()
    }

    /// Renders a conversation with the model's chat template.
    pub fn render_chat(&self, messages: &[Message]) -> Result<String> {
        self.template.render(messages)
    }

    /// Starts a reply to a conversation (rendered with the chat template).
    pub fn start_chat(&mut self, messages: &[Message], params: SamplingParams) -> Result<()> {
        if messages.last().is_none_or(|m| m.content.trim().is_empty()) {
            return Err(Error::EmptyPrompt);
        }
        let prompt = self.render_chat(messages)?;
        self.start(&prompt, params)
    }

    /// How many leading tokens of `ids` the cache already holds.
    fn cached_prefix(&self, ids: &[u32]) -> usize {
        self.cached
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
    }

    /// Runs the start of a conversation (the system prompt, say) into the cache ahead of the
    /// first question, so that reply prefills only what follows. Does nothing while a reply is in
    /// progress or when it would run more than `max_new` tokens (the caller waits meanwhile).
    /// Returns how many tokens are cached.
    pub fn warm_chat(&mut self, messages: &[Message], max_new: usize) -> Result<usize> {
        if self.generation.is_some() || messages.is_empty() {
            return Ok(self.cached.len());
        }
        let ids = self.start_tokens(messages)?;
        let common = self.cached_prefix(&ids);
        let new = ids.len() - common;
        if new == 0 || new > max_new || ids.len() >= self.context_length {
            return Ok(self.cached.len());
        }
        self.model.truncate_cache(common);
        self.cached.truncate(common);
        let (model, pending) = (&mut self.model, &ids[common..]);
        if let Err(e) = on_pool(|| model.forward(pending)) {
            self.model.truncate_cache(self.cached.len());
            return Err(e);
        }
        self.cached.extend_from_slice(pending);
        Ok(self.cached.len())
    }

    /// Starts a continuation of `prompt` taken as raw text (special tokens written in it count).
    pub fn start(&mut self, prompt: &str, params: SamplingParams) -> Result<()> {
        params.validate_for(self.tokenizer.vocab_size())?;
        let sampler = Sampler::new(&params)?;
        // An invalid grammar fails here, before any token runs.
        if params.beams > 0 && params.constraint.is_some() {
            return Err(Error::Constraint(
                "beam search cannot follow an output constraint yet".into(),
            ));
        }
        let constraint = match &params.constraint {
            Some(grammar) => Some(self.vocabulary()?.constraint(grammar)?),
            None => None,
        };
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let ids = self.tokenizer.encode(prompt)?;
        if ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let limit = self.context_length;
        // Leave room for at least one generated token.
        if ids.len() >= limit {
            return Err(Error::ContextOverflow {
                needed: ids.len() + 1,
                limit,
            });
        }
        // Reuse the cached prefix, but always run at least one token to get fresh logits.
        let common = self.cached_prefix(&ids).min(ids.len() - 1);
        self.model.truncate_cache(common);
        self.cached.truncate(common);
        let pending = ids[common..].to_vec();
        let stop = StopStrings::new(params.stop.clone());
        self.generation = Some(Generation {
            sampler,
            constraint,
            params,
            stop,
            ending: None,
            total_prefill: pending.len(),
            pending,
            logits: None,
            stream: TextStream::new(),
            started: Instant::now(),
            beam: BeamReply::default(),
            stats: Stats {
                prompt_tokens: ids.len(),
                prefilled_tokens: ids.len() - common,
                ..Stats::default()
            },
        });
        Ok(())
    }

    /// The vocabulary for constrained replies, built on first use.
    fn vocabulary(&mut self) -> Result<&Vocabulary> {
        if self.vocabulary.is_none() {
            let n_logits = self.model.config().vocab_size;
            self.vocabulary = Some(Vocabulary::new(&self.tokenizer, n_logits)?);
        }
        self.vocabulary
            .as_ref()
            .ok_or_else(|| Error::Constraint("no vocabulary".into()))
    }

    /// Whether a reply is in progress.
    pub fn is_generating(&self) -> bool {
        self.generation.is_some()
    }

    /// Advances the reply by one chunk of prompt or one token.
    pub fn step(&mut self) -> Result<Event> {
        let Some(gen) = self.generation.as_mut() else {
            return Err(Error::NotGenerating);
        };
        let (model, tok, cached) = (&mut self.model, &self.tokenizer, &mut self.cached);
        let limit = self.context_length;
        let result = on_pool(|| Self::advance(gen, model, tok, cached, limit));
        match result {
            Ok(Event::Done { reason, text }) => {
                self.finish();
                Ok(Event::Done { reason, text })
            }
            Ok(event) => Ok(event),
            Err(e) => {
                // The conversation survives: the cache holds exactly the tokens that ran.
                self.generation = None;
                self.model.truncate_cache(self.cached.len());
                Err(e)
            }
        }
    }

    fn advance(
        gen: &mut Generation,
        model: &mut Model,
        tok: &Tokenizer,
        cached: &mut Vec<u32>,
        limit: usize,
    ) -> Result<Event> {
        match gen.ending {
            // The stop string's token was the last; whatever followed it is dropped.
            Some(StopReason::StopSequence) => {
                return Ok(Event::Done {
                    reason: StopReason::StopSequence,
                    text: String::new(),
                })
            }
            Some(reason) => return Self::done(gen, tok, reason),
            None => {}
        }
        let prefilling = gen.stats.generated_tokens == 0;
        if !gen.pending.is_empty() {
            let n = gen.pending.len().min(PREFILL_CHUNK);
            let chunk: Vec<u32> = gen.pending.drain(..n).collect();
            let t0 = Instant::now();
            gen.logits = Some(model.forward(&chunk)?);
            cached.extend_from_slice(&chunk);
            let dt = t0.elapsed().as_secs_f64();
            if prefilling {
                gen.stats.prefill_seconds += dt;
            } else {
                gen.stats.decode_seconds += dt;
            }
            if !gen.pending.is_empty() {
                let done = gen.total_prefill - gen.pending.len();
                return Ok(Event::Prefill {
                    done,
                    total: gen.total_prefill,
                });
            }
        }
        if gen.params.beams > 0 {
            return Self::advance_beam(gen, model, tok, cached.len(), limit);
        }
        if gen.stats.generated_tokens >= gen.params.max_tokens {
            return Self::done(gen, tok, StopReason::MaxTokens);
        }
        let Some(logits) = gen.logits.take() else {
            return Err(Error::NotGenerating);
        };
        let t0 = Instant::now();
        let sampling = crate::model::profile::span(crate::model::profile::Stage::Sampling);
        let sampled = match gen.constraint.as_mut() {
            Some(c) => {
                let sampled =
                    gen.sampler
                        .sample_within(&logits, cached, gen.stream.ids(), |v| c.mask(v))?;
                gen.stats.constraint_seconds = c.mask_seconds();
                sampled
            }
            None => gen.sampler.sample(&logits, cached, gen.stream.ids())?,
        };
        drop(sampling);
        gen.stats.decode_seconds += t0.elapsed().as_secs_f64();
        let id = sampled.id;
        if !gen.params.ignore_eog && tok.end_of_generation().contains(&id) {
            return Self::done(gen, tok, StopReason::EndOfGeneration);
        }
        gen.stats.generated_tokens += 1;
        if gen.stats.generated_tokens == 1 {
            gen.stats.first_token_seconds = gen.started.elapsed().as_secs_f64();
        }
        // A complete grammar allows nothing but the end: the reply ends without asking.
        let complete = match gen.constraint.as_mut() {
            Some(c) => {
                c.accept(id)?;
                c.is_finished()
            }
            None => false,
        };
        let piece = gen.stream.push(tok, id)?.unwrap_or_default();
        let (text, hit) = gen.stop.push(&piece);
        if hit {
            gen.ending = Some(StopReason::StopSequence);
        } else if complete {
            gen.ending = Some(StopReason::EndOfGeneration);
        } else if cached.len() + 1 >= limit {
            gen.ending = Some(StopReason::ContextFull);
        } else {
            gen.pending.push(id);
        }
        let logprobs = sampled.logprobs.map(|l| TokenLogprobs::new(tok, id, &l));
        Ok(Event::Token { id, text, logprobs })
    }

    /// The end of a reply: the text held back, unless it completes a stop string.
    fn done(gen: &mut Generation, tok: &Tokenizer, reason: StopReason) -> Result<Event> {
        let rest = gen.stream.finish(tok)?.unwrap_or_default();
        let (mut text, hit) = gen.stop.push(&rest);
        if hit {
            let reason = match reason {
                StopReason::Cancelled => reason,
                _ => StopReason::StopSequence,
            };
            return Ok(Event::Done { reason, text });
        }
        text.push_str(&gen.stop.finish());
        Ok(Event::Done { reason, text })
    }

    fn finish(&mut self) {
        if let Some(gen) = self.generation.take() {
            self.last_stats = gen.stats;
        }
        // Tokens sampled but never run are not in the cache; keep the two in step.
        self.model.truncate_cache(self.cached.len());
    }

    /// Stops the reply in progress; the conversation so far stays cached.
    pub fn cancel(&mut self) -> Option<Event> {
        let gen = self.generation.as_mut()?;
        let text = match gen.ending {
            Some(StopReason::StopSequence) => String::new(),
            _ => match Self::done(gen, &self.tokenizer, StopReason::Cancelled) {
                Ok(Event::Done { text, .. }) => text,
                _ => String::new(),
            },
        };
        self.finish();
        Some(Event::Done {
            reason: StopReason::Cancelled,
            text,
        })
    }

    /// Counters of the reply in progress, or of the last one.
    pub fn stats(&self) -> &Stats {
        self.generation
            .as_ref()
            .map_or(&self.last_stats, |g| &g.stats)
    }

    /// Forgets the conversation (empties the KV cache).
    pub fn reset(&mut self) {
        self.generation = None;
        self.cached.clear();
        self.model.truncate_cache(0);
    }

    /// Number of tokens held in the KV cache.
    pub fn cached_tokens(&self) -> usize {
        self.cached.len()
    }

    /// Runs a whole reply, calling `on_text` with each piece; returns the generated ids.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: SamplingParams,
        mut on_text: impl FnMut(&str),
    ) -> Result<(Vec<u32>, StopReason)> {
        self.start(prompt, params)?;
        let mut ids = Vec::new();
        loop {
            match self.step()? {
                Event::Prefill { .. } | Event::Search { .. } => {}
                Event::Token { id, text, .. } => {
                    ids.push(id);
                    on_text(&text);
                }
                Event::Done { reason, text } => {
                    on_text(&text);
                    return Ok((ids, reason));
                }
            }
        }
    }
}
