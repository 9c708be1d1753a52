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
pub fn sub(a: F, b: F) -> F {
    f32x4_sub(a, b)
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

/// Products of [`q4_1_unpack`]ed nibbles and 32 activations at `q`, as four i32 lanes
/// ([`small_dot`]: nibbles are 7-bit values).
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn q4_1_dot(nibbles: (v128, v128), q: *const i8) -> v128 {
    nibble_dot(nibbles, q)
}

/// Products of 32 weights that fit 7 bits signed (−64‥63; `a` holds the first 16, `b` the
/// rest) and 32 activations at `q`, as four i32 lanes, in plain simd128: relaxed SIMD's dot
/// leaves a weight with its top bit set (a negative one) to the engine, so signed weights
/// (Q5_0's `q − 16`) never go through it.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn small_dot((a, b): (v128, v128), q: *const i8) -> v128 {
    let y0 = v128_load(q as *const v128);
    let y1 = v128_load(q.add(16) as *const v128);
    // Products of 7-bit and 8-bit values widen straight to i16, and four of them
    // (|sum| ≤ 4·64·128) still fit one.
    i32x4_extadd_pairwise_i16x8(i16x8_add(
        i16x8_add(
            i16x8_extmul_low_i8x16(a, y0),
            i16x8_extmul_high_i8x16(a, y0),
        ),
        i16x8_add(
            i16x8_extmul_low_i8x16(b, y1),
            i16x8_extmul_high_i8x16(b, y1),
        ),
    ))
}

/// Products of 32 non-negative 7-bit weights (0‥127; `a` holds the first 16, `b` the
/// rest) and 32 activations at `q`, as four i32 lanes. With relaxed SIMD they go through
/// `i32x4.relaxed_dot_i8x16_i7x16_add`, one instruction per 16 products: the weights are 7-bit
/// values, so the result does not depend on the engine.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn nibble_dot((a, b): (v128, v128), q: *const i8) -> v128 {
    let y0 = v128_load(q as *const v128);
    let y1 = v128_load(q.add(16) as *const v128);
    #[cfg(target_feature = "relaxed-simd")]
    return i32x4_relaxed_dot_i8x16_i7x16_add(
        y1,
        b,
        i32x4_relaxed_dot_i8x16_i7x16_add(y0, a, i32x4_splat(0)),
    );
    // Products of 7-bit and 8-bit values widen straight to i16, and four of them
    // (|sum| ≤ 4·64·128) still fit one.
    #[cfg(not(target_feature = "relaxed-simd"))]
    i32x4_extadd_pairwise_i16x8(i16x8_add(
        i16x8_add(
            i16x8_extmul_low_i8x16(a, y0),
            i16x8_extmul_high_i8x16(a, y0),
        ),
        i16x8_add(
            i16x8_extmul_low_i8x16(b, y1),
            i16x8_extmul_high_i8x16(b, y1),
        ),
    ))
}

/// Products of 16 weights that fit 7 bits signed and 16 activations at `q`, as four i32 lanes
/// (as [`small_dot`]).
///
/// # Safety
/// `q` must point at 16 readable bytes.
#[inline(always)]
unsafe fn small_dot16(a: v128, q: *const i8) -> v128 {
    let y = v128_load(q as *const v128);
    i32x4_extadd_pairwise_i16x8(i16x8_add(
        i16x8_extmul_low_i8x16(a, y),
        i16x8_extmul_high_i8x16(a, y),
    ))
}

// ---- Q5_0 ----

