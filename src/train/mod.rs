//! Training a small decoder from scratch: the stage that makes what the others read.
//!
//! It stands beside the inference flow and feeds its first stage:
//! corpus text → [`bpe`] (a tokenizer trained on the corpus) → token ids → random windows →
//! [`decoder`] (the Llama layout Wick runs, on candle-nn) → cross-entropy → Candle's autograd →
//! AdamW → [`export`]: a Hugging Face folder that [`crate::weights`] loads like any other.
//!
//! A [`Trainer`] advances one optimizer step per [`Trainer::step`], so a caller (the CLI's loop,
//! the browser worker) reports progress and yields between steps. Everything random — the
//! initial weights, the windows — comes from one seeded generator, so a seed gives the same
//! sequence of losses every run on the same machine.

pub mod bpe;
pub mod decoder;
pub mod export;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::error::{Error, Result};
use crate::model::{Activation, Config, Norm, Positions};
use crate::tokenizer::Tokenizer;
use decoder::Decoder;

/// What to train and how: the model's shape and the optimizer's settings. Every field has a
/// default sized for a 2-core machine (a few seconds for the default steps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Transformer blocks.
    pub layers: usize,
    /// Width of the residual stream.
    pub dim: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (fewer than `heads` for grouped-query attention).
    pub kv_heads: usize,
    /// Tokens per training window, and the model's context length.
    pub context: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Peak learning rate (after a linear warm-up; cosine decay to a tenth of it).
    pub lr: f64,
    /// Windows per step.
    pub batch: usize,
    /// Seed of the initial weights and of the windows' positions.
    pub seed: u64,
    /// Largest vocabulary of the BPE tokenizer, special tokens included
    /// ([`bpe::BYTE_VOCAB`]: plain bytes).
    pub vocab: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            layers: 2,
            dim: 64,
            heads: 4,
            kv_heads: 2,
            context: 64,
            steps: 500,
            lr: 6e-3,
            batch: 16,
            seed: 0,
            vocab: 512,
        }
    }
}

/// What one [`Trainer::step`] did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Steps done so far (1 after the first).
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// Mean cross-entropy of this step's batch, in nats per token, before the update.
    pub loss: f32,
    /// The learning rate the update used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f32,
    /// Tokens predicted in this step.
    pub tokens: usize,
    /// Seconds the step took (forward, backward, update).
    pub seconds: f64,
}

/// Gradients whose global norm exceeds this are scaled down to it.
const CLIP_NORM: f64 = 1.0;
/// One token in this many, at the end of the corpus, is held out of training.
const HELD_OUT: usize = 20;
/// Most windows the held-out loss is measured on.
const HELD_OUT_WINDOWS: usize = 32;
/// AdamW's decay of the matrices (norm weights are not decayed).
const WEIGHT_DECAY: f64 = 0.1;

/// splitmix64, and normals by Box–Muller with `libm`: the same numbers on every target.
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal value.
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        libm::sqrt(-2.0 * libm::log(u)) * libm::cos(2.0 * std::f64::consts::PI * v)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The [`Config`] of a Llama-style decoder of this shape (tied embeddings, SwiGLU, rotary on
/// the halves of each head), checked.
#[allow(clippy::too_many_arguments)]
pub fn llama_config(
    vocab: usize,
    dim: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
    context: usize,
    theta: f32,
) -> Result<Config> {
    let bad = |m: String| Err(Error::Train(m));
    if heads == 0 || !dim.is_multiple_of(heads) || !(dim / heads).is_multiple_of(2) {
        return bad(format!(
            "--dim {dim} must split into --heads {heads} heads of an even width"
        ));
    }
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return bad(format!(
            "--heads {heads} must be a multiple of --kv-heads {kv_heads}"
        ));
    }
    if layers == 0 || context < 2 {
        return bad("at least one layer and a context of two tokens are needed".into());
    }
    let cfg = Config {
        vocab_size: vocab,
        hidden_size: dim,
        intermediate_size: ffn,
        n_layers: layers,
        n_heads: heads,
        n_kv_heads: kv_heads,
        head_dim: dim / heads,
        context_length: context,
        norm: Norm::Rms,
        norm_eps: 1e-5,
        activation: Activation::Silu,
        gated_ffn: true,
        positions: Positions::Rotary {
            theta,
            interleaved: false,
            scaling: None,
        },
        qkv_bias: false,
        bias: false,
        ..Config::plain("llama".into())
    };
    decoder::check(&cfg)?;
    Ok(cfg)
}

