//! Stage 2 of the data flow: tensors → logits.
//!
//! One config-driven decoder for every architecture Wick runs. A block is: norm → causal
//! self-attention (rotary or learned positions, grouped-query heads, optional bias, optional
//! sliding window) with a KV cache → residual → norm → feed-forward (gated or plain; SiLU, GELU
//! or ReLU; dense or a mixture of experts) → residual; then a final norm and a tied or separate
//! output head. What differs between Llama, Mistral, Mixtral, Qwen2 and GPT-2 is data in
//! [`Config`], read in one place per file format ([`Config::from_gguf`], [`Config::from_hf`]).

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Tensor, D};
use candle_nn::ops::{layer_norm, rms_norm, softmax_last_dim};
use candle_nn::rotary_emb::{rope, rope_i};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::kernels::{self, WeightType};
use crate::weights::{Dequantized, Gguf, HfModel, TensorData, TensorSource, WeightTensor};

/// How activations are normalized before attention, feed-forward and the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// `x / rms(x) · w` (Llama family).
    Rms,
    /// `(x − mean) / std · w + b` (GPT-2).
    Layer,
}

/// The feed-forward non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x · sigmoid(x)` (SwiGLU when gated).
    Silu,
    /// GELU with the exact error function.
    Gelu,
    /// GELU's tanh approximation (GPT-2's `gelu_new`).
    GeluTanh,
    /// `max(0, x)`.
    Relu,
}

impl Activation {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "silu" | "swish" => Self::Silu,
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            _ => return None,
        })
    }

    /// One value; `libm`'s functions, so native and wasm agree to the bit.
    fn scalar(self, v: f32) -> f32 {
        match self {
            Self::Silu => v / (1.0 + libm::expf(-v)),
            Self::Gelu => 0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2)),
            Self::GeluTanh => {
                let c = (2.0 / std::f32::consts::PI).sqrt();
                0.5 * v * (1.0 + libm::tanhf(c * v * (1.0 + 0.044715 * v * v)))
            }
            Self::Relu => v.max(0.0),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            let v: Vec<f32> = x.flatten_all()?.to_vec1::<f32>()?;
            let v = v.into_iter().map(|e| self.scalar(e)).collect();
            return Ok(Tensor::from_vec(v, x.shape(), x.device())?);
        }
        Ok(match self {
            Self::Silu => candle_nn::ops::silu(x)?,
            Self::Gelu => x.gelu_erf()?,
            Self::GeluTanh => x.gelu()?,
            Self::Relu => x.relu()?,
        })
    }
}

/// Where a token's position enters the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Positions {
    /// Rotary embeddings on queries and keys.
    Rotary {
        /// Base of the frequencies.
        theta: f32,
        /// Rotate adjacent pairs (llama.cpp's `llama` layout, whose q/k rows are permuted) rather
        /// than the two halves of each head (Hugging Face's layout, and llama.cpp's Qwen2).
        interleaved: bool,
        /// Llama 3's frequency scaling, if any.
        scaling: Option<RopeScaling>,
    },
    /// A learned table of position embeddings added to the token embeddings (GPT-2).
    Learned,
}

/// Llama 3's rotary frequency scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeScaling {
    /// How much longer the new context is.
    pub factor: f32,
    /// Wavelengths above `original / low_freq_factor` are divided by `factor`.
    pub low_freq_factor: f32,
    /// Wavelengths below `original / high_freq_factor` are kept.
    pub high_freq_factor: f32,
    /// The context the model was first trained for.
    pub original_context: f32,
}

impl RopeScaling {
    /// Divisor of each rotary frequency (1 = unchanged), as Hugging Face and llama.cpp apply it.
    fn divisor(&self, inv_freq: f32) -> f32 {
        let wavelen = 2.0 * std::f32::consts::PI / inv_freq;
        let (low, high) = (
            self.original_context / self.low_freq_factor,
            self.original_context / self.high_freq_factor,
        );
        if wavelen < high {
            1.0
        } else if wavelen > low {
            self.factor
        } else {
            let smooth = (self.original_context / wavelen - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            1.0 / ((1.0 - smooth) / self.factor + smooth)
        }
    }
}

/// The shape, hyper-parameters and architectural switches of a decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Architecture name as the file gives it (`llama`, `qwen2`, `gpt2`, `mistral` …).
    pub architecture: String,
    /// Number of tokens in the vocabulary (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the feed-forward hidden layer (of each expert).
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (fewer than `n_heads` for grouped-query attention).
    pub n_kv_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Longest sequence the model was trained for.
    pub context_length: usize,
    /// Normalization kind.
    pub norm: Norm,
    /// Epsilon of the norms.
    pub norm_eps: f32,
    /// Feed-forward non-linearity.
    pub activation: Activation,
    /// `down(act(gate(x)) · up(x))` rather than `down(act(up(x)))`.
    pub gated_ffn: bool,
    /// Positional encoding.
    pub positions: Positions,
    /// Queries, keys and values have biases (Qwen2, GPT-2).
    pub qkv_bias: bool,
    /// Every other matmul and the norms have biases too (GPT-2).
    pub bias: bool,
    /// Each position attends only to this many positions, itself included (Mistral).
    pub sliding_window: Option<usize>,
    /// Experts per block (0 = a dense feed-forward).
    pub n_experts: usize,
    /// Experts each token is routed to.
    pub n_experts_used: usize,
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
    pub const KEY_LENGTH: &str = "attention.key_length";
    pub const RMS_EPS: &str = "attention.layer_norm_rms_epsilon";
    pub const LN_EPS: &str = "attention.layer_norm_epsilon";
    pub const WINDOW: &str = "attention.sliding_window";
    pub const ROPE_DIM: &str = "rope.dimension_count";
    pub const ROPE_BASE: &str = "rope.freq_base";
    pub const VOCAB: &str = "vocab_size";
    pub const EXPERTS: &str = "expert_count";
    pub const EXPERTS_USED: &str = "expert_used_count";
}

