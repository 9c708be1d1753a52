//! `A8` weights (MLX's affine 8-bit) × 8-bit activations.
//!
//! One block holds 32 weights `w = d·q + m` with `d`, `m` f16 and `q` an unsigned byte (36 bytes
//! per block): the layout `mlx_lm` writes for `bits = 8`, regrouped by 32. Then
//! `Σ w·x = d_w·d_x·Σ q·q_x + m·Σ x`. The SIMD versions widen the bytes to 16 bits, so every
//! integer product stays exact.

use super::{f16_to_f32, Q8Rows};

/// Bytes per `A8` block.
pub const BLOCK_BYTES: usize = 36;

#[inline(always)]
fn block_dm(b: &[u8]) -> (f32, f32) {
    (f16_to_f32(b[0], b[1]), f16_to_f32(b[2], b[3]))
}

/// Σ q_w·q_x of one block against 32 activations `q`, exactly.
fn isum(b: &[u8], q: &[i8]) -> i32 {
    b[4..BLOCK_BYTES]
        .iter()
        .zip(q)
        .map(|(&a, &c)| i32::from(a) * i32::from(c))
        .sum()
}

/// Dot product of one `A8` row (whole blocks) with the activation row starting at block `xb`:
/// the portable reference.
pub fn dot_scalar(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    super::tile::reduce_scalar::<BLOCK_BYTES, true>(w, x, xb, isum)
}

/// [`dot_scalar`] of four rows `row_bytes` apart in `w` with `A` activation rows (from blocks
/// `xb`), with the target's SIMD, bit-identical: unsigned bytes at 4, with a minimum.
#[cfg(wick_simd)]
pub fn dot_tile<const A: usize>(
    w: &[u8],
    row_bytes: usize,
    x: &Q8Rows,
    xb: [usize; A],
) -> [[f32; 4]; A] {
    super::tile::byte_tile::<BLOCK_BYTES, true, false, 4, A>(w, row_bytes, x, xb)
}

/// The 32 weights of one block, dequantized (embedding lookups).
pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let (d, m) = block_dm(b);
    for (o, &q) in out.iter_mut().zip(&b[4..BLOCK_BYTES]) {
        *o = d * f32::from(q) + m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{close, random_blocks};
    use crate::kernels::WeightType;
    use crate::kernels::BLOCK;
    use half::f16;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn simd_dot_matches_scalar_reference() {
        for (seed, blocks) in [(1, 1), (2, 2), (3, 18), (4, 48), (5, 53)] {
            crate::kernels::tests::assert_tile_is_scalar(WeightType::A8, seed, blocks);
        }
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        // 255 and 0 weights against ±127 activations: products must stay exact.
        let mut w = f16::from_f32(1.0).to_le_bytes().to_vec();
        w.extend_from_slice(&f16::from_f32(0.0).to_le_bytes());
        w.extend((0..32).map(|j| if j % 2 == 0 { 255u8 } else { 0 }));
        let x: Vec<f32> = (0..32).map(|j| if j < 16 { 1.0 } else { -1.0 }).collect();
        let xq = Q8Rows::quantize(&x);
        let want = dot_scalar(&w, &xq, 0);
        let got = crate::kernels::tests::simd_dot(WeightType::A8, &w, &xq);
        assert!(close(got, want), "{got} vs {want}");
        assert!(want.abs() < 1.0, "{want}");
    }

    #[test]
    fn dequantized_block_is_affine() {
        let w = random_blocks(WeightType::A8, 9, 1);
        let mut out = [0f32; BLOCK];
        dequantize_block(&w, &mut out);
        let (d, m) = block_dm(&w);
        for j in 0..BLOCK {
            assert_eq!(out[j], d * f32::from(w[4 + j]) + m);
        }
    }
}
