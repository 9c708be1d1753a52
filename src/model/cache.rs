//! The KV caches: each block's keys and values for every position seen so far, in the form the
//! attention of its device reads ([`CpuCache`] for Wick's kernel, [`GpuCache`] for Candle's).

use candle_core::Tensor;

use crate::error::Result;
use crate::kernels::attention::{f16_bits_to_f32, f32_to_f16_bits, Rows};

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

/// How a [`CpuCache`] stores keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    /// 4 bytes a value, exactly what the projections computed: the default, as the f16
    /// cache moves the logits of the quantized models by up to a few units at some positions
    /// (`tests/real_models.rs` measures it).
    #[default]
    F32,
    /// 2 bytes a value, rounded to nearest (llama.cpp's default): half the memory.
    F16,
}

/// One buffer of a [`CpuCache`], in its [`KvType`].
#[derive(Debug)]
enum Store {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Store {
    /// `n` zero values of type `t`.
    fn zeroed(t: KvType, n: usize) -> Self {
        match t {
            KvType::F32 => Store::F32(vec![0.0; n]),
            KvType::F16 => Store::F16(vec![0; n]),
        }
    }

    /// The type of the values held.
    fn kv_type(&self) -> KvType {
        match self {
            Store::F32(_) => KvType::F32,
            Store::F16(_) => KvType::F16,
        }
    }

    /// The buffer as the attention kernel reads it.
    fn rows(&self) -> Rows<'_> {
        match self {
            Store::F32(x) => Rows::F32(x),
            Store::F16(x) => Rows::F16(x),
        }
    }

    /// Moves each of `heads` heads' first `keep × head_dim` values from `old` apart to `new`
    /// apart (in positions), in a buffer of `heads × new` positions.
    fn regrow(&mut self, heads: usize, old: usize, new: usize, keep: usize, head_dim: usize) {
        fn regrow<T: Copy + Default>(
            buf: &[T],
            g: usize,
            old: usize,
            new: usize,
            keep: usize,
        ) -> Vec<T> {
            let mut grown = vec![T::default(); g * new];
            for h in 0..g {
                grown[h * new..h * new + keep].copy_from_slice(&buf[h * old..h * old + keep]);
            }
            grown
        }
        let (old, new, keep) = (old * head_dim, new * head_dim, keep * head_dim);
        match self {
            Store::F32(x) => *x = regrow(x, heads, old, new, keep),
            Store::F16(x) => *x = regrow(x, heads, old, new, keep),
        }
    }

    /// Writes `x` at element `at`, rounded to the store's type.
    fn write(&mut self, at: usize, x: &[f32]) {
        match self {
            Store::F32(s) => s[at..at + x.len()].copy_from_slice(x),
            Store::F16(s) => {
                for (s, &x) in s[at..at + x.len()].iter_mut().zip(x) {
                    *s = f32_to_f16_bits(x);
                }
            }
        }
    }

    /// Appends `n` values from element `at` to `out`, as f32.
    fn read(&self, at: usize, n: usize, out: &mut Vec<f32>) {
        match self {
            Store::F32(s) => out.extend_from_slice(&s[at..at + n]),
            Store::F16(s) => out.extend(s[at..at + n].iter().map(|&h| f16_bits_to_f32(h))),
        }
    }
}

/// A block's keys and values on the CPU, head-major (`[kv_heads][stride][head_dim]`: each
/// head's keys lie in order, as attention reads them), in f32 or f16 ([`KvType`]), read in
/// place by [`crate::kernels::attention`].
#[derive(Debug)]
pub(super) struct CpuCache {
    k: Store,
    v: Store,
    /// Positions held.
    pub(super) len: usize,
    /// Positions there is room for per head (rows of one head are `stride` apart).
    pub(super) stride: usize,
}

impl Default for CpuCache {
    fn default() -> Self {
        Self::new(KvType::default())
    }
}