impl Config {
    /// Reads the configuration from GGUF metadata (`<arch>.*` keys, llama.cpp's conventions:
    /// Mistral and Mixtral files are `llama`).
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.get_str(keys::ARCH)?.to_string();
        if !["llama", "qwen2", "gpt2"].contains(&arch.as_str()) {
            return Err(Error::UnsupportedArchitecture(arch));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let opt = |k: &str| g.get_usize(&key(k)).ok();
        let hidden_size = g.get_usize(&key(keys::HIDDEN))?;
        let n_heads = g.get_usize(&key(keys::HEADS))?;
        let vocab_size = match opt(keys::VOCAB) {
            Some(n) => n,
            None => g.get_array("tokenizer.ggml.tokens")?.len(),
        };
        let gpt2 = arch == "gpt2";
        let positions = if gpt2 {
            Positions::Learned
        } else {
            Positions::Rotary {
                theta: g.get_f32(&key(keys::ROPE_BASE)).unwrap_or(10_000.0),
                interleaved: arch == "llama",
                scaling: None,
            }
        };
        let norm_eps = if gpt2 {
            g.get_f32(&key(keys::LN_EPS))?
        } else {
            g.get_f32(&key(keys::RMS_EPS))?
        };
        let cfg = Self {
            vocab_size,
            hidden_size,
            intermediate_size: g.get_usize(&key(keys::FFN))?,
            n_layers: g.get_usize(&key(keys::LAYERS))?,
            n_heads,
            n_kv_heads: opt(keys::KV_HEADS).unwrap_or(n_heads),
            head_dim: opt(keys::KEY_LENGTH)
                .unwrap_or(hidden_size.checked_div(n_heads).unwrap_or(0)),
            context_length: g.get_usize(&key(keys::CONTEXT))?,
            norm: if gpt2 { Norm::Layer } else { Norm::Rms },
            norm_eps,
            activation: if gpt2 {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            gated_ffn: !gpt2,
            positions,
            qkv_bias: arch != "llama",
            bias: gpt2,
            sliding_window: opt(keys::WINDOW).filter(|&w| w > 0),
            n_experts: opt(keys::EXPERTS).unwrap_or(0),
            n_experts_used: opt(keys::EXPERTS_USED).unwrap_or(0),
            architecture: arch.clone(),
        };
        cfg.validate()?;
        if let (Some(rope_dim), Positions::Rotary { .. }) = (opt(keys::ROPE_DIM), &cfg.positions) {
            if rope_dim != cfg.head_dim {
                return Err(Error::Metadata(format!(
                    "partial rotary embeddings ({rope_dim} of {} dims) are not supported",
                    cfg.head_dim
                )));
            }
        }
        Ok(cfg)
    }

    /// Reads the configuration from a Hugging Face `config.json` (already parsed).
    pub fn from_hf(c: &Value) -> Result<Self> {
        let bad = |problem: String| Error::File {
            file: "config.json".into(),
            problem,
        };
        let arch = c
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("has no \"model_type\"".into()))?
            .to_string();
        let num = |k: &str| c.get(k).and_then(Value::as_u64).map(|v| v as usize);
        let float = |k: &str| c.get(k).and_then(Value::as_f64).map(|v| v as f32);
        let need = |k: &str| num(k).ok_or_else(|| bad(format!("has no integer \"{k}\"")));
        let cfg = match arch.as_str() {
            "gpt2" => {
                let hidden = need("n_embd")?;
                let act = c
                    .get("activation_function")
                    .and_then(Value::as_str)
                    .unwrap_or("gelu_new");
                Self {
                    vocab_size: need("vocab_size")?,
                    hidden_size: hidden,
                    intermediate_size: num("n_inner").unwrap_or(4 * hidden),
                    n_layers: need("n_layer")?,
                    n_heads: need("n_head")?,
                    n_kv_heads: need("n_head")?,
                    head_dim: hidden.checked_div(need("n_head")?).unwrap_or(0),
                    context_length: need("n_positions").or_else(|_| need("n_ctx"))?,
                    norm: Norm::Layer,
                    norm_eps: float("layer_norm_epsilon").unwrap_or(1e-5),
                    activation: Activation::from_name(act)
                        .ok_or_else(|| bad(format!("activation \"{act}\" is not supported")))?,
                    gated_ffn: false,
                    positions: Positions::Learned,
                    qkv_bias: true,
                    bias: true,
                    sliding_window: None,
                    n_experts: 0,
                    n_experts_used: 0,
                    architecture: arch,
                }
            }
            "llama" | "mistral" | "mixtral" | "qwen2" => {
                let hidden = need("hidden_size")?;
                let n_heads = need("num_attention_heads")?;
                let act = c
                    .get("hidden_act")
                    .and_then(Value::as_str)
                    .unwrap_or("silu");
                // transformers 5 moves rope settings into "rope_parameters".
                let rope = c
                    .get("rope_parameters")
                    .filter(|v| v.is_object())
                    .or_else(|| c.get("rope_scaling").filter(|v| v.is_object()));
                let theta = float("rope_theta")
                    .or_else(|| {
                        rope.and_then(|r| r.get("rope_theta")?.as_f64())
                            .map(|v| v as f32)
                    })
                    .unwrap_or(10_000.0);
                let scaling = match rope {
                    Some(r) => rope_scaling(r).map_err(bad)?,
                    None => None,
                };
                let window = match arch.as_str() {
                    "mistral" | "mixtral" => num("sliding_window"),
                    "qwen2"
                        if c.get("use_sliding_window").and_then(Value::as_bool) == Some(true) =>
                    {
                        num("sliding_window")
                    }
                    _ => None,
                };
                let experts = if arch == "mixtral" {
                    (need("num_local_experts")?, need("num_experts_per_tok")?)
                } else {
                    (0, 0)
                };
                let attention_bias = c.get("attention_bias").and_then(Value::as_bool) == Some(true);
                Self {
                    vocab_size: need("vocab_size")?,
                    hidden_size: hidden,
                    intermediate_size: need("intermediate_size")?,
                    n_layers: need("num_hidden_layers")?,
                    n_heads,
                    n_kv_heads: num("num_key_value_heads").unwrap_or(n_heads),
                    head_dim: num("head_dim").unwrap_or(hidden.checked_div(n_heads).unwrap_or(0)),
                    context_length: need("max_position_embeddings")?,
                    norm: Norm::Rms,
                    norm_eps: float("rms_norm_eps").unwrap_or(1e-6),
                    activation: Activation::from_name(act)
                        .ok_or_else(|| bad(format!("activation \"{act}\" is not supported")))?,
                    gated_ffn: true,
                    positions: Positions::Rotary {
                        theta,
                        interleaved: false,
                        scaling,
                    },
                    qkv_bias: arch == "qwen2" || attention_bias,
                    bias: false,
                    sliding_window: window.filter(|&w| w > 0),
                    n_experts: experts.0,
                    n_experts_used: experts.1,
                    architecture: arch,
                }
            }
            _ => return Err(Error::UnsupportedArchitecture(arch)),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects configurations that cannot describe a working decoder.
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Metadata(m));
        if self.n_heads == 0 || self.n_kv_heads == 0 || self.hidden_size == 0 || self.head_dim == 0
        {
            return bad("head counts, head width and embedding length must be non-zero".into());
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head width {} is odd", self.head_dim));
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
        if self.n_experts > 0 && !(1..=self.n_experts).contains(&self.n_experts_used) {
            return bad(format!(
                "{} experts with {} used per token",
                self.n_experts, self.n_experts_used
            ));
        }
        // Bounds that keep a lying header from asking for absurd buffers (rope tables, caches).
        if self.context_length > 1 << 20
            || self.n_layers > 1024
            || self.hidden_size > 1 << 16
            || self.n_heads * self.head_dim > 1 << 16
            || self.n_experts > 256
            || self.context_length * self.head_dim > 1 << 26
        {
            return bad(format!("implausible sizes in {self:?}"));
        }
        Ok(())
    }
}

/// Llama 3 scaling from a `rope_scaling` / `rope_parameters` object (other types are refused;
/// `default` means none).
fn rope_scaling(r: &Value) -> std::result::Result<Option<RopeScaling>, String> {
    let kind = r
        .get("rope_type")
        .or_else(|| r.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let f = |k: &str| r.get(k).and_then(Value::as_f64).map(|v| v as f32);
    match kind {
        "default" => Ok(None),
        "llama3" => match (
            f("factor"),
            f("low_freq_factor"),
            f("high_freq_factor"),
            f("original_max_position_embeddings"),
        ) {
            (Some(factor), Some(low), Some(high), Some(orig)) if high > low && factor > 0.0 => {
                Ok(Some(RopeScaling {
                    factor,
                    low_freq_factor: low,
                    high_freq_factor: high,
                    original_context: orig,
                }))
            }
            _ => Err(format!(
                "llama3 rope scaling with missing or inconsistent fields: {r}"
            )),
        },
        other => Err(format!("rope scaling \"{other}\" is not supported")),
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

/// The weight of a matmul `y = x · Wᵀ`.
enum Weight {
    /// Blocks Wick's own SIMD kernels run, on the CPU: `n` rows of `k` values.
    Own {
        ty: WeightType,
        data: TensorData,
        n: usize,
        k: usize,
    },
    /// Any other GGML type, or another device: Candle's quantized matmul.
    Candle(QMatMul),
    /// f32 values `[n, k]`.
    Float(Tensor),
}

impl Weight {
    fn new(w: WeightTensor) -> Result<Self> {
        Ok(match w {
            WeightTensor::Blocks { ty, data, dims } => Self::Own {
                ty,
                data,
                n: dims[0],
                k: dims[dims.len() - 1],
            },
            WeightTensor::Quant(q) => Self::Candle(QMatMul::from_qtensor(q)?),
            WeightTensor::Float(t) => Self::Float(t),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(m) => Ok(m.forward(x)?),
            Self::Float(w) => Ok(x.broadcast_matmul(&w.t()?)?),
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

/// Splits a stacked weight along its first dimension (fused q/k/v rows, a 3-D tensor of
/// experts) into parts of `sizes` rows, sharing the bytes where the form allows.
fn split_rows(w: WeightTensor, sizes: &[usize], device: &Device) -> Result<Vec<WeightTensor>> {
    let dims = w.dims().to_vec();
    let total: usize = sizes.iter().sum();
    if dims.first() != Some(&total) {
        return Err(Error::Metadata(format!(
            "cannot split a tensor of shape {dims:?} into {sizes:?}"
        )));
    }
    let inner = dims[1..].to_vec();
    let mut out = Vec::with_capacity(sizes.len());
    match w {
        WeightTensor::Blocks { ty, data, .. } => {
            let per_row = data.len() / total;
            let mut start = 0;
            for &s in sizes {
                let part = data
                    .slice(start * per_row..(start + s) * per_row)
                    .ok_or_else(|| Error::Corrupt("tensor bytes shorter than its shape".into()))?;
                let mut d = vec![s];
                d.extend(&inner);
                // A 3-D expert stack splits into 2-D matrices.
                if d[0] == 1 && d.len() == 3 {
                    d.remove(0);
                }
                out.push(WeightTensor::Blocks {
                    ty,
                    data: part,
                    dims: d,
                });
                start += s;
            }
        }
        other => {
            let t = other.to_f32(device)?;
            let mut start = 0;
            for &s in sizes {
                let mut part = t.narrow(0, start, s)?;
                if s == 1 && part.rank() == 3 {
                    part = part.squeeze(0)?;
                }
                out.push(WeightTensor::Float(part.contiguous()?));
                start += s;
            }
        }
    }
    Ok(out)
}

/// A matmul with an optional bias.
struct Linear {
    w: Weight,
    b: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.add_bias(self.w.forward(x)?)
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        match &self.b {
            Some(b) => Ok(y.broadcast_add(b)?),
            None => Ok(y),
        }
    }

    /// `x` through each of `linears`: in one pass of Wick's kernels when all of them run there
    /// (one wake-up of the thread pool, one quantization of `x`), else one by one.
    fn forward_many<const N: usize>(linears: [&Linear; N], x: &Tensor) -> Result<[Tensor; N]> {
        let own: Vec<(WeightType, &[u8], usize, usize)> = linears
            .iter()
            .filter_map(|l| match &l.w {
                Weight::Own { ty, data, n, k } => Some((*ty, &data[..], *n, *k)),
                _ => None,
            })
            .collect();
        let k = own.first().map(|o| o.3);
        if own.len() < N || own.iter().any(|o| Some(o.3) != k) {
            let mut out = Vec::with_capacity(N);
            for l in linears {
                out.push(l.forward(x)?);
            }
            return out
                .try_into()
                .map_err(|_| Error::Metadata("matmul count".into()));
        }
        let k = k.unwrap_or(0);
        let rows = x.elem_count() / k;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let parts: Vec<(WeightType, &[u8], usize)> = own.iter().map(|o| (o.0, o.1, o.2)).collect();
        let ys = kernels::matmul_many(&parts, k, &xs, rows);
        let mut out = Vec::with_capacity(N);
        for ((l, y), (_, _, n, _)) in linears.iter().zip(ys).zip(&own) {
            let mut dims = x.dims().to_vec();
            if let Some(last) = dims.last_mut() {
                *last = *n;
            }
            out.push(l.add_bias(Tensor::from_vec(y, dims, x.device())?)?);
        }
        out.try_into()
            .map_err(|_| Error::Metadata("matmul count".into()))
    }
}

/// A norm's weights.
struct NormLayer {
    w: Tensor,
    b: Option<Tensor>,
    kind: Norm,
    eps: f32,
}

impl NormLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match (self.kind, &self.b) {
            (Norm::Rms, None) => Ok(rms_norm(x, &self.w, self.eps)?),
            (Norm::Rms, Some(b)) => Ok(rms_norm(x, &self.w, self.eps)?.broadcast_add(b)?),
            (Norm::Layer, Some(b)) => Ok(layer_norm(x, &self.w, b, self.eps)?),
            (Norm::Layer, None) => Ok(layer_norm(x, &self.w, &self.w.zeros_like()?, self.eps)?),
        }
    }
}

/// One feed-forward network: `down(act(gate(x)) · up(x))`, or `down(act(up(x)))` ungated.
struct Mlp {
    gate: Option<Linear>,
    up: Linear,
    down: Linear,
    act: Activation,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.gate {
            Some(g) => {
                let [g, u] = Linear::forward_many([g, &self.up], x)?;
                (self.act.apply(&g)? * u)?
            }
            None => self.act.apply(&self.up.forward(x)?)?,
        };
        self.down.forward(&h)
    }
}

/// A block's feed-forward: dense, or a mixture of experts.
enum Ffn {
    Dense(Mlp),
    /// Each token goes to its `top_k` experts by router score, weighted by their softmax
    /// probabilities renormalized over the chosen ones (Mixtral).
    Experts {
        router: Linear,
        experts: Vec<Mlp>,
        top_k: usize,
    },
}

impl Ffn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (router, experts, top_k) = match self {
            Self::Dense(m) => return m.forward(x),
            Self::Experts {
                router,
                experts,
                top_k,
            } => (router, experts, *top_k),
        };
        let dims = x.dims().to_vec();
        let hidden = dims[dims.len() - 1];
        let x = x.reshape(((), hidden))?;
        let scores = router.forward(&x)?.to_vec2::<f32>()?;
        let mut routes: Vec<(Vec<u32>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); experts.len()];
        for (t, s) in scores.iter().enumerate() {
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let p: Vec<f32> = s.iter().map(|v| (v - max).exp()).collect();
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let chosen = &order[..top_k];
            let sum: f32 = chosen.iter().map(|&e| p[e]).sum();
            for &e in chosen {
                routes[e].0.push(t as u32);
                routes[e].1.push(p[e] / sum);
            }
        }
        let mut out = x.zeros_like()?;
        for (expert, (rows, weights)) in experts.iter().zip(routes) {
            if rows.is_empty() {
                continue;
            }
            let n = rows.len();
            let idx = Tensor::from_vec(rows, n, x.device())?;
            let w = Tensor::from_vec(weights, (n, 1), x.device())?;
            let y = expert
                .forward(&x.index_select(&idx, 0)?)?
                .broadcast_mul(&w)?;
            out = out.index_add(&idx, &y, 0)?;
        }
        Ok(out.reshape(dims)?)
    }
}

/// A block's keys and values on the CPU, head-major (`[kv_heads][stride][head_dim]`: each head's
/// keys lie in order, as attention reads them), read in place by [`kernels::attention`].
#[derive(Debug, Default)]
struct RowCache {
    k: Vec<f32>,
    v: Vec<f32>,
    /// Positions held.
    len: usize,
    /// Positions there is room for per head (rows of one head are `stride` apart).
    stride: usize,
}

impl RowCache {
    /// Keeps positions `..pos` and appends the rows of `k` and `v` (position-major,
    /// `kv_heads × head_dim` each) after them, growing by doubling (the layout is head-major, so
    /// growing moves each head's rows once).
    fn append(&mut self, pos: usize, k: &[f32], v: &[f32], kv_heads: usize, head_dim: usize) {
        let rows = k.len() / (kv_heads * head_dim);
        let (keep, need) = (pos.min(self.len), pos + rows);
        if need > self.stride {
            let stride = need.max(2 * self.stride).max(64);
            for buf in [&mut self.k, &mut self.v] {
                let mut grown = vec![0f32; kv_heads * stride * head_dim];
                for g in 0..kv_heads {
                    let (from, to) = (g * self.stride * head_dim, g * stride * head_dim);
                    grown[to..to + keep * head_dim]
                        .copy_from_slice(&buf[from..from + keep * head_dim]);
                }
                *buf = grown;
            }
            self.stride = stride;
        }
        for (r, (kr, vr)) in k
            .chunks_exact(kv_heads * head_dim)
            .zip(v.chunks_exact(kv_heads * head_dim))
            .enumerate()
        {
            for g in 0..kv_heads {
                let at = (g * self.stride + pos + r) * head_dim;
                let from = g * head_dim;
                self.k[at..at + head_dim].copy_from_slice(&kr[from..from + head_dim]);
                self.v[at..at + head_dim].copy_from_slice(&vr[from..from + head_dim]);
            }
        }
        self.len = need;
    }
}

/// One transformer block's weights and cache.
struct Block {
    attn_norm: NormLayer,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: NormLayer,
    ffn: Ffn,
    /// Used on GPUs (Candle's attention).
    cache: KvCache,
    /// Used on the CPU (Wick's attention kernel).
    rows: RowCache,
}

/// A token embedding kept in its file form: rows are dequantized only for the tokens looked up.
enum Embedding {
    /// Read in place by Wick's kernels.
    Own {
        ty: WeightType,
        data: TensorData,
        vocab: usize,
        hidden: usize,
    },
    /// A candle tensor of another GGML type.
    Candle {
        table: Arc<QTensor>,
        row_bytes: usize,
        hidden: usize,
    },
    /// f32 rows `[vocab, hidden]`.
    Float(Tensor),
}

impl Embedding {
    fn vocab(&self) -> Result<usize> {
        Ok(match self {
            Self::Own { vocab, .. } => *vocab,
            Self::Candle { table, .. } => table.shape().dims()[0],
            Self::Float(t) => t.dim(0)?,
        })
    }

