//! `Q6_K` weights × `Q8_K` activations.
//!
//! GGML's `Q6_K` super-block: 256 weights in 16 groups of 16, `w = d·sc_g·(q − 32)` with `d`
//! f16, `sc_g` i8 and `q` 6-bit (210 bytes): 128 bytes of low nibbles, 64 bytes of high bit
//! pairs, 16 scales, then `d`. Each half of 128 values reads 64 low-nibble bytes `l` and 32
//! high-bit bytes `h`: value `i` (0‥32) of its four quarters is the low nibble of `l[i]`, of
//! `l[i + 32]`, the high nibble of `l[i]`, of `l[i + 32]`, over bits 0‥1, 2‥3, 4‥5, 6‥7 of `h[i]`.
//! With `Q8_K` activations, `Σ w·x = d·d_x·Σ_g sc_g·Σ (q − 32)·q_x`, an exact integer however
//! a SIMD version groups it (relaxed SIMD multiplies the 6-bit `q` and takes
//! `32·Σ_g sc_g·Σ q_x` off after).

use super::{f16_to_f32, Q8KRows, SUPER};

/// Bytes per `Q6_K` super-block.
pub const BLOCK_BYTES: usize = 210;

/// Byte offset of `d` in a block.
const D: usize = 208;

/// The 256 signed values `q − 32` of a super-block, in element order.
fn values(b: &[u8]) -> [i8; SUPER] {
    std::array::from_fn(|e| {
        let (half, quarter, i) = (e / 128, e % 128 / 32, e % 32);
        let l = b[64 * half + i + 32 * (quarter % 2)];
        let h = b[128 + 32 * half + i];
        let low = (l >> (4 * (quarter / 2))) & 0x0F;
        (low | ((h >> (2 * quarter)) & 3) << 4) as i8 - 32
    })
}

/// Σ_g sc_g·Σ (q − 32)·q_x of one super-block against 256 activations `q`, exactly.
fn isum(b: &[u8], q: &[i8], _bsums: &[i16]) -> (i32, i32) {
    let v = values(b);
    let s = (0..16)
        .map(|g| {
            let dot: i32 = (16 * g..16 * (g + 1))
                .map(|e| i32::from(v[e]) * i32::from(q[e]))
                .sum();
            i32::from(b[192 + g] as i8) * dot
        })
        .sum();
    (s, 0)
}

/// Dot product of one `Q6_K` row (whole super-blocks) with the activation row starting at
/// super-block `xb`: the portable reference.
pub fn dot_scalar(w: &[u8], x: &Q8KRows, xb: usize) -> f32 {
    super::tile::reduce_scalar_k::<BLOCK_BYTES, D, false>(w, x, xb, isum)
}

/// [`dot_scalar`] of four rows `row_bytes` apart in `w` with `A` activation rows (from
/// super-blocks `xb`), with the target's SIMD ([`arch`](super::arch)), bit-identical.
#[cfg(wick_simd)]
pub fn dot_tile<const A: usize>(
    w: &[u8],
    row_bytes: usize,
    x: &Q8KRows,
    xb: [usize; A],
) -> [[f32; 4]; A] {
    use super::arch::q6_k_dot;
    // SAFETY: `q6_k_dot` reads bytes 0‥208 of the block, 256 activations and their 16 sums.
    unsafe {
        super::tile::tile_k::<BLOCK_BYTES, D, false, A, _>(
            w,
            row_bytes,
            x,
            xb,
            |_| (),
            |b, (), q, bsums| (q6_k_dot(b, q, bsums), 0),
        )
    }
}

/// The 256 weights of one super-block, dequantized.
pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = f16_to_f32(b[D], b[D + 1]);
    for (e, (o, v)) in out[..SUPER].iter_mut().zip(values(b)).enumerate() {
        *o = d * f32::from(b[192 + e / 16] as i8) * f32::from(v);
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::WeightType;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn simd_dot_matches_scalar_reference() {
        for (seed, blocks) in [(1, 1), (2, 2), (3, 5), (4, 19), (5, 6)] {
            crate::kernels::tests::assert_tile_is_scalar(WeightType::Q6K, seed, blocks);
        }
    }
}
