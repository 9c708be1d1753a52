//! A Hugging Face model's weights: `config.json` plus one or more `.safetensors` shards, float or
//! MLX-quantized ([`super::affine`]), presented under llama.cpp's tensor names. Which files a
//! folder holds is [`super::folder`]'s business.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use serde_json::Value;

use super::affine::{Affine, Headers, BITS, GROUPS};
use super::gguf::TensorData;
use super::safetensors::{Dtype, SafeTensors};
use super::{TensorSource, WeightTensor};
use crate::error::{Error, Result};

/// Where a tensor that the model asks for lives.
#[derive(Debug, Clone)]
struct Entry {
    /// Index of the shard.
    shard: usize,
    /// Name in that shard.
    name: String,
}

/// A parsed model folder.
#[derive(Debug)]
pub struct HfModel<'a> {
    /// `config.json`, parsed.
    pub config: Value,
    shards: Vec<SafeTensors<'a>>,
    /// llama.cpp name → where the tensor is.
    entries: BTreeMap<String, Entry>,
    gpt2: bool,
    /// Dequantize MLX weights to f32 instead of mapping them onto Wick's kernels.
    dequantize: bool,
    /// Quantize float matrices at load to `(bits, group)`, to save memory.
    quantize: Option<(usize, usize)>,
}

/// llama.cpp's name for a Hugging Face tensor name, or `None` for tensors Wick does not use
/// (rotary caches, attention masks, MLX's `.scales`/`.biases`, which go with their weight).
/// Gemma's `post_attention_layernorm` follows attention; everyone else's precedes the
/// feed-forward.
fn llama_cpp_name(hf: &str, gemma: bool) -> Option<String> {
    let n = hf
        .strip_prefix("model.")
        .or_else(|| hf.strip_prefix("transformer."))
        .unwrap_or(hf);
    let parts: Vec<&str> = n.split('.').collect();
    let (kind, path) = parts.split_last()?;
    if !matches!(*kind, "weight" | "bias") {
        return None;
    }
    let top = |s: &str| Some(format!("{s}.{kind}"));
    match path {
        ["embed_tokens"] | ["wte"] => top("token_embd"),
        ["wpe"] => top("position_embd"),
        ["norm"] | ["ln_f"] => top("output_norm"),
        ["lm_head"] => top("output"),
        ["layers" | "h", i, rest @ ..] => {
            let i: usize = i.parse().ok()?;
            let sub = match rest {
                ["input_layernorm"] | ["ln_1"] => "attn_norm".to_string(),
                ["post_attention_layernorm"] if gemma => "post_attention_norm".to_string(),
                ["post_attention_layernorm"] | ["ln_2"] | ["pre_feedforward_layernorm"] => {
                    "ffn_norm".to_string()
                }
                ["post_feedforward_layernorm"] => "post_ffw_norm".to_string(),
                ["self_attn", "q_norm"] => "attn_q_norm".to_string(),
                ["self_attn", "k_norm"] => "attn_k_norm".to_string(),
                ["self_attn", "q_proj"] => "attn_q".to_string(),
                ["self_attn", "k_proj"] => "attn_k".to_string(),
                ["self_attn", "v_proj"] => "attn_v".to_string(),
                ["self_attn", "o_proj"] | ["attn", "c_proj"] => "attn_output".to_string(),
                ["attn", "c_attn"] => "attn_qkv".to_string(),
                ["mlp", "gate_proj"] => "ffn_gate".to_string(),
                ["mlp", "up_proj"] | ["mlp", "c_fc"] => "ffn_up".to_string(),
                ["mlp", "down_proj"] | ["mlp", "c_proj"] => "ffn_down".to_string(),
                ["block_sparse_moe", "gate"] | ["mlp", "gate"] => "ffn_gate_inp".to_string(),
                ["block_sparse_moe" | "mlp", "experts", e, w] => {
                    let e: usize = e.parse().ok()?;
                    let role = match *w {
                        "w1" | "gate_proj" => "ffn_gate",
                        "w3" | "up_proj" => "ffn_up",
                        "w2" | "down_proj" => "ffn_down",
                        _ => return None,
                    };
                    format!("{role}.{e}")
                }
                _ => return None,
            };
            Some(format!("blk.{i}.{sub}.{kind}"))
        }
        _ => None,
    }
}

/// `config.json`'s bytes parsed, checked to be a JSON object.
pub fn parse_config(bytes: &[u8]) -> Result<Value> {
    super::folder::check_size("config.json", bytes.len(), super::folder::MAX_JSON)?;
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::File {
        file: "config.json".into(),
        problem: format!("is not valid JSON: {e}"),
    })?;
    if !v.is_object() {
        return Err(Error::File {
            file: "config.json".into(),
            problem: "is not a JSON object".into(),
        });
    }
    Ok(v)
}

