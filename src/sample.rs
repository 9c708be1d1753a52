//! Stage 3 of the data flow: logits → next token (greedy, temperature, top-k, top-p, min-p,
//! repetition, frequency and presence penalties, logit bias, seeded), with the log-probabilities
//! of the chosen token and of the most likely ones when asked.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use serde::{Deserialize, Serialize};

use crate::beam::{BeamParams, MAX_BEAMS};
use crate::constrain::Grammar;
use crate::error::{Error, Result};

/// The most alternatives [`SamplingParams::logprobs`] may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// How to pick each next token, and when a reply ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy (always the most likely token).
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens (0 = no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = no limit).
    pub top_p: f64,
    /// Drop tokens less likely than `min_p` times the most likely one, judged before the
    /// temperature as llama.cpp does (0 = off).
    pub min_p: f64,
    /// Divide the logits of recently seen tokens by this (1 = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    /// Subtracted from a token's logit for each time the reply so far generated it (OpenAI's
    /// `frequency_penalty`, −2…2; 0 = off).
    pub frequency_penalty: f32,
    /// Subtracted from a token's logit once if the reply so far generated it (OpenAI's
    /// `presence_penalty`, −2…2; 0 = off).
    pub presence_penalty: f32,
    /// Added to the logits of these token ids (OpenAI's `logit_bias`, −100…100).
    pub logit_bias: BTreeMap<u32, f32>,
    /// Report each generated token's log-probability and this many most likely alternatives
    /// (`None` = no log-probabilities).
    pub logprobs: Option<usize>,
    /// Seed of the random choice.
    pub seed: u64,
    /// Most tokens one reply may have.
    pub max_tokens: usize,
    /// Keep going through end-of-generation tokens (benchmarks want a fixed amount of work).
    pub ignore_eog: bool,
    /// The reply ends where its text would contain one of these; that text is not shown.
    pub stop: Vec<String>,
    /// Beam search of this width instead of sampling (0 = sample; 1 is greedy). Deterministic:
    /// temperature, top-k/p, min-p and seed do not apply (see [`crate::beam`]).
    pub beams: usize,
    /// Beam search ranks replies by total log-probability / length^`length_penalty` (0 = off).
    pub length_penalty: f64,
    /// What the reply must match (a JSON schema, a regex, a grammar); `None` = free text.
    pub constraint: Option<Grammar>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            // Off by default, as in llama.cpp: on small models it pushes answers off the prompt's words.
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logit_bias: BTreeMap::new(),
            logprobs: None,
            seed: 299_792_458,
            max_tokens: 512,
            ignore_eog: false,
            stop: Vec::new(),
            beams: 0,
            length_penalty: 0.0,
            constraint: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with no penalty: the reproducible setting tests and benchmarks use.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            repeat_penalty: 1.0,
            max_tokens,
            ..Self::default()
        }
    }

    /// Rejects values that make no sense, with the reason.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Sampling(m.to_string()));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature must be a number ≥ 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min-p must be in [0, 1]");
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return bad("repeat penalty must be > 0");
        }
        for (name, v) in [
            ("frequency penalty", self.frequency_penalty),
            ("presence penalty", self.presence_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(Error::Sampling(format!("{name} must be in [-2, 2]")));
            }
        }
        if self
            .logit_bias
            .values()
            .any(|b| !(-100.0..=100.0).contains(b))
        {
            return bad("logit bias values must be in [-100, 100]");
        }
        if self.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return Err(Error::Sampling(format!(
                "at most {MAX_TOP_LOGPROBS} top log-probabilities can be asked for"
            )));
        }
        if self.max_tokens == 0 {
            return bad("max tokens must be at least 1");
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("a stop string must not be empty");
        }
        if let Some(beam) = self.beam() {
            beam.validate()?;
            if beam.beams > MAX_BEAMS {
                return Err(Error::Sampling(format!("at most {MAX_BEAMS} beams")));
            }
            if self.logprobs.is_some() {
                return bad("log-probabilities are not reported with beam search");
            }
            if self.repeat_penalty != 1.0
                || self.frequency_penalty != 0.0
                || self.presence_penalty != 0.0
                || !self.logit_bias.is_empty()
            {
                return bad("beam search scores the model's own log-probabilities: penalties and logit bias do not apply");
            }
        } else if self.length_penalty != 0.0 {
            return bad("a length penalty needs beam search (beams ≥ 1)");
        }
        Ok(())
    }

    /// The beam search these parameters ask for (`None`: sampling).
    pub fn beam(&self) -> Option<BeamParams> {
        (self.beams > 0).then_some(BeamParams {
            beams: self.beams,
            length_penalty: self.length_penalty,
            max_tokens: self.max_tokens,
        })
    }

    /// [`SamplingParams::validate`], and every biased token id is one of the `vocab_size` tokens.
    pub fn validate_for(&self, vocab_size: usize) -> Result<()> {
        self.validate()?;
        match self
            .logit_bias
            .keys()
            .find(|&&id| id as usize >= vocab_size)
        {
            Some(id) => Err(Error::Sampling(format!(
                "logit bias names token {id}, but the vocabulary has {vocab_size} tokens"
            ))),
            None => Ok(()),
        }
    }
}

