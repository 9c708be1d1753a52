//! Beam search, beside [`crate::sample`] in the generation stage: instead of picking one token
//! per step, it keeps the `beams` most likely partial replies and returns, among the replies it
//! kept, the one with the highest total log-probability (optionally divided by its length to the
//! power `length_penalty`).
//!
//! The KV cache is not copied per beam. The prompt's keys and values are held once, in the
//! model's cache. Each generated position a beam ran is copied out once into a shared [`KvRow`];
//! a beam's branch is the chain of its rows, and beams forked from one parent share the parent's
//! rows. Before a beam's next token runs, only the positions where its chain differs from what
//! the cache holds are written back (beams are run grouped by parent, so mostly one or none).

use std::collections::HashSet;
use std::sync::Arc;

use candle_core::Tensor;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{KvRow, Model};

/// The widest beam search a request may ask for (tests go wider through [`search`]).
pub const MAX_BEAMS: usize = 64;

/// What a beam search keeps and how it ranks what it kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamParams {
    /// How many partial replies are kept at each step (1 = greedy).
    pub beams: usize,
    /// Replies are ranked by total log-probability / length^`length_penalty` (0 = plain total).
    pub length_penalty: f64,
    /// Most tokens a reply may have.
    pub max_tokens: usize,
}

impl BeamParams {
    /// Rejects values that make no sense, with the reason.
    pub fn validate(&self) -> Result<()> {
        if self.beams == 0 {
            return Err(Error::Sampling("beams must be at least 1".into()));
        }
        if !self.length_penalty.is_finite() || self.length_penalty.abs() > 10.0 {
            return Err(Error::Sampling(
                "length penalty must be a number in [-10, 10]".into(),
            ));
        }
        if self.max_tokens == 0 {
            return Err(Error::Sampling("max tokens must be at least 1".into()));
        }
        Ok(())
    }
}

/// A reply the beams kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hypothesis {
    /// The generated tokens (an end-of-generation token that ended it is not among them).
    pub ids: Vec<u32>,
    /// Total log-probability of the reply, its end-of-generation token included.
    pub logprob: f64,
    /// The end-of-generation token that ended it (`None`: the token limit or the context did).
    pub end: Option<u32>,
}

impl Hypothesis {
    /// Tokens scored: the generated ones and the end-of-generation token.
    pub fn scored_len(&self) -> usize {
        self.ids.len() + usize::from(self.end.is_some())
    }

    /// What beam search ranks by: `logprob / scored_len^length_penalty`.
    pub fn score(&self, length_penalty: f64) -> f64 {
        penalized(self.logprob, self.scored_len(), length_penalty)
    }
}

/// `logprob / len^length_penalty` (`libm`, so native and wasm rank alike).
fn penalized(logprob: f64, len: usize, length_penalty: f64) -> f64 {
    if length_penalty == 0.0 {
        return logprob;
    }
    logprob / libm::pow(len.max(1) as f64, length_penalty)
}

/// Bytes of keys and values a beam search held, against `beams` full copies of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct KvMemory {
    /// Bytes one position takes over all blocks.
    pub row_bytes: usize,
    /// Most bytes held at once: the model's cache (prompt and the branch it runs) plus the
    /// distinct rows of the beams' branches.
    pub held_bytes: usize,
    /// What `beams` full copies of the cache would have held at the same step.
    pub copies_bytes: usize,
    /// Rows written back into the cache before running a beam, over the whole search.
    pub rows_restored: usize,
    /// Forward passes run (one per kept beam per step).
    pub forwards: usize,
}

/// What a finished beam search reports beside its reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BeamReport {
    /// The width.
    pub beams: usize,
    /// Total log-probability of the reply chosen.
    pub logprob: f64,
    /// Its score (the log-probability with the length penalty).
    pub score: f64,
    /// How many replies the search kept to choose from.
    pub kept: usize,
    /// Steps the search ran (tokens the deepest beam reached).
    pub steps: usize,
    /// The keys and values it held.
    pub memory: KvMemory,
}

