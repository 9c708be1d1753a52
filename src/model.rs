//! Stage 2 of the data flow: tensors → logits.
//!
//! One config-driven decoder: token embedding; blocks of RMSNorm → causal self-attention with
//! rotary embeddings, grouped-query attention and a KV cache → residual → RMSNorm → SwiGLU
//! feed-forward → residual; final norm; tied or separate output head.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::ops::{rms_norm, silu, softmax_last_dim};
use candle_nn::rotary_emb::rope_i;

use crate::error::{Error, Result};
use crate::kernels::{self, WeightType};
use crate::weights::gguf::{qtensor, TensorData};
use crate::weights::Gguf;

/// The shape and hyper-parameters of a decoder, read from the weights file's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Architecture name as the file gives it (`llama`).
    pub architecture: String,
    /// Number of tokens in the vocabulary (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the feed-forward hidden layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (fewer than `n_heads` for grouped-query attention).
    pub n_kv_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Base of the rotary embedding frequencies.
    pub rope_theta: f32,
    /// Epsilon of the RMS norms.
    pub rms_eps: f32,
    /// Longest sequence the model was trained for.
    pub context_length: usize,
}

/// GGUF metadata keys, relative to the architecture prefix (`llama.` …).
mod keys {
    pub const ARCH: &str = "general.architecture";
    pub const CONTEXT: &str = "context_length";
    pub const HIDDEN: &str = "embedding_length";
    pub const FFN: &str = "feed_forward_length";
    pub const LAYERS: &str = "block_count";
    pub const HEADS: &str = "attention.head_count";
    pub const KV_HEADS: &str = "attention.head_count_kv";
    pub const RMS_EPS: &str = "attention.layer_norm_rms_epsilon";
    pub const ROPE_DIM: &str = "rope.dimension_count";
    pub const ROPE_BASE: &str = "rope.freq_base";
    pub const VOCAB: &str = "vocab_size";
}

/// Architectures whose GGUF layout this decoder reads.
const SUPPORTED: &[&str] = &["llama"];

impl Config {
    /// Reads the configuration from GGUF metadata (`<arch>.*` keys).
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.get_str(keys::ARCH)?.to_string();
        if !SUPPORTED.contains(&arch.as_str()) {
            return Err(Error::UnsupportedArchitecture(arch));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let hidden_size = g.get_usize(&key(keys::HIDDEN))?;
        let n_heads = g.get_usize(&key(keys::HEADS))?;
        let n_kv_heads = match g.get_usize(&key(keys::KV_HEADS)) {
            Ok(n) => n,
            Err(_) => n_heads,
        };
        let vocab_size = match g.get_usize(&key(keys::VOCAB)) {
            Ok(n) => n,
            Err(_) => g.get_array("tokenizer.ggml.tokens")?.len(),
        };
        let rope_theta = g.get_f32(&key(keys::ROPE_BASE)).unwrap_or(10_000.0);
        let cfg = Self {
            vocab_size,
            hidden_size,
            intermediate_size: g.get_usize(&key(keys::FFN))?,
            n_layers: g.get_usize(&key(keys::LAYERS))?,
            n_heads,
            n_kv_heads,
            head_dim: hidden_size.checked_div(n_heads).unwrap_or(0),
            rope_theta,
            rms_eps: g.get_f32(&key(keys::RMS_EPS))?,
            context_length: g.get_usize(&key(keys::CONTEXT))?,
            architecture: arch.clone(),
        };
        cfg.validate()?;
        if let Ok(rope_dim) = g.get_usize(&key(keys::ROPE_DIM)) {
            if rope_dim != cfg.head_dim {
                return Err(Error::Metadata(format!(
                    "partial rotary embeddings ({rope_dim} of {} dims) are not supported",
                    cfg.head_dim
                )));
            }
        }
        Ok(cfg)
    }

