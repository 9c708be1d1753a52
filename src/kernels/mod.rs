//! Hand-written quantized matmul kernels, for the types Candle runs with scalar code or with
//! a copy of the weights.
//!
//! Weights stay in GGML's block layout, where the file holds them. Activations are quantized to
//! 8 bits per block of 32 ([`Q8Rows`]) or, for the K-quants, per super-block of 256
//! ([`Q8KRows`], as llama.cpp does); each weight type (one file each: [`q4_1`], [`q5_0`],
//! [`q8_0`], [`a8`], [`q4_k`], [`q6_k`]) has a dot product with a scalar reference beside its
//! SIMD tile function and a test that they agree to the bit on random data. The SIMD itself lives in one file per target
//! ([`arch`]: simd128 with relaxed SIMD where built with it, in wasm; AVX2 natively; chosen at
//! compile time like Candle's own, `cfg(wick_simd)` set by `build.rs`), under one tile driver
//! ([`tile`]). [`matmul`] splits the rows across the [`team`].

pub mod a8;
pub mod activations;
mod arch;
pub mod attention;
pub mod exp;
pub mod f16;
pub mod matmul;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q6_k;
pub mod q8_0;
pub mod rope;
pub mod team;
mod tile;

pub use activations::{Q8KRows, Q8Rows, Quantized, SUPER};
use candle_core::quantized::GgmlDType;
pub use f16::{f16_to_f32, f16_to_f32_portable, f32_to_f16_exact};
pub use matmul::{matmul, matmul_many, matmul_reference};

/// Elements per block of the 32-element types (`Q4_1`, `Q5_0`, `Q8_0`, `A8`); the K-quants'
/// super-blocks hold [`SUPER`].
pub const BLOCK: usize = 32;

/// The weight types these kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    /// 4-bit with a scale and a minimum per block.
    Q4_1,
    /// 5-bit with a scale per block.
    Q5_0,
    /// 8-bit with a scale per block.
    Q8_0,
    /// 8-bit unsigned with a scale and a minimum per block (MLX's affine 8-bit, see [`a8`]).
    A8,
    /// 4-bit in super-blocks of 256: 6-bit scales and minimums per 32, f16 super-scales.
    Q4K,
    /// 6-bit in super-blocks of 256: 8-bit scales per 16, an f16 super-scale.
    Q6K,
}

impl WeightType {
    /// The type these kernels run for a GGML tensor type with rows of `row` values, if any
    /// (rows must be whole blocks).
    pub fn from_ggml(dtype: GgmlDType, row: usize) -> Option<Self> {
        let ty = match dtype {
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4K => Self::Q4K,
            GgmlDType::Q6K => Self::Q6K,
            _ => return None,
        };
        row.is_multiple_of(ty.block_len()).then_some(ty)
    }

    /// Weights per block: [`BLOCK`], or [`SUPER`] for the K-quants.
    pub fn block_len(self) -> usize {
        if self.is_k() {
            SUPER
        } else {
            BLOCK
        }
    }

    /// Whether this is a K-quant (super-blocks of 256, `Q8_K` activations).
    pub fn is_k(self) -> bool {
        matches!(self, Self::Q4K | Self::Q6K)
    }