impl<'a> HfModel<'a> {
    /// Reads `config.json` and indexes the tensors of every shard.
    pub fn new(config_json: &[u8], shards: Vec<SafeTensors<'a>>) -> Result<Self> {
        let config = parse_config(config_json)?;
        let model_type = config.get("model_type").and_then(Value::as_str);
        let (gpt2, gemma) = (
            model_type == Some("gpt2"),
            model_type == Some("gemma3_text"),
        );
        let mut entries = BTreeMap::new();
        let mut hf_names: BTreeMap<&str, usize> = BTreeMap::new();
        for (shard, st) in shards.iter().enumerate() {
            for name in st.tensors.keys() {
                if let Some(other) = hf_names.insert(name, shard) {
                    return Err(Error::FileTensor {
                        file: st.file.clone(),
                        name: name.clone(),
                        problem: format!("is also in {}", shards[other].file),
                    });
                }
                if let Some(canonical) = llama_cpp_name(name, gemma) {
                    let name = name.clone();
                    entries.insert(canonical, Entry { shard, name });
                }
            }
        }
        Ok(Self {
            config,
            shards,
            entries,
            gpt2,
            dequantize: false,
            quantize: None,
        })
    }

    /// Quantizes float matrices (not norms or biases) at load, MLX-style with `bits` and
    /// `group`, so a float model takes 1/8 (4-bit) or 1/4 (8-bit) of the f32 memory and runs on
    /// Wick's kernels. Matrices whose width is not a multiple of `group` stay float.
    pub fn quantized_at_load(mut self, bits: usize, group: usize) -> Result<Self> {
        if !BITS.contains(&bits) || !GROUPS.contains(&group) {
            return Err(Error::Metadata(format!(
                "cannot quantize to {bits} bits in groups of {group} (bits 4 or 8, group 32, 64 or 128)"
            )));
        }
        self.quantize = Some((bits, group));
        Ok(self)
    }

    /// Loads quantized weights as f32 (`scale · q + bias` exactly) and runs them with f32
    /// matmuls: slower and 4–8× the memory, but free of the 8-bit rounding of activations that
    /// Wick's kernels make. For checking the format against a float reference.
    pub fn dequantized(mut self) -> Self {
        self.dequantize = true;
        self
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| Error::File {
            file: self.shard_names(),
            problem: format!("has no tensor for `{name}` (its Hugging Face name is not there)"),
        })
    }

    fn shard_names(&self) -> String {
        let names: Vec<&str> = self.shards.iter().map(|s| s.file.as_str()).collect();
        names.join(", ")
    }

    /// `(bits, group_size)` for the module `base` (a weight name without `.weight`), from
    /// config.json's `quantization` (per-module entries override the global pair).
    fn quantization(&self, base: &str) -> Result<(usize, usize)> {
        let q = self
            .config
            .get("quantization")
            .or_else(|| self.config.get("quantization_config"));
        let bad = |problem: String| Error::File {
            file: "config.json".into(),
            problem,
        };
        let Some(q) = q else {
            return Err(bad(format!(
                "`{base}` is quantized (it has .scales) but there is no \"quantization\" entry"
            )));
        };
        let spec = q.get(base).filter(|v| v.is_object()).unwrap_or(q);
        let get = |k: &str| spec.get(k).and_then(Value::as_u64).map(|v| v as usize);
        match (get("bits"), get("group_size")) {
            (Some(b), Some(g)) if BITS.contains(&b) && GROUPS.contains(&g) => Ok((b, g)),
            (b, g) => Err(bad(format!(
                "quantization of `{base}`: bits {b:?}, group_size {g:?} (Wick reads bits 4 or 8, group 32, 64 or 128)"
            ))),
        }
    }

    /// A quantized weight: MLX's `.weight` (u32), `.scales`, `.biases` → blocks or f32.
    fn load_affine(
        &self,
        st: &SafeTensors<'a>,
        wname: &str,
        device: &Device,
    ) -> Result<WeightTensor> {
        let base = wname.strip_suffix(".weight").unwrap_or(wname);
        let (bits, group) = self.quantization(base)?;
        let (packed, pshape) = st.u32s(wname)?;
        let (sname, bname) = (format!("{base}.scales"), format!("{base}.biases"));
        let (sinfo, binfo) = (st.info(&sname)?, st.info(&bname)?);
        let (sshape, bshape) = (&sinfo.shape, &binfo.shape);
        let [rows, words] = pshape[..] else {
            return Err(st.tensor_error(
                wname,
                &format!("packed weight has shape {pshape:?}, not 2-D"),
            ));
        };
        // Sizes from the file's header: checked, as wasm32 addresses only 4 GB.
        let Some(cols) = words
            .checked_mul(32)
            .map(|b| b / bits)
            .filter(|&c| rows.checked_mul(c).and_then(|n| n.checked_mul(4)).is_some())
        else {
            return Err(st.tensor_error(
                wname,
                &format!("packed weight of shape {pshape:?} is too large to address"),
            ));
        };
        if cols % group != 0 || *sshape != [rows, cols / group] || bshape != sshape {
            return Err(st.tensor_error(
                wname,
                &format!(
                    "{bits}-bit weight of {rows}×{cols} with group {group} needs scales and biases of \
                     [{rows}, {}], found {sshape:?} and {bshape:?}",
                    cols / group.max(1)
                ),
            ));
        }
        if !self.dequantize && device.is_cpu() {
            // f16 scales and biases (MLX's usual) go into the block headers as they are.
            let headers = if sinfo.dtype == Dtype::F16 && binfo.dtype == Dtype::F16 {
                Headers::from_f16_bytes(&st.bytes(&sname)?, &st.bytes(&bname)?)
            } else {
                Headers::from_f32(&st.f32s(&sname)?.0, &st.f32s(&bname)?.0)
            };
            if let Some((ty, blocks)) =
                headers.and_then(|h| Affine::blocks_from_packed(&packed, bits, group, &h))
            {
                return Ok(WeightTensor::Blocks {
                    ty,
                    data: TensorData::owned(blocks),
                    dims: vec![rows, cols],
                });
            }
        }
        // Scales that f16 would round, a dequantizing caller, or another device: f32, exactly
        // (Candle's GPU kernels for Q4_1 misbehave on narrow matrices: non-finite logits at 64
        // inputs, seen on CUDA).
        let (scales, biases) = (st.f32s(&sname)?.0, st.f32s(&bname)?.0);
        let a = Affine::unpack(&packed, bits, group, rows, cols, scales, biases);
        Ok(WeightTensor::Float(Tensor::from_vec(
            a.dequantize(),
            (rows, cols),
            device,
        )?))
    }
}

