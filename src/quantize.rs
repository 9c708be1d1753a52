//! `wick quantize`: a GGUF file or a float Hugging Face folder → an MLX-quantized safetensors
//! folder (`model.safetensors`, `config.json`, `tokenizer.json`, `tokenizer_config.json`), the
//! form the browser app loads by default.
//!
//! GGUF blocks that MLX's layout holds exactly (`Q4_1` as 4-bit, `Q8_0` as 8-bit, groups of 32)
//! are copied without rounding (`Q4_K` as 4-bit groups of 32 with each group's scale and bias
//! rounded to f16), and config.json records those modules' own bits and group size;
//! everything else is dequantized and quantized with the chosen bits and group size. llama.cpp's
//! `llama` files permute the rows of q and k for interleaved rotary embeddings: the export
//! undoes that, since Hugging Face's layout rotates the two halves of each head. Gemma 3 is
//! written as transformers' `gemma3_text` (its extra norms, and norm weights as w where
//! llama.cpp stores 1 + w).

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::kernels::WeightType;
use crate::model::{Activation, Config, Positions, RopeScaling};
use crate::tokenizer::Tokenizer;
use crate::weights::affine::{Affine, BITS, GROUPS};
use crate::weights::safetensors::Writer;
use crate::weights::{TensorSource, WeightTensor};
use candle_core::quantized::GgmlDType;
use candle_core::Device;

/// A model folder's files: `(file name, bytes)`.
pub type Files = Vec<(String, Vec<u8>)>;

/// What to quantize to.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Bits per weight, 4 or 8.
    pub bits: usize,
    /// Inputs per scale and bias, 32, 64 or 128.
    pub group: usize,
    /// Requantize GGUF blocks that would map exactly, too.
    pub requantize: bool,
}

/// What the export wrote, for the command to print.
#[derive(Debug, Default)]
pub struct Summary {
    /// Tensors copied from GGUF blocks without rounding.
    pub exact: usize,
    /// Tensors quantized from float (or other) values.
    pub quantized: usize,
    /// Tensors kept as float (norms, biases).
    pub float: usize,
}