/// A `Q5_0` block's 32 values `q − 16` (−16‥15), elements 0‥15 and 16‥31, for [`small_dot`].
///
/// # Safety
/// `b` must point at a whole block.
#[inline(always)]
pub unsafe fn q5_0_unpack(b: *const u8) -> (v128, v128) {
    let qh = i32x4_splat(i32::from_le_bytes(std::ptr::read_unaligned(
        b.add(2) as *const [u8; 4]
    )));
    // Lane e of each half gets the byte of qh that holds its bit, then that bit alone.
    let bit = u64x2_splat(0x8040_2010_0804_0201);
    let high = |sel: v128| i8x16_eq(v128_and(i8x16_swizzle(qh, sel), bit), bit);
    let (h0, h1) = (
        high(u8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)),
        high(u8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)),
    );
    let packed = v128_load(b.add(6) as *const v128);
    let (lo, hi) = (v128_and(packed, u8x16_splat(0x0F)), u8x16_shr(packed, 4));
    // A nibble without its fifth bit is q − 16 once 0xF0 fills its top: nibble − 16 as i8.
    let minus = u8x16_splat(0xF0);
    (
        v128_or(lo, v128_andnot(minus, h0)),
        v128_or(hi, v128_andnot(minus, h1)),
    )
}

// ---- K-quants ----

/// Σ_j sc_j·Σ q·q_x over a `Q4_K` super-block's 8 sub-blocks (128 nibble bytes at `qs`) and 256
/// activations at `q`, as four i32 lanes.
///
/// # Safety
/// `qs` must point at 128 readable bytes, `q` at 256.
#[inline(always)]
pub unsafe fn q4_k_dot(qs: *const u8, sc: &[u8; 8], q: *const i8) -> v128 {
    let mut acc = i32x4_splat(0);
    for i in 0..4 {
        let a = v128_load(qs.add(32 * i) as *const v128);
        let b = v128_load(qs.add(32 * i + 16) as *const v128);
        let m = u8x16_splat(0x0F);
        let lo = nibble_dot((v128_and(a, m), v128_and(b, m)), q.add(64 * i));
        let hi = nibble_dot((u8x16_shr(a, 4), u8x16_shr(b, 4)), q.add(64 * i + 32));
        acc = i32x4_add(acc, i32x4_mul(lo, i32x4_splat(i32::from(sc[2 * i]))));
        acc = i32x4_add(acc, i32x4_mul(hi, i32x4_splat(i32::from(sc[2 * i + 1]))));
    }
    acc
}

/// Σ_g sc_g·Σ (q − 32)·q_x over a `Q6_K` super-block at `b` (16 groups of 16) and 256
/// activations at `q`, as four i32 lanes.
///
/// # Safety
/// `b` must point at a whole block, `q` at 256 readable bytes.
#[inline(always)]
pub unsafe fn q6_k_dot(b: *const u8, q: *const i8) -> v128 {
    let mut acc = i32x4_splat(0);
    let (m4, m2, b6) = (u8x16_splat(0x0F), u8x16_splat(0x30), u8x16_splat(32));
    for half in 0..2 {
        let l = b.add(64 * half);
        let h = b.add(128 + 32 * half);
        for i in 0..2 {
            let l0 = v128_load(l.add(16 * i) as *const v128);
            let l1 = v128_load(l.add(32 + 16 * i) as *const v128);
            let hb = v128_load(h.add(16 * i) as *const v128);
            // The four quarters' values at positions 16i‥16i+16, high bits moved to bits 4‥5.
            let quarters = [
                v128_or(v128_and(l0, m4), v128_and(i8x16_shl(hb, 4), m2)),
                v128_or(v128_and(l1, m4), v128_and(i8x16_shl(hb, 2), m2)),
                v128_or(u8x16_shr(l0, 4), v128_and(hb, m2)),
                v128_or(u8x16_shr(l1, 4), v128_and(u8x16_shr(hb, 2), m2)),
            ];
            for (k, v) in quarters.into_iter().enumerate() {
                let e = 128 * half + 32 * k + 16 * i;
                let p = small_dot16(i8x16_sub(v, b6), q.add(e));
                let sc = i32::from(*(b.add(192 + e / 16) as *const i8));
                acc = i32x4_add(acc, i32x4_mul(p, i32x4_splat(sc)));
            }
        }
    }
    acc
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
