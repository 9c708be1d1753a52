//! Hand-written quantized matmul kernels, for the types Candle runs with scalar code or with
//! a copy of the weights.
//!
//! Weights stay in GGML's block layout, where the file holds them. Activations are quantized to
//! 8 bits per block of 32 ([`Q8Rows`]); each weight type (one file each: [`q4_1`], [`q8_0`],
//! [`a8`]) has a dot product with a scalar reference beside its SIMD tile function and a test
//! that they agree to the bit on random data. The SIMD itself lives in one file per target
//! ([`arch`]: simd128 with relaxed SIMD where built with it, in wasm; AVX2 natively; chosen at
//! compile time like Candle's own, `cfg(wick_simd)` set by `build.rs`), under one tile driver
//! ([`tile`]). [`matmul`] splits the rows across the [`team`].

pub mod a8;
pub mod activations;
mod arch;
pub mod attention;
pub mod f16;
pub mod matmul;
pub mod q4_1;
pub mod q8_0;
pub mod team;
mod tile;

pub use activations::Q8Rows;
use candle_core::quantized::GgmlDType;
pub use f16::{f16_to_f32, f16_to_f32_portable, f32_to_f16_exact};
pub use matmul::{matmul, matmul_many, matmul_reference};

/// Elements per block, for every type here.
pub const BLOCK: usize = 32;

/// The weight types these kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    /// 4-bit with a scale and a minimum per block.
    Q4_1,
    /// 8-bit with a scale per block.
    Q8_0,
    /// 8-bit unsigned with a scale and a minimum per block (MLX's affine 8-bit, see [`a8`]).
    A8,
}

impl WeightType {
    /// The type these kernels run for a GGML tensor type with rows of `row` values, if any
    /// (rows must be whole blocks).
    pub fn from_ggml(dtype: GgmlDType, row: usize) -> Option<Self> {
        if !row.is_multiple_of(BLOCK) {
            return None;
        }
        match dtype {
            GgmlDType::Q4_1 => Some(Self::Q4_1),
            GgmlDType::Q8_0 => Some(Self::Q8_0),
            _ => None,
        }
    }

    /// Bytes per block of 32 weights.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => q4_1::BLOCK_BYTES,
            Self::Q8_0 => q8_0::BLOCK_BYTES,
            Self::A8 => a8::BLOCK_BYTES,
        }
    }

    /// Dot products of four weight rows, `row_bytes` apart in `w`, with the `A` activation rows
    /// whose blocks start at blocks `xb`: the SIMD kernels where the build has them.
    #[inline]
    fn dot_tile<const A: usize>(
        self,
        w: &[u8],
        row_bytes: usize,
        x: &Q8Rows,
        xb: [usize; A],
    ) -> [[f32; 4]; A] {
        #[cfg(wick_simd)]
        return match self {
            Self::Q4_1 => q4_1::dot_tile(w, row_bytes, x, xb),
            Self::Q8_0 => q8_0::dot_tile(w, row_bytes, x, xb),
            Self::A8 => a8::dot_tile(w, row_bytes, x, xb),
        };
        #[allow(unreachable_code)]
        xb.map(|b| {
            std::array::from_fn(|r| self.dot_scalar(&w[r * row_bytes..(r + 1) * row_bytes], x, b))
        })
    }

    /// One row's dot product with the scalar reference kernels.
    fn dot_scalar(self, w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
        match self {
            Self::Q4_1 => q4_1::dot_scalar(w, x, xb),
            Self::Q8_0 => q8_0::dot_scalar(w, x, xb),
            Self::A8 => a8::dot_scalar(w, x, xb),
        }
    }

    /// Dequantizes a whole row (`row.len()` a multiple of the block size in bytes).
    pub fn dequantize_row(self, row: &[u8], out: &mut [f32]) {
        let bb = self.block_bytes();
        for (b, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(BLOCK)) {
            match self {
                Self::Q4_1 => q4_1::dequantize_block(b, o),
                Self::Q8_0 => q8_0::dequantize_block(b, o),
                Self::A8 => a8::dequantize_block(b, o),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use half::f16;

    /// A small deterministic generator (tests must not change with a crate version).
    pub fn noise(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// Random blocks of `ty`: random f16 scales (and minimums) and random quantized bytes.
    pub fn random_blocks(ty: WeightType, seed: u64, blocks: usize) -> Vec<u8> {
        let v = noise(seed, blocks * 3);
        let mut out = Vec::with_capacity(blocks * ty.block_bytes());
        for b in 0..blocks {
            out.extend_from_slice(&f16::from_f32(v[3 * b] * 0.1).to_le_bytes());
            let payload = match ty {
                WeightType::Q4_1 => {
                    out.extend_from_slice(&f16::from_f32(v[3 * b + 1]).to_le_bytes());
                    16
                }
                WeightType::Q8_0 => 32,
                WeightType::A8 => {
                    out.extend_from_slice(&f16::from_f32(v[3 * b + 1]).to_le_bytes());
                    32
                }
            };
            let mut s = (v[3 * b + 2].to_bits() as u64) | 1;
            for _ in 0..payload {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                out.push((s >> 56) as u8);
            }
        }
        out
    }

    /// Checks that [`WeightType::dot_tile`] gives each of four random rows of `blocks` blocks,
    /// with one and with four activation rows, the scalar reference's result to the bit.
    pub fn assert_tile_is_scalar(ty: WeightType, seed: u64, blocks: usize) {
        let row_bytes = blocks * ty.block_bytes();
        let w = random_blocks(ty, seed, 4 * blocks);
        // Five activation rows, used out of order: `xb` must be honoured.
        let x = Q8Rows::quantize(&noise(seed + 100, 5 * blocks * BLOCK));
        let xb = [3 * blocks, blocks, 4 * blocks, 0];
        let tile = ty.dot_tile(&w, row_bytes, &x, xb);
        let [single] = ty.dot_tile(&w, row_bytes, &x, [xb[2]]);
        for (a, got) in tile.iter().chain([&single]).enumerate() {
            let b = if a < 4 { xb[a] } else { xb[2] };
            for (r, g) in got.iter().enumerate() {
                let want = ty.dot_scalar(&w[r * row_bytes..(r + 1) * row_bytes], &x, b);
                assert_eq!(
                    g.to_bits(),
                    want.to_bits(),
                    "{ty:?}, {blocks} blocks, tile row {a}, weight row {r}: simd {g} vs scalar {want}"
                );
            }
        }
    }

    /// One row's dot product through the SIMD tile kernel (the row given four times).
    pub fn simd_dot(ty: WeightType, w: &[u8], x: &Q8Rows) -> f32 {
        let [got] = ty.dot_tile(&w.repeat(4), w.len(), x, [0]);
        assert!(
            got.iter().all(|g| g.to_bits() == got[0].to_bits()),
            "{got:?}"
        );
        got[0]
    }

    pub fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-4 * (1.0 + b.abs())
    }
}