/// The model's tensors as a Hugging Face folder of MLX-quantized weights: `(file name, bytes)`.
pub fn to_mlx(
    cfg: &Config,
    src: &dyn TensorSource,
    tokenizer: &Tokenizer,
    chat_template: Option<&str>,
    opts: Options,
) -> Result<(Files, Summary)> {
    if !BITS.contains(&opts.bits) || !GROUPS.contains(&opts.group) {
        return Err(Error::Metadata(format!(
            "bits {} and group size {} are not supported (bits 4 or 8, group 32, 64 or 128)",
            opts.bits, opts.group
        )));
    }
    let unsupported = |why: &str| {
        Err(Error::Metadata(format!(
            "quantize does not export {} models yet: {why}",
            cfg.architecture
        )))
    };
    if cfg.positions == Positions::Learned || !cfg.gated_ffn {
        return unsupported("only Llama-style decoders (Llama, SmolLM, Mistral, Qwen2)");
    }
    if cfg.n_experts > 0 {
        return unsupported("mixtures of experts");
    }
    let gemma = is_gemma3(cfg);
    if !cfg.llama_layout() && !gemma {
        return unsupported("its switches have no place in the Llama or Gemma 3 layout");
    }
    // Gemma's norms are `1 + w`: transformers stores w, llama.cpp's files 1 + w.
    let norm_shift = match gemma {
        true => 1.0 - cfg.norm_weight_offset,
        false => 0.0,
    };
    let interleaved = matches!(
        cfg.positions,
        Positions::Rotary {
            interleaved: true,
            ..
        }
    );
    let device = Device::Cpu;
    let mut w = Writer::default();
    let mut overrides = Map::new();
    let mut summary = Summary::default();
    let mut names: Vec<(String, String)> = vec![
        ("token_embd".into(), "model.embed_tokens".into()),
        ("output_norm".into(), "model.norm".into()),
    ];
    if src.contains("output.weight") {
        names.push(("output".into(), "lm_head".into()));
    }
    for i in 0..cfg.n_layers {
        let roles = [
            ("attn_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
            ("attn_q", "self_attn.q_proj"),
            ("attn_k", "self_attn.k_proj"),
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ];
        let gemma_roles = [
            ("attn_norm", "input_layernorm"),
            ("post_attention_norm", "post_attention_layernorm"),
            ("ffn_norm", "pre_feedforward_layernorm"),
            ("post_ffw_norm", "post_feedforward_layernorm"),
            ("attn_q_norm", "self_attn.q_norm"),
            ("attn_k_norm", "self_attn.k_norm"),
        ];
        let roles = match gemma {
            true => [&gemma_roles[..], &roles[2..]].concat(),
            false => roles.to_vec(),
        };
        for (ours, hf) in roles {
            names.push((format!("blk.{i}.{ours}"), format!("model.layers.{i}.{hf}")));
        }
    }
    for (ours, hf) in &names {
        let heads = match ours.rsplit('.').next() {
            Some("attn_q") if interleaved => Some(cfg.n_heads),
            Some("attn_k") if interleaved => Some(cfg.n_kv_heads),
            _ => None,
        };
        if src.contains(&format!("{ours}.bias")) {
            let b = src
                .load(&format!("{ours}.bias"), &device)?
                .to_f32(&device)?;
            let b = match heads {
                Some(h) => unpermute_rows(&b.to_vec1::<f32>()?, h, cfg.head_dim, 1),
                None => b.to_vec1::<f32>()?,
            };
            w.add_f32(&format!("{hf}.bias"), vec![b.len()], &b);
            summary.float += 1;
        }
        let t = src.load(&format!("{ours}.weight"), &device)?;
        let dims = t.dims().to_vec();
        if dims.len() == 1 {
            let mut v = t.to_f32(&device)?.to_vec1::<f32>()?;
            if norm_shift != 0.0 {
                v.iter_mut().for_each(|x| *x -= norm_shift);
            }
            w.add_f32(&format!("{hf}.weight"), dims, &v);
            summary.float += 1;
            continue;
        }
        let [rows, cols] = dims[..] else {
            return Err(Error::Tensor {
                name: format!("{ours}.weight"),
                problem: format!("has shape {dims:?}, a matrix was expected"),
            });
        };
        let exact = match &t {
            WeightTensor::Blocks { ty, data, .. } if !opts.requantize => match ty {
                WeightType::Q4K => Affine::from_q4k(data, rows, cols),
                _ => Affine::from_blocks(*ty, data, rows, cols),
            },
            // Q4_K's groups of 32 are MLX's 4-bit groups up to the f16 rounding of their scales.
            WeightTensor::Candle(q)
                if !opts.requantize && q.dtype() == GgmlDType::Q4K && q.device().is_cpu() =>
            {
                Affine::from_q4k(&q.data()?, rows, cols)
            }
            _ => None,
        };
        let mut a = match exact {
            Some(a) => {
                summary.exact += 1;
                if (a.bits, a.group) != (opts.bits, opts.group) {
                    overrides.insert(hf.clone(), json!({"bits": a.bits, "group_size": a.group}));
                }
                a
            }
            None => {
                if !cols.is_multiple_of(opts.group) {
                    return Err(Error::Tensor {
                        name: format!("{ours}.weight"),
                        problem: format!(
                            "{cols} inputs do not split into groups of {}",
                            opts.group
                        ),
                    });
                }
                summary.quantized += 1;
                let v = t.to_f32(&device)?.flatten_all()?.to_vec1::<f32>()?;
                Affine::quantize(&v, rows, cols, opts.bits, opts.group)
            }
        };
        if let Some(h) = heads {
            a.q = unpermute_rows(&a.q, h, cfg.head_dim, cols);
            a.scales = unpermute_rows(&a.scales, h, cfg.head_dim, cols / a.group);
            a.biases = unpermute_rows(&a.biases, h, cfg.head_dim, cols / a.group);
        }
        let groups = cols / a.group;
        w.add_u32(
            &format!("{hf}.weight"),
            vec![rows, cols * a.bits / 32],
            &a.pack(),
        );
        w.add_f16(&format!("{hf}.scales"), vec![rows, groups], &a.scales);
        w.add_f16(&format!("{hf}.biases"), vec![rows, groups], &a.biases);
    }
    w.metadata("format", "mlx");
    let files = vec![
        ("model.safetensors".to_string(), w.to_bytes()),
        (
            "config.json".into(),
            pretty(&hf_config(
                cfg,
                !src.contains("output.weight"),
                tokenizer,
                Some(quantization(opts, overrides)),
            )?),
        ),
        ("tokenizer.json".into(), tokenizer.to_json()?.into_bytes()),
        (
            "tokenizer_config.json".into(),
            pretty(&tokenizer_config(tokenizer, chat_template)),
        ),
    ];
    Ok((crate::weights::manifest::with_manifest(files), summary))
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s.into_bytes()
}

/// Rows of llama.cpp's q/k layout (`[head][pair][2]`) back in Hugging Face's (`[head][2][pair]`):
/// `row` values per row.
fn unpermute_rows<T: Copy>(v: &[T], heads: usize, head_dim: usize, row: usize) -> Vec<T> {
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(v.len());
    for h in 0..heads {
        for s in 0..2 {
            for i in 0..half {
                let src = h * head_dim + 2 * i + s;
                out.extend_from_slice(&v[src * row..(src + 1) * row]);
            }
        }
    }
    out
}

/// MLX's `quantization` entry: the global bits and group size, and the modules that differ.
fn quantization(opts: Options, overrides: Map<String, Value>) -> Value {
    let mut quant = Map::new();
    quant.insert("group_size".into(), json!(opts.group));
    quant.insert("bits".into(), json!(opts.bits));
    quant.extend(overrides);
    Value::Object(quant)
}

/// The Hugging Face `config.json` of a Llama-style decoder (Llama, Mistral, Qwen2); `tied`: the
/// output head is the embedding (no `lm_head`); `quantization`: MLX's entry, if quantized.
pub fn hf_config(
    cfg: &Config,
    tied: bool,
    tokenizer: &Tokenizer,
    quantization: Option<Value>,
) -> Result<Value> {
    let gemma = is_gemma3(cfg);
    let model_type = match (cfg.architecture.as_str(), cfg.sliding_window) {
        _ if gemma => "gemma3_text",
        ("qwen2", _) => "qwen2",
        (_, Some(_)) => "mistral",
        _ => "llama",
    };
    let Positions::Rotary { theta, scaling, .. } = &cfg.positions else {
        return Err(Error::Metadata("rotary positions expected".into()));
    };
    if !cfg.llama_layout() && !gemma {
        return Err(Error::Metadata(format!(
            "a {} decoder has switches the Llama layout cannot express",
            cfg.architecture
        )));
    }
    let act = match cfg.activation {
        Activation::Silu => "silu",
        Activation::Gelu => "gelu",
        Activation::GeluTanh => "gelu_pytorch_tanh",
        Activation::Relu => "relu",
    };
    let token_id = |t: Option<String>| t.and_then(|t| tokenizer.token_id(&t));
    let mut c = json!({
        "model_type": model_type,
        "architectures": [match model_type {
            "gemma3_text" => "Gemma3ForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            "mistral" => "MistralForCausalLM",
            _ => "LlamaForCausalLM",
        }],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": theta,
        "hidden_act": act,
        "tie_word_embeddings": tied,
        "bos_token_id": token_id(tokenizer.bos_token()),
        "eos_token_id": token_id(tokenizer.eos_token()),
    });
    if let Some(q) = quantization {
        c["quantization"] = q.clone();
        c["quantization_config"] = q;
    }
    match scaling {
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        }) => {
            c["rope_scaling"] = json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_context,
            });
        }
        Some(RopeScaling::Linear { factor }) => {
            c["rope_scaling"] = json!({"rope_type": "linear", "factor": factor});
        }
        None => {}
    }
    if let Some(wnd) = cfg.sliding_window {
        c["sliding_window"] = json!(wnd);
    }
    if gemma {
        // Gemma3TextConfig's keys for the switches `Config::from_hf` reads back.
        let types: Vec<&str> = (0..cfg.n_layers)
            .map(|i| match cfg.full_attention_layers.contains(&i) {
                true => "full_attention",
                false => "sliding_attention",
            })
            .collect();
        c["layer_types"] = json!(types);
        c["hidden_activation"] = json!(act);
        // None: the head size, which transformers does not default to.
        c["query_pre_attn_scalar"] =
            json!(cfg.query_pre_attn_scalar.unwrap_or(cfg.head_dim as f32));
        c["rope_local_base_freq"] = json!(cfg.local_rope_theta);
        c["final_logit_softcapping"] = json!(cfg.final_logit_softcap);
        c["attn_logit_softcapping"] = Value::Null;
    }
    if cfg.architecture == "qwen2" || (cfg.qkv_bias && model_type != "qwen2") {
        c["attention_bias"] = json!(cfg.qkv_bias);
    }
    Ok(c)
}

