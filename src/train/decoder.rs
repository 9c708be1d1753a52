//! The decoder being trained: the Llama layout that [`crate::model`] runs (RMSNorm, rotary
//! embeddings on the two halves of each head, SwiGLU, grouped-query attention, tied embeddings),
//! written with candle-nn's differentiable ops so Candle's autograd computes every gradient.
//!
//! Its weights are `Var`s in a `VarMap`, under the Hugging Face names that [`super::export`]
//! writes and [`crate::weights::hf`] reads back. (Candle's fused `rms_norm`, `rope` and
//! `softmax_last_dim` have no backward pass, so their composed forms are used here.)

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{Embedding, Linear, Module, VarBuilder, VarMap};

use super::Rng;
use crate::error::{Error, Result};
use crate::model::{Activation, Config, Norm, Positions};

/// One weight of the decoder: its Hugging Face name, shape, and how it starts.
struct Param {
    name: String,
    shape: Vec<usize>,
    /// Standard deviation of its normal initialization; `None` for norm weights (all ones).
    std: Option<f64>,
}

/// Every weight of a decoder of shape `cfg`, in a fixed order (the order of initialization).
fn params(cfg: &Config) -> Vec<Param> {
    let (d, hd, f) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let (q, kv) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
    // GPT-2's scheme: 0.02, and the projections that write into the residual stream scaled
    // down by √(2·layers) so the stream's variance does not grow with depth.
    let std = 0.02;
    let out_std = std / (2.0 * cfg.n_layers as f64).sqrt();
    let p = |name: String, shape: Vec<usize>, std: Option<f64>| Param { name, shape, std };
    let mut v = vec![p(
        "model.embed_tokens.weight".into(),
        vec![cfg.vocab_size, d],
        Some(std),
    )];
    for i in 0..cfg.n_layers {
        let l = format!("model.layers.{i}");
        v.extend([
            p(format!("{l}.input_layernorm.weight"), vec![d], None),
            p(
                format!("{l}.self_attn.q_proj.weight"),
                vec![q, d],
                Some(std),
            ),
            p(
                format!("{l}.self_attn.k_proj.weight"),
                vec![kv, d],
                Some(std),
            ),
            p(
                format!("{l}.self_attn.v_proj.weight"),
                vec![kv, d],
                Some(std),
            ),
            p(
                format!("{l}.self_attn.o_proj.weight"),
                vec![d, q],
                Some(out_std),
            ),
            p(
                format!("{l}.post_attention_layernorm.weight"),
                vec![d],
                None,
            ),
            p(format!("{l}.mlp.gate_proj.weight"), vec![f, d], Some(std)),
            p(format!("{l}.mlp.up_proj.weight"), vec![f, d], Some(std)),
            p(
                format!("{l}.mlp.down_proj.weight"),
                vec![d, f],
                Some(out_std),
            ),
        ]);
    }
    v.push(p("model.norm.weight".into(), vec![d], None));
    v
}

/// Fills `varmap` with the decoder's weights drawn from `rng` (Candle's own initializers use a
/// generator that cannot be seeded on the CPU, so the same seed would not give the same model).
/// `scale` multiplies every standard deviation (the gradient check wants livelier weights).
pub fn init(
    varmap: &VarMap,
    cfg: &Config,
    rng: &mut Rng,
    scale: f64,
    dtype: DType,
    device: &Device,
) -> Result<()> {
    let mut vars = varmap
        .data()
        .lock()
        .map_err(|_| Error::Train("the weights' lock was poisoned by a panic".into()))?;
    for p in params(cfg) {
        let n: usize = p.shape.iter().product();
        let values: Vec<f64> = match p.std {
            Some(std) => (0..n).map(|_| rng.normal() * std * scale).collect(),
            None => vec![1.0; n],
        };
        let t = Tensor::from_vec(values, p.shape, device)?.to_dtype(dtype)?;
        vars.insert(p.name, Var::from_tensor(&t)?);
    }
    Ok(())
}

/// Whether a weight is a norm's (AdamW leaves those out of weight decay).
pub fn is_norm(name: &str) -> bool {
    name.ends_with("layernorm.weight") || name == "model.norm.weight"
}