impl TensorSource for HfModel<'_> {
    fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn load(&self, name: &str, device: &Device) -> Result<WeightTensor> {
        let entry = self.entry(name)?;
        let st = &self.shards[entry.shard];
        let base = entry.name.strip_suffix(".weight");
        if let Some(base) = base {
            if st.tensors.contains_key(&format!("{base}.scales")) {
                return self.load_affine(st, &entry.name, device);
            }
        }
        let (values, shape) = st.f32s(&entry.name)?;
        let t = Tensor::from_vec(values, shape.as_slice(), device)?;
        // GPT-2's Conv1D stores [in, out]; the decoder wants [out, in] like every other matmul.
        let conv1d = [
            "attn_qkv.weight",
            "attn_output.weight",
            "ffn_up.weight",
            "ffn_down.weight",
        ];
        if self.gpt2 && shape.len() == 2 && conv1d.iter().any(|s| name.ends_with(s)) {
            return Ok(WeightTensor::Float(t.t()?.contiguous()?));
        }
        Ok(WeightTensor::Float(t))
    }
}

impl HfModel<'_> {
    /// An error about the tensor the model calls `name`, naming the file and its own name there.
    pub fn tensor_error(&self, name: &str, problem: &str) -> Error {
        match self.entries.get(name) {
            Some(e) => self.shards[e.shard].tensor_error(&e.name, problem),
            None => Error::Tensor {
                name: name.to_string(),
                problem: problem.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_map_to_llama_cpp() {
        let cases = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            ("model.layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias"),
            (
                "model.layers.0.mlp.down_proj.weight",
                "blk.0.ffn_down.weight",
            ),
            (
                "model.layers.1.block_sparse_moe.experts.2.w3.weight",
                "blk.1.ffn_up.2.weight",
            ),
            ("transformer.h.1.attn.c_attn.bias", "blk.1.attn_qkv.bias"),
            ("h.0.mlp.c_proj.weight", "blk.0.ffn_down.weight"),
            ("wpe.weight", "position_embd.weight"),
        ];
        for (hf, want) in cases {
            assert_eq!(llama_cpp_name(hf, false).as_deref(), Some(want), "{hf}");
        }
        assert_eq!(
            llama_cpp_name("model.layers.0.self_attn.q_proj.scales", false),
            None
        );
        assert_eq!(llama_cpp_name("h.0.attn.bias.weightless", false), None);
        let gemma = [
            (
                "model.layers.2.post_attention_layernorm.weight",
                "blk.2.post_attention_norm.weight",
            ),
            (
                "model.layers.2.pre_feedforward_layernorm.weight",
                "blk.2.ffn_norm.weight",
            ),
            (
                "model.layers.2.post_feedforward_layernorm.weight",
                "blk.2.post_ffw_norm.weight",
            ),
            (
                "model.layers.0.self_attn.k_norm.weight",
                "blk.0.attn_k_norm.weight",
            ),
        ];
        for (hf, want) in gemma {
            assert_eq!(llama_cpp_name(hf, true).as_deref(), Some(want), "{hf}");
        }
    }
}
