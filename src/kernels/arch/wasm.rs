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
pub fn isplat(v: i32) -> I {
    i32x4_splat(v)
}
#[inline(always)]
pub fn isub(a: I, b: I) -> I {
    i32x4_sub(a, b)
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

/// Products of 32 non-negative weights (0‥64; `a` holds the first 16, `b` the
/// rest: `Q4_1`'s and `Q4_K`'s nibbles, `Q5_0`'s 5-bit values) and 32 activations at `q`, as
/// four i32 lanes. With relaxed SIMD they go through `i32x4.relaxed_dot_i8x16_i7x16_add`, one
/// instruction per 16 products: the weights are 7-bit values and the activations' pair sums
/// (|·| ≤ 2·127·127) fit an i16, so the result does not depend on the engine.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[inline(always)]
pub unsafe fn u7_dot((a, b): (v128, v128), q: *const i8) -> v128 {
    let y0 = v128_load(q as *const v128);
    let y1 = v128_load(q.add(16) as *const v128);
    #[cfg(target_feature = "relaxed-simd")]
    return i32x4_relaxed_dot_i8x16_i7x16_add(
        y1,
        b,
        i32x4_relaxed_dot_i8x16_i7x16_add(y0, a, i32x4_splat(0)),
    );
    // Products of weights ≤ 64 (all these kernels pass: nibbles, 5-bit values) and activations
    // |q_x| ≤ 127 widen straight to i16, and four of them (≤ 4·64·127) still fit one.
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

// ---- Q5_0 ----

/// A `Q5_0` block's 32 values `q` (0‥31, 16 above the weight's value), elements 0‥15 and
/// 16‥31, for [`u7_dot`].
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
    let fifth = u8x16_splat(0x10);
    (
        v128_or(lo, v128_and(h0, fifth)),
        v128_or(hi, v128_and(h1, fifth)),
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
        let lo = u7_dot((v128_and(a, m), v128_and(b, m)), q.add(64 * i));
        let hi = u7_dot((u8x16_shr(a, 4), u8x16_shr(b, 4)), q.add(64 * i + 32));
        acc = i32x4_add(acc, i32x4_mul(lo, i32x4_splat(i32::from(sc[2 * i]))));
        acc = i32x4_add(acc, i32x4_mul(hi, i32x4_splat(i32::from(sc[2 * i + 1]))));
    }
    acc
}

/// Σ_g sc_g·Σ (q − 32)·q_x over a `Q6_K` super-block at `b` (16 groups of 16) and 256
/// activations at `q` with group sums `bsums`, as four i32 lanes. The 6-bit `q` (0‥63) are
/// multiplied as they are ([`u7_dot16`]) and `32·Σ_g sc_g·Σ q_x` taken off after, exactly.
///
/// # Safety
/// `b` must point at a whole block, `q` at 256 readable bytes, `bsums` at 16 sums.
#[inline(always)]
pub unsafe fn q6_k_dot(b: *const u8, q: *const i8, bsums: *const i16) -> v128 {
    let mut acc = i32x4_splat(0);
    let (m4, m2) = (u8x16_splat(0x0F), u8x16_splat(0x30));
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
                let sc = i16x8_splat(i16::from(*(b.add(192 + e / 16) as *const i8)));
                // Pair sums (≤ 2·63·127) times an i8 scale, summed in pairs, fit an i32.
                acc = i32x4_add(acc, i32x4_dot_i16x8(u7_dot16(v, q.add(e)), sc));
            }
        }
    }
    let scales = v128_load(b.add(192) as *const v128);
    let sums = i32x4_add(
        i32x4_dot_i16x8(
            v128_load(bsums as *const v128),
            i16x8_extend_low_i8x16(scales),
        ),
        i32x4_dot_i16x8(
            v128_load(bsums.add(8) as *const v128),
            i16x8_extend_high_i8x16(scales),
        ),
    );
    i32x4_sub(acc, i32x4_shl(sums, 5))
}

/// Sums of pairs of the products of 16 non-negative weights (0‥63) and 16 activations at `q`,
/// as eight i16 lanes (|·| ≤ 2·63·127): one relaxed-SIMD dot where the build has it (the weights
/// are 7-bit values, so the engine cannot change the result).
///
/// # Safety
/// `q` must point at 16 readable bytes.
#[inline(always)]
unsafe fn u7_dot16(v: v128, q: *const i8) -> v128 {
    let y = v128_load(q as *const v128);
    #[cfg(target_feature = "relaxed-simd")]
    return i16x8_relaxed_dot_i8x16_i7x16(y, v);
    #[cfg(not(target_feature = "relaxed-simd"))]
    // Lanes pair e with e + 8 instead: only the total is used.
    i16x8_add(i16x8_extmul_low_i8x16(v, y), i16x8_extmul_high_i8x16(v, y))
}

