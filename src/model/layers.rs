//! The pieces a block is made of: matmuls on any weight form ([`Weight`], [`Linear`]), norms,
//! the feed-forward (dense or experts) and the token embedding.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{CpuStorage, Device, Module, Storage, Tensor};
use candle_nn::ops::{layer_norm, rms_norm};

use super::config::{Activation, Norm};
use super::profile::{time, Stage};
use crate::error::{Error, Result};
use crate::kernels::{self, team, WeightType};
use crate::weights::{TensorData, WeightTensor};

/// Values a cheap elementwise pass (an add, a norm) must have before it is split across the
/// thread team: below that, handing out the tasks costs more than the pass.
const PARALLEL_VALUES: usize = 1 << 14;

/// Tasks an elementwise pass is split into: a few per thread, so a late thread still balances.
const ELEMENTWISE_TASKS: usize = 16;

/// `f(offset, chunk)` over `a` cut in chunks of whole rows of `width`, on the thread team when
/// `a` is long (a prefill chunk's activations), else on the calling thread; each value is
/// computed the same way.
pub(super) fn in_chunks(a: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if a.len() < PARALLEL_VALUES || width == 0 {
        return f(0, a);
    }
    // Tasks of at least a few hundred values: claiming one costs a contended atomic.
    let per = a
        .len()
        .div_ceil(ELEMENTWISE_TASKS)
        .max(256)
        .next_multiple_of(width);
    let tasks: Vec<(usize, &mut [f32])> = a
        .chunks_mut(per)
        .enumerate()
        .map(|(i, c)| (i * per, c))
        .collect();
    team::for_each(tasks, |(offset, c)| f(offset, c));
}

/// `a += b`, value by value (the residual adds).
pub(super) fn add_in_place(a: &mut [f32], b: &[f32]) {
    in_chunks(a, 16, |o, c| {
        for (v, w) in c.iter_mut().zip(&b[o..]) {
            *v += w;
        }
    });
}

/// `f` on the f32 values of a CPU tensor (a norm's weights, a bias), borrowed when it is
/// contiguous, else copied.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&v[a..b]));
        }
    }
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&v))
}

/// `rows` rows of `x` as a `[1, rows, width]` CPU tensor (the Candle fallbacks of the row path).
fn rows_tensor(x: &[f32], rows: usize) -> Result<Tensor> {
    Ok(Tensor::from_slice(
        x,
        (1, rows, x.len() / rows.max(1)),
        &Device::Cpu,
    )?)
}

/// The weight of a matmul `y = x · Wᵀ`.
pub(super) enum Weight {
    /// Blocks Wick's own SIMD kernels run, on the CPU: `n` rows of `k` values.
    Blocks {
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
    /// Bytes of the weight as the matmul reads them.
    pub(super) fn bytes(&self) -> usize {
        let tensor = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        match self {
            Self::Blocks { data, .. } => data.len(),
            Self::Candle(QMatMul::QTensor(q)) => q.storage_size_in_bytes(),
            Self::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) | Self::Float(t) => tensor(t),
        }
    }

