//! `Q4_1` weights × `Q8_1`-quantized activations.
//!
//! GGML's `Q4_1` block: 32 weights `w = d·q + m` with `d`, `m` f16 and `q` 4-bit, stored as
//! 16 bytes whose low nibbles are elements 0‥15 and high nibbles 16‥31 (20 bytes per block).
//! Activations are quantized per block of 32 to `i8` with a scale `d` and `s = d·Σq` (rounded
//! to f16 like GGML's `Q8_1`, unpacked to f32), so that `Σ w·x = d_w·d_x·Σ q_w·q_x + m_w·s_x`.

use super::{f16_to_f32, Q8Rows};

/// Bytes per `Q4_1` block.
pub const BLOCK_BYTES: usize = 20;

/// The scale and minimum of a block, from its first four bytes.
#[inline(always)]
fn block_dm(b: &[u8]) -> (f32, f32) {
    (f16_to_f32(b[0], b[1]), f16_to_f32(b[2], b[3]))
}

/// Σ q_w·q_x of one block against 32 activations `q`, exactly.
fn isum(b: &[u8], q: &[i8]) -> i32 {
    (0..16)
        .map(|j| {
            i32::from(b[4 + j] & 0x0F) * i32::from(q[j])
                + i32::from(b[4 + j] >> 4) * i32::from(q[j + 16])
        })
        .sum()
}

/// Dot product of one `Q4_1` row (`w`, whole blocks) with one quantized activation row,
/// whose blocks start at block index `xb` of `x`: the portable reference.
pub fn dot_scalar(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    super::tile::reduce_scalar::<BLOCK_BYTES, true>(w, x, xb, isum)
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
    use super::arch::{q4_1_unpack, u7_dot};
    // SAFETY: `q4_1_unpack` reads the 16 bytes at b[4..20] of the block it is given,
    // `u7_dot` 32 activations.
    unsafe {
        super::tile::tile::<BLOCK_BYTES, true, 0, A, _>(
            w,
            row_bytes,
            x,
            xb,
            |b| q4_1_unpack(b),
            |u, q| u7_dot(u, q),
        )
    }
}

/// The 32 weights of one block, dequantized (embedding lookups).
pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let (d, m) = block_dm(b);
    for j in 0..16 {
        out[j] = d * f32::from(b[4 + j] & 0x0F) + m;
        out[j + 16] = d * f32::from(b[4 + j] >> 4) + m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::BLOCK;
    // In wasm these run under wasm-bindgen-test, so the simd128 kernel is what they check.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::kernels::tests::{noise, random_blocks};
    use crate::kernels::WeightType;

    fn random_q4_1(seed: u64, blocks: usize) -> Vec<u8> {
        random_blocks(WeightType::Q4_1, seed, blocks)
    }

    #[test]
    fn simd_dot_matches_scalar_reference() {
        for (seed, blocks) in [(1, 1), (2, 2), (3, 18), (4, 48), (5, 53)] {
            crate::kernels::tests::assert_tile_is_scalar(WeightType::Q4_1, seed, blocks);
        }
    }

    #[test]
    fn quantized_dot_is_close_to_the_float_dot() {
        let k = 256;
        let w = random_q4_1(11, k / BLOCK);
        let x = noise(12, k);
        let mut exact = 0f32;
        for (i, b) in w.chunks_exact(BLOCK_BYTES).enumerate() {
            let (d, m) = block_dm(b);
            for j in 0..16 {
                exact += (d * f32::from(b[4 + j] & 0x0F) + m) * x[i * BLOCK + j];
                exact += (d * f32::from(b[4 + j] >> 4) + m) * x[i * BLOCK + j + 16];
            }
        }
        let got = dot_scalar(&w, &Q8Rows::quantize(&x), 0);
        assert!(
            (got - exact).abs() < 0.02 * (1.0 + exact.abs()),
            "{got} vs {exact}"
        );
        let mut block = [0f32; BLOCK];
        dequantize_block(&w[..BLOCK_BYTES], &mut block);
        assert_eq!(block, exact_block(&w[..BLOCK_BYTES]));
    }

    fn exact_block(b: &[u8]) -> [f32; BLOCK] {
        let (d, m) = block_dm(b);
        std::array::from_fn(|j| {
            let q = if j < 16 {
                b[4 + j] & 0x0F
            } else {
                b[4 + j - 16] >> 4
            };
            d * f32::from(q) + m
        })
    }
}