// ---- Plain bytes: Q8_0 (signed), A8 (unsigned) ----

/// Whether [`byte_dot`] reads the sign-split activations ([`Q8Rows::split`]) rather than
/// `qs`: with relaxed SIMD.
///
/// [`Q8Rows::split`]: crate::kernels::Q8Rows::split
pub const BYTES_SPLIT: bool = cfg!(target_feature = "relaxed-simd");

/// A block's 32 weight bytes at `w` — signed when `SIGNED`, else unsigned — widened to i16 in
/// four vectors of 8, for [`byte_dot`].
///
/// # Safety
/// `w` must point at 32 readable bytes.
#[cfg(not(target_feature = "relaxed-simd"))]
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
#[cfg(not(target_feature = "relaxed-simd"))]
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

/// A block's 32 weight bytes at `w` as signed bytes (unsigned ones less 128: the tile takes
/// `128·Σq_x` back), first 16 and rest, for [`byte_dot`].
///
/// # Safety
/// `w` must point at 32 readable bytes.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub unsafe fn byte_unpack<const SIGNED: bool>(w: *const u8) -> (v128, v128) {
    let (a, b) = (
        v128_load(w as *const v128),
        v128_load(w.add(16) as *const v128),
    );
    if SIGNED {
        (a, b)
    } else {
        let flip = u8x16_splat(0x80);
        (v128_xor(a, flip), v128_xor(b, flip))
    }
}

/// Products of 32 signed weight bytes ([`byte_unpack`], any i8) and one block of sign-split
/// activations at `q` (32 values `max(q_x, 0)`, then 32 `max(−q_x, 0)`), as four i32 lanes:
/// `Σ w·q_x = Σ w·max(q_x, 0) − Σ w·max(−q_x, 0)`. The split values are relaxed SIMD's 7-bit
/// operand (0‥127) and the pair sums (≥ 2·(−128)·127) fit an i16, so no engine can change the
/// result, −128 weights included.
///
/// # Safety
/// `q` must point at 64 readable bytes.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
pub unsafe fn byte_dot((a, b): (v128, v128), q: *const i8) -> v128 {
    let p0 = v128_load(q as *const v128);
    let p1 = v128_load(q.add(16) as *const v128);
    let n0 = v128_load(q.add(32) as *const v128);
    let n1 = v128_load(q.add(48) as *const v128);
    let pos = i32x4_relaxed_dot_i8x16_i7x16_add(
        b,
        p1,
        i32x4_relaxed_dot_i8x16_i7x16_add(a, p0, i32x4_splat(0)),
    );
    let neg = i32x4_relaxed_dot_i8x16_i7x16_add(
        b,
        n1,
        i32x4_relaxed_dot_i8x16_i7x16_add(a, n0, i32x4_splat(0)),
    );
    i32x4_sub(pos, neg)
}

// ---- Attention's f32 dot products ----

/// Attention's `dot` of `a` with each of four rows `b` over `chunks` chunks of eight, before
/// the tail: eight running sums (lane `l` takes elements `l`, `l + 8`, …; a multiply then an
/// add), then `((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))`, the portable loop's order,
/// for the four rows at once.
///
/// # Safety
/// `a` and every `b[t]` must point at `8 · chunks` readable f32s.
#[inline(always)]
pub unsafe fn dot8x4(a: *const f32, b: [*const f32; 4], chunks: usize) -> [f32; 4] {
    let mut acc = [[f32x4_splat(0.0); 2]; 4];
    for c in 0..chunks {
        let x = [
            v128_load(a.add(8 * c) as *const v128),
            v128_load(a.add(8 * c + 4) as *const v128),
        ];
        for (acc, b) in acc.iter_mut().zip(b) {
            for h in 0..2 {
                let y = v128_load(b.add(8 * c + 4 * h) as *const v128);
                acc[h] = f32x4_add(acc[h], f32x4_mul(x[h], y));
            }
        }
    }
    // Adjacent lanes of two vectors added: [x0+x1, x2+x3, y0+y1, y2+y3].
    let pairs = |x: v128, y: v128| {
        f32x4_add(
            i32x4_shuffle::<0, 2, 4, 6>(x, y),
            i32x4_shuffle::<1, 3, 5, 7>(x, y),
        )
    };
    let half = |h: usize| pairs(pairs(acc[0][h], acc[1][h]), pairs(acc[2][h], acc[3][h]));
    lanes(f32x4_add(half(0), half(1)))
}
