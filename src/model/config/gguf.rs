//! [`Config`] from GGUF metadata: llama.cpp's keys and conventions (Mistral and Mixtral files
//! are `llama`; a Gemma 3 file leaves its window pattern and local rope base to the loader).

use super::{every_nth, gemma3, Activation, Config, Norm, Positions, RopeScaling};
use crate::error::{Error, Result};
use crate::weights::Gguf;

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

impl Config {
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
}