/// A model being trained on a corpus, one optimizer step at a time.
pub struct Trainer {
    opts: TrainOptions,
    cfg: Config,
    tokenizer: Tokenizer,
    /// The corpus as token ids: the part trained on.
    ids: Vec<u32>,
    /// Its last twentieth, never trained on (empty when the corpus is too short to spare it).
    held_out: Vec<u32>,
    /// The weights by name, in name order.
    vars: Vec<(String, Var)>,
    model: Decoder,
    /// Matrices (decayed) and norm weights (not).
    optimizers: [AdamW; 2],
    rng: Rng,
    losses: Vec<f32>,
    device: Device,
}

impl Trainer {
    /// Trains the tokenizer on `corpus`, tokenizes it, and builds the initial model.
    pub fn new(corpus: &str, opts: TrainOptions) -> Result<Self> {
        if opts.steps == 0 || opts.batch == 0 {
            return Err(Error::Train(
                "--steps and --batch must be at least 1".into(),
            ));
        }
        if !(opts.lr.is_finite() && opts.lr > 0.0) {
            return Err(Error::Train(format!(
                "--lr {} is not a positive number",
                opts.lr
            )));
        }
        if opts.dim > 4096 || opts.layers > 64 || opts.context > 8192 || opts.vocab > 1 << 17 {
            return Err(Error::Train(
                "that model is far too large to train here (--dim ≤ 4096, --layers ≤ 64, \
                 --context ≤ 8192, --vocab ≤ 131072)"
                    .into(),
            ));
        }
        let tokenizer = bpe::train(corpus, opts.vocab)?;
        let mut ids = tokenizer.encode(corpus)?;
        if ids.len() <= opts.context {
            return Err(Error::Train(format!(
                "the corpus is {} tokens long; a training window needs {} (give more text or a smaller --context)",
                ids.len(),
                opts.context + 1
            )));
        }
        let spare = ids.len() / HELD_OUT;
        let held_out = if spare > opts.context && ids.len() - spare > opts.context {
            ids.split_off(ids.len() - spare)
        } else {
            Vec::new()
        };
        // SwiGLU's width: 8/3 of the stream (the parameters of a 4× plain MLP), rounded up to a
        // multiple of 32 so `wick quantize` can group every row.
        let ffn = (8 * opts.dim / 3).div_ceil(32) * 32;
        let cfg = llama_config(
            tokenizer.vocab_size(),
            opts.dim,
            opts.layers,
            opts.heads,
            opts.kv_heads,
            ffn,
            opts.context,
            10_000.0,
        )?;
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let mut rng = Rng::new(opts.seed);
        decoder::init(&varmap, &cfg, &mut rng, 1.0, DType::F32, &device)?;
        let model = Decoder::new(&cfg, &varmap, DType::F32, &device)?;
        let mut vars: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .map_err(|_| Error::Train("the weights' lock was poisoned by a panic".into()))?
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let group = |norms: bool| -> Vec<Var> {
            vars.iter()
                .filter(|(n, _)| decoder::is_norm(n) == norms)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let params = |weight_decay| ParamsAdamW {
            lr: opts.lr,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay,
        };
        let optimizers = [
            AdamW::new(group(false), params(WEIGHT_DECAY))?,
            AdamW::new(group(true), params(0.0))?,
        ];
        Ok(Self {
            opts,
            cfg,
            tokenizer,
            ids,
            held_out,
            vars,
            model,
            optimizers,
            rng,
            losses: Vec::new(),
            device,
        })
    }

    /// The learning rate of step `step` (0-based): linear warm-up over the first tenth (at most
    /// 100 steps), then cosine decay to a tenth of the peak.
    fn learning_rate(&self, step: usize) -> f64 {
        let (peak, total) = (self.opts.lr, self.opts.steps);
        let warmup = (total / 10).clamp(1, 100);
        if step < warmup {
            return peak * (step + 1) as f64 / warmup as f64;
        }
        let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
        let cosine = 0.5 * (1.0 + libm::cos(std::f64::consts::PI * progress.min(1.0)));
        peak * (0.1 + 0.9 * cosine)
    }

    /// `batch` windows of `context + 1` tokens at random places: inputs and next-token targets.
    fn batch(&mut self) -> Result<(Tensor, Tensor)> {
        let (b, t) = (self.opts.batch, self.opts.context);
        let mut inputs = Vec::with_capacity(b * t);
        let mut targets = Vec::with_capacity(b * t);
        for _ in 0..b {
            let start = self.rng.below(self.ids.len() - t);
            inputs.extend_from_slice(&self.ids[start..start + t]);
            targets.extend_from_slice(&self.ids[start + 1..start + t + 1]);
        }
        Ok((
            Tensor::from_vec(inputs, (b, t), &self.device)?,
            Tensor::from_vec(targets, (b, t), &self.device)?,
        ))
    }

    /// One optimizer step on a fresh batch; an error once every step is done.
    pub fn step(&mut self) -> Result<StepReport> {
        let step = self.losses.len();
        if step >= self.opts.steps {
            return Err(Error::Train(format!(
                "all {} steps are done",
                self.opts.steps
            )));
        }
        let t0 = Instant::now();
        let (inputs, targets) = self.batch()?;
        let loss = self.model.loss(&inputs, &targets)?;
        let mut grads = loss.backward()?;
        let mut sq = 0f64;
        for (_, v) in &self.vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += g
                    .sqr()?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
            }
        }
        let norm = sq.sqrt();
        if norm > CLIP_NORM {
            for (_, v) in &self.vars {
                if let Some(g) = grads.remove(v.as_tensor()) {
                    grads.insert(v.as_tensor(), (g * (CLIP_NORM / norm))?);
                }
            }
        }
        let lr = self.learning_rate(step);
        for opt in &mut self.optimizers {
            opt.set_learning_rate(lr);
            opt.step(&grads)?;
        }
        let loss = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        if !loss.is_finite() {
            return Err(Error::Train(format!(
                "the loss diverged at step {} (try a smaller --lr)",
                step + 1
            )));
        }
        self.losses.push(loss);
        Ok(StepReport {
            step: step + 1,
            steps: self.opts.steps,
            loss,
            lr,
            grad_norm: norm as f32,
            tokens: inputs.elem_count(),
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Whether every step is done.
    pub fn done(&self) -> bool {
        self.losses.len() >= self.opts.steps
    }

    /// The loss of every step so far.
    pub fn losses(&self) -> &[f32] {
        &self.losses
    }

    /// The options training runs with.
    pub fn options(&self) -> &TrainOptions {
        &self.opts
    }

    /// The model's configuration (as `config.json` will describe it).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The tokenizer trained on the corpus.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokens in the corpus (trained on and held out).
    pub fn corpus_tokens(&self) -> usize {
        self.ids.len() + self.held_out.len()
    }

    /// Mean cross-entropy on the held-out end of the corpus (consecutive windows of `context`
    /// tokens, at most 32 of them), or `None` when the corpus was too short to hold any out.
    pub fn held_out_loss(&self) -> Result<Option<f32>> {
        let t = self.opts.context;
        let n = (self.held_out.len().saturating_sub(1) / t).min(HELD_OUT_WINDOWS);
        if n == 0 {
            return Ok(None);
        }
        let inputs = Tensor::from_vec(self.held_out[..n * t].to_vec(), (n, t), &self.device)?;
        let targets = Tensor::from_vec(self.held_out[1..n * t + 1].to_vec(), (n, t), &self.device)?;
        let loss = self.model.loss(&inputs, &targets)?;
        Ok(Some(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?))
    }

    /// Number of trained weights.
    pub fn parameters(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The trainer's own logits for the last position of `ids` (to check that the exported
    /// folder computes the same).
    pub fn last_logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let x = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &self.device)?;
        let logits = self.model.forward(&x)?;
        Ok(logits.get(ids.len() - 1)?.to_vec1()?)
    }

    /// The model as a Hugging Face folder's files, plus `loss.svg`: `(name, bytes)`.
    pub fn files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut files = export::folder(&self.cfg, &self.vars, &self.tokenizer)?;
        files.push((
            "loss.svg".into(),
            export::loss_svg(&self.losses).into_bytes(),
        ));
        Ok(files)
    }
}
