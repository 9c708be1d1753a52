//! `Q4_K` weights × `Q8_K` activations.
//!
//! GGML's `Q4_K` super-block: 256 weights in 8 sub-blocks of 32, `w = d·sc_j·q − dmin·m_j` with
//! `d`, `dmin` f16, `sc_j`, `m_j` 6-bit and `q` 4-bit (144 bytes): `d`, `dmin`, 12 bytes of
//! packed scales and minimums, then 4 × 32 bytes whose low nibbles are sub-block `2i` and high
//! nibbles sub-block `2i + 1`. With `Q8_K` activations (one f32 scale `d_x` per 256),
//! `Σ w·x = d·d_x·Σ_j sc_j·Σ q·q_x − dmin·d_x·Σ_j m_j·Σ q_x`: two exact integers per super-block.

use super::{f16_to_f32, Q8KRows, SUPER};

/// Bytes per `Q4_K` super-block.
pub const BLOCK_BYTES: usize = 144;

/// The eight 6-bit scales and eight 6-bit minimums packed in `p` (bytes 4‥16 of a block):
/// sub-blocks 0‥3 have theirs in the low 6 bits of bytes 0‥3 (scales) and 4‥7 (minimums);
/// sub-blocks 4‥7 take the low (scale) and high (minimum) nibble of bytes 8‥11, with their top
/// two bits in the top bits of bytes 0‥3 (scales) and 4‥7 (minimums).
#[inline(always)]
pub(super) fn scales_mins(p: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = p[j] & 63;
        m[j] = p[j + 4] & 63;
        sc[j + 4] = (p[j + 8] & 0x0F) | ((p[j] >> 6) << 4);
        m[j + 4] = (p[j + 8] >> 4) | ((p[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// Σ_j sc_j·Σ q·q_x and Σ_j m_j·Σ q_x of one super-block against 256 activations `q` with
/// group sums `bsums`, exactly.
fn isum(b: &[u8], q: &[i8], bsums: &[i16]) -> (i32, i32) {
    let (sc, m) = scales_mins(&b[4..16]);
    let (mut s, mut mins) = (0i32, 0i32);
    for j in 0..8 {
        let bytes = &b[16 + 32 * (j / 2)..16 + 32 * (j / 2 + 1)];
        let shift = 4 * (j % 2);
        let dot: i32 = bytes
            .iter()
            .zip(&q[32 * j..32 * (j + 1)])
            .map(|(&v, &c)| i32::from((v >> shift) & 0x0F) * i32::from(c))
            .sum();
        s += i32::from(sc[j]) * dot;
        mins += i32::from(m[j]) * (i32::from(bsums[2 * j]) + i32::from(bsums[2 * j + 1]));
    }
    (s, mins)
}

/// Dot product of one `Q4_K` row (whole super-blocks) with the activation row starting at
/// super-block `xb`: the portable reference.
pub fn dot_scalar(w: &[u8], x: &Q8KRows, xb: usize) -> f32 {
    super::tile::reduce_scalar_k::<BLOCK_BYTES, 0, true>(w, x, xb, isum)
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
    use super::arch::q4_k_dot;
    // SAFETY: the scales are bytes 4‥16 of the block; `q4_k_dot` reads its 128 bytes at 16‥144
    // and 256 activations.
    unsafe {
        super::tile::tile_k::<BLOCK_BYTES, 0, true, A, _>(
            w,
            row_bytes,
            x,
            xb,
            |b| scales_mins(std::slice::from_raw_parts(b.add(4), 12)),
            |b, (sc, m), q, bsums| {
                let mut mins = 0i32;
                for (j, &mj) in m.iter().enumerate() {
                    let g = i32::from(*bsums.add(2 * j)) + i32::from(*bsums.add(2 * j + 1));
                    mins += i32::from(mj) * g;
                }
                (q4_k_dot(b.add(16), &sc, q), mins)
            },
        )
    }
}

/// The 256 weights of one super-block, dequantized.
pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_to_f32(b[0], b[1]), f16_to_f32(b[2], b[3]));
    let (sc, m) = scales_mins(&b[4..16]);
    for (j, o) in out[..SUPER].chunks_exact_mut(32).enumerate() {
        let (ds, dm) = (d * f32::from(sc[j]), dmin * f32::from(m[j]));
        let bytes = &b[16 + 32 * (j / 2)..16 + 32 * (j / 2 + 1)];
        for (o, &v) in o.iter_mut().zip(bytes) {
            *o = ds * f32::from((v >> (4 * (j % 2))) & 0x0F) - dm;
        }
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
            crate::kernels::tests::assert_tile_is_scalar(WeightType::Q4K, seed, blocks);
        }
    }
}