    /// Rejects configurations that cannot describe a working decoder.
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Metadata(m));
        if self.n_heads == 0 || self.n_kv_heads == 0 || self.hidden_size == 0 {
            return bad("head counts and embedding length must be non-zero".into());
        }
        if !self.hidden_size.is_multiple_of(self.n_heads) || !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "embedding length {} does not split into {} heads of even width",
                self.hidden_size, self.n_heads
            ));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "{} query heads cannot be grouped over {} key/value heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.n_layers == 0 || self.vocab_size == 0 || self.context_length == 0 {
            return bad("block count, vocabulary and context length must be non-zero".into());
        }
        // Bounds that keep a lying header from asking for absurd buffers (rope tables, caches).
        if self.context_length > 1 << 20 || self.n_layers > 1024 || self.hidden_size > 1 << 16 {
            return bad(format!("implausible sizes in {self:?}"));
        }
        Ok(())
    }
}

/// Keys and values of one block for every position seen so far, grown in chunks.
#[derive(Debug, Clone, Default)]
struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
}

impl KvCache {
    /// Appends `k`, `v` (`[1, heads, seq, head_dim]`) and returns all keys and values so far.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let seq = k.dim(2)?;
        let needed = self.len + seq;
        let capacity = self.k.as_ref().map_or(Ok(0), |t| t.dim(2))?;
        if needed > capacity {
            // Double the capacity so a long reply reallocates O(log n) times, not per token.
            let new_cap = needed.max(capacity * 2).max(128);
            let grow = |old: &Option<Tensor>, src: &Tensor| -> Result<Tensor> {
                let (b, h, _, d) = src.dims4()?;
                let t = Tensor::zeros((b, h, new_cap, d), src.dtype(), src.device())?;
                if let Some(old) = old {
                    t.slice_set(&old.narrow(2, 0, self.len)?, 2, 0)?;
                }
                Ok(t)
            };
            self.k = Some(grow(&self.k, k)?);
            self.v = Some(grow(&self.v, v)?);
        }
        let (Some(kc), Some(vc)) = (&self.k, &self.v) else {
            unreachable!("cache buffers were allocated above")
        };
        kc.slice_set(k, 2, self.len)?;
        vc.slice_set(v, 2, self.len)?;
        self.len = needed;
        Ok((kc.narrow(2, 0, needed)?, vc.narrow(2, 0, needed)?))
    }
}

/// A weight matrix applied as `y = x · Wᵀ`.
enum Linear {
    /// Weights on the CPU of a type Wick's own SIMD kernels run, read where the file holds them:
    /// `n` rows of `k` values.
    Own {
        ty: WeightType,
        data: TensorData,
        n: usize,
        k: usize,
    },
    /// Any other type, or another device: Candle's quantized matmul.
    Candle(QMatMul),
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(m) => Ok(m.forward(x)?),
            Self::Own { ty, data, n, k } => {
                let mut dims = x.dims().to_vec();
                let rows = x.elem_count() / k;
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                let y = kernels::matmul(*ty, data, *n, *k, &xs, rows);
                if let Some(last) = dims.last_mut() {
                    *last = *n;
                }
                Ok(Tensor::from_vec(y, dims, x.device())?)
            }
        }
    }
}

/// The type Wick's kernels run for a GGML type, if any (rows must be whole blocks).
fn own_kernel(dtype: GgmlDType, k: usize, device: &Device) -> Option<WeightType> {
    if !device.is_cpu() || !k.is_multiple_of(kernels::BLOCK) {
        return None;
    }
    match dtype {
        GgmlDType::Q4_1 => Some(WeightType::Q4_1),
        GgmlDType::Q8_0 => Some(WeightType::Q8_0),
        _ => None,
    }
}

/// One transformer block's weights and cache.
struct Block {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    w_gate: Linear,
    w_up: Linear,
    w_down: Linear,
    cache: KvCache,
}

/// A token embedding kept quantized: rows are dequantized only for the tokens looked up.
enum Embedding {
    /// Read in place by Wick's kernels.
    Own {
        ty: WeightType,
        data: TensorData,
        vocab: usize,
        hidden: usize,
    },
    /// A candle tensor of another type.
    Candle {
        table: Arc<QTensor>,
        row_bytes: usize,
        hidden: usize,
    },
}

