//! Stage 2 of the data flow: tensors → logits.
//!
//! One config-driven decoder for every architecture Wick runs. A block is: norm → causal
//! self-attention (rotary or learned positions, grouped-query heads, optional bias, optional
//! sliding window) with a KV cache → residual → norm → feed-forward (gated or plain; SiLU, GELU
//! or ReLU; dense or a mixture of experts) → residual; then a final norm and a tied or separate
//! output head. What differs between Llama, Mistral, Mixtral, Qwen2 and GPT-2 is data in
//! [`Config`], read in one place per file format ([`Config::from_gguf`], [`Config::from_hf`]).
//!
//! The rooms: `config` (the switches and their readers), `layers` (matmuls, norms,
//! feed-forward, embeddings), `activation` (the feed-forward's activations), `cache` (the KV
//! caches), `load` (tensors → a [`Model`]); this file holds the model and its forward pass.

mod activation;
mod cache;
mod config;
mod layers;
mod load;
pub mod profile;
mod snapshot;

use candle_core::{Device, Tensor, D};
use candle_nn::ops::softmax_last_dim;
use candle_nn::rotary_emb::{rope, rope_i};

pub use config::{Activation, Config, Norm, Positions, RopeScaling};

use crate::error::{Error, Result};
use crate::kernels;
pub use cache::KvType;
use cache::{CpuCache, GpuCache};
use layers::{Embedding, Ffn, Linear, NormLayer, Rope};
use profile::{time, Stage};

/// One transformer block's weights and cache.
struct Block {
    attn_norm: NormLayer,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    /// Per-head norms of q and k (Gemma 3).
    qk_norms: Option<(NormLayer, NormLayer)>,
    wo: Linear,
    /// Norm of attention's output before the residual add (Gemma 3).
    post_attn_norm: Option<NormLayer>,
    ffn_norm: NormLayer,
    ffn: Ffn,
    /// Norm of the feed-forward's output before the residual add (Gemma 3).
    post_ffn_norm: Option<NormLayer>,
    /// Positions this block's queries see, themselves included (`None`: all before them).
    window: Option<usize>,
    /// Index of this block's rotary tables in `Model::ropes`.
    rope: usize,
    /// The cache Wick's attention kernel reads, on the CPU.
    cpu_cache: CpuCache,
    /// The cache Candle's attention reads, on other devices (GPUs).
    gpu_cache: GpuCache,
}

/// What every block of one forward call shares.
struct Step<'a> {
    cfg: &'a Config,
    pos: usize,
    seq: usize,
    /// llama.cpp's `llama` rope layout (adjacent pairs) rather than halves.
    interleaved: bool,
    /// Factor on q that turns the kernel's 1/√head_dim into the model's attention scale.
    q_scale: Option<f32>,
    /// Additive masks for global and sliding blocks (GPU path; `None` when nothing is hidden).
    masks: [Option<Tensor>; 2],
    /// Positions a KV cache may grow to ([`Model::set_context_limit`]).
    limit: usize,
}

impl Block {
    /// Attention of `h` (`seq` normed rows, on the CPU) over this block's cache, before the
    /// output projection: Wick's kernels on plain rows.
    fn attend_rows(&mut self, h: &[f32], tables: Option<&mut Rope>, s: &Step) -> Result<Vec<f32>> {
        let (cfg, hd) = (s.cfg, s.cfg.head_dim);
        let [mut q, mut k, v] = time(Stage::QkvMatmul, || {
            Linear::forward_many_rows([&self.wq, &self.wk, &self.wv], h, s.seq)
        })?;
        if let Some((qn, kn)) = &self.qk_norms {
            let _span = profile::span(Stage::Norm);
            q = qn.forward_rows(&q)?;
            k = kn.forward_rows(&k)?;
        }
        let rope_span = profile::span(Stage::Rope);
        if let Some(tables) = tables {
            let t = tables.rows(s.pos + s.seq, cfg.context_length);
            kernels::rope::rope(&mut q, s.pos, cfg.n_heads, hd, t, s.interleaved);
            kernels::rope::rope(&mut k, s.pos, cfg.n_kv_heads, hd, t, s.interleaved);
        }
        if let Some(c) = s.q_scale {
            q.iter_mut().for_each(|v| *v *= c);
        }
        drop(rope_span);
        let c = &mut self.cpu_cache;
        time(Stage::KvCache, || {
            c.append(s.pos, &k, &v, cfg.n_kv_heads, hd, s.limit)
        });
        let shape = kernels::attention::Shape {
            heads: cfg.n_heads,
            kv_heads: cfg.n_kv_heads,
            head_dim: hd,
            window: self.window,
            stride: c.stride,
        };
        Ok(time(Stage::Attention, || {
            kernels::attention::attend(&q, c.keys(), c.values(), s.pos, shape)
        }))
    }

