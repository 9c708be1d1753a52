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
//! feed-forward, embeddings), `cache` (the KV caches), `load` (tensors → a [`Model`]); this
//! file holds the model and its forward pass.

mod cache;
mod config;
mod layers;
mod load;

use candle_core::{Device, Tensor, D};
use candle_nn::ops::softmax_last_dim;
use candle_nn::rotary_emb::{rope, rope_i};

pub use config::{Activation, Config, Norm, Positions, RopeScaling};

use crate::error::{Error, Result};
use crate::kernels;
use cache::{CpuCache, GpuCache};
use layers::{Embedding, Ffn, Linear, NormLayer};

/// One transformer block's weights and cache.
struct Block {
    attn_norm: NormLayer,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: NormLayer,
    ffn: Ffn,
    /// The cache Wick's attention kernel reads, on the CPU.
    cpu_cache: CpuCache,
    /// The cache Candle's attention reads, on other devices (GPUs).
    gpu_cache: GpuCache,
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
    /// Rotary tables `[context, head_dim / 2]`, when positions are rotary: as tensors (GPU
    /// path) and as rows (CPU path), the same values.
    rotary: Option<(Tensor, Tensor)>,
    /// The rotary frequencies; the CPU's rows of the tables are computed from them as positions
    /// are reached (the whole context's would cost a noticeable part of the load in wasm).
    inv_freq: Option<Vec<f64>>,
    rotary_rows: (Vec<f32>, Vec<f32>),
    device: Device,
}

impl Model {
    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.config
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

    /// Runs `ids` at the positions after those already cached and returns the logits of the
    /// last one as a `[vocab]` f32 tensor.
    pub fn forward(&mut self, ids: &[u32]) -> Result<Tensor> {
        let seq = ids.len();
        let pos = self.cached_len();
        if seq == 0 {
            return Err(Error::EmptyPrompt);
        }
        if pos + seq > self.config.context_length {
            return Err(Error::ContextOverflow {
                needed: pos + seq,
                limit: self.config.context_length,
            });
        }
        let cfg = &self.config;
        let mut x = self.embed.forward(ids, &self.device)?;
        if let Some(pe) = &self.position_embd {
            x = (x + pe.narrow(0, pos, seq)?)?;
        }
        let mut x = x.unsqueeze(0)?;
        let rotary = match &self.rotary {
            Some((cos, sin)) => Some((cos.narrow(0, pos, seq)?, sin.narrow(0, pos, seq)?)),
            None => None,
        };
        let interleaved = matches!(
            cfg.positions,
            Positions::Rotary {
                interleaved: true,
                ..
            }
        );
        let mask = attention_mask(seq, pos, cfg.sliding_window, &self.device)?;
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        let n_rep = cfg.n_heads / cfg.n_kv_heads;

        let cpu = self.device.is_cpu();
        let shape = kernels::attention::Shape {
            heads: cfg.n_heads,
            kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
            window: cfg.sliding_window,
            stride: 0,
        };
        for b in &mut self.blocks {
            let h = b.attn_norm.forward(&x)?;
            if cpu {
                let rows =
                    |t: Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
                let [q, k, v] = Linear::forward_many([&b.wq, &b.wk, &b.wv], &h)?;
                let (mut q, mut k, v) = (rows(q)?, rows(k)?, rows(v)?);
                if let Some(f) = &self.inv_freq {
                    let (cos, sin) = &mut self.rotary_rows;
                    let have = cos.len() / f.len().max(1);
                    if have < pos + seq {
                        let want = (pos + seq).max(2 * have).max(256).min(cfg.context_length);
                        let (c, s) = kernels::attention::rope_tables(f, have..want);
                        cos.extend(c);
                        sin.extend(s);
                    }
                    let (hd, t) = (cfg.head_dim, (cos.as_slice(), sin.as_slice()));
                    kernels::attention::rope(&mut q, pos, cfg.n_heads, hd, t, interleaved);
                    kernels::attention::rope(&mut k, pos, cfg.n_kv_heads, hd, t, interleaved);
                }
                let c = &mut b.cpu_cache;
                c.append(pos, &k, &v, cfg.n_kv_heads, cfg.head_dim);
                let shape = kernels::attention::Shape {
                    stride: c.stride,
                    ..shape
                };
                let y = kernels::attention::attend(&q, &c.k, &c.v, pos, shape);
                let y = Tensor::from_vec(y, (1, seq, cfg.n_heads * cfg.head_dim), &self.device)?;
                x = (x + b.wo.forward(&y)?)?;
                let h = b.ffn_norm.forward(&x)?;
                x = (x + b.ffn.forward(&h)?)?;
                continue;
            }
            let heads = |t: Tensor, n: usize| -> Result<Tensor> {
                Ok(t.reshape((1, seq, n, cfg.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let mut q = heads(b.wq.forward(&h)?, cfg.n_heads)?;
            let mut k = heads(b.wk.forward(&h)?, cfg.n_kv_heads)?;
            let v = heads(b.wv.forward(&h)?, cfg.n_kv_heads)?;
            if let Some((cos, sin)) = &rotary {
                let rot = if interleaved { rope_i } else { rope };
                q = rot(&q, cos, sin)?;
                k = rot(&k, cos, sin)?;
            }
            let (k, v) = b.gpu_cache.append(&k, &v)?;
            let k = repeat_kv(k, n_rep)?;
            let v = repeat_kv(v, n_rep)?;
            let mut att = (q.matmul(&k.t()?)? * scale)?;
            if let Some(mask) = &mask {
                att = att.broadcast_add(mask)?;
            }
            let att = softmax_last_dim(&att)?;
            let y =
                att.matmul(&v)?
                    .transpose(1, 2)?
                    .reshape((1, seq, cfg.n_heads * cfg.head_dim))?;
            x = (x + b.wo.forward(&y)?)?;
            let h = b.ffn_norm.forward(&x)?;
            x = (x + b.ffn.forward(&h)?)?;
        }
        let last = x.narrow(1, seq - 1, 1)?;
        let last = self.norm.forward(&last)?;
        Ok(self.head.forward(&last)?.flatten_all()?)
    }
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