/// A partial reply being extended.
struct Beam {
    ids: Vec<u32>,
    logprob: f64,
    /// The keys and values of its generated positions, one row each.
    branch: Vec<Arc<KvRow>>,
    /// Its most likely next tokens with their log-probabilities, best first.
    next: Vec<(u32, f64)>,
}

/// A beam search in progress over a model whose cache holds the prompt; [`BeamSearch::step`]
/// extends every beam by one token.
pub struct BeamSearch {
    params: BeamParams,
    /// Tokens that end a reply (none: every token is an ordinary one).
    end: Vec<u32>,
    prompt_len: usize,
    /// Positions the context holds.
    limit: usize,
    live: Vec<Beam>,
    /// Replies ended by the model, best first, at most `beams`.
    finished: Vec<Hypothesis>,
    /// The beams left when the search stopped at the token limit or the context's end.
    last: Vec<Hypothesis>,
    /// The rows the model's cache holds after the prompt.
    loaded: Vec<Arc<KvRow>>,
    depth: usize,
    done: bool,
    memory: KvMemory,
}

impl BeamSearch {
    /// Starts from `logits`, the model's output at the last of `prompt_len` cached positions.
    /// `end` lists the tokens that end a reply; `limit` is the positions the context holds.
    pub fn new(
        params: BeamParams,
        end: &[u32],
        logits: &Tensor,
        prompt_len: usize,
        limit: usize,
        row_bytes: usize,
    ) -> Result<Self> {
        params.validate()?;
        let next = top_logprobs(logits, params.beams + end.len())?;
        Ok(Self {
            params,
            end: end.to_vec(),
            prompt_len,
            limit,
            live: vec![Beam {
                ids: Vec::new(),
                logprob: 0.0,
                branch: Vec::new(),
                next,
            }],
            finished: Vec::new(),
            last: Vec::new(),
            loaded: Vec::new(),
            depth: 0,
            done: false,
            memory: KvMemory {
                row_bytes,
                ..KvMemory::default()
            },
        })
    }

    /// Tokens each live beam has.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Beams still being extended.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Whether the search is over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The memory the search's keys and values took.
    pub fn memory(&self) -> KvMemory {
        self.memory
    }

    /// Extends the beams by one token; returns whether the search is over.
    pub fn step(&mut self, model: &mut Model) -> Result<bool> {
        if self.done {
            return Ok(true);
        }
        let n = self.params.beams;
        // Every beam's best continuations, best first; ties go to the earlier beam, then the
        // lower token id (as greedy's argmax).
        let mut candidates: Vec<(f64, usize, u32)> = self
            .live
            .iter()
            .enumerate()
            .flat_map(|(b, beam)| {
                beam.next
                    .iter()
                    .map(move |&(id, lp)| (beam.logprob + lp, b, id))
            })
            .collect();
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut chosen = Vec::with_capacity(n);
        for (rank, &(logprob, b, id)) in candidates.iter().enumerate() {
            if chosen.len() == n {
                break;
            }
            if self.end.contains(&id) {
                // An ended reply counts only if it ranks among the best `beams` continuations.
                if rank < n {
                    let ids = self.live[b].ids.clone();
                    self.add_finished(Hypothesis {
                        ids,
                        logprob,
                        end: Some(id),
                    });
                }
                continue;
            }
            chosen.push((b, id, logprob));
        }
        self.depth += 1;
        let out_of_room = self.prompt_len + self.depth >= self.limit;
        if chosen.is_empty() || out_of_room || self.depth >= self.params.max_tokens {
            self.last = chosen
                .iter()
                .map(|&(b, id, logprob)| {
                    let mut ids = self.live[b].ids.clone();
                    ids.push(id);
                    Hypothesis {
                        ids,
                        logprob,
                        end: None,
                    }
                })
                .collect();
            self.live.clear();
            self.done = true;
            return Ok(true);
        }
        // Run the new beams grouped by parent, so consecutive ones share the cached branch.
        let mut order: Vec<usize> = (0..chosen.len()).collect();
        order.sort_by_key(|&i| chosen[i].0);
        let mut next: Vec<Option<Beam>> = (0..chosen.len()).map(|_| None).collect();
        for i in order {
            let (b, id, logprob) = chosen[i];
            let mut branch = self.live[b].branch.clone();
            self.load(model, &branch)?;
            let logits = model.forward(&[id])?;
            let row = Arc::new(model.kv_row(self.prompt_len + branch.len())?);
            branch.push(row);
            self.loaded.clone_from(&branch);
            self.memory.forwards += 1;
            let mut ids = self.live[b].ids.clone();
            ids.push(id);
            next[i] = Some(Beam {
                ids,
                logprob,
                branch,
                next: top_logprobs(&logits, n + self.end.len())?,
            });
        }
        self.live = next.into_iter().flatten().collect();
        self.measure();
        if self.cannot_improve() {
            self.live.clear();
            self.done = true;
        }
        Ok(self.done)
    }

