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
    super::reduce_scalar::<BLOCK_BYTES, true>(w, x, xb, isum)
}

/// [`dot_scalar`] of four rows `row_bytes` apart in `w` with `A` activation rows (from blocks
/// `xb`), with simd128 or AVX2 (bit-identical), whichever the build targets.
#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )
))]
pub fn dot_tile<const A: usize>(
    w: &[u8],
    row_bytes: usize,
    x: &Q8Rows,
    xb: [usize; A],
) -> [[f32; 4]; A] {
    // SAFETY: `unpack` reads the 16 bytes at b[4..20] of the block it is given, `dot` 32
    // activations.
    unsafe {
        super::tile::<BLOCK_BYTES, true, A, _>(w, row_bytes, x, xb, |b| unpack(b), |u, q| dot(u, q))
    }
}

/// A block's nibbles (16 bytes at `b[4..20]`), low halves and high halves, with simd128.
///
/// # Safety
/// `b` must point at a whole block.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn unpack(b: *const u8) -> (std::arch::wasm32::v128, std::arch::wasm32::v128) {
    use std::arch::wasm32::*;
    let packed = v128_load(b.add(4) as *const v128);
    (v128_and(packed, u8x16_splat(0x0F)), u8x16_shr(packed, 4))
}

/// Products of [`unpack`]ed nibbles and 32 activations at `q`, as four i32 lanes, with simd128.
/// With relaxed SIMD they go through `i32x4.relaxed_dot_i8x16_i7x16_add`, one instruction per
/// 16 products: the nibbles are 7-bit values, so the result does not depend on the engine.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn dot(
    (lo, hi): (std::arch::wasm32::v128, std::arch::wasm32::v128),
    q: *const i8,
) -> std::arch::wasm32::v128 {
    use std::arch::wasm32::*;
    let y0 = v128_load(q as *const v128);
    let y1 = v128_load(q.add(16) as *const v128);
    #[cfg(target_feature = "relaxed-simd")]
    return i32x4_relaxed_dot_i8x16_i7x16_add(
        y1,
        hi,
        i32x4_relaxed_dot_i8x16_i7x16_add(y0, lo, i32x4_splat(0)),
    );
    // Nibbles (0‥15) are valid signed bytes: their products widen straight to i16, and four of
    // them (|sum| ≤ 4·15·128) still fit one.
    #[cfg(not(target_feature = "relaxed-simd"))]
    i32x4_extadd_pairwise_i16x8(i16x8_add(
        i16x8_add(
            i16x8_extmul_low_i8x16(lo, y0),
            i16x8_extmul_high_i8x16(lo, y0),
        ),
        i16x8_add(
            i16x8_extmul_low_i8x16(hi, y1),
            i16x8_extmul_high_i8x16(hi, y1),
        ),
    ))
}

/// [`unpack`] with AVX2: low halves in the low 128 bits, high halves in the high ones.
///
/// # Safety
/// `b` must point at a whole block.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn unpack(b: *const u8) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let mask = _mm_set1_epi8(0x0F);
    let packed = _mm_loadu_si128(b.add(4) as *const __m128i);
    let lo = _mm_and_si128(packed, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    _mm256_set_m128i(hi, lo)
}

/// [`dot`] with AVX2.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn dot(nibbles: std::arch::x86_64::__m256i, q: *const i8) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    let y = _mm256_loadu_si256(q as *const __m256i);
    // Pair sums of nibble × i8 (|·| ≤ 2·15·128) are exact in i16.
    let p16 = _mm256_maddubs_epi16(nibbles, y);
    super::fold8(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
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