impl Embedding {
    fn forward(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        let vocab = match self {
            Self::Own { vocab, .. } => *vocab,
            Self::Candle { table, .. } => table.shape().dims()[0],
        };
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Tokenizer(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        match self {
            Self::Own {
                ty, data, hidden, ..
            } => {
                let row_bytes = hidden / kernels::BLOCK * ty.block_bytes();
                let mut out = vec![0f32; ids.len() * hidden];
                for (&id, o) in ids.iter().zip(out.chunks_exact_mut(*hidden)) {
                    let id = id as usize;
                    ty.dequantize_row(&data[id * row_bytes..(id + 1) * row_bytes], o);
                }
                Ok(Tensor::from_vec(out, (ids.len(), *hidden), device)?)
            }
            Self::Candle {
                table,
                row_bytes,
                hidden,
            } => {
                let data = table.data()?;
                let mut rows = Vec::with_capacity(ids.len() * row_bytes);
                for &id in ids {
                    let id = id as usize;
                    rows.extend_from_slice(&data[id * row_bytes..(id + 1) * row_bytes]);
                }
                let q = qtensor(table.dtype(), &rows, &[ids.len(), *hidden], device)?;
                Ok(q.dequantize(device)?)
            }
        }
    }
}

/// A decoder-only transformer ready to run, with its KV cache.
pub struct Model {
    config: Config,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Tensor,
    head: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// Checks a tensor's shape against what the config implies.
fn expect_shape(name: &str, dims: &[usize], want: &[usize]) -> Result<()> {
    if dims != want {
        return Err(Error::Tensor {
            name: name.to_string(),
            problem: format!("has shape {dims:?}, the config implies {want:?}"),
        });
    }
    Ok(())
}

impl Model {
    /// Builds the model from a parsed GGUF file (llama tensor names).
    pub fn from_gguf(g: &Gguf, device: &Device) -> Result<Self> {
        let cfg = Config::from_gguf(g)?;
        let (h, kv) = (cfg.hidden_size, cfg.n_kv_heads * cfg.head_dim);
        let load = |name: &str, shape: &[usize]| -> Result<QTensor> {
            let t = g.tensor(name, device)?;
            expect_shape(name, t.shape().dims(), shape)?;
            // Candle has no matmul kernel for Q8_1 weights (it is an activation-only type).
            if t.dtype() == GgmlDType::Q8_1 {
                return Err(Error::UnsupportedQuantization {
                    name: name.to_string(),
                    ggml_type: "Q8_1".into(),
                });
            }
            Ok(t)
        };
        let matmul = |name: &str, shape: &[usize]| -> Result<Linear> {
            let info = g.tensor_bytes(name)?.0;
            if let Some(ty) = own_kernel(info.dtype, shape[1], device) {
                expect_shape(name, &info.dims, shape)?;
                let data = g.tensor_data(name)?.1;
                let (n, k) = (shape[0], shape[1]);
                return Ok(Linear::Own { ty, data, n, k });
            }
            Ok(Linear::Candle(QMatMul::from_qtensor(load(name, shape)?)?))
        };
        let vector = |name: &str| -> Result<Tensor> {
            Ok(load(name, &[h])?.dequantize(device)?.to_dtype(DType::F32)?)
        };

        let embd_name = "token_embd.weight";
        let embd_info = g.tensor_bytes(embd_name)?.0;
        expect_shape(embd_name, &embd_info.dims, &[cfg.vocab_size, h])?;
        let (embed, tied_head) = match own_kernel(embd_info.dtype, h, device) {
            Some(ty) => {
                let data = g.tensor_data(embd_name)?.1;
                let head = Linear::Own {
                    ty,
                    data: data.clone(),
                    n: cfg.vocab_size,
                    k: h,
                };
                let vocab = cfg.vocab_size;
                let embed = Embedding::Own {
                    ty,
                    data,
                    vocab,
                    hidden: h,
                };
                (embed, head)
            }
            None => {
                let table = Arc::new(load(embd_name, &[cfg.vocab_size, h])?);
                let head = Linear::Candle(QMatMul::from_arc(table.clone())?);
                let row_bytes = h / table.dtype().block_size() * table.dtype().type_size();
                let embed = Embedding::Candle {
                    table,
                    row_bytes,
                    hidden: h,
                };
                (embed, head)
            }
        };
        let head = if g.tensors.contains_key("output.weight") {
            matmul("output.weight", &[cfg.vocab_size, h])?
        } else {
            tied_head
        };

        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            blocks.push(Block {
                attn_norm: vector(&p("attn_norm"))?,
                wq: matmul(&p("attn_q"), &[h, h])?,
                wk: matmul(&p("attn_k"), &[kv, h])?,
                wv: matmul(&p("attn_v"), &[kv, h])?,
                wo: matmul(&p("attn_output"), &[h, h])?,
                ffn_norm: vector(&p("ffn_norm"))?,
                w_gate: matmul(&p("ffn_gate"), &[cfg.intermediate_size, h])?,
                w_up: matmul(&p("ffn_up"), &[cfg.intermediate_size, h])?,
                w_down: matmul(&p("ffn_down"), &[h, cfg.intermediate_size])?,
                cache: KvCache::default(),
            });
        }
        let norm = vector("output_norm.weight")?;
        let (cos, sin) = rope_tables(&cfg, device)?;
        Ok(Self {
            config: cfg,
            embed,
            blocks,
            norm,
            head,
            cos,
            sin,
            device: device.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of positions held in the KV cache.
    pub fn cached_len(&self) -> usize {
        self.blocks.first().map_or(0, |b| b.cache.len)
    }

    /// Forgets every position from `len` on, so the next forward continues from there.
    pub fn truncate_cache(&mut self, len: usize) {
        for b in &mut self.blocks {
            b.cache.len = b.cache.len.min(len);
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
        let mut x = self.embed.forward(ids, &self.device)?.unsqueeze(0)?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let mask = causal_mask(seq, pos, &self.device)?;
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        let n_rep = cfg.n_heads / cfg.n_kv_heads;

        for b in &mut self.blocks {
            let h = rms_norm(&x, &b.attn_norm, cfg.rms_eps)?;
            let heads = |t: Tensor, n: usize| -> Result<Tensor> {
                Ok(t.reshape((1, seq, n, cfg.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = heads(b.wq.forward(&h)?, cfg.n_heads)?;
            let k = heads(b.wk.forward(&h)?, cfg.n_kv_heads)?;
            let v = heads(b.wv.forward(&h)?, cfg.n_kv_heads)?;
            let q = rope_i(&q, &cos, &sin)?;
            let k = rope_i(&k, &cos, &sin)?;
            let (k, v) = b.cache.append(&k, &v)?;
            let k = repeat_kv(k, n_rep)?;
            let v = repeat_kv(v, n_rep)?;
            let mut att = (q.matmul(&k.t()?)? * scale)?;
            if let Some(mask) = &mask {
                att = att.broadcast_add(mask)?;
            }
            let att = softmax_last_dim(&att)?;
            let y = att
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((1, seq, cfg.hidden_size))?;
            x = (x + b.wo.forward(&y)?)?;

            let h = rms_norm(&x, &b.ffn_norm, cfg.rms_eps)?;
            let gate = silu(&b.w_gate.forward(&h)?)?;
            let ff = b.w_down.forward(&(gate * b.w_up.forward(&h)?)?)?;
            x = (x + ff)?;
        }
        let last = x.narrow(1, seq - 1, 1)?;
        let last = rms_norm(&last, &self.norm, cfg.rms_eps)?;
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

/// Cosine and sine tables for every position of the context, `[context, head_dim / 2]`.
fn rope_tables(cfg: &Config, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f32 / cfg.head_dim as f32))
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let positions = Tensor::arange(0u32, cfg.context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((cfg.context_length, 1))?;
    let freqs = positions.broadcast_mul(&inv_freq)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Additive mask hiding future positions from a chunk of `seq` tokens that starts at `pos`.
fn causal_mask(seq: usize, pos: usize, device: &Device) -> Result<Option<Tensor>> {
    if seq == 1 {
        return Ok(None);
    }
    let total = pos + seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..total).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Some(Tensor::from_vec(mask, (seq, total), device)?))
}

/// Index of the largest value (ties go to the lowest index).
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}
