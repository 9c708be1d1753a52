//! What [`super::Engine::step`] reports: the events of a reply, why it ended, its counters and
//! the log-probabilities of its tokens.

use serde::Serialize;

use crate::beam::BeamReport;
use crate::sample::Logprobs;
use crate::tokenizer::Tokenizer;

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// The reply reached `max_tokens`.
    MaxTokens,
    /// The context window is full.
    ContextFull,
    /// The text reached one of the reply's stop strings (which is not shown).
    StopSequence,
    /// The caller cancelled it.
    Cancelled,
}

/// Counters of one reply, for the status line and benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
    /// Of those, tokens actually run (the rest were already in the KV cache).
    pub prefilled_tokens: usize,
    /// Seconds spent running prompt tokens.
    pub prefill_seconds: f64,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Seconds spent generating (sampling and running each generated token).
    pub decode_seconds: f64,
    /// Seconds from the start of the request to the first generated token.
    pub first_token_seconds: f64,
    /// The beam search's scores and memory, when the reply came from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beam: Option<BeamReport>,
    /// Of `decode_seconds`, those spent computing and applying the output constraint's token
    /// masks (0 without a constraint).
    pub constraint_seconds: f64,
}

/// One token's log-probability as OpenAI's API reports it: its text (U+FFFD for part of a
/// character), its bytes when they can be known, and the log-probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// The token's bytes (`None` if unknown).
    pub bytes: Option<Vec<u8>>,
    /// Its log-probability under the model's distribution.
    pub logprob: f32,
}

/// A generated token's log-probability and the most likely alternatives at its position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprobs {
    /// The generated token.
    #[serde(flatten)]
    pub chosen: TokenLogprob,
    /// The most likely tokens, most likely first.
    pub top_logprobs: Vec<TokenLogprob>,
}

impl TokenLogprobs {
    /// The log-probabilities of `id` at a position, with the top alternatives `l` lists.
    pub(super) fn new(tok: &Tokenizer, id: u32, l: &Logprobs) -> Self {
        let entry = |id: u32, logprob: f32| {
            let (token, bytes) = tok.token_bytes(id);
            TokenLogprob {
                token,
                bytes,
                logprob,
            }
        };
        Self {
            chosen: entry(id, l.chosen),
            top_logprobs: l.top.iter().map(|&(id, lp)| entry(id, lp)).collect(),
        }
    }
}

/// What one [`Engine::step`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// Part of the prompt was run: `done` of `total` new prompt tokens.
    Prefill {
        /// Prompt tokens run so far.
        done: usize,
        /// Prompt tokens to run in all.
        total: usize,
    },
    /// A token was generated; `text` is what it completes (empty while a character is partial
    /// or while it may start a stop string).
    Token {
        /// The token id.
        id: u32,
        /// Text to append to the reply.
        text: String,
        /// Its log-probabilities, when the sampling parameters asked for them.
        #[serde(skip_serializing_if = "Option::is_none")]
        logprobs: Option<TokenLogprobs>,
    },
    /// A beam search extended its beams by one token (its reply follows as tokens when it ends).
    Search {
        /// Tokens each beam has.
        depth: usize,
        /// Beams still being extended.
        beams: usize,
    },
    /// The reply is over; `text` is whatever was still held back.
    Done {
        /// Why it ended.
        reason: StopReason,
        /// Text to append to the reply.
        text: String,
    },
}