    fn forward(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        let vocab = self.vocab()?;
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
                let q = crate::weights::gguf::qtensor(
                    table.dtype(),
                    &rows,
                    &[ids.len(), *hidden],
                    device,
                )?;
                Ok(q.dequantize(device)?)
            }
            Self::Float(t) => {
                let idx = Tensor::new(ids, device)?;
                Ok(t.index_select(&idx, 0)?)
            }
        }
    }

    /// The same table as an output head (tied embeddings), sharing its storage.
    fn as_head(&self) -> Result<Linear> {
        let w = match self {
            Self::Own {
                ty,
                data,
                vocab,
                hidden,
            } => Weight::Own {
                ty: *ty,
                data: data.clone(),
                n: *vocab,
                k: *hidden,
            },
            Self::Candle { table, .. } => Weight::Candle(QMatMul::from_arc(table.clone())?),
            Self::Float(t) => Weight::Float(t.clone()),
        };
        Ok(Linear { w, b: None })
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
    /// Rotary tables `[context, head_dim / 2]`, when positions are rotary: as tensors (GPU
    /// path) and as rows (CPU path), the same values.
    rotary: Option<(Tensor, Tensor)>,
    /// The rotary frequencies; the CPU's rows of the tables are computed from them as positions
    /// are reached (the whole context's would cost a noticeable part of the load in wasm).
    inv_freq: Option<Vec<f64>>,
    rotary_rows: (Vec<f32>, Vec<f32>),
    device: Device,
}

