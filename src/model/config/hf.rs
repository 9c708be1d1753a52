//! [`Config`] from a Hugging Face `config.json`: transformers' keys, old and new (transformers 5
//! moves rope settings into `rope_parameters`, per layer type for Gemma).

use serde_json::Value;

use super::{every_nth, gemma3, Activation, Config, Norm, Positions, RopeScaling};
use crate::error::{Error, Result};

impl Config {
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
                    intermediate_size: num("n_inner").unwrap_or(hidden.saturating_mul(4)),
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
