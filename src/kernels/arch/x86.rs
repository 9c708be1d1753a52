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
#[inline(always)]
pub fn sub(a: F, b: F) -> F {
    unsafe { _mm_sub_ps(a, b) }
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
pub fn isplat(v: i32) -> I {
    unsafe { _mm_set1_epi32(v) }
}
#[inline(always)]
pub fn isub(a: I, b: I) -> I {
    unsafe { _mm_sub_epi32(a, b) }
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

/// Products of 32 non-negative weights (0‥127: [`q4_1_unpack`]ed nibbles, [`q5_0_unpack`]ed
/// 5-bit values) and 32 activations at `q`, as four i32 lanes.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn u7_dot(nibbles: __m256i, q: *const i8) -> __m128i {
    let y = _mm256_loadu_si256(q as *const __m256i);
    // Pair sums of 7-bit × i8 (|·| ≤ 2·127·127) are exact in i16.
    let p16 = _mm256_maddubs_epi16(nibbles, y);
    fold8(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

// ---- Q5_0 ----

/// A `Q5_0` block's 32 values `q` (0‥31, 16 above the weight's value), in element order, for
/// [`u7_dot`].
///
/// # Safety
/// `b` must point at a whole block.
#[inline(always)]
pub unsafe fn q5_0_unpack(b: *const u8) -> __m256i {
    let qh = _mm256_set1_epi32(i32::from_le_bytes(std::ptr::read_unaligned(
        b.add(2) as *const [u8; 4]
    )));
    // Byte e gets the byte of qh that holds its bit, then that bit alone: all ones where set.
    let sel = _mm256_setr_epi64x(
        0,
        0x0101_0101_0101_0101,
        0x0202_0202_0202_0202,
        0x0303_0303_0303_0303,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let high = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(qh, sel), bit), bit);
    let packed = _mm_loadu_si128(b.add(6) as *const __m128i);
    let mask = _mm_set1_epi8(0x0F);
    let nibbles = _mm256_set_m128i(
        _mm_and_si128(_mm_srli_epi16(packed, 4), mask),
        _mm_and_si128(packed, mask),
    );
    _mm256_or_si256(nibbles, _mm256_and_si256(high, _mm256_set1_epi8(0x10)))
}

// ---- K-quants ----

/// Σ_j sc_j·Σ q·q_x over a `Q4_K` super-block's 8 sub-blocks (128 nibble bytes at `qs`) and 256
/// activations at `q`, as four i32 lanes.
///
/// # Safety
/// `qs` must point at 128 readable bytes, `q` at 256.
#[inline(always)]
pub unsafe fn q4_k_dot(qs: *const u8, sc: &[u8; 8], q: *const i8) -> __m128i {
    let mask = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_si256();
    for i in 0..4 {
        let bytes = _mm256_loadu_si256(qs.add(32 * i) as *const __m256i);
        let lo = _mm256_and_si256(bytes, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask);
        let y0 = _mm256_loadu_si256(q.add(64 * i) as *const __m256i);
        let y1 = _mm256_loadu_si256(q.add(64 * i + 32) as *const __m256i);
        // Pair sums of nibble × i8 (≤ 2·15·127) are exact in i16, and times a 6-bit scale,
        // summed in pairs, in i32.
        let s0 = _mm256_set1_epi16(i16::from(sc[2 * i]));
        let s1 = _mm256_set1_epi16(i16::from(sc[2 * i + 1]));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), s0));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), s1));
    }
    fold8(acc)
}

/// Σ_g sc_g·Σ (q − 32)·q_x over a `Q6_K` super-block at `b` (16 groups of 16) and 256
/// activations at `q`, as four i32 lanes.
///
/// # Safety
/// `b` must point at a whole block, `q` at 256 readable bytes (`_bsums`, the group sums, are
/// not needed: the values go through `maddubs` with their sign moved onto the activations).
#[inline(always)]
pub unsafe fn q6_k_dot(b: *const u8, q: *const i8, _bsums: *const i16) -> __m128i {
    let (m4, m2) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
    let mut acc = _mm256_setzero_si256();
    for half in 0..2 {
        let l0 = _mm256_loadu_si256(b.add(64 * half) as *const __m256i);
        let l1 = _mm256_loadu_si256(b.add(64 * half + 32) as *const __m256i);
        let hb = _mm256_loadu_si256(b.add(128 + 32 * half) as *const __m256i);
        // The four quarters' 32 values each, high bits moved to bits 4‥5 (16-bit shifts: the
        // masks drop what crosses a byte).
        let quarters = [
            _mm256_or_si256(
                _mm256_and_si256(l0, m4),
                _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2),
            ),
            _mm256_or_si256(
                _mm256_and_si256(l1, m4),
                _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                _mm256_and_si256(hb, m2),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2),
            ),
        ];
        for (k, v) in quarters.into_iter().enumerate() {
            let e = 128 * half + 32 * k;
            let v = _mm256_sub_epi8(v, _mm256_set1_epi8(32));
            let y = _mm256_loadu_si256(q.add(e) as *const __m256i);
            let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(y, v));
            // Groups e/16 and e/16 + 1: the low and high 128 bits.
            let sc = |g: usize| i16::from(*(b.add(192 + g) as *const i8));
            let scales =
                _mm256_set_m128i(_mm_set1_epi16(sc(e / 16 + 1)), _mm_set1_epi16(sc(e / 16)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, scales));
        }
    }
    fold8(acc)
}

// ---- Plain bytes: Q8_0 (signed), A8 (unsigned) ----

/// Whether [`byte_dot`] reads sign-split activations (no: it widens both sides to i16).
pub const BYTES_SPLIT: bool = false;

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

// ---- Attention's f32 dot products ----

/// Attention's `dot` of `a` with each of four rows `b` over `chunks` chunks of eight, before
/// the tail: eight running sums (lane `l` takes elements `l`, `l + 8`, …; a multiply then an
/// add, never an FMA), then `((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))`, the portable
/// loop's order, for the four rows at once (horizontal adds pair exactly those lanes).
///
/// # Safety
/// `a` and every `b[t]` must point at `8 · chunks` readable f32s.
#[inline(always)]
pub unsafe fn dot8x4(a: *const f32, b: [*const f32; 4], chunks: usize) -> [f32; 4] {
    let mut acc = [_mm256_setzero_ps(); 4];
    for c in 0..chunks {
        let x = _mm256_loadu_ps(a.add(8 * c));
        for (acc, b) in acc.iter_mut().zip(b) {
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(x, _mm256_loadu_ps(b.add(8 * c))));
        }
    }
    // [A0+A1, A2+A3, B0+B1, B2+B3 | A4+A5, A6+A7, B4+B5, B6+B7], then the pairs of those.
    let ab = _mm256_hadd_ps(acc[0], acc[1]);
    let cd = _mm256_hadd_ps(acc[2], acc[3]);
    let quads = _mm256_hadd_ps(ab, cd);
    let sums = _mm_add_ps(
        _mm256_castps256_ps128(quads),
        _mm256_extractf128_ps(quads, 1),
    );
    std::mem::transmute::<__m128, [f32; 4]>(sums)
}