    /// Writes back the rows of `branch` the cache lacks, and forgets any after them.
    fn load(&mut self, model: &mut Model, branch: &[Arc<KvRow>]) -> Result<()> {
        let same = self
            .loaded
            .iter()
            .zip(branch)
            .take_while(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        model.truncate_cache(self.prompt_len + same);
        for (i, row) in branch.iter().enumerate().skip(same) {
            model.set_kv_row(self.prompt_len + i, row)?;
            self.memory.rows_restored += 1;
        }
        self.loaded = branch.to_vec();
        Ok(())
    }

    /// Records the bytes held now if they are the most so far.
    fn measure(&mut self) {
        let distinct: HashSet<*const KvRow> = self
            .live
            .iter()
            .flat_map(|b| b.branch.iter().map(Arc::as_ptr))
            .collect();
        let rb = self.memory.row_bytes;
        let cache = (self.prompt_len + self.depth) * rb;
        let held = cache + distinct.len() * rb;
        if held > self.memory.held_bytes {
            self.memory.held_bytes = held;
            self.memory.copies_bytes = self.live.len() * cache;
        }
    }

    /// Whether `beams` replies have ended and no live beam can rank above the worst of them.
    fn cannot_improve(&self) -> bool {
        let (n, alpha) = (self.params.beams, self.params.length_penalty);
        let (Some(worst), Some(best)) = (self.finished.get(n - 1), self.live.first()) else {
            return false;
        };
        // Live beams are in score order; log-probabilities only fall as a reply grows, so the
        // best a live beam can reach is bounded by its score now at the most favourable length.
        let longest = self
            .params
            .max_tokens
            .min(self.limit.saturating_sub(self.prompt_len));
        let len = if alpha > 0.0 { longest } else { self.depth + 1 };
        penalized(best.logprob, len, alpha) <= worst.score(alpha)
    }

    /// Keeps `h` if it is among the best `beams` ended replies.
    fn add_finished(&mut self, h: Hypothesis) {
        let alpha = self.params.length_penalty;
        self.finished.push(h);
        self.finished.sort_by(|a, b| rank(a, b, alpha));
        self.finished.truncate(self.params.beams);
    }

    /// Every reply the search kept, best first.
    pub fn kept(&self) -> Vec<Hypothesis> {
        let alpha = self.params.length_penalty;
        let mut all: Vec<Hypothesis> = self.finished.iter().chain(&self.last).cloned().collect();
        all.sort_by(|a, b| rank(a, b, alpha));
        all
    }

    /// The best reply kept and the report on the search (`None` only before it is over).
    pub fn report(&self) -> Option<(Hypothesis, BeamReport)> {
        let kept = self.kept();
        let best = kept.first()?.clone();
        let report = BeamReport {
            beams: self.params.beams,
            logprob: best.logprob,
            score: best.score(self.params.length_penalty),
            kept: kept.len(),
            steps: self.depth,
            memory: self.memory,
        };
        Some((best, report))
    }

    /// The best reply kept (`None` only before the search is over).
    pub fn best(&self) -> Option<Hypothesis> {
        self.kept().into_iter().next()
    }
}

/// Best first: higher score, then higher total log-probability, then the lower ids.
fn rank(a: &Hypothesis, b: &Hypothesis, alpha: f64) -> std::cmp::Ordering {
    b.score(alpha)
        .total_cmp(&a.score(alpha))
        .then(b.logprob.total_cmp(&a.logprob))
        .then(a.ids.cmp(&b.ids))
}

/// The `k` most likely tokens of `logits` with their log-probabilities (f64, `libm`), best first;
/// ties go to the lower id.
pub fn top_logprobs(logits: &Tensor, k: usize) -> Result<Vec<(u32, f64)>> {
    let x: Vec<f32> = logits.to_vec1()?;
    // `+ 0.0` turns -0.0 into 0.0, so the two tie as they do in argmax.
    let key = |i: u32| x[i as usize] + 0.0;
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = x.iter().map(|&v| libm::exp(v as f64 - max)).sum();
    let lse = max + libm::log(sum);
    let better = |a: &u32, b: &u32| key(*b).total_cmp(&key(*a)).then(a.cmp(b));
    let mut ids: Vec<u32> = (0..x.len() as u32).collect();
    let k = k.min(ids.len());
    if k == 0 {
        return Ok(Vec::new());
    }
    if k < ids.len() {
        ids.select_nth_unstable_by(k - 1, better);
        ids.truncate(k);
    }
    ids.sort_by(better);
    Ok(ids
        .into_iter()
        .map(|i| (i, x[i as usize] as f64 - lse))
        .collect())
}

/// Runs `prompt` from an empty cache and a whole beam search after it (tests and benchmarks).
pub fn search(
    model: &mut Model,
    prompt: &[u32],
    params: BeamParams,
    end: &[u32],
) -> Result<BeamSearch> {
    model.truncate_cache(0);
    let logits = model.forward(prompt)?;
    let limit = model.config().context_length;
    let row_bytes = model.kv_row_bytes();
    let mut s = BeamSearch::new(params, end, &logits, prompt.len(), limit, row_bytes)?;
    while !s.step(model)? {}
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn top_logprobs_are_sorted_normalized_and_break_ties_low() {
        let t = top_logprobs(&logits(&[0.0, 3.0, 3.0, -0.0, 1.0]), 4).unwrap();
        let ids: Vec<u32> = t.iter().map(|p| p.0).collect();
        assert_eq!(ids, [1, 2, 4, 0]);
        let t = top_logprobs(&logits(&[-0.0, 0.0]), 1).unwrap();
        assert_eq!(t[0].0, 0, "-0.0 and 0.0 tie, as in argmax");
        let all = top_logprobs(&logits(&[1.0, 3.0, 3.0, -0.0, 0.0]), 9).unwrap();
        let total: f64 = all.iter().map(|p| p.1.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12, "probabilities sum to {total}");
    }

    #[test]
    fn length_penalty_divides_by_length() {
        let h = Hypothesis {
            ids: vec![1, 2, 3],
            logprob: -8.0,
            end: Some(0),
        };
        assert_eq!(h.score(0.0), -8.0);
        assert_eq!(h.score(1.0), -2.0);
        assert_eq!(h.score(0.5), -4.0);
    }

    #[test]
    fn bad_params_are_refused() {
        let p = BeamParams {
            beams: 0,
            length_penalty: 0.0,
            max_tokens: 4,
        };
        assert!(p.validate().is_err());
        let bad = BeamParams {
            beams: 2,
            length_penalty: f64::NAN,
            ..p
        };
        assert!(bad.validate().is_err());
        assert!(BeamParams { beams: 2, ..p }.validate().is_ok());
    }
}
