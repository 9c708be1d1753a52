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
        /// Frequency scaling, if any (on the global layers only when sliding layers have a
        /// base of their own).
        scaling: Option<RopeScaling>,
    },
    /// A learned table of position embeddings added to the token embeddings (GPT-2).
    Learned,
}

/// A rotary frequency scaling (`rope_scaling` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Llama 3's (`rope_type = "llama3"`): long wavelengths divided by `factor`, short ones
    /// kept, a smooth blend between.
    Llama3 {
        /// How much longer the new context is.
        factor: f32,
        /// Wavelengths above `original / low_freq_factor` are divided by `factor`.
        low_freq_factor: f32,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f32,
        /// The context the model was first trained for.
        original_context: f32,
    },
    /// Every frequency divided by `factor` (`rope_type = "linear"`; Gemma 3's global layers).
    Linear {
        /// The divisor.
        factor: f32,
    },
}

impl RopeScaling {
    /// Divisor of each rotary frequency (1 = unchanged), as Hugging Face and llama.cpp apply it.
    pub(super) fn divisor(&self, inv_freq: f32) -> f32 {
        let (factor, low_freq_factor, high_freq_factor, original_context) = match *self {
            Self::Linear { factor } => return factor,
            Self::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            } => (factor, low_freq_factor, high_freq_factor, original_context),
        };
        let wavelen = 2.0 * std::f32::consts::PI / inv_freq;
        let (low, high) = (
            original_context / low_freq_factor,
            original_context / high_freq_factor,
        );
        if wavelen < high {
            1.0
        } else if wavelen > low {
            factor
        } else {
            let smooth = (original_context / wavelen - low_freq_factor)
                / (high_freq_factor - low_freq_factor);
            1.0 / ((1.0 - smooth) / factor + smooth)
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
    /// Layers that attend to every position although `sliding_window` is set (Gemma's global
    /// layers); empty when every layer slides.
    pub full_attention_layers: Vec<usize>,
    /// Rope base of the sliding layers when they have one of their own (Gemma: 10 000); they get
    /// no frequency scaling.
    pub local_rope_theta: Option<f32>,
    /// Token embeddings are multiplied by this (Gemma: √hidden).
    pub embed_scale: Option<f32>,
    /// Added to every norm weight at load: Gemma's RMSNorm scales by `1 + w`. 1 for its
    /// `config.json` form, 0 for its GGUF, whose converter stored `1 + w`.
    pub norm_weight_offset: f32,
    /// Each head of q and k is RMS-normalized, with weights of its own, before rope (Gemma 3).
    pub qk_norm: bool,
    /// Attention's and the feed-forward's outputs are normalized before each residual add
    /// (Gemma 3).
    pub post_norms: bool,
    /// Attention scores are scaled by 1/√this rather than 1/√head_dim (Gemma's
    /// `query_pre_attn_scalar`).
    pub query_pre_attn_scalar: Option<f32>,
    /// Final logits become `cap · tanh(logits / cap)`.
    pub final_logit_softcap: Option<f32>,
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
    pub const WINDOW_PATTERN: &str = "attention.sliding_window_pattern";
    pub const ROPE_DIM: &str = "rope.dimension_count";
    pub const ROPE_BASE: &str = "rope.freq_base";
    pub const ROPE_BASE_SWA: &str = "rope.freq_base_swa";
    pub const ROPE_SCALING: &str = "rope.scaling.type";
    pub const ROPE_FACTOR: &str = "rope.scaling.factor";
    pub const VOCAB: &str = "vocab_size";
    pub const EXPERTS: &str = "expert_count";
    pub const EXPERTS_USED: &str = "expert_used_count";
    pub const ATTN_SOFTCAP: &str = "attn_logit_softcapping";
    pub const FINAL_SOFTCAP: &str = "final_logit_softcapping";
}

/// Gemma 3's facts that neither its GGUF nor every `config.json` states (llama.cpp's gemma3
/// loader and `transformers`' `Gemma3TextConfig` supply the same ones).
mod gemma3 {
    /// Every sixth layer attends globally, the others slide.
    pub const WINDOW_PATTERN: usize = 6;
    /// Rope base of the sliding layers.
    pub const LOCAL_THETA: f32 = 10_000.0;
    /// Rope base of the global layers.
    pub const THETA: f32 = 1_000_000.0;
}

/// The global layers of `n_layers` when every `pattern`-th one is (Gemma: 5, 11, 17 … of 6).
fn every_nth(n_layers: usize, pattern: usize) -> Vec<usize> {
    (0..n_layers)
        .filter(|i| pattern > 0 && (i + 1) % pattern == 0)
        .collect()
}

impl Config {
    /// A decoder with the given architecture name, no sizes and every switch off; the readers
    /// fill in what their format says.
    fn plain(architecture: String) -> Self {
        Self {
            architecture,
            vocab_size: 0,
            hidden_size: 0,
            intermediate_size: 0,
            n_layers: 0,
            n_heads: 0,
            n_kv_heads: 0,
            head_dim: 0,
            context_length: 0,
            norm: Norm::Rms,
            norm_eps: 1e-6,
            activation: Activation::Silu,
            gated_ffn: true,
            positions: Positions::Learned,
            qkv_bias: false,
            bias: false,
            sliding_window: None,
            n_experts: 0,
            n_experts_used: 0,
            full_attention_layers: Vec::new(),
            local_rope_theta: None,
            embed_scale: None,
            norm_weight_offset: 0.0,
            qk_norm: false,
            post_norms: false,
            query_pre_attn_scalar: None,
            final_logit_softcap: None,
        }
    }

