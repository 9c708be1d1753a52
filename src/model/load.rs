//! Tensors → a [`Model`]: every weight loaded under llama.cpp's names and checked against the
//! config's shapes, from GGUF ([`Model::from_gguf`]) or a Hugging Face folder ([`Model::from_hf`]).

use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::cache::{CpuCache, GpuCache};
use super::layers::{split_rows, Embedding, Ffn, Linear, Mlp, NormLayer, Rope, Weight};
use super::{Block, Config, Model, Positions, RopeScaling};
use crate::error::{Error, Result};
use crate::weights::{Dequantized, Gguf, HfModel, TensorSource, WeightTensor};

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
        self.norm_of(prefix, self.cfg.hidden_size)
    }

    /// A norm over `len` values; its weights shifted by the config's offset (Gemma's `1 + w`).
    fn norm_of(&self, prefix: &str, len: usize) -> Result<NormLayer> {
        let mut w = self.vector(&format!("{prefix}.weight"), len)?;
        if self.cfg.norm_weight_offset != 0.0 {
            w = (w + f64::from(self.cfg.norm_weight_offset))?;
        }
        Ok(NormLayer {
            w,
            b: self.bias(&format!("{prefix}.bias"), len, self.cfg.bias)?,
            kind: self.cfg.norm,
            eps: self.cfg.norm_eps,
        })
    }

    /// The norm `prefix` when `present` (a switch of the config), else none.
    fn optional_norm(&self, prefix: &str, len: usize, present: bool) -> Result<Option<NormLayer>> {
        present.then(|| self.norm_of(prefix, len)).transpose()
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
            WeightTensor::Blocks { ty, data, .. } => Embedding::Blocks {
                ty,
                data,
                vocab: v,
                hidden: h,
            },
            WeightTensor::Candle(q) => {
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

    /// [`Model::from_gguf`] with the tensors taken from `src` (a wrapper of `g`, such as
    /// [`crate::weights::mapped::Mapped`]); the config and rope tables come from `g`.
    pub fn from_gguf_source(g: &Gguf, src: &dyn TensorSource, device: &Device) -> Result<Self> {
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

    /// An identity of the loaded model for KV snapshots when its file is not at hand (a model
    /// built in memory): a sha256 of its config and of every norm's weights. Loaders that have
    /// the file use the file's fingerprint instead ([`crate::weights::fingerprint`]).
    pub fn fingerprint(&self) -> Result<[u8; 32]> {
        let mut f = crate::weights::fingerprint::Fingerprint::new("model");
        f.add(format!("{:?}", self.config).as_bytes());
        let norms = self.blocks.iter().flat_map(|b| [&b.attn_norm, &b.ffn_norm]);
        for n in norms.chain([&self.norm]) {
            let w = n.w.flatten_all()?.to_vec1::<f32>()?;
            let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
            f.add(&bytes);
        }
        Ok(f.finish())
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
            let (hd, post) = (cfg.head_dim, cfg.post_norms);
            let qk_norms = match cfg.qk_norm {
                true => Some((
                    l.norm_of(&format!("{p}.attn_q_norm"), hd)?,
                    l.norm_of(&format!("{p}.attn_k_norm"), hd)?,
                )),
                false => None,
            };
            let window = cfg.window(i);
            // Sliding blocks take the second tables when there are two.
            let rope = usize::from(window.is_some() && cfg.local_rope_theta.is_some());
            blocks.push(Block {
                attn_norm: l.norm(&format!("{p}.attn_norm"))?,
                wq,
                wk,
                wv,
                qk_norms,
                wo: l.linear(&format!("{p}.attn_output"), h, q, cfg.bias)?,
                post_attn_norm: l.optional_norm(&format!("{p}.post_attention_norm"), h, post)?,
                ffn_norm: l.norm(&format!("{p}.ffn_norm"))?,
                ffn,
                post_ffn_norm: l.optional_norm(&format!("{p}.post_ffw_norm"), h, post)?,
                window,
                rope,
                cpu_cache: CpuCache::default(),
                gpu_cache: GpuCache::default(),
            });
        }
        let norm = l.norm("output_norm")?;
        let ropes = match &cfg.positions {
            Positions::Learned => Vec::new(),
            Positions::Rotary { theta, scaling, .. } => {
                let global = rope_frequencies(&cfg, *theta, *scaling, rope_divisors.as_deref())?;
                let mut ropes = vec![Rope::new(global, cfg.context_length, device)?];
                if let Some(local) = cfg.local_rope_theta {
                    let f = rope_frequencies(&cfg, local, None, None)?;
                    ropes.push(Rope::new(f, cfg.context_length, device)?);
                }
                ropes
            }
        };
        Ok(Self {
            limit: cfg.context_length,
            config: cfg,
            embed,
            position_embd,
            blocks,
            norm,
            head,
            ropes,
            device: device.clone(),
        })
    }
}

/// The rotary frequencies of each pair of a head for base `theta`; in f64 with `libm`, so every
/// target gets the same tables. `divisors` (llama.cpp's `rope_freqs`) override `scaling`.
fn rope_frequencies(
    cfg: &Config,
    theta: f32,
    scaling: Option<RopeScaling>,
    divisors: Option<&[f32]>,
) -> Result<Vec<f64>> {
    let half = cfg.head_dim / 2;
    if let Some(d) = divisors {
        if d.len() != half {
            return Err(Error::Tensor {
                name: "rope_freqs.weight".into(),
                problem: format!("has {} values, the head width implies {half}", d.len()),
            });
        }
    }
    Ok((0..half)
        .map(|i| {
            let f = 1.0 / libm::pow(f64::from(theta), 2.0 * i as f64 / cfg.head_dim as f64);
            match (divisors, scaling) {
                (Some(d), _) => f / f64::from(d[i]),
                (None, Some(s)) => f / f64::from(s.divisor(f as f32)),
                (None, None) => f,
            }
        })
        .collect())
}