/// Whether `cfg` is Gemma 3's decoder: the switches transformers' `gemma3_text` has, and no
/// others.
fn is_gemma3(cfg: &Config) -> bool {
    cfg.qk_norm
        && cfg.post_norms
        && cfg
            .embed_scale
            .is_some_and(|e| (f64::from(e) - (cfg.hidden_size as f64).sqrt()).abs() < 1e-3)
        && cfg.local_rope_theta.is_some()
        && cfg.activation == Activation::GeluTanh
        && !cfg.bias
        && !cfg.qkv_bias
}

/// `tokenizer_config.json`: the special tokens and the chat template, if any.
pub fn tokenizer_config(tokenizer: &Tokenizer, chat_template: Option<&str>) -> Value {
    let mut c = json!({
        "add_bos_token": tokenizer.adds_bos(),
        "bos_token": tokenizer.bos_token(),
        "eos_token": tokenizer.eos_token(),
    });
    if let Some(t) = chat_template {
        c["chat_template"] = json!(t);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: HF row (h, s, i) goes to GGUF row (h, i, s).
        let (heads, hd) = (2, 8);
        let hf: Vec<usize> = (0..heads * hd).collect();
        let mut gguf = vec![0; hf.len()];
        for h in 0..heads {
            for s in 0..2 {
                for i in 0..hd / 2 {
                    gguf[h * hd + 2 * i + s] = hf[h * hd + s * hd / 2 + i];
                }
            }
        }
        assert_eq!(unpermute_rows(&gguf, heads, hd, 1), hf);
    }
}
