//! `Q4_1` weights × `Q8_1`-quantized activations.
//!
//! GGML's `Q4_1` block: 32 weights `w = d·q + m` with `d`, `m` f16 and `q` 4-bit, stored as
//! 16 bytes whose low nibbles are elements 0‥15 and high nibbles 16‥31 (20 bytes per block).
//! Activations are quantized per block of 32 to `i8` with a scale `d` and `s = d·Σq` (rounded
//! to f16 like GGML's `Q8_1`, unpacked to f32), so that `Σ w·x = d_w·d_x·Σ q_w·q_x + m_w·s_x`.

use super::{f16_to_f32, lane, Q8Rows, BLOCK};

/// Bytes per `Q4_1` block.
pub const BLOCK_BYTES: usize = 20;

/// The scale and minimum of a block, from its first four bytes.
#[inline(always)]
fn block_dm(b: &[u8]) -> (f32, f32) {
    (f16_to_f32(b[0], b[1]), f16_to_f32(b[2], b[3]))
}

/// Dot product of one `Q4_1` row (`w`, whole blocks) with one quantized activation row,
/// whose blocks start at block index `xb` of `x`: the portable reference.
pub fn dot_scalar(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    super::reduce_scalar(w, BLOCK_BYTES, x, xb, block_dm, |b, k| {
        let q = &x.qs[k * BLOCK..(k + 1) * BLOCK];
        let mut p = [0i32; 4];
        for j in 0..16 {
            p[lane(j)] += i32::from(b[4 + j] & 0x0F) * i32::from(q[j]);
            p[lane(j + 16)] += i32::from(b[4 + j] >> 4) * i32::from(q[j + 16]);
        }
        p
    })
}

/// [`dot_scalar`] with wasm simd128 (bit-identical).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub fn dot(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    use std::arch::wasm32::*;
    // Σ q_w·q_x of one block as 4 i32 lanes.
    let block = |b: *const u8, q: *const i8| {
        // SAFETY: `reduce` passes a whole block and 32 activations.
        unsafe {
            let packed = v128_load(b.add(4) as *const v128);
            let lo = v128_and(packed, u8x16_splat(0x0F));
            let hi = u8x16_shr(packed, 4);
            let y0 = v128_load(q as *const v128);
            let y1 = v128_load(q.add(16) as *const v128);
            // Nibbles (0‥15) are valid signed bytes: their products widen straight to i16,
            // and four of them (|sum| ≤ 4·15·128) still fit one.
            let p16 = i16x8_add(
                i16x8_add(
                    i16x8_extmul_low_i8x16(lo, y0),
                    i16x8_extmul_high_i8x16(lo, y0),
                ),
                i16x8_add(
                    i16x8_extmul_low_i8x16(hi, y1),
                    i16x8_extmul_high_i8x16(hi, y1),
                ),
            );
            i32x4_extadd_pairwise_i16x8(p16)
        }
    };
    // SAFETY: `block` reads 16 bytes at b[4..20] of a whole block and 32 activations.
    unsafe { super::reduce::<BLOCK_BYTES>(w, x, xb, block_dm, block) }
}

/// [`dot_scalar`] with AVX2 (bit-identical).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
pub fn dot(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    use std::arch::x86_64::*;
    let block = |b: *const u8, q: *const i8| {
        // SAFETY: AVX2 is enabled at compile time; `reduce` passes a whole block (16 bytes at
        // b[4..20] are read) and 32 activations.
        unsafe {
            let mask = _mm_set1_epi8(0x0F);
            let packed = _mm_loadu_si128(b.add(4) as *const __m128i);
            let lo = _mm_and_si128(packed, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
            let y = _mm256_loadu_si256(q as *const __m256i);
            // i16 lane k: positions 2k, 2k+1 (|·| ≤ 2·15·127, four of them fit an i16).
            let p16 = _mm256_maddubs_epi16(_mm256_set_m128i(hi, lo), y);
            // Lanes k and k + 8, then k and k + 4: lane l holds every k ≡ l (mod 4).
            let s8 = _mm_add_epi16(
                _mm256_castsi256_si128(p16),
                _mm256_extracti128_si256(p16, 1),
            );
            let s4 = _mm_add_epi16(s8, _mm_srli_si128(s8, 8));
            _mm_cvtepi16_epi32(s4)
        }
    };
    // SAFETY: as above.
    unsafe { super::reduce::<BLOCK_BYTES>(w, x, xb, block_dm, block) }
}

/// [`dot_scalar`] where no SIMD version exists.
#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )
)))]
pub fn dot(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    dot_scalar(w, x, xb)
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
        for (seed, blocks) in [(1, 1), (2, 2), (3, 18), (4, 48)] {
            let w = random_q4_1(seed, blocks);
            let x = Q8Rows::quantize(&noise(seed + 100, blocks * BLOCK));
            let (a, b) = (dot(&w, &x, 0), dot_scalar(&w, &x, 0));
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{blocks} blocks: simd {a} vs scalar {b}"
            );
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
        let got = dot(&w, &Q8Rows::quantize(&x), 0);
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