    /// The attention window of layer `layer`: the sliding window unless it is a global layer.
    pub fn window(&self, layer: usize) -> Option<usize> {
        self.sliding_window
            .filter(|_| !self.full_attention_layers.contains(&layer))
    }

    /// Reads the configuration from GGUF metadata (`<arch>.*` keys, llama.cpp's conventions:
    /// Mistral and Mixtral files are `llama`).
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.get_str(keys::ARCH)?.to_string();
        if !["llama", "qwen2", "gpt2", "gemma3"].contains(&arch.as_str()) {
            return Err(Error::UnsupportedArchitecture(arch));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let opt = |k: &str| g.get_usize(&key(k)).ok();
        let float = |k: &str| g.get_f32(&key(k)).ok();
        let hidden_size = g.get_usize(&key(keys::HIDDEN))?;
        let n_heads = g.get_usize(&key(keys::HEADS))?;
        let vocab_size = match opt(keys::VOCAB) {
            Some(n) => n,
            None => g.get_array("tokenizer.ggml.tokens")?.len(),
        };
        let (gpt2, gemma) = (arch == "gpt2", arch == "gemma3");
        let positions = if gpt2 {
            Positions::Learned
        } else {
            let scaling = match g.get_str(&key(keys::ROPE_SCALING)).ok() {
                None | Some("none") => None,
                Some("linear") => Some(RopeScaling::Linear {
                    factor: g.get_f32(&key(keys::ROPE_FACTOR))?,
                }),
                Some(other) => {
                    return Err(Error::Metadata(format!(
                        "rope scaling \"{other}\" is not supported"
                    )))
                }
            };
            let default_theta = if gemma { gemma3::THETA } else { 10_000.0 };
            Positions::Rotary {
                theta: float(keys::ROPE_BASE).unwrap_or(default_theta),
                interleaved: arch == "llama",
                scaling,
            }
        };
        let norm_eps = if gpt2 {
            g.get_f32(&key(keys::LN_EPS))?
        } else {
            g.get_f32(&key(keys::RMS_EPS))?
        };
        let mut cfg = Self {
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
            activation: if gpt2 || gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            gated_ffn: !gpt2,
            positions,
            qkv_bias: !matches!(arch.as_str(), "llama" | "gemma3"),
            bias: gpt2,
            sliding_window: opt(keys::WINDOW).filter(|&w| w > 0),
            n_experts: opt(keys::EXPERTS).unwrap_or(0),
            n_experts_used: opt(keys::EXPERTS_USED).unwrap_or(0),
            final_logit_softcap: float(keys::FINAL_SOFTCAP).filter(|&c| c > 0.0),
            ..Self::plain(arch.clone())
        };
        if float(keys::ATTN_SOFTCAP).is_some_and(|c| c > 0.0) {
            return Err(Error::Metadata(
                "attention logit softcapping (Gemma 2) is not supported".into(),
            ));
        }
        if gemma {
            // llama.cpp's gemma3 loader: pattern 6 unless the file says otherwise, sliding layers
            // at base 10 000, scores scaled by 1/√head_dim except in the 62-layer 27B model.
            let pattern = opt(keys::WINDOW_PATTERN).unwrap_or(gemma3::WINDOW_PATTERN);
            cfg.full_attention_layers = every_nth(cfg.n_layers, pattern);
            cfg.local_rope_theta = Some(float(keys::ROPE_BASE_SWA).unwrap_or(gemma3::LOCAL_THETA));
            cfg.embed_scale = Some((hidden_size as f32).sqrt());
            cfg.qk_norm = true;
            cfg.post_norms = true;
            if cfg.n_layers == 62 {
                cfg.query_pre_attn_scalar = Some((hidden_size / n_heads.max(1)) as f32);
            }
        }
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
        let activation = |k: &str, default: &str| {
            let act = c.get(k).and_then(Value::as_str).unwrap_or(default);
            Activation::from_name(act)
                .ok_or_else(|| bad(format!("activation \"{act}\" is not supported")))
        };
        let cfg = match arch.as_str() {
            "gpt2" => {
                let hidden = need("n_embd")?;
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
                    activation: activation("activation_function", "gelu_new")?,
                    gated_ffn: false,
                    positions: Positions::Learned,
                    qkv_bias: true,
                    bias: true,
                    ..Self::plain(arch)
                }
            }
            "llama" | "mistral" | "mixtral" | "qwen2" | "gemma3_text" => {
                let gemma = arch == "gemma3_text";
                let hidden = need("hidden_size")?;
                let n_heads = need("num_attention_heads")?;
                let n_layers = need("num_hidden_layers")?;
                // transformers 5 moves rope settings into "rope_parameters", per layer type
                // for Gemma ("full_attention", "sliding_attention").
                let params = c.get("rope_parameters").filter(|v| v.is_object());
                let rope = match params {
                    Some(p) if gemma => p.get("full_attention").filter(|v| v.is_object()),
                    Some(p) => Some(p),
                    None => c.get("rope_scaling").filter(|v| v.is_object()),
                };
                let default_theta = if gemma { gemma3::THETA } else { 10_000.0 };
                let theta = float("rope_theta")
                    .or_else(|| {
                        rope.and_then(|r| r.get("rope_theta")?.as_f64())
                            .map(|v| v as f32)
                    })
                    .unwrap_or(default_theta);
                let scaling = match rope {
                    Some(r) => rope_scaling(r).map_err(bad)?,
                    None => None,
                };
                let window = match arch.as_str() {
                    "mistral" | "mixtral" | "gemma3_text" => num("sliding_window"),
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
                let cfg = Self {
                    vocab_size: need("vocab_size")?,
                    hidden_size: hidden,
                    intermediate_size: need("intermediate_size")?,
                    n_layers,
                    n_heads,
                    n_kv_heads: num("num_key_value_heads").unwrap_or(n_heads),
                    head_dim: num("head_dim").unwrap_or(match gemma {
                        true => 256,
                        false => hidden.checked_div(n_heads).unwrap_or(0),
                    }),
                    context_length: need("max_position_embeddings")?,
                    norm_eps: float("rms_norm_eps").unwrap_or(1e-6),
                    activation: match gemma {
                        true => activation("hidden_activation", "gelu_pytorch_tanh")?,
                        false => activation("hidden_act", "silu")?,
                    },
                    positions: Positions::Rotary {
                        theta,
                        interleaved: false,
                        scaling,
                    },
                    qkv_bias: arch == "qwen2" || attention_bias,
                    sliding_window: window.filter(|&w| w > 0),
                    n_experts: experts.0,
                    n_experts_used: experts.1,
                    ..Self::plain(arch)
                };
                match gemma {
                    true => cfg.with_gemma3_hf(c, params).map_err(bad)?,
                    false => cfg,
                }
            }
            _ => return Err(Error::UnsupportedArchitecture(arch)),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Gemma 3's switches from its `config.json` (`Gemma3TextConfig`'s keys, old and new).
    fn with_gemma3_hf(
        mut self,
        c: &Value,
        rope_params: Option<&Value>,
    ) -> std::result::Result<Self, String> {
        let float = |k: &str| c.get(k).and_then(Value::as_f64).map(|v| v as f32);
        if c.get("use_bidirectional_attention")
            .and_then(Value::as_bool)
            == Some(true)
        {
            return Err("bidirectional attention (EmbeddingGemma) is not supported".into());
        }
        if float("attn_logit_softcapping").is_some() {
            return Err("attention logit softcapping is not supported".into());
        }
        self.full_attention_layers = match c.get("layer_types").and_then(Value::as_array) {
            Some(types) if types.len() == self.n_layers => {
                let mut full = Vec::new();
                for (i, t) in types.iter().enumerate() {
                    match t.as_str() {
                        Some("full_attention") => full.push(i),
                        Some("sliding_attention") => {}
                        _ => return Err(format!("layer_types[{i}] is {t}, not a layer type")),
                    }
                }
                full
            }
            Some(types) => {
                return Err(format!(
                    "\"layer_types\" has {} entries for {} layers",
                    types.len(),
                    self.n_layers
                ))
            }
            None => {
                let pattern = c.get("sliding_window_pattern").and_then(Value::as_u64);
                every_nth(
                    self.n_layers,
                    pattern.map_or(gemma3::WINDOW_PATTERN, |p| p as usize),
                )
            }
        };
        let local = rope_params
            .and_then(|p| p.get("sliding_attention"))
            .filter(|v| v.is_object());
        if let Some(l) = local.filter(|l| rope_scaling(l).ok().flatten().is_some()) {
            return Err(format!(
                "rope scaling on the sliding layers is not supported: {l}"
            ));
        }
        self.local_rope_theta = Some(
            local
                .and_then(|l| l.get("rope_theta")?.as_f64())
                .map(|v| v as f32)
                .or_else(|| float("rope_local_base_freq"))
                .unwrap_or(gemma3::LOCAL_THETA),
        );
        // Gemma3TextScaledWordEmbedding: √hidden as an f32 tensor.
        self.embed_scale = Some((self.hidden_size as f64).sqrt() as f32);
        self.norm_weight_offset = 1.0;
        self.qk_norm = true;
        self.post_norms = true;
        self.query_pre_attn_scalar = Some(float("query_pre_attn_scalar").unwrap_or(256.0));
        self.final_logit_softcap = float("final_logit_softcapping");
        Ok(self)
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
        if let Some(&l) = self
            .full_attention_layers
            .iter()
            .find(|&&l| l >= self.n_layers)
        {
            return bad(format!("global layer {l} of {} layers", self.n_layers));
        }
        if self
            .final_logit_softcap
            .is_some_and(|c| c.is_nan() || c <= 0.0)
            || self
                .query_pre_attn_scalar
                .is_some_and(|s| s.is_nan() || s <= 0.0)
        {
            return bad("softcap and attention scalar must be positive".into());
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

/// The scaling a `rope_scaling` / `rope_parameters` object asks for (`llama3` or `linear`; other
/// types are refused, `default` means none).
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
                Ok(Some(RopeScaling::Llama3 {
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
        "linear" => match f("factor") {
            Some(factor) if factor > 0.0 => Ok(Some(RopeScaling::Linear { factor })),
            _ => Err(format!(
                "linear rope scaling without a positive factor: {r}"
            )),
        },
        other => Err(format!("rope scaling \"{other}\" is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A Gemma 3 `config.json` as transformers 4 wrote them to the Hub (4B-like: rope scaling).
    fn hub_gemma3() -> Value {
        serde_json::json!({
            "model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 2560,
            "intermediate_size": 10240, "num_hidden_layers": 34, "num_attention_heads": 8,
            "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": 256, "sliding_window": 1024, "sliding_window_pattern": 6,
            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0},
            "final_logit_softcapping": null, "attn_logit_softcapping": null
        })
    }

    #[test]
    fn gemma3_hub_config_reads_its_older_keys() {
        let c = Config::from_hf(&hub_gemma3()).unwrap();
        assert_eq!(c.full_attention_layers, [5, 11, 17, 23, 29]);
        assert_eq!((c.window(0), c.window(5)), (Some(1024), None));
        assert_eq!(c.local_rope_theta, Some(10_000.0));
        assert_eq!(
            c.positions,
            Positions::Rotary {
                theta: 1_000_000.0,
                interleaved: false,
                scaling: Some(RopeScaling::Linear { factor: 8.0 }),
            }
        );
        assert_eq!(c.embed_scale, Some((2560f64).sqrt() as f32));
        assert_eq!(c.norm_weight_offset, 1.0);
        assert_eq!(c.activation, Activation::GeluTanh);
        assert_eq!(c.query_pre_attn_scalar, Some(256.0));
        assert!(c.qk_norm && c.post_norms && c.final_logit_softcap.is_none());
    }

    #[test]
    fn gemma3_configs_wick_cannot_run_are_refused() {
        let refused = |k: &str, v: Value| {
            let mut c = hub_gemma3();
            c[k] = v;
            Config::from_hf(&c).unwrap_err().to_string()
        };
        assert!(refused("attn_logit_softcapping", 50.0.into()).contains("softcapping"));
        assert!(refused("use_bidirectional_attention", true.into()).contains("bidirectional"));
        let e = refused("layer_types", serde_json::json!(["full_attention"]));
        assert!(e.contains("1 entries for 34 layers"), "{e}");
        let e = refused(
            "rope_scaling",
            serde_json::json!({"rope_type": "yarn", "factor": 4}),
        );
        assert!(e.contains("yarn"), "{e}");
    }
}