    pub(super) fn new(w: WeightTensor) -> Result<Self> {
        Ok(match w {
            WeightTensor::Blocks { ty, data, dims } => Self::Blocks {
                ty,
                data,
                n: dims[0],
                k: dims[dims.len() - 1],
            },
            WeightTensor::Candle(q) => Self::Candle(QMatMul::from_qtensor(q)?),
            WeightTensor::Float(t) => Self::Float(t),
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(m) => Ok(m.forward(x)?),
            Self::Float(w) => Ok(x.broadcast_matmul(&w.t()?)?),
            Self::Blocks { ty, data, n, k } => {
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
pub(super) fn split_rows(
    w: WeightTensor,
    sizes: &[usize],
    device: &Device,
) -> Result<Vec<WeightTensor>> {
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
pub(super) struct Linear {
    pub(super) w: Weight,
    pub(super) b: Option<Tensor>,
}

impl Linear {
    /// Bytes of its weight (the bias is too small to count).
    pub(super) fn bytes(&self) -> usize {
        self.w.bytes()
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.add_bias(self.w.forward(x)?)
    }

    /// `x` (`rows` rows, on the CPU) through the matmul, as rows: Wick's kernels straight on the
    /// values, other weight forms through Candle.
    pub(super) fn forward_rows(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let y = match &self.w {
            Weight::Blocks { ty, data, n, k } => kernels::matmul(*ty, data, *n, *k, x, rows),
            w => w
                .forward(&rows_tensor(x, rows)?)?
                .flatten_all()?
                .to_vec1()?,
        };
        self.add_bias_rows(y)
    }

    /// `y + b` for each row of `y` (the value Candle's broadcast add gives).
    fn add_bias_rows(&self, mut y: Vec<f32>) -> Result<Vec<f32>> {
        if let Some(b) = &self.b {
            with_values(b, |b| {
                for row in y.chunks_exact_mut(b.len()) {
                    for (v, b) in row.iter_mut().zip(b) {
                        *v += b;
                    }
                }
            })?;
        }
        Ok(y)
    }

    /// [`Linear::forward_many`] on rows: one pass of Wick's kernels when they run all of them.
    pub(super) fn forward_many_rows<const N: usize>(
        linears: [&Linear; N],
        x: &[f32],
        rows: usize,
    ) -> Result<[Vec<f32>; N]> {
        let k = x.len() / rows.max(1);
        let own: Vec<(WeightType, &[u8], usize)> = linears
            .iter()
            .filter_map(|l| match &l.w {
                Weight::Blocks { ty, data, n, k: wk } if *wk == k => Some((*ty, &data[..], *n)),
                _ => None,
            })
            .collect();
        let ys = if own.len() == N {
            let ys = kernels::matmul_many(&own, k, x, rows);
            linears
                .iter()
                .zip(ys)
                .map(|(l, y)| l.add_bias_rows(y))
                .collect::<Result<Vec<_>>>()?
        } else {
            linears
                .iter()
                .map(|l| l.forward_rows(x, rows))
                .collect::<Result<Vec<_>>>()?
        };
        ys.try_into()
            .map_err(|_| Error::Metadata("matmul count".into()))
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        match &self.b {
            Some(b) => Ok(y.broadcast_add(b)?),
            None => Ok(y),
        }
    }

    /// `x` through each of `linears`: in one pass of Wick's kernels when all of them run there
    /// (one wake-up of the thread pool, one quantization of `x`), else one by one.
    pub(super) fn forward_many<const N: usize>(
        linears: [&Linear; N],
        x: &Tensor,
    ) -> Result<[Tensor; N]> {
        let own: Vec<(WeightType, &[u8], usize, usize)> = linears
            .iter()
            .filter_map(|l| match &l.w {
                Weight::Blocks { ty, data, n, k } => Some((*ty, &data[..], *n, *k)),
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
pub(super) struct NormLayer {
    pub(super) w: Tensor,
    pub(super) b: Option<Tensor>,
    pub(super) kind: Norm,
    pub(super) eps: f32,
}

impl NormLayer {
    /// `x` through `norm` when there is one, else `x` as it is.
    pub(super) fn maybe(norm: &Option<NormLayer>, x: Tensor) -> Result<Tensor> {
        match norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }

    /// [`NormLayer::maybe`] on rows.
    pub(super) fn maybe_rows(norm: &Option<NormLayer>, x: Vec<f32>) -> Result<Vec<f32>> {
        match norm {
            Some(n) => n.forward_rows(&x),
            None => Ok(x),
        }
    }

    /// Normalizes each row of `x` (rows as long as the norm's weights: the hidden size, or
    /// `head_dim` for q/k norms) on the CPU. RMS norm is computed here, in the order Candle's
    /// kernel uses (so the values are the same); the others go through Candle.
    pub(super) fn forward_rows(&self, x: &[f32]) -> Result<Vec<f32>> {
        let width = self.w.dims1()?;
        if self.kind != Norm::Rms || self.b.is_some() {
            let t = Tensor::from_slice(x, (x.len() / width.max(1), width), &Device::Cpu)?;
            return Ok(self.forward(&t)?.flatten_all()?.to_vec1()?);
        }
        let eps = self.eps;
        let mut out = x.to_vec();
        with_values(&self.w, |alpha| {
            in_chunks(&mut out, width, |_, c| {
                for row in c.chunks_exact_mut(width) {
                    let sum2 = row.iter().map(|&v| v * v).sum::<f32>();
                    let m = (sum2 / width as f32 + eps).sqrt();
                    for (v, a) in row.iter_mut().zip(alpha) {
                        *v = *v / m * a;
                    }
                }
            })
        })?;
        Ok(out)
    }

    /// Normalizes each head of `x` (`[.., heads · head_dim]`) on its own (q/k norms).
    pub(super) fn forward_heads(&self, x: &Tensor, head_dim: usize) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let heads = x.reshape(((), head_dim))?;
        Ok(self.forward(&heads)?.reshape(dims)?)
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match (self.kind, &self.b) {
            (Norm::Rms, None) => Ok(rms_norm(x, &self.w, self.eps)?),
            (Norm::Rms, Some(b)) => Ok(rms_norm(x, &self.w, self.eps)?.broadcast_add(b)?),
            (Norm::Layer, Some(b)) => Ok(layer_norm(x, &self.w, b, self.eps)?),
            (Norm::Layer, None) => Ok(layer_norm(x, &self.w, &self.w.zeros_like()?, self.eps)?),
        }
    }
}

/// One set of rotary tables `[position, head_dim / 2]`: as rows computed as positions are reached
/// (CPU path; the whole context's would cost a noticeable part of the load in wasm) and as
/// whole-context tensors (GPU path), the same values.
pub(super) struct Rope {
    /// The rotary frequency of each pair of a head.
    inv_freq: Vec<f64>,
    /// cos and sin rows computed so far.
    rows: (Vec<f32>, Vec<f32>),
    /// cos and sin of every position, off the CPU.
    pub(super) tensors: Option<(Tensor, Tensor)>,
}

impl Rope {
    /// Tables for `inv_freq`; the tensors too when `device` is not the CPU.
    pub(super) fn new(inv_freq: Vec<f64>, context: usize, device: &Device) -> Result<Self> {
        let tensors = match device.is_cpu() {
            true => None,
            false => {
                let half = inv_freq.len();
                let (c, s) = kernels::rope::rope_tables(&inv_freq, 0..context);
                Some((
                    Tensor::from_vec(c, (context, half), device)?,
                    Tensor::from_vec(s, (context, half), device)?,
                ))
            }
        };
        Ok(Self {
            inv_freq,
            rows: (Vec::new(), Vec::new()),
            tensors,
        })
    }

    /// The cos and sin rows of positions `..upto` at least, grown by doubling up to `context`.
    pub(super) fn rows(&mut self, upto: usize, context: usize) -> (&[f32], &[f32]) {
        let (cos, sin) = &mut self.rows;
        let have = cos.len() / self.inv_freq.len().max(1);
        if have < upto {
            let want = upto.max(2 * have).max(256).min(context);
            let (c, s) = kernels::rope::rope_tables(&self.inv_freq, have..want);
            cos.extend(c);
            sin.extend(s);
        }
        (cos, sin)
    }
}

/// One feed-forward network: `down(act(gate(x)) · up(x))`, or `down(act(up(x)))` ungated.
pub(super) struct Mlp {
    pub(super) gate: Option<Linear>,
    pub(super) up: Linear,
    pub(super) down: Linear,
    pub(super) act: Activation,
}

impl Mlp {
    /// Bytes of its three (or two) weights.
    fn bytes(&self) -> usize {
        self.gate.as_ref().map_or(0, Linear::bytes) + self.up.bytes() + self.down.bytes()
    }

    /// The feed-forward on `rows` rows of `x`, on the CPU: the activation and the gating product
    /// in one pass over the gate's output, in place.
    pub(super) fn forward_rows(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let h = match &self.gate {
            Some(g) => {
                let [mut g, u] = time(Stage::GateUpMatmul, || {
                    Linear::forward_many_rows([g, &self.up], x, rows)
                })?;
                time(Stage::Activation, || self.act.gate_in_place(&mut g, &u));
                g
            }
            None => {
                let mut u = time(Stage::GateUpMatmul, || self.up.forward_rows(x, rows))?;
                time(Stage::Activation, || self.act.apply_in_place(&mut u));
                u
            }
        };
        time(Stage::DownMatmul, || self.down.forward_rows(&h, rows))
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.gate {
            Some(g) => {
                let [g, u] = time(Stage::GateUpMatmul, || {
                    Linear::forward_many([g, &self.up], x)
                })?;
                time(Stage::Activation, || -> Result<Tensor> {
                    Ok((self.act.apply(&g)? * u)?)
                })?
            }
            None => {
                let u = time(Stage::GateUpMatmul, || self.up.forward(x))?;
                time(Stage::Activation, || self.act.apply(&u))?
            }
        };
        time(Stage::DownMatmul, || self.down.forward(&h))
    }
}

/// A block's feed-forward: dense, or a mixture of experts.
pub(super) enum Ffn {
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
    /// Bytes of weights one token's pass reads: the router and its `top_k` experts (as many as
    /// an average expert's).
    pub(super) fn bytes_per_token(&self) -> usize {
        match self {
            Self::Dense(m) => m.bytes(),
            Self::Experts {
                router,
                experts,
                top_k,
            } => {
                let all: usize = experts.iter().map(Mlp::bytes).sum();
                router.bytes() + all * top_k / experts.len().max(1)
            }
        }
    }

    /// The feed-forward on `rows` rows of `x`, on the CPU (experts through the tensor path).
    pub(super) fn forward_rows(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        match self {
            Self::Dense(m) => m.forward_rows(x, rows),
            Self::Experts { .. } => Ok(self
                .forward(&rows_tensor(x, rows)?)?
                .flatten_all()?
                .to_vec1()?),
        }
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
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

/// A token embedding kept in its file form: rows are dequantized only for the tokens looked up.
pub(super) enum Embedding {
    /// Read in place by Wick's kernels.
    Blocks {
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
            Self::Blocks { vocab, .. } => *vocab,
            Self::Candle { table, .. } => table.shape().dims()[0],
            Self::Float(t) => t.dim(0)?,
        })
    }

    pub(super) fn forward(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        let vocab = self.vocab()?;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Tokenizer(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        match self {
            Self::Blocks {
                ty, data, hidden, ..
            } => {
                let row_bytes = ty.row_bytes(*hidden);
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
    pub(super) fn as_head(&self) -> Result<Linear> {
        let w = match self {
            Self::Blocks {
                ty,
                data,
                vocab,
                hidden,
            } => Weight::Blocks {
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