    /// The block on `x` (`seq` rows of the hidden size, on the CPU), in place: attention and
    /// feed-forward, each added back. No tensors: the values go from kernel to kernel.
    fn forward_rows(&mut self, x: &mut [f32], tables: Option<&mut Rope>, s: &Step) -> Result<()> {
        let h = time(Stage::Norm, || self.attn_norm.forward_rows(x))?;
        let y = self.attend_rows(&h, tables, s)?;
        let y = time(Stage::OutMatmul, || self.wo.forward_rows(&y, s.seq))?;
        let y = time(Stage::Norm, || {
            NormLayer::maybe_rows(&self.post_attn_norm, y)
        })?;
        time(Stage::Residual, || layers::add_in_place(x, &y));
        let h = time(Stage::Norm, || self.ffn_norm.forward_rows(x))?;
        let y = self.ffn.forward_rows(&h, s.seq)?;
        let y = time(Stage::Norm, || {
            NormLayer::maybe_rows(&self.post_ffn_norm, y)
        })?;
        time(Stage::Residual, || layers::add_in_place(x, &y));
        Ok(())
    }

    /// Attention of `h` (normed input `[1, seq, hidden]`) over this block's cache, before the
    /// output projection, with Candle's ops (off the CPU).
    fn attend(&mut self, h: &Tensor, tables: Option<&mut Rope>, s: &Step) -> Result<Tensor> {
        let (cfg, hd) = (s.cfg, s.cfg.head_dim);
        let [q, k, v] = time(Stage::QkvMatmul, || {
            Linear::forward_many([&self.wq, &self.wk, &self.wv], h)
        })?;
        let (mut q, mut k) = (q, k);
        if let Some((qn, kn)) = &self.qk_norms {
            let _span = profile::span(Stage::Norm);
            q = qn.forward_heads(&q, hd)?;
            k = kn.forward_heads(&k, hd)?;
        }
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((1, s.seq, n, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (mut q, mut k, v) = (
            heads(q, cfg.n_heads)?,
            heads(k, cfg.n_kv_heads)?,
            heads(v, cfg.n_kv_heads)?,
        );
        if let Some((cos, sin)) = tables.and_then(|r| r.tensors.as_ref()) {
            let (cos, sin) = (cos.narrow(0, s.pos, s.seq)?, sin.narrow(0, s.pos, s.seq)?);
            let rot = if s.interleaved { rope_i } else { rope };
            q = rot(&q, &cos, &sin)?;
            k = rot(&k, &cos, &sin)?;
        }
        let (k, v) = self.gpu_cache.append(&k, &v)?;
        let n_rep = cfg.n_heads / cfg.n_kv_heads;
        let (k, v) = (repeat_kv(k, n_rep)?, repeat_kv(v, n_rep)?);
        let scale = cfg.query_pre_attn_scalar.unwrap_or(hd as f32);
        let mut att = (q.matmul(&k.t()?)? * (1.0 / f64::from(scale).sqrt()))?;
        if let Some(mask) = &s.masks[usize::from(self.window.is_some())] {
            att = att.broadcast_add(mask)?;
        }
        let att = softmax_last_dim(&att)?;
        let y = att.matmul(&v)?.transpose(1, 2)?;
        Ok(y.reshape((1, s.seq, cfg.n_heads * hd))?)
    }

    /// The block on `x` (`[1, seq, hidden]`, off the CPU): attention and feed-forward, each
    /// added back.
    fn forward(&mut self, x: Tensor, tables: Option<&mut Rope>, s: &Step) -> Result<Tensor> {
        let h = time(Stage::Norm, || self.attn_norm.forward(&x))?;
        let y = self.attend(&h, tables, s)?;
        let y = time(Stage::OutMatmul, || self.wo.forward(&y))?;
        let y = time(Stage::Norm, || NormLayer::maybe(&self.post_attn_norm, y))?;
        let x = time(Stage::Residual, || x + y)?;
        let h = time(Stage::Norm, || self.ffn_norm.forward(&x))?;
        let y = self.ffn.forward(&h)?;
        let y = time(Stage::Norm, || NormLayer::maybe(&self.post_ffn_norm, y))?;
        Ok(time(Stage::Residual, || x + y)?)
    }
}

/// One position's keys and values in every block, copied out of the KV cache ([`Model::kv_row`])
/// to be written back later ([`Model::set_kv_row`]): what a beam keeps of a position it ran.
#[derive(Debug, Clone, PartialEq)]
pub struct KvRow {
    /// Per block: keys then values, position-major (`kv_heads × head_dim` each).
    blocks: Vec<(Vec<f32>, Vec<f32>)>,
}

impl KvRow {
    /// Bytes of keys and values it holds.
    pub fn bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|(k, v)| (k.len() + v.len()) * std::mem::size_of::<f32>())
            .sum()
    }
}

