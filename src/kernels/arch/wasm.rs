//! simd128 (with relaxed SIMD where the build enables it), for wasm.
//!
//! `I` holds four i32 lanes, `F` four f32 lanes.

use std::arch::wasm32::*;

/// Four i32 lanes.
pub type I = v128;
/// Four f32 lanes.
pub type F = v128;

// ---- The tile driver's vector operations ----

#[inline(always)]
pub fn splat(v: f32) -> F {
    f32x4_splat(v)
}
#[inline(always)]
pub fn add(a: F, b: F) -> F {
    f32x4_add(a, b)
}
#[inline(always)]
pub fn mul(a: F, b: F) -> F {
    f32x4_mul(a, b)
}
#[inline(always)]
pub fn to_f32(p: I) -> F {
    f32x4_convert_i32x4(p)
}
#[inline(always)]
pub fn words(w: [u32; 4]) -> I {
    u32x4(w[0], w[1], w[2], w[3])
}
#[inline(always)]
pub fn high_halves(h: I) -> I {
    u32x4_shr(h, 16)
}
/// f16 in the low half of each u32 lane → f32, exactly as `f16_to_f32_portable`.
#[inline(always)]
pub fn f16s(h: I) -> F {
    let bits = i32x4_shl(v128_and(h, i32x4_splat(0x7fff)), 13);
    let magnitude = f32x4_mul(bits, f32x4_splat(f32::from_bits(0x7780_0000)));
    v128_or(magnitude, i32x4_shl(v128_and(h, i32x4_splat(0x8000)), 16))
}
/// The four sums of four i32x4 vectors, as one vector.
#[inline(always)]
pub fn hsum4(a: I, b: I, c: I, d: I) -> I {
    let ab = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(a, b),
        i32x4_shuffle::<2, 6, 3, 7>(a, b),
    );
    let cd = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(c, d),
        i32x4_shuffle::<2, 6, 3, 7>(c, d),
    );
    i32x4_add(
        i32x4_shuffle::<0, 1, 4, 5>(ab, cd),
        i32x4_shuffle::<2, 3, 6, 7>(ab, cd),
    )
}
#[inline(always)]
pub fn lanes(v: F) -> [f32; 4] {
    [
        f32x4_extract_lane::<0>(v),
        f32x4_extract_lane::<1>(v),
        f32x4_extract_lane::<2>(v),
        f32x4_extract_lane::<3>(v),
    ]
}

// ---- Q4_1 ----

/// A `Q4_1` block's nibbles (16 bytes at `b[4..20]`), low halves and high halves.
///
/// # Safety
/// `b` must point at a whole block.
#[inline(always)]
pub unsafe fn q4_1_unpack(b: *const u8) -> (v128, v128) {
    let packed = v128_load(b.add(4) as *const v128);
    (v128_and(packed, u8x16_splat(0x0F)), u8x16_shr(packed, 4))
}

/// Products of [`q4_1_unpack`]ed nibbles and 32 activations at `q`, as four i32 lanes. With
/// relaxed SIMD they go through `i32x4.relaxed_dot_i8x16_i7x16_add`, one instruction per 16
/// products: the nibbles are 7-bit values, so the result does not depend on the engine.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn q4_1_dot((lo, hi): (v128, v128), q: *const i8) -> v128 {
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

// ---- Plain bytes: Q8_0 (signed), A8 (unsigned) ----

/// A block's 32 weight bytes at `w` — signed when `SIGNED`, else unsigned — widened to i16 in
/// four vectors of 8, for [`byte_dot`].
///
/// # Safety
/// `w` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn byte_unpack<const SIGNED: bool>(w: *const u8) -> [v128; 4] {
    let (a, b) = (
        v128_load(w as *const v128),
        v128_load(w.add(16) as *const v128),
    );
    if SIGNED {
        [
            i16x8_extend_low_i8x16(a),
            i16x8_extend_high_i8x16(a),
            i16x8_extend_low_i8x16(b),
            i16x8_extend_high_i8x16(b),
        ]
    } else {
        [
            u16x8_extend_low_u8x16(a),
            u16x8_extend_high_u8x16(a),
            u16x8_extend_low_u8x16(b),
            u16x8_extend_high_u8x16(b),
        ]
    }
}

/// Products of widened weight bytes ([`byte_unpack`]) and 32 activations at `q`, as four i32
/// lanes: 16-bit products and pair sums are exact.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn byte_dot(u: [v128; 4], q: *const i8) -> v128 {
    let (c0, c1) = (
        v128_load(q as *const v128),
        v128_load(q.add(16) as *const v128),
    );
    let lo = i32x4_add(
        i32x4_dot_i16x8(u[0], i16x8_extend_low_i8x16(c0)),
        i32x4_dot_i16x8(u[1], i16x8_extend_high_i8x16(c0)),
    );
    let hi = i32x4_add(
        i32x4_dot_i16x8(u[2], i16x8_extend_low_i8x16(c1)),
        i32x4_dot_i16x8(u[3], i16x8_extend_high_i8x16(c1)),
    );
    i32x4_add(lo, hi)
}