/// Builds the model's pieces from a [`TensorSource`], checking every shape against the config.
struct Loader<'a> {
    src: &'a dyn TensorSource,
    cfg: &'a Config,
    device: &'a Device,
    /// Names the tensor in errors the way its file does.
    describe: &'a dyn Fn(&str, &str) -> Error,
}

impl Loader<'_> {
    fn load(&self, name: &str, shape: &[usize]) -> Result<WeightTensor> {
        let t = self.src.load(name, self.device)?;
        if t.dims() != shape {
            return Err((self.describe)(
                name,
                &format!("has shape {:?}, the config implies {shape:?}", t.dims()),
            ));
        }
        Ok(t)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Tensor> {
        self.load(name, &[len])?.to_f32(self.device)
    }

    /// The bias `name` if the file has it; required when `needed`.
    fn bias(&self, name: &str, len: usize, needed: bool) -> Result<Option<Tensor>> {
        if needed || self.src.contains(name) {
            return Ok(Some(self.vector(name, len)?));
        }
        Ok(None)
    }

    fn linear(&self, prefix: &str, n: usize, k: usize, bias: bool) -> Result<Linear> {
        let w = Weight::new(self.load(&format!("{prefix}.weight"), &[n, k])?)?;
        let b = self.bias(&format!("{prefix}.bias"), n, bias)?;
        Ok(Linear { w, b })
    }

    fn norm(&self, prefix: &str) -> Result<NormLayer> {
        let h = self.cfg.hidden_size;
        Ok(NormLayer {
            w: self.vector(&format!("{prefix}.weight"), h)?,
            b: self.bias(&format!("{prefix}.bias"), h, self.cfg.bias)?,
            kind: self.cfg.norm,
            eps: self.cfg.norm_eps,
        })
    }

    /// q, k and v: separate, or one fused matrix (GPT-2) split by rows.
    fn qkv(&self, p: &str) -> Result<(Linear, Linear, Linear)> {
        let c = self.cfg;
        let (h, q, kv) = (
            c.hidden_size,
            c.n_heads * c.head_dim,
            c.n_kv_heads * c.head_dim,
        );
        let fused = format!("{p}.attn_qkv");
        if !self.src.contains(&format!("{fused}.weight")) {
            return Ok((
                self.linear(&format!("{p}.attn_q"), q, h, c.qkv_bias)?,
                self.linear(&format!("{p}.attn_k"), kv, h, c.qkv_bias)?,
                self.linear(&format!("{p}.attn_v"), kv, h, c.qkv_bias)?,
            ));
        }
        let sizes = [q, kv, kv];
        let w = self.load(&format!("{fused}.weight"), &[q + 2 * kv, h])?;
        let mut ws = split_rows(w, &sizes, self.device)?.into_iter();
        let mut bs: Vec<Option<Tensor>> =
            match self.bias(&format!("{fused}.bias"), q + 2 * kv, c.qkv_bias)? {
                Some(b) => vec![
                    Some(b.narrow(0, 0, q)?),
                    Some(b.narrow(0, q, kv)?),
                    Some(b.narrow(0, q + kv, kv)?),
                ],
                None => vec![None, None, None],
            };
        let mut next = || -> Result<Linear> {
            let w = ws
                .next()
                .ok_or_else(|| Error::Metadata("fused qkv split".into()))?;
            Ok(Linear {
                w: Weight::new(w)?,
                b: bs.remove(0),
            })
        };
        Ok((next()?, next()?, next()?))
    }

    fn mlp(&self, p: &str, suffix: &str) -> Result<Mlp> {
        let c = self.cfg;
        let (h, f) = (c.hidden_size, c.intermediate_size);
        let gate = match c.gated_ffn {
            true => Some(self.linear(&format!("{p}.ffn_gate{suffix}"), f, h, c.bias)?),
            false => None,
        };
        Ok(Mlp {
            gate,
            up: self.linear(&format!("{p}.ffn_up{suffix}"), f, h, c.bias)?,
            down: self.linear(&format!("{p}.ffn_down{suffix}"), h, f, c.bias)?,
            act: c.activation,
        })
    }

    /// Experts as separate tensors (`ffn_gate.E`) or stacked 3-D ones (`ffn_gate_exps`).
    fn experts(&self, p: &str) -> Result<Vec<Mlp>> {
        let c = self.cfg;
        let (h, f, e) = (c.hidden_size, c.intermediate_size, c.n_experts);
        if !self.src.contains(&format!("{p}.ffn_gate_exps.weight")) {
            return (0..e).map(|i| self.mlp(p, &format!(".{i}"))).collect();
        }
        let stack = |role: &str, n: usize, k: usize| -> Result<Vec<WeightTensor>> {
            let w = self.load(&format!("{p}.{role}_exps.weight"), &[e, n, k])?;
            split_rows(w, &vec![1; e], self.device)
        };
        let gates = stack("ffn_gate", f, h)?;
        let ups = stack("ffn_up", f, h)?;
        let downs = stack("ffn_down", h, f)?;
        let lin = |w| -> Result<Linear> {
            Ok(Linear {
                w: Weight::new(w)?,
                b: None,
            })
        };
        gates
            .into_iter()
            .zip(ups)
            .zip(downs)
            .map(|((g, u), d)| {
                Ok(Mlp {
                    gate: Some(lin(g)?),
                    up: lin(u)?,
                    down: lin(d)?,
                    act: c.activation,
                })
            })
            .collect()
    }

    fn embedding(&self) -> Result<Embedding> {
        let (v, h) = (self.cfg.vocab_size, self.cfg.hidden_size);
        Ok(match self.load("token_embd.weight", &[v, h])? {
            WeightTensor::Blocks { ty, data, .. } => Embedding::Own {
                ty,
                data,
                vocab: v,
                hidden: h,
            },
            WeightTensor::Quant(q) => {
                let row_bytes = h / q.dtype().block_size() * q.dtype().type_size();
                Embedding::Candle {
                    table: Arc::new(q),
                    row_bytes,
                    hidden: h,
                }
            }
            WeightTensor::Float(t) => Embedding::Float(t),
        })
    }
}

