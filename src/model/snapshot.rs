//! KV snapshots: a model's CPU cache as bytes that a later page or process restores instead of
//! prefilling the conversation again — versioned header, tokens, keys and values in the cache's
//! [`KvType`], and a sha256, checked whole before anything is replaced.

use super::{KvType, Model};
use crate::error::{Error, Result};

/// The first bytes of every KV snapshot.
const SNAPSHOT_MAGIC: &[u8; 8] = b"WICK-KV\0";
/// The snapshot layout this build writes and reads; another is refused, not guessed at.
const SNAPSHOT_VERSION: u32 = 1;
/// Bytes before the tokens: magic, version, model id, then five u32 (blocks, kv heads, head
/// dim, element type, positions).
const SNAPSHOT_HEADER: usize = 8 + 4 + 32 + 5 * 4;
/// Bytes of the sha256 of everything before it, at the end.
const SNAPSHOT_CHECKSUM: usize = 32;
/// The element type code of the keys and values in a snapshot: the [`KvType`] the CPU cache
/// keeps (f32 0, f16 1).
fn type_code(t: KvType) -> u32 {
    match t {
        KvType::F32 => 0,
        KvType::F16 => 1,
    }
}

/// The [`KvType`] of an element type code, if it is one.
fn code_type(code: u64) -> Option<KvType> {
    [KvType::F32, KvType::F16]
        .into_iter()
        .find(|&t| u64::from(type_code(t)) == code)
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
        let t = self.kv_type();
        let header = [blocks, kv_heads, head_dim, type_code(t) as usize, len]
            .map(|n| u32::try_from(n).map_err(too_big));
        let data = blocks * 2 * kv_heads * len * head_dim * t.size();
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
        let Some(t) = code_type(dtype) else {
            return Err(Error::SnapshotCorrupt(format!(
                "element type {dtype} is neither f32 (0) nor f16 (1)"
            )));
        };
        // Each factor is below 2^32 and there are few, so u128 cannot overflow.
        let needed = u128::from(fixed)
            + 4 * u128::from(positions)
            + u128::from(blocks)
                * 2
                * u128::from(kv_heads)
                * u128::from(positions)
                * u128::from(head_dim)
                * t.size() as u128;
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
        if t != self.kv_type() {
            return Err(Error::SnapshotMismatch(format!(
                "its keys and values are {t:?}, but this model's cache keeps {:?}",
                self.kv_type()
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
        let block = 2 * kv_heads * all * head_dim * t.size();
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
