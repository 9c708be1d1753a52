//! AVX2 (with FMA and F16C), for x86-64: SSE-width vectors for the tile driver's float part,
//! 256-bit ones for the products.
//!
//! SAFETY (every function without its own note): the build enables AVX2 (`wick_simd`), so
//! these instructions exist.

use std::arch::x86_64::*;

/// Four i32 lanes.
pub type I = __m128i;
/// Four f32 lanes.
pub type F = __m128;

// ---- The tile driver's vector operations ----

#[inline(always)]
pub fn splat(v: f32) -> F {
    unsafe { _mm_set1_ps(v) }
}
#[inline(always)]
pub fn add(a: F, b: F) -> F {
    unsafe { _mm_add_ps(a, b) }
}
/// A multiply then (in the caller) an add, never an FMA: the scalar reference's rounding.
#[inline(always)]
pub fn mul(a: F, b: F) -> F {
    unsafe { _mm_mul_ps(a, b) }
}
#[inline(always)]
pub fn to_f32(p: I) -> F {
    unsafe { _mm_cvtepi32_ps(p) }
}
#[inline(always)]
pub fn words(w: [u32; 4]) -> I {
    unsafe { _mm_setr_epi32(w[0] as i32, w[1] as i32, w[2] as i32, w[3] as i32) }
}
#[inline(always)]
pub fn high_halves(h: I) -> I {
    unsafe { _mm_srli_epi32(h, 16) }
}
/// f16 in the low half of each u32 lane → f32, exactly as `f16_to_f32_portable`.
#[inline(always)]
pub fn f16s(h: I) -> F {
    unsafe {
        let bits = _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x7fff)), 13);
        let magnitude = _mm_mul_ps(
            _mm_castsi128_ps(bits),
            _mm_set1_ps(f32::from_bits(0x7780_0000)),
        );
        let sign = _mm_slli_epi32(_mm_and_si128(h, _mm_set1_epi32(0x8000)), 16);
        _mm_or_ps(magnitude, _mm_castsi128_ps(sign))
    }
}
/// The four sums of four i32x4 vectors, as one vector.
#[inline(always)]
pub fn hsum4(a: I, b: I, c: I, d: I) -> I {
    unsafe { _mm_hadd_epi32(_mm_hadd_epi32(a, b), _mm_hadd_epi32(c, d)) }
}
#[inline(always)]
pub fn lanes(v: F) -> [f32; 4] {
    let mut out = [0f32; 4];
    // SAFETY: `out` has room for four floats.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// Eight i32 lanes folded to four: only their total matters.
#[inline(always)]
fn fold8(s: __m256i) -> __m128i {
    unsafe { _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1)) }
}

// ---- Q4_1 ----

/// A `Q4_1` block's nibbles (16 bytes at `b[4..20]`): low halves in the low 128 bits, high
/// halves in the high ones.
///
/// # Safety
/// `b` must point at a whole block.
#[inline(always)]
pub unsafe fn q4_1_unpack(b: *const u8) -> __m256i {
    let mask = _mm_set1_epi8(0x0F);
    let packed = _mm_loadu_si128(b.add(4) as *const __m128i);
    let lo = _mm_and_si128(packed, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
    _mm256_set_m128i(hi, lo)
}

/// Products of [`q4_1_unpack`]ed nibbles and 32 activations at `q`, as four i32 lanes.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn q4_1_dot(nibbles: __m256i, q: *const i8) -> __m128i {
    let y = _mm256_loadu_si256(q as *const __m256i);
    // Pair sums of nibble × i8 (|·| ≤ 2·15·128) are exact in i16.
    let p16 = _mm256_maddubs_epi16(nibbles, y);
    fold8(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

// ---- Plain bytes: Q8_0 (signed), A8 (unsigned) ----

/// A block's 32 weight bytes at `w` — signed when `SIGNED`, else unsigned — widened to i16 in
/// two vectors of 16, for [`byte_dot`].
///
/// # Safety
/// `w` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn byte_unpack<const SIGNED: bool>(w: *const u8) -> [__m256i; 2] {
    let half = |h: usize| {
        let raw = _mm_loadu_si128(w.add(16 * h) as *const __m128i);
        if SIGNED {
            _mm256_cvtepi8_epi16(raw)
        } else {
            _mm256_cvtepu8_epi16(raw)
        }
    };
    [half(0), half(1)]
}

/// Products of widened weight bytes ([`byte_unpack`]) and 32 activations at `q`, as four i32
/// lanes: 16-bit products and pair sums are exact.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn byte_dot(u: [__m256i; 2], q: *const i8) -> __m128i {
    let c = |h: usize| _mm256_cvtepi8_epi16(_mm_loadu_si128(q.add(16 * h) as *const __m128i));
    fold8(_mm256_add_epi32(
        _mm256_madd_epi16(u[0], c(0)),
        _mm256_madd_epi16(u[1], c(1)),
    ))
}
