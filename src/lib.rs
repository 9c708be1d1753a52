//! Wick: a private LLM that runs entirely inside a browser tab.
//!
//! Data flows one way, one module per stage:
//! [`weights`] (bytes → tensors) → [`model`] (tensors → logits) → [`constrain`] (logits a grammar
//! forbids → −∞) → [`sample`] (logits → token) →
//! [`session`] (prompt, chat template, KV cache → stream of text), with [`beam`] beside
//! [`sample`] (beam search over the model's log-probabilities), [`tokenizer`] and
//! [`chat`] beside it. `web` is the wasm-bindgen boundary; `src/bin/wick.rs` the CLI.
//! [`train`] stands beside the flow and feeds its start: it trains a small model from scratch
//! and writes it as a folder that [`weights`] reads.

pub mod beam;
pub mod chat;
pub mod constrain;
pub mod error;
pub mod kernels;
pub mod model;
pub mod quantize;
pub mod sample;
pub mod session;
pub mod stop;
pub mod tokenizer;
pub mod train;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use chat::{ChatTemplate, Message};
pub use constrain::Grammar;
pub use error::{Error, Result};
pub use model::{Config, Model};
pub use sample::{Sampler, SamplingParams};
pub use session::{Engine, Event, Stats, StopReason};
pub use stop::StopStrings;
pub use tokenizer::{TextStream, Tokenizer};
