//! What differs between architectures, as data: [`Config`] and its switches, read in one place
//! per file format — `gguf` (llama.cpp's metadata keys) and `hf` (a Hugging Face `config.json`).

mod gguf;
mod hf;

use crate::error::{Error, Result};

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
    /// A decoder named `architecture` with no sizes yet and every switch off (RMSNorm, SwiGLU,
    /// no biases); readers and builders fill in the rest (`..Config::plain(name)`).
    pub fn plain(architecture: String) -> Self {
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

    /// Whether only the Llama family's switches are on (no Gemma norms, embedding scale,
    /// attention scalar or softcap): the layout `transformers`' Llama, Mistral and Qwen2 read.
    pub fn llama_layout(&self) -> bool {
        !self.qk_norm
            && !self.post_norms
            && self.embed_scale.is_none()
            && self.norm_weight_offset == 0.0
            && self.query_pre_attn_scalar.is_none()
            && self.final_logit_softcap.is_none()
            && self.local_rope_theta.is_none()
            && self.full_attention_layers.is_empty()
    }

    /// The attention window of layer `layer`: the sliding window unless it is a global layer.
    pub fn window(&self, layer: usize) -> Option<usize> {
        self.sliding_window
            .filter(|_| !self.full_attention_layers.contains(&layer))
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
            || self
                .n_heads
                .checked_mul(self.head_dim)
                .is_none_or(|n| n > 1 << 16)
            || self.n_experts > 256
            || self
                .context_length
                .checked_mul(self.head_dim)
                .is_none_or(|n| n > 1 << 26)
        {
            return bad(format!("implausible sizes in {self:?}"));
        }
        Ok(())
    }
}