/// Checks that `cfg` is a decoder this trainer builds: the Llama layout, nothing else.
pub fn check(cfg: &Config) -> Result<()> {
    let llama = cfg.norm == Norm::Rms
        && cfg.activation == Activation::Silu
        && cfg.gated_ffn
        && !cfg.qkv_bias
        && !cfg.bias
        && cfg.sliding_window.is_none()
        && cfg.n_experts == 0
        && cfg.llama_layout()
        && matches!(
            cfg.positions,
            Positions::Rotary {
                interleaved: false,
                scaling: None,
                ..
            }
        );
    if !llama {
        return Err(Error::Train(
            "only Llama-style decoders are trained (RMSNorm, rotary, SwiGLU, no biases)".into(),
        ));
    }
    Ok(())
}

struct Block {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The trainable decoder. Its tensors share storage with the `VarMap`'s variables, so an
/// optimizer step on the map is seen by the next forward pass.
pub struct Decoder {
    embed: Embedding,
    /// The embedding table, which is also the output head (tied).
    head: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    /// `cos` and `sin` of `position × frequency`: `[context, head_dim / 2]`.
    cos: Tensor,
    sin: Tensor,
    cfg: Config,
}

impl Decoder {
    /// Builds the decoder over the weights [`init`] put in `varmap`.
    pub fn new(cfg: &Config, varmap: &VarMap, dtype: DType, device: &Device) -> Result<Self> {
        check(cfg)?;
        let vb = VarBuilder::from_varmap(varmap, dtype, device);
        let (d, hd, f) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
        let (q, kv) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
        let lin = |vb: &VarBuilder, rows, cols| -> Result<Linear> {
            Ok(Linear::new(vb.get((rows, cols), "weight")?, None))
        };
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let b = vb.pp(format!("model.layers.{i}"));
            let (attn, mlp) = (b.pp("self_attn"), b.pp("mlp"));
            blocks.push(Block {
                attn_norm: b.get(d, "input_layernorm.weight")?,
                q: lin(&attn.pp("q_proj"), q, d)?,
                k: lin(&attn.pp("k_proj"), kv, d)?,
                v: lin(&attn.pp("v_proj"), kv, d)?,
                o: lin(&attn.pp("o_proj"), d, q)?,
                ffn_norm: b.get(d, "post_attention_layernorm.weight")?,
                gate: lin(&mlp.pp("gate_proj"), f, d)?,
                up: lin(&mlp.pp("up_proj"), f, d)?,
                down: lin(&mlp.pp("down_proj"), d, f)?,
            });
        }
        let head = vb.get((cfg.vocab_size, d), "model.embed_tokens.weight")?;
        let Positions::Rotary { theta, .. } = cfg.positions else {
            return Err(Error::Train("rotary positions are needed".into()));
        };
        // The same tables as the inference model: f64 with libm, rounded once.
        let half = hd / 2;
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / libm::pow(f64::from(theta), 2.0 * i as f64 / hd as f64))
            .collect();
        let angles = |f: fn(f64) -> f64| -> Vec<f64> {
            (0..cfg.context_length)
                .flat_map(|p| inv_freq.iter().map(move |w| f(p as f64 * w)))
                .collect()
        };
        let table = |v: Vec<f64>| -> Result<Tensor> {
            let t = Tensor::from_vec(v, (cfg.context_length, half), device)?;
            // Through f32 first, as the inference model's tables are.
            Ok(t.to_dtype(DType::F32)?.to_dtype(dtype)?)
        };
        Ok(Self {
            embed: Embedding::new(head.clone(), d),
            head,
            blocks,
            norm: vb.get(d, "model.norm.weight")?,
            cos: table(angles(libm::cos))?,
            sin: table(angles(libm::sin))?,
            cfg: cfg.clone(),
        })
    }

    /// Logits of every position of `ids` (`[batch, seq]`, u32): `[batch × seq, vocab]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        let (b, t) = ids.dims2()?;
        if t > c.context_length {
            return Err(Error::ContextOverflow {
                needed: t,
                limit: c.context_length,
            });
        }
        let (hd, eps) = (c.head_dim, c.norm_eps);
        let norm = |x: &Tensor, w: &Tensor| candle_nn::ops::rms_norm_slow(x, w, eps);
        // Rows are positions ([batch × seq, dim]), so every projection is one matmul.
        let mut x = self.embed.forward(&ids.flatten_all()?)?;
        let (cos, sin) = (self.cos.narrow(0, 0, t)?, self.sin.narrow(0, 0, t)?);
        let mask = causal_mask(t, x.dtype(), x.device())?;
        let scale = 1.0 / (hd as f64).sqrt();
        for blk in &self.blocks {
            let h = norm(&x, &blk.attn_norm)?;
            let heads = |y: Tensor, n: usize| -> Result<Tensor> {
                Ok(y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
            };
            let q = heads(blk.q.forward(&h)?, c.n_heads)?;
            let k = heads(blk.k.forward(&h)?, c.n_kv_heads)?;
            let v = heads(blk.v.forward(&h)?, c.n_kv_heads)?;
            let q = candle_nn::rotary_emb::rope_slow(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_slow(&k, &cos, &sin)?;
            let rep = c.n_heads / c.n_kv_heads;
            let k = candle_transformers::utils::repeat_kv(k, rep)?.contiguous()?;
            let v = candle_transformers::utils::repeat_kv(v, rep)?.contiguous()?;
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let y = att
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b * t, c.n_heads * hd))?;
            x = (x + blk.o.forward(&y)?)?;
            let h = norm(&x, &blk.ffn_norm)?;
            let g = candle_nn::ops::silu(&blk.gate.forward(&h)?)?;
            x = (x + blk.down.forward(&(g * blk.up.forward(&h)?)?)?)?;
        }
        Ok(norm(&x, &self.norm)?.matmul(&self.head.t()?)?)
    }

    /// Mean cross-entropy of predicting `targets` (`[batch, seq]`) from `ids`.
    pub fn loss(&self, ids: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let logits = self.forward(ids)?;
        Ok(candle_nn::loss::cross_entropy(
            &logits,
            &targets.flatten_all()?,
        )?)
    }
}