/// The log-probabilities of one step, from the model's own distribution (the logits before
/// penalties, bias, temperature and truncation).
#[derive(Debug, Clone, PartialEq)]
pub struct Logprobs {
    /// Log-probability of the chosen token.
    pub chosen: f32,
    /// The most likely tokens and their log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// One sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The token id.
    pub id: u32,
    /// Its log-probabilities, when [`SamplingParams::logprobs`] asked for them.
    pub logprobs: Option<Logprobs>,
}

/// Picks tokens from logits according to [`SamplingParams`].
pub struct Sampler {
    processor: LogitsProcessor,
    params: SamplingParams,
}

impl Sampler {
    /// A sampler for `params` (which must be valid).
    pub fn new(params: &SamplingParams) -> Result<Self> {
        params.validate()?;
        let t = params.temperature;
        let sampling = match (t, params.top_k, params.top_p) {
            (0.0, _, _) => Sampling::ArgMax,
            (t, 0, p) if p >= 1.0 => Sampling::All { temperature: t },
            (t, 0, p) => Sampling::TopP { p, temperature: t },
            (t, k, p) if p >= 1.0 => Sampling::TopK { k, temperature: t },
            (t, k, p) => Sampling::TopKThenTopP {
                k,
                p,
                temperature: t,
            },
        };
        Ok(Self {
            processor: LogitsProcessor::from_sampling(params.seed, sampling),
            params: params.clone(),
        })
    }

    /// The next token given the logits, the tokens so far (`context`, for the repetition
    /// penalty) and the tokens this reply generated so far (`generated`, for the frequency and
    /// presence penalties).
    pub fn sample(
        &mut self,
        logits: &Tensor,
        context: &[u32],
        generated: &[u32],
    ) -> Result<Sampled> {
        self.sample_within(logits, context, generated, |_| Ok(()))
    }

    /// [`Sampler::sample`] after `constrain` has set the logits of forbidden tokens to −∞ (after
    /// the penalties and bias, so no bias brings a forbidden token back; the log-probabilities
    /// stay the model's own).
    pub fn sample_within(
        &mut self,
        logits: &Tensor,
        context: &[u32],
        generated: &[u32],
        constrain: impl FnOnce(&mut [f32]) -> Result<()>,
    ) -> Result<Sampled> {
        let mut v: Vec<f32> = logits.to_vec1()?;
        let logprobs = self.params.logprobs.map(|n| top_logprobs(&v, n));
        let p = &self.params;
        if p.repeat_penalty != 1.0 {
            let start = context.len().saturating_sub(p.repeat_last_n);
            let mut seen: Vec<u32> = context[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                if let Some(l) = v.get_mut(id as usize) {
                    *l = if *l >= 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                }
            }
        }
        if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            let mut counts: BTreeMap<u32, f32> = BTreeMap::new();
            for &id in generated {
                *counts.entry(id).or_default() += 1.0;
            }
            for (id, n) in counts {
                if let Some(l) = v.get_mut(id as usize) {
                    *l -= n * p.frequency_penalty + p.presence_penalty;
                }
            }
        }
        for (&id, &bias) in &p.logit_bias {
            if let Some(l) = v.get_mut(id as usize) {
                *l += bias;
            }
        }
        constrain(&mut v)?;
        if p.min_p > 0.0 {
            let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let floor = max + (p.min_p as f32).ln();
            for l in v.iter_mut().filter(|l| **l < floor) {
                *l = f32::NEG_INFINITY;
            }
        }
        let n = v.len();
        let id = self
            .processor
            .sample(&Tensor::from_vec(v, n, &Device::Cpu)?)?;
        let logprobs = logprobs.map(|(top, lse)| Logprobs {
            chosen: logits_at(logits, id).map_or(f32::NEG_INFINITY, |l| (l as f64 - lse) as f32),
            top,
        });
        Ok(Sampled { id, logprobs })
    }
}

