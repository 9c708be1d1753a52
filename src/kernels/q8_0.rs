//! `Q8_0` weights × 8-bit activations.
//!
//! GGML's `Q8_0` block: 32 weights `w = d·q` with `d` f16 and `q` i8 (34 bytes per block), so
//! `Σ w·x = d_w·d_x·Σ q_w·q_x`. Wick runs it itself (Candle has fast kernels for it too) so the
//! embedding table and a tied output head can be read in place, from the file's own bytes.

#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )
))]
use super::hsum_i32;
use super::{f16_to_f32, Q8Rows, BLOCK};

/// Bytes per `Q8_0` block.
pub const BLOCK_BYTES: usize = 34;

#[inline(always)]
fn block_d(b: &[u8]) -> f32 {
    f16_to_f32(b[0], b[1])
}

/// Dot product of one `Q8_0` row (whole blocks) with the activation row starting at block `xb`:
/// the portable reference.
pub fn dot_scalar(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    let mut sum = 0f32;
    for (i, b) in w.chunks_exact(BLOCK_BYTES).enumerate() {
        let q = &x.qs[(xb + i) * BLOCK..(xb + i + 1) * BLOCK];
        let acc: i32 = b[2..]
            .iter()
            .zip(q)
            .map(|(&a, &c)| i32::from(a as i8) * i32::from(c))
            .sum();
        sum += block_d(b) * x.d[xb + i] * acc as f32;
    }
    sum
}

/// [`dot_scalar`] with wasm simd128.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub fn dot(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    use std::arch::wasm32::*;
    let n = w.len() / BLOCK_BYTES;
    assert!(x.qs.len() >= (xb + n) * BLOCK && x.d.len() >= xb + n);
    let mut sum = 0f32;
    for i in 0..n {
        let b = &w[i * BLOCK_BYTES..(i + 1) * BLOCK_BYTES];
        // SAFETY: b holds 32 weight bytes at b[2..34]; the activations hold 32 values per block.
        unsafe {
            let wq = b.as_ptr().add(2);
            let q = x.qs.as_ptr().add((xb + i) * BLOCK);
            let mut p = i32x4_splat(0);
            for h in 0..2 {
                let a = v128_load(wq.add(16 * h) as *const v128);
                let c = v128_load(q.add(16 * h) as *const v128);
                p = i32x4_add(
                    p,
                    i32x4_dot_i16x8(i16x8_extend_low_i8x16(a), i16x8_extend_low_i8x16(c)),
                );
                p = i32x4_add(
                    p,
                    i32x4_dot_i16x8(i16x8_extend_high_i8x16(a), i16x8_extend_high_i8x16(c)),
                );
            }
            // The scalar reference's arithmetic, in its order (bit-identical results).
            sum += block_d(b) * *x.d.get_unchecked(xb + i) * hsum_i32(p) as f32;
        }
    }
    sum
}

/// [`dot_scalar`] with AVX2 + FMA.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
pub fn dot(w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
    use std::arch::x86_64::*;
    let n = w.len() / BLOCK_BYTES;
    assert!(x.qs.len() >= (xb + n) * BLOCK && x.d.len() >= xb + n);
    // SAFETY: AVX2 and FMA are enabled at compile time; every load stays inside the slices
    // checked above (32 bytes at b[2..34], 32 activations per block).
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut sum = 0f32;
        for i in 0..n {
            let b = &w[i * BLOCK_BYTES..(i + 1) * BLOCK_BYTES];
            let a = _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i);
            let c = _mm256_loadu_si256(x.qs.as_ptr().add((xb + i) * BLOCK) as *const __m256i);
            // maddubs wants one unsigned operand: move the signs of a onto c.
            let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(c, a));
            let p = _mm256_madd_epi16(p16, ones);
            // The scalar reference's arithmetic, in its order (bit-identical results).
            sum += block_d(b) * *x.d.get_unchecked(xb + i) * hsum_i32(p) as f32;
        }
        sum
    }
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
    let d = block_d(b);
    for (o, &q) in out.iter_mut().zip(&b[2..BLOCK_BYTES]) {
        *o = d * f32::from(q as i8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{close, noise, random_blocks};
    use crate::kernels::WeightType;
    use half::f16;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn simd_dot_matches_scalar_reference() {
        for (seed, blocks) in [(1, 1), (2, 2), (3, 18), (4, 48)] {
            let w = random_blocks(WeightType::Q8_0, seed, blocks);
            let x = Q8Rows::quantize(&noise(seed + 100, blocks * BLOCK));
            let (a, b) = (dot(&w, &x, 0), dot_scalar(&w, &x, 0));
            assert!(close(a, b), "{blocks} blocks: simd {a} vs scalar {b}");
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
        assert!(
            close(dot(&w, &xq, 0), want),
            "{} vs {want}",
            dot(&w, &xq, 0)
        );
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