    /// Bytes per block of [`block_len`](Self::block_len) weights.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => q4_1::BLOCK_BYTES,
            Self::Q5_0 => q5_0::BLOCK_BYTES,
            Self::Q8_0 => q8_0::BLOCK_BYTES,
            Self::A8 => a8::BLOCK_BYTES,
            Self::Q4K => q4_k::BLOCK_BYTES,
            Self::Q6K => q6_k::BLOCK_BYTES,
        }
    }

    /// Bytes of a row of `k` weights (`k` a multiple of the block length).
    pub fn row_bytes(self, k: usize) -> usize {
        k / self.block_len() * self.block_bytes()
    }

    /// Dot products of four weight rows, `row_bytes` apart in `w`, with the `A` activation rows
    /// whose blocks (of this type's length) start at blocks `xb`: the SIMD kernels where the
    /// build has them.
    #[inline]
    fn dot_tile<const A: usize>(
        self,
        w: &[u8],
        row_bytes: usize,
        x: &Quantized,
        xb: [usize; A],
    ) -> [[f32; 4]; A] {
        #[cfg(wick_simd)]
        return match self {
            Self::Q4_1 => q4_1::dot_tile(w, row_bytes, &x.q8, xb),
            Self::Q5_0 => q5_0::dot_tile(w, row_bytes, &x.q8, xb),
            Self::Q8_0 => q8_0::dot_tile(w, row_bytes, &x.q8, xb),
            Self::A8 => a8::dot_tile(w, row_bytes, &x.q8, xb),
            Self::Q4K => q4_k::dot_tile(w, row_bytes, &x.q8k, xb),
            Self::Q6K => q6_k::dot_tile(w, row_bytes, &x.q8k, xb),
        };
        #[allow(unreachable_code)]
        xb.map(|b| {
            std::array::from_fn(|r| self.dot_scalar(&w[r * row_bytes..(r + 1) * row_bytes], x, b))
        })
    }

    /// One row's dot product with the scalar reference kernels.
    fn dot_scalar(self, w: &[u8], x: &Quantized, xb: usize) -> f32 {
        match self {
            Self::Q4_1 => q4_1::dot_scalar(w, &x.q8, xb),
            Self::Q5_0 => q5_0::dot_scalar(w, &x.q8, xb),
            Self::Q8_0 => q8_0::dot_scalar(w, &x.q8, xb),
            Self::A8 => a8::dot_scalar(w, &x.q8, xb),
            Self::Q4K => q4_k::dot_scalar(w, &x.q8k, xb),
            Self::Q6K => q6_k::dot_scalar(w, &x.q8k, xb),
        }
    }

    /// Dequantizes a whole row (`row.len()` a multiple of the block size in bytes).
    pub fn dequantize_row(self, row: &[u8], out: &mut [f32]) {
        let bb = self.block_bytes();
        for (b, o) in row
            .chunks_exact(bb)
            .zip(out.chunks_exact_mut(self.block_len()))
        {
            match self {
                Self::Q4_1 => q4_1::dequantize_block(b, o),
                Self::Q5_0 => q5_0::dequantize_block(b, o),
                Self::Q8_0 => q8_0::dequantize_block(b, o),
                Self::A8 => a8::dequantize_block(b, o),
                Self::Q4K => q4_k::dequantize_block(b, o),
                Self::Q6K => q6_k::dequantize_block(b, o),
            }
        }
    }
}

