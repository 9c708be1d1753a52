//! A reply from a beam search ([`crate::beam`]): once the prompt has run, each step takes the
//! search one token deeper, and once it is over, each step streams one token of the reply it
//! chose.

use std::collections::VecDeque;

use web_time::Instant;

use super::{Engine, Event, Generation, StopReason};
use crate::beam::BeamSearch;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// A generation's beam search and the reply it chose.
#[derive(Default)]
pub(super) struct BeamReply {
    /// The search, once the prompt has run, when the parameters ask for one.
    search: Option<BeamSearch>,
    /// The reply the search chose, still to be streamed, and why it ends.
    chosen: Option<(VecDeque<u32>, StopReason)>,
}

impl Engine {
    /// A step of a beam search after the prompt ran: one token deeper, or once the search is
    /// over, one token of the reply it chose.
    pub(super) fn advance_beam(
        gen: &mut Generation,
        model: &mut Model,
        tok: &Tokenizer,
        prompt_len: usize,
        limit: usize,
    ) -> Result<Event> {
        if gen.beam.chosen.is_none() {
            let t0 = Instant::now();
            if gen.beam.search.is_none() {
                let (Some(logits), Some(params)) = (gen.logits.take(), gen.params.beam()) else {
                    return Err(Error::NotGenerating);
                };
                let end = match gen.params.ignore_eog {
                    true => &[][..],
                    false => tok.end_of_generation(),
                };
                let rb = model.kv_row_bytes();
                gen.beam.search = Some(BeamSearch::new(
                    params, end, &logits, prompt_len, limit, rb,
                )?);
            }
            let Some(search) = gen.beam.search.as_mut() else {
                return Err(Error::NotGenerating);
            };
            let done = search.step(model)?;
            let event = Event::Search {
                depth: search.depth(),
                beams: search.live(),
            };
            if done {
                let Some((best, report)) = search.report() else {
                    return Err(Error::NotGenerating);
                };
                let reason = if best.end.is_some() {
                    StopReason::EndOfGeneration
                } else if prompt_len + best.ids.len() >= limit {
                    StopReason::ContextFull
                } else {
                    StopReason::MaxTokens
                };
                gen.stats.beam = Some(report);
                gen.beam.chosen = Some((best.ids.into(), reason));
            }
            gen.stats.decode_seconds += t0.elapsed().as_secs_f64();
            return Ok(event);
        }
        let Some((queue, reason)) = gen.beam.chosen.as_mut() else {
            return Err(Error::NotGenerating);
        };
        let reason = *reason;
        let Some(id) = queue.pop_front() else {
            return Self::done(gen, tok, reason);
        };
        let last = queue.is_empty();
        gen.stats.generated_tokens += 1;
        if gen.stats.generated_tokens == 1 {
            gen.stats.first_token_seconds = gen.started.elapsed().as_secs_f64();
        }
        let piece = gen.stream.push(tok, id)?.unwrap_or_default();
        let (text, hit) = gen.stop.push(&piece);
        if hit {
            gen.ending = Some(StopReason::StopSequence);
        } else if last {
            gen.ending = Some(reason);
        }
        Ok(Event::Token {
            id,
            text,
            logprobs: None,
        })
    }
}