impl Model {
    /// Builds the model from a parsed GGUF file (llama.cpp's tensor names and conventions).
    pub fn from_gguf(g: &Gguf, device: &Device) -> Result<Self> {
        Self::from_gguf_source(g, g, device)
    }

    /// [`Model::from_gguf`] with every quantized tensor dequantized to f32 (see
    /// [`Dequantized`]): slower and larger, but the same arithmetic on every device.
    pub fn from_gguf_f32(g: &Gguf, device: &Device) -> Result<Self> {
        Self::from_gguf_source(g, &Dequantized(g), device)
    }

    fn from_gguf_source(g: &Gguf, src: &dyn TensorSource, device: &Device) -> Result<Self> {
        let cfg = Config::from_gguf(g)?;
        // llama.cpp stores Llama 3's rope scaling as per-frequency divisors.
        let divisors = match g.tensors.contains_key("rope_freqs.weight") {
            true => {
                let t = g.load("rope_freqs.weight", device)?.to_f32(device)?;
                Some(t.flatten_all()?.to_vec1::<f32>()?)
            }
            false => None,
        };
        let describe = |name: &str, problem: &str| Error::Tensor {
            name: name.to_string(),
            problem: problem.to_string(),
        };
        Self::load(cfg, src, device, &describe, divisors)
    }