/// A decoder-only transformer ready to run, with its KV cache.
pub struct Model {
    config: Config,
    embed: Embedding,
    /// Learned position embeddings `[context, hidden]` (GPT-2).
    position_embd: Option<Tensor>,
    blocks: Vec<Block>,
    norm: NormLayer,
    head: Linear,
    /// Rotary tables, when positions are rotary: one set, or two when sliding blocks have a base
    /// of their own (Gemma 3); each block names its set.
    ropes: Vec<Rope>,
    device: Device,
    /// Positions the KV cache may hold: the model's context length unless the caller set less.
    limit: usize,
}

impl Model {
    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Positions the KV cache may hold (prompt and reply together).
    pub fn context_limit(&self) -> usize {
        self.limit
    }

    /// Bounds the KV cache to `n` positions (at least 1, at most the model's context length), so
    /// it never takes more memory than that; returns the bound. Positions past it are forgotten.
    pub fn set_context_limit(&mut self, n: usize) -> usize {
        self.limit = n.clamp(1, self.config.context_length);
        self.truncate_cache(self.limit);
        self.limit
    }

    /// Bytes of KV cache the model holds at its context limit (f32 on GPUs; the CPU cache's
    /// [`KvType`] on the CPU).
    pub fn kv_bytes_at_limit(&self) -> usize {
        let c = &self.config;
        let size = match self.kv_type() {
            KvType::F16 if self.device.is_cpu() => 2,
            _ => 4,
        };
        2 * c.n_layers * c.n_kv_heads * c.head_dim * self.limit * size
    }

    /// How the CPU KV cache stores keys and values.
    pub fn kv_type(&self) -> KvType {
        self.blocks
            .first()
            .map_or(KvType::default(), |b| b.cpu_cache.kv_type())
    }

    /// Stores the CPU KV cache's keys and values as `t` from now on; forgets every cached
    /// position.
    pub fn set_kv_type(&mut self, t: KvType) {
        for b in &mut self.blocks {
            b.cpu_cache = CpuCache::new(t);
            b.gpu_cache.len = 0;
        }
    }

