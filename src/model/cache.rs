//! The KV caches: each block's keys and values for every position seen so far, in the form the
//! attention of its device reads ([`CpuCache`] for Wick's kernel, [`GpuCache`] for Candle's).

use candle_core::Tensor;

use crate::error::Result;

/// A block's keys and values as Candle tensors `[1, kv_heads, capacity, head_dim]`, for
/// Candle's attention on GPUs; grown in chunks.
#[derive(Debug, Clone, Default)]
pub(super) struct GpuCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    /// Positions held.
    pub(super) len: usize,
}

impl GpuCache {
    /// Appends `k`, `v` (`[1, heads, seq, head_dim]`) and returns all keys and values so far.
    pub(super) fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let seq = k.dim(2)?;
        let needed = self.len + seq;
        let capacity = self.k.as_ref().map_or(Ok(0), |t| t.dim(2))?;
        if needed > capacity {
            // Double the capacity so a long reply reallocates O(log n) times, not per token.
            let new_cap = needed.max(capacity * 2).max(128);
            let grow = |old: &Option<Tensor>, src: &Tensor| -> Result<Tensor> {
                let (b, h, _, d) = src.dims4()?;
                let t = Tensor::zeros((b, h, new_cap, d), src.dtype(), src.device())?;
                if let Some(old) = old {
                    t.slice_set(&old.narrow(2, 0, self.len)?, 2, 0)?;
                }
                Ok(t)
            };
            self.k = Some(grow(&self.k, k)?);
            self.v = Some(grow(&self.v, v)?);
        }
        let (Some(kc), Some(vc)) = (&self.k, &self.v) else {
            unreachable!("cache buffers were allocated above")
        };
        kc.slice_set(k, 2, self.len)?;
        vc.slice_set(v, 2, self.len)?;
        self.len = needed;
        Ok((kc.narrow(2, 0, needed)?, vc.narrow(2, 0, needed)?))
    }
}

/// A block's keys and values on the CPU as rows of f32, head-major
/// (`[kv_heads][stride][head_dim]`: each head's keys lie in order, as attention reads them), read
/// in place by [`crate::kernels::attention`].
#[derive(Debug, Default)]
pub(super) struct CpuCache {
    pub(super) k: Vec<f32>,
    pub(super) v: Vec<f32>,
    /// Positions held.
    pub(super) len: usize,
    /// Positions there is room for per head (rows of one head are `stride` apart).
    pub(super) stride: usize,
}

impl CpuCache {
    /// Keeps positions `..pos` and appends the rows of `k` and `v` (position-major,
    /// `kv_heads × head_dim` each) after them, growing by doubling up to `limit` positions (the
    /// layout is head-major, so growing moves each head's rows once).
    pub(super) fn append(
        &mut self,
        pos: usize,
        k: &[f32],
        v: &[f32],
        kv_heads: usize,
        head_dim: usize,
        limit: usize,
    ) {
        let rows = k.len() / (kv_heads * head_dim);
        let (keep, need) = (pos.min(self.len), pos + rows);
        if need > self.stride {
            let stride = need.max((2 * self.stride).max(64).min(limit));
            for buf in [&mut self.k, &mut self.v] {
                let mut grown = vec![0f32; kv_heads * stride * head_dim];
                for g in 0..kv_heads {
                    let (from, to) = (g * self.stride * head_dim, g * stride * head_dim);
                    grown[to..to + keep * head_dim]
                        .copy_from_slice(&buf[from..from + keep * head_dim]);
                }
                *buf = grown;
            }
            self.stride = stride;
        }
        for (r, (kr, vr)) in k
            .chunks_exact(kv_heads * head_dim)
            .zip(v.chunks_exact(kv_heads * head_dim))
            .enumerate()
        {
            for g in 0..kv_heads {
                let at = (g * self.stride + pos + r) * head_dim;
                let from = g * head_dim;
                self.k[at..at + head_dim].copy_from_slice(&kr[from..from + head_dim]);
                self.v[at..at + head_dim].copy_from_slice(&vr[from..from + head_dim]);
            }
        }
        self.len = need;
    }

    /// The keys and values of position `pos`, position-major (`kv_heads × head_dim` each), the
    /// form [`CpuCache::append`] takes back.
    pub(super) fn row(&self, pos: usize, kv_heads: usize, head_dim: usize) -> (Vec<f32>, Vec<f32>) {
        let gather = |buf: &[f32]| -> Vec<f32> {
            (0..kv_heads)
                .flat_map(|g| {
                    let at = (g * self.stride + pos) * head_dim;
                    buf[at..at + head_dim].iter().copied()
                })
                .collect()
        };
        (gather(&self.k), gather(&self.v))
    }
}