/// The logit of token `id`, if the vocabulary has it.
fn logits_at(logits: &Tensor, id: u32) -> Option<f32> {
    logits.get(id as usize).ok()?.to_scalar::<f32>().ok()
}

/// The `n` most likely tokens' log-probabilities (most likely first, ties to the lower id), and
/// the log of the softmax's denominator.
fn top_logprobs(logits: &[f32], n: usize) -> (Vec<(u32, f32)>, f64) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let n = n.min(order.len());
    if n > 0 && n < order.len() {
        order.select_nth_unstable_by(n - 1, by_logit);
    }
    order.truncate(n);
    order.sort_by(by_logit);
    let top = order
        .into_iter()
        .map(|id| (id, (logits[id as usize] as f64 - lse) as f32))
        .collect();
    (top, lse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    /// The token `p` picks from `v`, given the reply so far.
    fn pick(p: &SamplingParams, v: &[f32], generated: &[u32]) -> u32 {
        Sampler::new(p)
            .unwrap()
            .sample(&logits(v), generated, generated)
            .unwrap()
            .id
    }

    #[test]
    fn greedy_takes_the_largest() {
        assert_eq!(
            pick(&SamplingParams::greedy(8), &[0.1, 3.0, 2.9, -1.0], &[]),
            1
        );
    }

    #[test]
    fn repeat_penalty_changes_the_greedy_choice() {
        let p = SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy(8)
        };
        let mut s = Sampler::new(&p).unwrap();
        let v = logits(&[0.1, 3.0, 2.9, -1.0]);
        assert_eq!(s.sample(&v, &[1], &[]).unwrap().id, 2);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_is_reproducible() {
        let v = logits(&[0.5, 0.4, 0.3, 0.2, 0.1, 0.0]);
        let k1 = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            ..SamplingParams::default()
        };
        let mut s = Sampler::new(&k1).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&v, &[], &[]).unwrap().id, 0);
        }
        let hot = SamplingParams {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            ..SamplingParams::default()
        };
        let draw = |seed| {
            let mut s = Sampler::new(&SamplingParams {
                seed,
                ..hot.clone()
            })
            .unwrap();
            (0..32)
                .map(|_| s.sample(&v, &[], &[]).unwrap().id)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(
            draw(7).iter().any(|&t| t != 0),
            "temperature 1.5 should not be greedy"
        );
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let v = logits(&[10.0, 9.0, -10.0, -10.0]);
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            repeat_penalty: 1.0,
            ..SamplingParams::default()
        };
        let mut s = Sampler::new(&p).unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&v, &[], &[]).unwrap().id, 0);
        }
    }

    #[test]
    fn min_p_drops_tokens_far_below_the_most_likely() {
        // p(2) / p(0) = e^-2 ≈ 0.135: under min-p 0.2 it is dropped, under 0.1 it stays.
        let v = logits(&[2.0, 1.9, 0.0, -5.0]);
        let draws = |min_p| {
            let mut s = Sampler::new(&SamplingParams {
                temperature: 1.5,
                top_k: 0,
                top_p: 1.0,
                min_p,
                seed: 3,
                ..SamplingParams::default()
            })
            .unwrap();
            (0..400)
                .map(|_| s.sample(&v, &[], &[]).unwrap().id)
                .collect::<Vec<_>>()
        };
        let kept = draws(0.2);
        assert!(kept.iter().all(|&t| t < 2), "{kept:?}");
        assert!(kept.contains(&0) && kept.contains(&1));
        assert!(draws(0.1).contains(&2));
        assert!(draws(0.0).contains(&3) || draws(0.0).contains(&2));
    }

    #[test]
    fn frequency_and_presence_penalties_count_the_reply_so_far() {
        let v = [3.0, 2.5, 0.0];
        let presence = SamplingParams {
            presence_penalty: 1.0,
            ..SamplingParams::greedy(8)
        };
        assert_eq!(pick(&presence, &v, &[]), 0);
        assert_eq!(pick(&presence, &v, &[0]), 1);
        let frequency = SamplingParams {
            frequency_penalty: 0.3,
            ..SamplingParams::greedy(8)
        };
        // Once: 3.0 − 0.3 > 2.5; twice: 3.0 − 0.6 < 2.5.
        assert_eq!(pick(&frequency, &v, &[0]), 0);
        assert_eq!(pick(&frequency, &v, &[0, 0]), 1);
        // A negative penalty encourages repeats.
        let encourage = SamplingParams {
            presence_penalty: -1.0,
            ..SamplingParams::greedy(8)
        };
        assert_eq!(pick(&encourage, &v, &[1]), 1);
    }

    #[test]
    fn logit_bias_moves_the_choice_and_names_real_tokens() {
        let p = SamplingParams {
            logit_bias: BTreeMap::from([(2, 5.0), (0, -100.0)]),
            ..SamplingParams::greedy(8)
        };
        assert_eq!(pick(&p, &[3.0, 2.5, 0.0], &[]), 2);
        assert!(p.validate_for(3).is_ok());
        let err = p.validate_for(2).unwrap_err().to_string();
        assert!(err.contains("logit bias names token 2"), "{err}");
    }

    #[test]
    fn logprobs_are_the_model_distribution_most_likely_first() {
        let v = [1.0, 2.0, 3.0, 2.0, -1.0];
        let lse = v.iter().map(|&l: &f32| (l as f64).exp()).sum::<f64>().ln();
        let lp = |l: f32| (l as f64 - lse) as f32;
        let sample = |logprobs, repeat_penalty, context: &[u32]| {
            let p = SamplingParams {
                logprobs,
                repeat_penalty,
                ..SamplingParams::greedy(8)
            };
            let mut s = Sampler::new(&p).unwrap();
            s.sample(&logits(&v), context, &[]).unwrap()
        };
        let got = sample(Some(3), 1.0, &[]);
        assert_eq!(got.id, 2);
        let logprobs = got.logprobs.unwrap();
        assert_eq!(logprobs.chosen, lp(3.0));
        // Ties are listed by id.
        assert_eq!(logprobs.top, vec![(2, lp(3.0)), (1, lp(2.0)), (3, lp(2.0))]);
        // The penalty moves the choice off token 2, not the reported distribution.
        let got = sample(Some(1), 10.0, &[2]);
        assert_ne!(got.id, 2);
        let logprobs = got.logprobs.unwrap();
        assert_eq!(logprobs.chosen, lp(2.0));
        assert_eq!(logprobs.top, vec![(2, lp(3.0))]);
        // The chosen token only; more alternatives than tokens; none.
        assert_eq!(
            sample(Some(0), 1.0, &[]).logprobs.unwrap(),
            Logprobs {
                chosen: lp(3.0),
                top: vec![]
            }
        );
        let top = sample(Some(20), 1.0, &[]).logprobs.unwrap().top;
        assert_eq!(top.len(), 5);
        let total: f64 = top.iter().map(|&(_, l)| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!(sample(None, 1.0, &[]).logprobs.is_none());
    }

    #[test]
    fn invalid_parameters_are_errors() {
        for p in [
            SamplingParams {
                temperature: -1.0,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            SamplingParams {
                min_p: 1.5,
                ..Default::default()
            },
            SamplingParams {
                repeat_penalty: 0.0,
                ..Default::default()
            },
            SamplingParams {
                frequency_penalty: 2.5,
                ..Default::default()
            },
            SamplingParams {
                presence_penalty: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                logit_bias: BTreeMap::from([(1, 101.0)]),
                ..Default::default()
            },
            SamplingParams {
                logprobs: Some(21),
                ..Default::default()
            },
            SamplingParams {
                max_tokens: 0,
                ..Default::default()
            },
            SamplingParams {
                stop: vec![String::new()],
                ..Default::default()
            },
        ] {
            assert!(matches!(Sampler::new(&p), Err(Error::Sampling(_))), "{p:?}");
        }
    }

    #[test]
    fn params_read_from_json_keep_their_defaults() {
        let p: SamplingParams =
            serde_json::from_str(r#"{"min_p":0.05,"logit_bias":{"7":-2.5},"stop":["\n"]}"#)
                .unwrap();
        assert_eq!(p.min_p, 0.05);
        assert_eq!(p.logit_bias, BTreeMap::from([(7, -2.5)]));
        assert_eq!(p.stop, ["\n"]);
        assert_eq!(p.top_k, SamplingParams::default().top_k);
    }
}
