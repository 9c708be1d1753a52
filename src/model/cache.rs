//! The KV caches: each block's keys and values for every position seen so far, in the form the
//! attention of its device reads ([`CpuCache`] for Wick's kernel, [`GpuCache`] for Candle's).

use candle_core::Tensor;

use super::Model;
use crate::error::{Error, Result};

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

/// The first bytes of every KV snapshot.
const SNAPSHOT_MAGIC: &[u8; 8] = b"WICK-KV\0";
/// The snapshot layout this build writes and reads; another is refused, not guessed at.
const SNAPSHOT_VERSION: u32 = 1;
/// Bytes before the tokens: magic, version, model id, then five u32 (blocks, kv heads, head
/// dim, element type, positions).
const SNAPSHOT_HEADER: usize = 8 + 4 + 32 + 5 * 4;
/// Bytes of the sha256 of everything before it, at the end.
const SNAPSHOT_CHECKSUM: usize = 32;
/// Element type of the keys and values in a snapshot: the type the CPU cache keeps.
const SNAPSHOT_F32: u32 = 0;

impl CpuCache {
    /// The first `len` positions' keys then values, head-major, appended to `out` as
    /// little-endian bytes (the layout [`CpuCache::read_rows`] takes back).
    fn write_rows(&self, out: &mut Vec<u8>, len: usize, kv_heads: usize, head_dim: usize) {
        for buf in [&self.k, &self.v] {
            for g in 0..kv_heads {
                let at = g * self.stride * head_dim;
                for x in &buf[at..at + len * head_dim] {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }

    /// Replaces the cache with the first `len` of the `all` positions that
    /// [`CpuCache::write_rows`] wrote to `bytes` (whose length the caller checked), with room for
    /// `stride` positions per head.
    fn read_rows(
        &mut self,
        bytes: &[u8],
        all: usize,
        len: usize,
        stride: usize,
        kv_heads: usize,
        head_dim: usize,
    ) {
        let head = all * head_dim * 4;
        for (h, buf) in [&mut self.k, &mut self.v].into_iter().enumerate() {
            *buf = vec![0f32; kv_heads * stride * head_dim];
            for g in 0..kv_heads {
                let from = &bytes[(h * kv_heads + g) * head..][..len * head_dim * 4];
                let to = &mut buf[g * stride * head_dim..][..len * head_dim];
                for (x, b) in to.iter_mut().zip(from.chunks_exact(4)) {
                    *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
        self.len = len;
        self.stride = stride;
    }
}

/// Reads the little-endian u32 at `at` (the caller checked the length).
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The first hex digits of a model id, for messages.
fn short_id(id: &[u8]) -> String {
    id.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl Model {
    /// The shape of one block's snapshot: `[blocks, kv_heads, head_dim]`.
    fn snapshot_dims(&self) -> [usize; 3] {
        let c = &self.config;
        [self.blocks.len(), c.n_kv_heads, c.head_dim]
    }

    /// The keys and values of the first `tokens.len()` cached positions as a snapshot for the
    /// model `model_id`: header, `tokens`, the cache, and a sha256 of all of it (CPU only).
    pub fn save_kv(&self, model_id: &[u8; 32], tokens: &[u32]) -> Result<Vec<u8>> {
        use sha2::{Digest, Sha256};
        if !self.device.is_cpu() {
            return Err(Error::SnapshotMismatch(
                "KV snapshots are taken of the CPU cache; this model runs on another device".into(),
            ));
        }
        let len = tokens.len();
        if len > self.cached_len() {
            return Err(Error::SnapshotMismatch(format!(
                "{len} positions asked for, but the cache holds {}",
                self.cached_len()
            )));
        }
        let [blocks, kv_heads, head_dim] = self.snapshot_dims();
        let too_big = |_| Error::SnapshotMismatch("the cache is too large for a snapshot".into());
        let header = [blocks, kv_heads, head_dim, SNAPSHOT_F32 as usize, len]
            .map(|n| u32::try_from(n).map_err(too_big));
        let data = blocks * 2 * kv_heads * len * head_dim * 4;
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER + 4 * len + data + SNAPSHOT_CHECKSUM);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(model_id);
        for n in header {
            out.extend_from_slice(&n?.to_le_bytes());
        }
        for t in tokens {
            out.extend_from_slice(&t.to_le_bytes());
        }
        for b in &self.blocks {
            b.cpu_cache.write_rows(&mut out, len, kv_heads, head_dim);
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        Ok(out)
    }

    /// Replaces the cache with a snapshot [`Model::save_kv`] wrote, once it is checked whole —
    /// length, magic, version, checksum, model id, shape, element type, room in the context —
    /// and `keep` accepted its tokens by returning how many leading positions to restore (at
    /// most all). On any error the cache is left as it was. Returns the positions restored.
    pub fn restore_kv(
        &mut self,
        bytes: &[u8],
        model_id: &[u8; 32],
        keep: impl FnOnce(&[u32]) -> Result<usize>,
    ) -> Result<usize> {
        use sha2::{Digest, Sha256};
        let len = bytes.len() as u64;
        let fixed = (SNAPSHOT_HEADER + SNAPSHOT_CHECKSUM) as u64;
        if bytes.len() >= 8 && &bytes[..8] != SNAPSHOT_MAGIC {
            return Err(Error::SnapshotCorrupt(
                "it does not start as a Wick KV snapshot".into(),
            ));
        }
        if len < fixed {
            return Err(Error::SnapshotTruncated { needed: fixed, len });
        }
        let version = u32_at(bytes, 8);
        if version != SNAPSHOT_VERSION {
            return Err(Error::SnapshotCorrupt(format!(
                "layout version {version}, but this build reads version {SNAPSHOT_VERSION}"
            )));
        }
        let field = |i: usize| u64::from(u32_at(bytes, 44 + 4 * i));
        let (blocks, kv_heads, head_dim, dtype, positions) =
            (field(0), field(1), field(2), field(3), field(4));
        // Each factor is below 2^32 and there are few, so u128 cannot overflow.
        let needed = u128::from(fixed)
            + 4 * u128::from(positions)
            + u128::from(blocks)
                * 2
                * u128::from(kv_heads)
                * u128::from(positions)
                * u128::from(head_dim)
                * 4;
        if u128::from(len) < needed {
            return Err(Error::SnapshotTruncated {
                needed: u64::try_from(needed).unwrap_or(u64::MAX),
                len,
            });
        }
        if u128::from(len) > needed {
            return Err(Error::SnapshotCorrupt(format!(
                "{} bytes past the end its header announces",
                u128::from(len) - needed
            )));
        }
        let (body, sum) = bytes.split_at(bytes.len() - SNAPSHOT_CHECKSUM);
        if Sha256::digest(body).as_slice() != sum {
            return Err(Error::SnapshotCorrupt(
                "its checksum does not match: the bytes were damaged".into(),
            ));
        }
        let id = &bytes[12..44];
        if id != model_id {
            return Err(Error::SnapshotOtherModel {
                snapshot: short_id(id),
                model: short_id(model_id),
            });
        }
        let ours = self.snapshot_dims().map(|n| n as u64);
        if [blocks, kv_heads, head_dim] != ours {
            return Err(Error::SnapshotMismatch(format!(
                "blocks × kv heads × head dim are {blocks} × {kv_heads} × {head_dim}, the model's {} × {} × {}",
                ours[0], ours[1], ours[2]
            )));
        }
        if dtype != u64::from(SNAPSHOT_F32) {
            return Err(Error::SnapshotMismatch(format!(
                "element type {dtype}, but this build's cache keeps f32 ({SNAPSHOT_F32})"
            )));
        }
        if !self.device.is_cpu() {
            return Err(Error::SnapshotMismatch(
                "KV snapshots restore into the CPU cache; this model runs on another device".into(),
            ));
        }
        // Room for one more token, as a prompt needs.
        if positions >= self.limit as u64 {
            return Err(Error::SnapshotMismatch(format!(
                "it holds {positions} positions, the context {}",
                self.limit
            )));
        }
        // The checks above bound every size by the snapshot's length, which fits usize.
        let (all, kv_heads, head_dim) = (positions as usize, kv_heads as usize, head_dim as usize);
        let start = SNAPSHOT_HEADER + 4 * all;
        let tokens: Vec<u32> = body[SNAPSHOT_HEADER..start]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let len = keep(&tokens)?;
        if len > all {
            return Err(Error::SnapshotMismatch(format!(
                "{len} positions asked for, but it holds {all}"
            )));
        }
        self.truncate_cache(0);
        if len == 0 {
            return Ok(0);
        }
        let block = 2 * kv_heads * all * head_dim * 4;
        let stride = len.max(64).min(self.limit).max(len);
        for (b, rows) in self
            .blocks
            .iter_mut()
            .zip(body[start..].chunks_exact(block))
        {
            b.cpu_cache
                .read_rows(rows, all, len, stride, kv_heads, head_dim);
        }
        Ok(len)
    }
}