/// `n` pseudo-random values in [-0.5, 0.5) from `seed`: the data of the kernels' tests and of
/// the kernel benchmarks (`examples/`), from a small generator of its own so it never changes
/// with a crate version.
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use half::f16;

    pub use super::noise;

    /// Random blocks of `ty`: random f16 scales (and minimums) and random quantized bytes.
    pub fn random_blocks(ty: WeightType, seed: u64, blocks: usize) -> Vec<u8> {
        let v = noise(seed, blocks * 3);
        let mut out = Vec::with_capacity(blocks * ty.block_bytes());
        if ty.is_k() {
            // Random bytes throughout (scales of every size), then small random f16 scales.
            let mut s = seed | 1;
            for b in 0..blocks {
                for _ in 0..ty.block_bytes() {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                    out.push((s >> 56) as u8);
                }
                let d = if ty == WeightType::Q4K { 0 } else { 208 };
                let at = b * ty.block_bytes() + d;
                out[at..at + 2].copy_from_slice(&f16::from_f32(v[3 * b] * 0.01).to_le_bytes());
                if ty == WeightType::Q4K {
                    let m = f16::from_f32(v[3 * b + 1] * 0.01).to_le_bytes();
                    out[at + 2..at + 4].copy_from_slice(&m);
                }
            }
            return out;
        }
        for b in 0..blocks {
            out.extend_from_slice(&f16::from_f32(v[3 * b] * 0.1).to_le_bytes());
            let payload = match ty {
                WeightType::Q4_1 => {
                    out.extend_from_slice(&f16::from_f32(v[3 * b + 1]).to_le_bytes());
                    16
                }
                WeightType::Q8_0 => 32,
                WeightType::Q5_0 => 20,
                WeightType::Q4K | WeightType::Q6K => unreachable!("handled above"),
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
        let x = Quantized::new(
            &noise(seed + 100, 5 * blocks * ty.block_len()),
            !ty.is_k(),
            ty.is_k(),
        );
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
        let x = Quantized {
            q8: x.clone(),
            ..Quantized::default()
        };
        let [got] = ty.dot_tile(&w.repeat(4), w.len(), &x, [0]);
        assert!(
            got.iter().all(|g| g.to_bits() == got[0].to_bits()),
            "{got:?}"
        );
        got[0]
    }

    pub fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-4 * (1.0 + b.abs())
    }

    /// Wick's dequantization of random blocks of every GGML type it runs equals llama.cpp's
    /// gguf-py (`gguf.quants.dequantize`), to the bit (fixture: scripts/dequant-reference.py).
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn dequantization_matches_gguf_py() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/dequant.json")).unwrap();
        let types = fixture["types"].as_object().unwrap();
        let mut checked = 0;
        for (name, case) in types {
            let ty = match name.as_str() {
                "Q4_1" => GgmlDType::Q4_1,
                "Q5_0" => GgmlDType::Q5_0,
                "Q8_0" => GgmlDType::Q8_0,
                "Q4_K" => GgmlDType::Q4K,
                "Q6_K" => GgmlDType::Q6K,
                other => panic!("unexpected type {other} in the fixture"),
            };
            let ty = WeightType::from_ggml(ty, SUPER).unwrap();
            let hex = case["bytes"].as_str().unwrap();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let want: Vec<u32> = case["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(bytes.len() / ty.block_bytes() * ty.block_len(), want.len());
            let mut got = vec![0f32; want.len()];
            ty.dequantize_row(&bytes, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    *w,
                    "{name} value {i}: {g} vs gguf-py {}",
                    f32::from_bits(*w)
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 5);
    }

    /// Every type's scalar reference computes the dot product of the dequantized weights with
    /// the dequantized activations (up to float rounding, and the f16 rounding of `Q8_1`'s sums
    /// for the types with a minimum).
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn scalar_dot_is_the_dequantized_dot() {
        for ty in [
            WeightType::Q4_1,
            WeightType::Q5_0,
            WeightType::Q8_0,
            WeightType::A8,
            WeightType::Q4K,
            WeightType::Q6K,
        ] {
            let k = 2 * SUPER;
            let w = random_blocks(ty, 21, k / ty.block_len());
            let x = Quantized::new(&noise(22, k), true, true);
            let mut wf = vec![0f32; k];
            ty.dequantize_row(&w, &mut wf);
            let xf: Vec<f64> = if ty.is_k() {
                (0..k)
                    .map(|e| f64::from(x.q8k.d[e / SUPER]) * f64::from(x.q8k.qs[e]))
                    .collect()
            } else {
                (0..k)
                    .map(|e| f64::from(x.q8.d[e / BLOCK]) * f64::from(x.q8.qs[e]))
                    .collect()
            };
            let want: f64 = wf.iter().zip(&xf).map(|(&a, b)| f64::from(a) * b).sum();
            let scale: f64 = wf
                .iter()
                .zip(&xf)
                .map(|(&a, b)| (f64::from(a) * b).abs())
                .sum();
            let got = f64::from(ty.dot_scalar(&w, &x, 0));
            assert!(scale > 0.0, "{ty:?}: an empty test");
            assert!(
                (got - want).abs() <= 2e-3 * scale,
                "{ty:?}: {got} vs {want} (Σ|w·x| {scale})"
            );
        }
    }

    /// Each type's matmul (SIMD tiles of four and one activation row, and the scalar rows left
    /// over) gives, in wasm, the bits it gives natively: `tests/fixtures/kernel_bits.json`,
    /// written natively with `WICK_REGEN_FIXTURES=1 cargo test --release --lib kernels::`.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn matmul_bits_are_the_same_natively_and_in_wasm() {
        let (n, m, k) = (6, 5, 2 * SUPER);
        let mut got = serde_json::Map::new();
        for ty in [
            WeightType::Q4_1,
            WeightType::Q5_0,
            WeightType::Q8_0,
            WeightType::A8,
            WeightType::Q4K,
            WeightType::Q6K,
        ] {
            let w = random_blocks(ty, 31, n * k / ty.block_len());
            let y = matmul(ty, &w, n, k, &noise(32, m * k), m);
            let bits: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
            got.insert(format!("{ty:?}"), serde_json::json!(bits));
        }
        let got = serde_json::Value::Object(got);
        #[cfg(not(target_arch = "wasm32"))]
        if std::env::var("WICK_REGEN_FIXTURES").as_deref() == Ok("1") {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/kernel_bits.json"
            );
            std::fs::write(path, format!("{got}\n")).unwrap();
            return;
        }
        let want: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/kernel_bits.json")).unwrap();
        assert_eq!(got, want, "matmul bits differ from the native fixture");
    }
}