    /// Builds the model from a Hugging Face folder (float or MLX-quantized safetensors).
    pub fn from_hf(hf: &HfModel, device: &Device) -> Result<Self> {
        let cfg = Config::from_hf(&hf.config)?;
        let describe = |name: &str, problem: &str| hf.tensor_error(name, problem);
        Self::load(cfg, hf, device, &describe, None)
    }

    fn load(
        cfg: Config,
        src: &dyn TensorSource,
        device: &Device,
        describe: &dyn Fn(&str, &str) -> Error,
        rope_divisors: Option<Vec<f32>>,
    ) -> Result<Self> {
        let l = Loader {
            src,
            cfg: &cfg,
            device,
            describe,
        };
        let (h, q) = (cfg.hidden_size, cfg.n_heads * cfg.head_dim);
        let embed = l.embedding()?;
        let head = if src.contains("output.weight") {
            l.linear("output", cfg.vocab_size, h, false)?
        } else {
            embed.as_head()?
        };
        let position_embd = match cfg.positions {
            Positions::Learned => Some(
                l.load("position_embd.weight", &[cfg.context_length, h])?
                    .to_f32(device)?,
            ),
            Positions::Rotary { .. } => None,
        };
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let p = format!("blk.{i}");
            let (wq, wk, wv) = l.qkv(&p)?;
            let ffn = if cfg.n_experts > 0 {
                Ffn::Experts {
                    router: l.linear(&format!("{p}.ffn_gate_inp"), cfg.n_experts, h, false)?,
                    experts: l.experts(&p)?,
                    top_k: cfg.n_experts_used,
                }
            } else {
                Ffn::Dense(l.mlp(&p, "")?)
            };
            blocks.push(Block {
                attn_norm: l.norm(&format!("{p}.attn_norm"))?,
                wq,
                wk,
                wv,
                wo: l.linear(&format!("{p}.attn_output"), h, q, cfg.bias)?,
                ffn_norm: l.norm(&format!("{p}.ffn_norm"))?,
                ffn,
                cache: KvCache::default(),
                rows: RowCache::default(),
            });
        }
        let norm = l.norm("output_norm")?;
        let inv_freq = rope_frequencies(&cfg, rope_divisors.as_deref())?;
        let half = cfg.head_dim / 2;
        let rotary = match &inv_freq {
            Some(f) if !device.is_cpu() => {
                let (c, s) = kernels::attention::rope_tables(f, 0..cfg.context_length);
                Some((
                    Tensor::from_vec(c, (cfg.context_length, half), device)?,
                    Tensor::from_vec(s, (cfg.context_length, half), device)?,
                ))
            }
            _ => None,
        };
        Ok(Self {
            config: cfg,
            embed,
            position_embd,
            blocks,
            norm,
            head,
            rotary,
            inv_freq,
            rotary_rows: (Vec::new(), Vec::new()),
            device: device.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of positions held in the KV cache.
    pub fn cached_len(&self) -> usize {
        self.blocks.first().map_or(0, |b| {
            if self.device.is_cpu() {
                b.rows.len
            } else {
                b.cache.len
            }
        })
    }

    /// Forgets every position from `len` on, so the next forward continues from there.
    pub fn truncate_cache(&mut self, len: usize) {
        for b in &mut self.blocks {
            b.cache.len = b.cache.len.min(len);
            b.rows.len = b.rows.len.min(len);
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
                let c = &mut b.rows;
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
            let (k, v) = b.cache.append(&k, &v)?;
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

/// The rotary frequencies of each pair of a head, or `None` for learned positions; in f64 with
/// `libm`, so every target gets the same tables. `divisors` (llama.cpp's `rope_freqs`) override
/// the config's scaling.
fn rope_frequencies(cfg: &Config, divisors: Option<&[f32]>) -> Result<Option<Vec<f64>>> {
    let Positions::Rotary { theta, scaling, .. } = &cfg.positions else {
        return Ok(None);
    };
    let half = cfg.head_dim / 2;
    if let Some(d) = divisors {
        if d.len() != half {
            return Err(Error::Tensor {
                name: "rope_freqs.weight".into(),
                problem: format!("has {} values, the head width implies {half}", d.len()),
            });
        }
    }
    Ok(Some(
        (0..half)
            .map(|i| {
                let f = 1.0 / libm::pow(f64::from(*theta), 2.0 * i as f64 / cfg.head_dim as f64);
                match (divisors, scaling) {
                    (Some(d), _) => f / f64::from(d[i]),
                    (None, Some(s)) => f / f64::from(s.divisor(f as f32)),
                    (None, None) => f,
                }
            })
            .collect(),
    ))
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
