//! `Q8_0` weights × 8-bit activations.
//!
//! GGML's `Q8_0` block: 32 weights `w = d·q` with `d` f16 and `q` i8 (34 bytes per block), so
//! `Σ w·x = d_w·d_x·Σ q_w·q_x`. Wick runs it itself (Candle has fast kernels for it too) so the
//! embedding table and a tied output head can be read in place, from the file's own bytes.

use super::{f16_to_f32, Q8Rows};

/// Bytes per `Q8_0` block.
pub const BLOCK_BYTES: usize = 34;

#[inline(always)]
fn block_d(b: &[u8]) -> f32 {
    f16_to_f32(b[0], b[1])
}

/// Σ q_w·q_x of one block against 32 activations `q`, exactly.
fn isum(b: &[u8], q: &[i8]) -> i32 {
    b[2..BLOCK_BYTES]
        .iter()
        .zip(q)
        .map(|(&a, &c)| i32::from(a as i8) * i32::from(c))
        .sum()
}

/// Dot product of one `Q8_0` row (whole blocks) with the activation row starting at block `xb`:
/// the portable reference.
pub fn dot_scalar(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    super::tile::reduce_scalar::<BLOCK_BYTES, false>(w, x, xb, isum)
}

/// [`dot_scalar`] of four rows `row_bytes` apart in `w` with `A` activation rows (from blocks
/// `xb`), with the target's SIMD, bit-identical: signed bytes at 2, no minimum.
#[cfg(wick_simd)]
pub fn dot_tile<const A: usize>(
    w: &[u8],
    row_bytes: usize,
    x: &Q8Rows,
    xb: [usize; A],
) -> [[f32; 4]; A] {
    super::tile::byte_tile::<BLOCK_BYTES, false, true, 2, A>(w, row_bytes, x, xb)
}

/// The 32 weights of one block, dequantized (embedding lookups).
pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = block_d(b);
    for (o, &q) in out.iter_mut().zip(&b[2..BLOCK_BYTES]) {
        *o = d * f32::from(q as i8);
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
            crate::kernels::tests::assert_tile_is_scalar(WeightType::Q8_0, seed, blocks);
        }
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        // -128 weights against ±127 activations: the sign trick must keep every product exact.
        let mut w = f16::from_f32(1.0).to_le_bytes().to_vec();
        w.extend(std::iter::repeat_n(0x80u8, 32));
        let mut x = vec![1.0f32; 32];
        x[0] = -1.0;
        let xq = Q8Rows::quantize(&x);
        let want = dot_scalar(&w, &xq, 0);
        let got = crate::kernels::tests::simd_dot(WeightType::Q8_0, &w, &xq);
        assert!(close(got, want), "{got} vs {want}");
        assert!((want - (-128.0 * 30.0)).abs() < 1.0, "{want}");
    }

    #[test]
    fn dequantized_block_is_scale_times_value() {
        let w = random_blocks(WeightType::Q8_0, 9, 1);
        let mut out = [0f32; BLOCK];
        dequantize_block(&w, &mut out);
        for j in 0..BLOCK {
            assert_eq!(out[j], block_d(&w) * f32::from(w[2 + j] as i8));
        }
    }
}