impl CpuCache {
    /// An empty cache that stores `t`.
    pub(super) fn new(t: KvType) -> Self {
        CpuCache {
            k: Store::zeroed(t, 0),
            v: Store::zeroed(t, 0),
            len: 0,
            stride: 0,
        }
    }

    /// How this cache stores keys and values.
    pub(super) fn kv_type(&self) -> KvType {
        self.k.kv_type()
    }

    /// The keys, as the attention kernel reads them.
    pub(super) fn keys(&self) -> Rows<'_> {
        self.k.rows()
    }

    /// The values, as the attention kernel reads them.
    pub(super) fn values(&self) -> Rows<'_> {
        self.v.rows()
    }

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
                buf.regrow(kv_heads, self.stride, stride, keep, head_dim);
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
                self.k.write(at, &kr[from..from + head_dim]);
                self.v.write(at, &vr[from..from + head_dim]);
            }
        }
        self.len = need;
    }

    /// The keys and values of position `pos`, position-major (`kv_heads × head_dim` each, as
    /// f32), the form [`CpuCache::append`] takes back (an f16 cache gets the same bits back).
    pub(super) fn row(&self, pos: usize, kv_heads: usize, head_dim: usize) -> (Vec<f32>, Vec<f32>) {
        let gather = |buf: &Store| -> Vec<f32> {
            let mut out = Vec::with_capacity(kv_heads * head_dim);
            for g in 0..kv_heads {
                buf.read((g * self.stride + pos) * head_dim, head_dim, &mut out);
            }
            out
        };
        (gather(&self.k), gather(&self.v))
    }
}

impl KvType {
    /// Bytes of one stored value.
    pub(super) fn size(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }
}

impl Store {
    /// `n` values from element `at`, appended to `out` as little-endian bytes of the store's type.
    fn write_bytes(&self, at: usize, n: usize, out: &mut Vec<u8>) {
        match self {
            Store::F32(s) => s[at..at + n]
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Store::F16(s) => s[at..at + n]
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }

    /// Sets the values from element `at` to the little-endian values of the store's type in `bytes`.
    fn read_bytes(&mut self, at: usize, bytes: &[u8]) {
        match self {
            Store::F32(s) => {
                for (x, b) in s[at..].iter_mut().zip(bytes.chunks_exact(4)) {
                    *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Store::F16(s) => {
                for (x, b) in s[at..].iter_mut().zip(bytes.chunks_exact(2)) {
                    *x = u16::from_le_bytes([b[0], b[1]]);
                }
            }
        }
    }
}

impl CpuCache {
    /// The first `len` positions' keys then values, head-major, appended to `out` as
    /// little-endian bytes of the cache's [`KvType`] (the layout [`CpuCache::read_rows`] takes
    /// back).
    pub(super) fn write_rows(
        &self,
        out: &mut Vec<u8>,
        len: usize,
        kv_heads: usize,
        head_dim: usize,
    ) {
        for buf in [&self.k, &self.v] {
            for g in 0..kv_heads {
                buf.write_bytes(g * self.stride * head_dim, len * head_dim, out);
            }
        }
    }

    /// Replaces the cache with the first `len` of the `all` positions that
    /// [`CpuCache::write_rows`] wrote to `bytes` (whose length and type the caller checked),
    /// with room for `stride` positions per head.
    pub(super) fn read_rows(
        &mut self,
        bytes: &[u8],
        all: usize,
        len: usize,
        stride: usize,
        kv_heads: usize,
        head_dim: usize,
    ) {
        let size = self.kv_type().size();
        let head = all * head_dim * size;
        for (h, buf) in [&mut self.k, &mut self.v].into_iter().enumerate() {
            *buf = Store::zeroed(buf.kv_type(), kv_heads * stride * head_dim);
            for g in 0..kv_heads {
                let from = &bytes[(h * kv_heads + g) * head..][..len * head_dim * size];
                buf.read_bytes(g * stride * head_dim, from);
            }
        }
        self.len = len;
        self.stride = stride;
    }
}