/// `[seq, seq]`: 0 where a position may attend, −∞ above the diagonal (the future).
fn causal_mask(seq: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let m: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(m, (seq, seq), device)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{llama_config, Rng};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Autograd's gradient of the loss against central finite differences, in f64, for a
    /// sample of entries of every weight of a tiny decoder with grouped-query attention.
    #[test]
    fn autograd_matches_finite_differences() {
        let cfg = llama_config(13, 8, 2, 4, 2, 16, 6, 10_000.0).unwrap();
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let mut rng = Rng::new(11);
        // Lively weights (std 0.6), so no gradient is too small to measure.
        init(&varmap, &cfg, &mut rng, 30.0, DType::F64, &dev).unwrap();
        let model = Decoder::new(&cfg, &varmap, DType::F64, &dev).unwrap();
        let ids: Vec<u32> = (0..12).map(|_| rng.below(13) as u32).collect();
        let inputs = Tensor::from_vec(ids[..10].to_vec(), (2, 5), &dev).unwrap();
        let targets = Tensor::from_vec(ids[2..].to_vec(), (2, 5), &dev).unwrap();
        let loss = |m: &Decoder| -> f64 {
            m.loss(&inputs, &targets)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let grads = model.loss(&inputs, &targets).unwrap().backward().unwrap();

        let h = 1e-5;
        let (mut checked, mut sizable, mut worst) = (0, 0, 0f64);
        let mut names: Vec<(String, Var)> =
            varmap.data().lock().unwrap().clone().into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(names.len(), params(&cfg).len());
        for (name, var) in names {
            let grad: Vec<f64> = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"))
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let values: Vec<f64> = var.flatten_all().unwrap().to_vec1().unwrap();
            let shape = var.shape().clone();
            for _ in 0..5 {
                let i = rng.below(values.len());
                let at = |delta: f64| {
                    let mut v = values.clone();
                    v[i] += delta;
                    var.set(&Tensor::from_vec(v, &shape, &dev).unwrap())
                        .unwrap();
                    loss(&model)
                };
                let numeric = (at(h) - at(-h)) / (2.0 * h);
                var.set(&Tensor::from_vec(values.clone(), &shape, &dev).unwrap())
                    .unwrap();
                let err = (numeric - grad[i]).abs() / numeric.abs().max(grad[i].abs()).max(1e-3);
                assert!(
                    err < 1e-6,
                    "{name}[{i}]: autograd {} vs finite differences {numeric}",
                    grad[i]
                );
                worst = worst.max(err);
                checked += 1;
                sizable += usize::from(numeric.abs() > 1e-3);
            }
        }
        println!("{checked} entries checked, largest relative error {worst:.1e}");
        // Most gradients are far from zero, so the comparison says something.
        assert!(
            sizable * 4 > checked * 3,
            "{sizable} of {checked} gradients above 1e-3"
        );
    }
}