    /// Bytes of weights a decode step reads once each: every matmul's, the output head's
    /// included (the embedding lookup reads one row). What bounds decode by memory bandwidth.
    pub fn weight_bytes_per_token(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                [&b.wq, &b.wk, &b.wv, &b.wo]
                    .iter()
                    .map(|l| l.bytes())
                    .sum::<usize>()
                    + b.ffn.bytes_per_token()
            })
            .sum();
        blocks + self.head.bytes()
    }

    /// Number of positions held in the KV cache.
    pub fn cached_len(&self) -> usize {
        self.blocks.first().map_or(0, |b| {
            if self.device.is_cpu() {
                b.cpu_cache.len
            } else {
                b.gpu_cache.len
            }
        })
    }

    /// Forgets every position from `len` on, so the next forward continues from there.
    pub fn truncate_cache(&mut self, len: usize) {
        for b in &mut self.blocks {
            b.gpu_cache.len = b.gpu_cache.len.min(len);
            b.cpu_cache.len = b.cpu_cache.len.min(len);
        }
    }

    /// Bytes of keys and values one cached position takes, over all blocks.
    pub fn kv_row_bytes(&self) -> usize {
        let c = &self.config;
        self.blocks.len() * 2 * c.n_kv_heads * c.head_dim * std::mem::size_of::<f32>()
    }

    /// A copy of the keys and values the cache holds at position `pos` (CPU caches only).
    pub fn kv_row(&self, pos: usize) -> Result<KvRow> {
        let c = &self.config;
        self.cpu_cache_only(pos + 1)?;
        let blocks = self
            .blocks
            .iter()
            .map(|b| b.cpu_cache.row(pos, c.n_kv_heads, c.head_dim))
            .collect();
        Ok(KvRow { blocks })
    }

    /// Writes `row` at position `pos` and forgets every position after it, so the next forward
    /// continues from `pos + 1` (positions `..pos` must be cached; CPU caches only).
    pub fn set_kv_row(&mut self, pos: usize, row: &KvRow) -> Result<()> {
        self.cpu_cache_only(pos)?;
        if row.blocks.len() != self.blocks.len() {
            return Err(Error::Sampling("a KV row of another model".into()));
        }
        let (c, limit) = (&self.config, self.limit);
        for (b, (k, v)) in self.blocks.iter_mut().zip(&row.blocks) {
            b.cpu_cache
                .append(pos, k, v, c.n_kv_heads, c.head_dim, limit);
        }
        Ok(())
    }

    /// Fails unless the cache is the CPU's and holds at least `len` positions.
    fn cpu_cache_only(&self, len: usize) -> Result<()> {
        if !self.device.is_cpu() {
            return Err(Error::Sampling(
                "beam search keeps its branches in the CPU KV cache; run it on the CPU".into(),
            ));
        }
        if self.cached_len() < len {
            return Err(Error::Sampling(format!(
                "KV position {} asked for, but the cache holds {}",
                len.saturating_sub(1),
                self.cached_len()
            )));
        }
        Ok(())
    }

    /// Runs `ids` at the positions after those already cached and returns the logits of the
    /// last one as a `[vocab]` f32 tensor.
    pub fn forward(&mut self, ids: &[u32]) -> Result<Tensor> {
        let seq = ids.len();
        let pos = self.cached_len();
        if seq == 0 {
            return Err(Error::EmptyPrompt);
        }
        if pos + seq > self.limit {
            return Err(Error::ContextOverflow {
                needed: pos + seq,
                limit: self.limit,
            });
        }
        let _forward = profile::forward(seq);
        let cfg = &self.config;
        let embed_span = profile::span(Stage::Embed);
        let mut x = self.embed.forward(ids, &self.device)?;
        if let Some(scale) = cfg.embed_scale {
            x = (x * f64::from(scale))?;
        }
        if let Some(pe) = &self.position_embd {
            x = (x + pe.narrow(0, pos, seq)?)?;
        }
        let mut x = x.unsqueeze(0)?;
        drop(embed_span);
        let gpu = !self.device.is_cpu();
        let mask = |window| match gpu {
            true => attention_mask(seq, pos, window, &self.device),
            false => Ok(None),
        };
        let hd = cfg.head_dim as f32;
        let step = Step {
            cfg,
            pos,
            seq,
            interleaved: matches!(
                cfg.positions,
                Positions::Rotary {
                    interleaved: true,
                    ..
                }
            ),
            // The CPU kernel scales scores by 1/√head_dim.
            q_scale: cfg
                .query_pre_attn_scalar
                .filter(|&s| s != hd)
                .map(|s| (hd / s).sqrt()),
            masks: [mask(None)?, mask(cfg.sliding_window)?],
            limit: self.limit,
        };
        let logits = if gpu {
            for b in &mut self.blocks {
                x = b.forward(x, self.ropes.get_mut(b.rope), &step)?;
            }
            let last = x.narrow(1, seq - 1, 1)?;
            let last = time(Stage::Norm, || self.norm.forward(&last))?;
            let _span = profile::span(Stage::LmHead);
            self.head.forward(&last)?.flatten_all()?
        } else {
            let mut x = x.flatten_all()?.to_vec1::<f32>()?;
            for b in &mut self.blocks {
                b.forward_rows(&mut x, self.ropes.get_mut(b.rope), &step)?;
            }
            let last = &x[(seq - 1) * cfg.hidden_size..];
            let last = time(Stage::Norm, || self.norm.forward_rows(last))?;
            let _span = profile::span(Stage::LmHead);
            let logits = self.head.forward_rows(&last, 1)?;
            let n = logits.len();
            Tensor::from_vec(logits, n, &self.device)?
        };
        match cfg.final_logit_softcap {
            Some(cap) => softcap(&logits, cap),
            None => Ok(logits),
        }
    }
}

/// `cap · tanh(x / cap)`; on the CPU with `libm`, so native and wasm agree to the bit.
fn softcap(x: &Tensor, cap: f32) -> Result<Tensor> {
    if x.device().is_cpu() {
        let v: Vec<f32> = x.to_vec1()?;
        let v: Vec<f32> = v.iter().map(|&e| cap * libm::tanhf(e / cap)).collect();
        return Ok(Tensor::from_vec(v, x.shape(), x.device())?);
    }
    Ok(((x / f64::from(cap))?.tanh()? * f64::from(cap))?)
}

/// Shares each key/value head among `n_rep` query heads.
fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.contiguous()?);
    }
    let (b, h, s, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .expand((b, h, n_rep, s, d))?
        .reshape((b, h * n_rep, s, d))?)
}

/// Additive mask for a chunk of `seq` tokens starting at `pos`: hides future positions and,
/// with a sliding window, positions `window` or more behind. `None` when nothing is hidden.
fn attention_mask(
    seq: usize,
    pos: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
    let total = pos + seq;
    let window = window.filter(|&w| w < total);
    if seq == 1 && window.is_none() {
        return Ok(None);
    }
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| {
            let q = pos + i;
            (0..total).map(move |j| {
                let outside = window.is_some_and(|w| q >= j + w);
                if j > q || outside {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Some(Tensor::from_vec(mask, (seq, total), device)?))
}

/// Index of the largest value (ties go to the lowest index).
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}
