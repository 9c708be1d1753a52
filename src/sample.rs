//! Stage 3 of the data flow: logits → next token (greedy, temperature, top-k, top-p,
//! repetition penalty, seeded).

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy (always the most likely token).
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens (0 = no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = no limit).
    pub top_p: f64,
    /// Divide the logits of recently seen tokens by this (1 = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the random choice.
    pub seed: u64,
    /// Most tokens one reply may have.
    pub max_tokens: usize,
    /// Keep going through end-of-generation tokens (benchmarks want a fixed amount of work).
    pub ignore_eog: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            // Off by default, as in llama.cpp: on small models it pushes answers off the prompt's words.
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 299_792_458,
            max_tokens: 512,
            ignore_eog: false,
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
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return bad("repeat penalty must be > 0");
        }
        if self.max_tokens == 0 {
            return bad("max tokens must be at least 1");
        }
        Ok(())
    }
}

/// Picks tokens from logits according to [`SamplingParams`].
pub struct Sampler {
    processor: LogitsProcessor,
    repeat_penalty: f32,
    repeat_last_n: usize,
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
            repeat_penalty: params.repeat_penalty,
            repeat_last_n: params.repeat_last_n,
        })
    }

    /// The next token given the logits and the tokens so far (for the repetition penalty).
    pub fn sample(&mut self, logits: &Tensor, context: &[u32]) -> Result<u32> {
        let logits = if self.repeat_penalty == 1.0 || context.is_empty() {
            logits.clone()
        } else {
            let start = context.len().saturating_sub(self.repeat_last_n);
            candle_transformers::utils::apply_repeat_penalty(
                logits,
                self.repeat_penalty,
                &context[start..],
            )?
        };
        Ok(self.processor.sample(&logits)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn greedy_takes_the_largest() {
        let mut s = Sampler::new(&SamplingParams::greedy(8)).unwrap();
        assert_eq!(s.sample(&logits(&[0.1, 3.0, 2.9, -1.0]), &[]).unwrap(), 1);
    }

    #[test]
    fn repeat_penalty_changes_the_greedy_choice() {
        let p = SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy(8)
        };
        let mut s = Sampler::new(&p).unwrap();
        assert_eq!(s.sample(&logits(&[0.1, 3.0, 2.9, -1.0]), &[1]).unwrap(), 2);
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
            assert_eq!(s.sample(&v, &[]).unwrap(), 0);
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
                .map(|_| s.sample(&v, &[]).unwrap())
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
            assert_eq!(s.sample(&v, &[]).unwrap(), 0);
        }
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
                repeat_penalty: 0.0,
                ..Default::default()
            },
            SamplingParams {
                max_tokens: 0,
                ..Default::default()
            },
        ] {
            assert!(matches!(Sampler::new(&p), Err(Error::Sampling(_))), "{p:?}");
        }
    }
}
