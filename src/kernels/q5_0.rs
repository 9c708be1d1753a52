//! `Q5_0` weights × 8-bit activations.
//!
//! GGML's `Q5_0` block: 32 weights `w = d·(q − 16)` with `d` f16 and `q` 5-bit (22 bytes per
//! block): `d`, then the 32 fifth bits as a little-endian u32 (bit `e` for element `e`), then
//! 16 bytes whose low nibbles are elements 0‥15 and high nibbles 16‥31. So
//! `Σ w·x = d_w·d_x·Σ (q − 16)·q_x`. The SIMD versions multiply the 5-bit `q` themselves (0‥31:
//! relaxed SIMD's 7-bit operand, `maddubs`'s unsigned one) and take `16·Σ q_x` off, exactly.

use super::{f16_to_f32, Q8Rows};

/// Bytes per `Q5_0` block.
pub const BLOCK_BYTES: usize = 22;

/// The 32 signed values `q − 16` of a block, in element order.
#[inline(always)]
fn values(b: &[u8]) -> [i8; 32] {
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    std::array::from_fn(|e| {
        let nibble = if e < 16 {
            b[6 + e] & 0x0F
        } else {
            b[6 + e - 16] >> 4
        };
        (nibble | (((qh >> e) & 1) as u8) << 4) as i8 - 16
    })
}

/// Σ (q − 16)·q_x of one block against 32 activations `q`, exactly.
fn isum(b: &[u8], q: &[i8]) -> i32 {
    values(b)
        .iter()
        .zip(q)
        .map(|(&v, &c)| i32::from(v) * i32::from(c))
        .sum()
}

/// Dot product of one `Q5_0` row (whole blocks) with the activation row starting at block `xb`:
/// the portable reference.
pub fn dot_scalar(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    super::tile::reduce_scalar::<BLOCK_BYTES, false>(w, x, xb, isum)
}

/// [`dot_scalar`] of four rows `row_bytes` apart in `w` with `A` activation rows (from blocks
/// `xb`), with the target's SIMD ([`arch`](super::arch)), bit-identical.
#[cfg(wick_simd)]
pub fn dot_tile<const A: usize>(
    w: &[u8],
    row_bytes: usize,
    x: &Q8Rows,
    xb: [usize; A],
) -> [[f32; 4]; A] {
    use super::arch::{q5_0_unpack, u7_dot};
    // SAFETY: `q5_0_unpack` reads the 20 bytes at b[2..22] of the block it is given,
    // `u7_dot` 32 activations.
    unsafe {
        super::tile::tile::<BLOCK_BYTES, false, 16, A, _>(
            w,
            row_bytes,
            x,
            xb,
            |b| q5_0_unpack(b),
            |u, q| u7_dot(u, q),
        )
    }
}

/// The 32 weights of one block, dequantized.
pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = f16_to_f32(b[0], b[1]);
    for (o, v) in out.iter_mut().zip(values(b)) {
        *o = d * f32::from(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::WeightType;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn simd_dot_matches_scalar_reference() {
        for (seed, blocks) in [(1, 1), (2, 2), (3, 18), (4, 28), (5, 53)] {
            crate::kernels::tests::assert_tile_is_scalar(WeightType::Q5_0, seed, blocks);
        }
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        // q = 0 (−16) and q = 31 (15) against ±127 activations.
        let mut w = half::f16::from_f32(1.0).to_le_bytes().to_vec();
        w.extend_from_slice(&0xFFFF_0000u32.to_le_bytes());
        w.extend([0xF0u8; 16]);
        let x: Vec<f32> = (0..32)
            .map(|e| if e % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let xq = Q8Rows::quantize(&x);
        let want = dot_scalar(&w, &xq, 0);
        let got = crate::kernels::tests::simd_dot(WeightType::Q5_0, &w, &xq);
        assert_eq!(got.to_bits(), want.to_bits());
        // Elements 0‥15 are −16, 16‥31 are 15.
        let exact: f32 = (0..32)
            .map(|e| if e < 16 { -16.0 } else { 15.0 } * x[e] * 127.0)
            .sum();
        assert_eq!(want, exact * xq.d[0]);
    }
}
