//! What differs between architectures, as data: [`Config`] and its switches, read from GGUF
//! metadata (llama.cpp's keys) or a Hugging Face `config.json`, in one place per format.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::weights::Gguf;

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
    pub(super) fn divisor(&self, inv_freq: f32) -> f32 {
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
