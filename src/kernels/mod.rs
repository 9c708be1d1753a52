//! Hand-written quantized matmul kernels, for the types Candle runs with scalar code or with
//! a copy of the weights.
//!
//! Weights stay in GGML's block layout, where the file holds them. Activations are quantized to
//! 8 bits per block of 32 ([`Q8Rows`]); each weight type has a dot product with a scalar
//! reference beside its SIMD versions (simd128 in wasm, AVX2 natively, chosen at compile time
//! like Candle's own) and a test that they agree on random data.

pub mod a8;
pub mod attention;
pub mod q4_1;
pub mod q8_0;

use half::f16;
use rayon::prelude::*;

/// An f16 (little-endian bytes) as f32: exact for every finite value, normal or subnormal, with
/// two integer ops and a multiply (the `half` crate's portable path is several times slower in
/// wasm, where there is no conversion instruction). Infinities and NaNs become large finite
/// numbers, which only a corrupt file holds.
#[inline(always)]
pub fn f16_to_f32_portable(lo: u8, hi: u8) -> f32 {
    let h = u32::from(u16::from_le_bytes([lo, hi]));
    // Shift exponent and mantissa into f32 position, then rebias the exponent by 2^112.
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(magnitude.to_bits() | ((h & 0x8000) << 16))
}

/// An f16 (little-endian bytes) as f32: the F16C instruction natively, else
/// [`f16_to_f32_portable`].
#[inline(always)]
pub fn f16_to_f32(lo: u8, hi: u8) -> f32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "f16c"))]
    return f16::from_le_bytes([lo, hi]).to_f32();
    #[cfg(not(all(target_arch = "x86_64", target_feature = "f16c")))]
    f16_to_f32_portable(lo, hi)
}

/// The lane (0‥3) that product `p` (0‥31) of a block belongs to: simd128's natural layout,
/// which every implementation reproduces.
#[inline(always)]
pub fn lane(p: usize) -> usize {
    (p % 8) / 2
}

/// The float part every dot product here shares, in one order on every target. A block's 32
/// integer products are summed exactly into four lanes ([`lane`]). Block `i` feeds chain
/// `i mod 2` (two chains, so the adds of one block do not wait on the last): lane `l` gets
/// `(d_i·d_x)·P_il`, and the chain's scalar sum gets `m_i·s_x`; [`finish`] adds them up. So the SIMD versions give the scalar reference's result
/// to the bit, natively and in wasm alike (one-ulp differences would otherwise flip the 8-bit
/// rounding of later activations and the logits would drift apart).
///
/// `w` holds whole blocks of `bb` bytes; `dm` reads a block's scale and minimum (0 for symmetric
/// types); `lanes(b, k)` gives block `b`'s four exact lane sums against activation block `k`.
#[inline(always)]
fn reduce_scalar(
    w: &[u8],
    bb: usize,
    x: &Q8Rows,
    xb: usize,
    dm: impl Fn(&[u8]) -> (f32, f32),
    lanes: impl Fn(&[u8], usize) -> [i32; 4],
) -> f32 {
    let (mut a, mut mins) = ([[0f32; 4]; 2], [0f32; 2]);
    for (i, b) in w.chunks_exact(bb).enumerate() {
        let (d, m) = dm(b);
        let scale = d * x.d[xb + i];
        for (acc, p) in a[i % 2].iter_mut().zip(lanes(b, xb + i)) {
            *acc += scale * p as f32;
        }
        mins[i % 2] += m * x.s[xb + i];
    }
    finish(a, mins)
}

/// The end of the canonical order: chains added pairwise per lane, then lanes pairwise, then
/// the minimum terms.
#[inline(always)]
fn finish(a: [[f32; 4]; 2], mins: [f32; 2]) -> f32 {
    let t = |l: usize| a[0][l] + a[1][l];
    ((t(0) + t(1)) + (t(2) + t(3))) + (mins[0] + mins[1])
}

/// Runs `step(chain, chain_mins, i, block)` over the blocks of `w` in the canonical order:
/// block `i` into chain `i mod 2`, each chain starting from `zero` (the SIMD reductions' loop).
#[inline(always)]
fn two_chains<const BB: usize, A: Copy>(
    w: &[u8],
    x: &Q8Rows,
    xb: usize,
    zero: A,
    mut step: impl FnMut(&mut A, &mut f32, usize, &[u8]),
) -> ([A; 2], [f32; 2]) {
    let n = w.len() / BB;
    assert!(
        x.qs.len() >= (xb + n) * BLOCK && x.d.len() >= xb + n && x.s.len() >= xb + n,
        "activation rows shorter than the weights"
    );
    let (mut a, mut mins) = ([zero; 2], [0f32; 2]);
    let mut pairs = w.chunks_exact(2 * BB);
    for (q, two) in (&mut pairs).enumerate() {
        step(&mut a[0], &mut mins[0], 2 * q, &two[..BB]);
        step(&mut a[1], &mut mins[1], 2 * q + 1, &two[BB..]);
    }
    if let Some(b) = pairs.remainder().get(..BB) {
        step(&mut a[0], &mut mins[0], n - 1, b);
    }
    (a, mins)
}

/// [`reduce_scalar`] with simd128: `block(b, q)` gives a block's four lane sums.
///
/// # Safety
/// `block(b, q)` must read only the `bb` bytes at `b` and 32 activations at `q`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn reduce<const BB: usize>(
    w: &[u8],
    x: &Q8Rows,
    xb: usize,
    dm: impl Fn(&[u8]) -> (f32, f32),
    block: impl Fn(*const u8, *const i8) -> std::arch::wasm32::v128,
) -> f32 {
    use std::arch::wasm32::*;
    let step = |acc: &mut v128, mins: &mut f32, i: usize, b: &[u8]| {
        let (d, m) = dm(b);
        let p = block(b.as_ptr(), x.qs.as_ptr().add((xb + i) * BLOCK));
        let scale = f32x4_splat(d * *x.d.get_unchecked(xb + i));
        *acc = f32x4_add(*acc, f32x4_mul(scale, f32x4_convert_i32x4(p)));
        *mins += m * *x.s.get_unchecked(xb + i);
    };
    let ([a0, a1], mins) = two_chains::<BB, _>(w, x, xb, f32x4_splat(0.0), step);
    let lanes = |v: v128| {
        [
            f32x4_extract_lane::<0>(v),
            f32x4_extract_lane::<1>(v),
            f32x4_extract_lane::<2>(v),
            f32x4_extract_lane::<3>(v),
        ]
    };
    finish([lanes(a0), lanes(a1)], mins)
}

/// [`reduce_scalar`] with AVX2: `block(b, q)` gives a block's four lane sums.
///
/// # Safety
/// `block(b, q)` must read only the `bb` bytes at `b` and 32 activations at `q`.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn reduce<const BB: usize>(
    w: &[u8],
    x: &Q8Rows,
    xb: usize,
    dm: impl Fn(&[u8]) -> (f32, f32),
    block: impl Fn(*const u8, *const i8) -> std::arch::x86_64::__m128i,
) -> f32 {
    use std::arch::x86_64::*;
    let step = |acc: &mut __m128, mins: &mut f32, i: usize, b: &[u8]| {
        let (d, m) = dm(b);
        let p = block(b.as_ptr(), x.qs.as_ptr().add((xb + i) * BLOCK));
        let scale = _mm_set1_ps(d * *x.d.get_unchecked(xb + i));
        // A multiply then an add, not an FMA: the scalar reference's rounding.
        *acc = _mm_add_ps(*acc, _mm_mul_ps(scale, _mm_cvtepi32_ps(p)));
        *mins += m * *x.s.get_unchecked(xb + i);
    };
    let ([a0, a1], mins) = two_chains::<BB, _>(w, x, xb, _mm_setzero_ps(), step);
    let lanes = |v: __m128| {
        let mut a = [0f32; 4];
        _mm_storeu_ps(a.as_mut_ptr(), v);
        a
    };
    finish([lanes(a0), lanes(a1)], mins)
}

/// A block's four lane sums ([`lane`]) of 32 weight bytes at `w` — signed when `SIGNED`, else
/// unsigned — times 32 activations at `q`, with simd128: the bytes widen to 16 bits, so every
/// product and pair sum is exact.
///
/// # Safety
/// `w` and `q` must each point at 32 readable bytes.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn byte_lanes<const SIGNED: bool>(w: *const u8, q: *const i8) -> std::arch::wasm32::v128 {
    use std::arch::wasm32::*;
    let mut p = i32x4_splat(0);
    for h in 0..2 {
        let a = v128_load(w.add(16 * h) as *const v128);
        let c = v128_load(q.add(16 * h) as *const v128);
        let (lo, hi) = if SIGNED {
            (i16x8_extend_low_i8x16(a), i16x8_extend_high_i8x16(a))
        } else {
            (u16x8_extend_low_u8x16(a), u16x8_extend_high_u8x16(a))
        };
        p = i32x4_add(p, i32x4_dot_i16x8(lo, i16x8_extend_low_i8x16(c)));
        p = i32x4_add(p, i32x4_dot_i16x8(hi, i16x8_extend_high_i8x16(c)));
    }
    p
}

/// [`byte_lanes`] with AVX2.
///
/// # Safety
/// `w` and `q` must each point at 32 readable bytes.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn byte_lanes<const SIGNED: bool>(w: *const u8, q: *const i8) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    let half = |h: usize| {
        let raw = _mm_loadu_si128(w.add(16 * h) as *const __m128i);
        let a = if SIGNED {
            _mm256_cvtepi8_epi16(raw)
        } else {
            _mm256_cvtepu8_epi16(raw)
        };
        let c = _mm256_cvtepi8_epi16(_mm_loadu_si128(q.add(16 * h) as *const __m128i));
        _mm256_madd_epi16(a, c)
    };
    fold_pairs(half(0), half(1))
}

/// Four lane sums of 32 products given as two vectors of 8 i32 pair sums, pair `k` of the first
/// holding positions `2k, 2k+1` and of the second `16 + 2k, 16 + 2k + 1` (AVX2): lane `l` gets
/// pairs `l` and `l + 4` of both.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn fold_pairs(
    p0: std::arch::x86_64::__m256i,
    p1: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    let s = _mm256_add_epi32(p0, p1);
    _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1))
}

/// Elements per block, for every type here.
pub const BLOCK: usize = 32;

/// The weight types these kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    /// 4-bit with a scale and a minimum per block.
    Q4_1,
    /// 8-bit with a scale per block.
    Q8_0,
    /// 8-bit unsigned with a scale and a minimum per block (MLX's affine 8-bit, see [`a8`]).
    A8,
}

impl WeightType {
    /// Bytes per block of 32 weights.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => q4_1::BLOCK_BYTES,
            Self::Q8_0 => q8_0::BLOCK_BYTES,
            Self::A8 => a8::BLOCK_BYTES,
        }
    }

    /// Dot product of a weight row with the activation row whose blocks start at block `xb`.
    #[inline]
    fn dot(self, w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
        match self {
            Self::Q4_1 => q4_1::dot(w, x, xb),
            Self::Q8_0 => q8_0::dot(w, x, xb),
            Self::A8 => a8::dot(w, x, xb),
        }
    }

    /// [`WeightType::dot`] with the scalar reference kernels.
    fn dot_scalar(self, w: &[u8], x: &Q8Rows, xb: usize) -> f32 {
        match self {
            Self::Q4_1 => q4_1::dot_scalar(w, x, xb),
            Self::Q8_0 => q8_0::dot_scalar(w, x, xb),
            Self::A8 => a8::dot_scalar(w, x, xb),
        }
    }

    /// Dequantizes a whole row (`row.len()` a multiple of the block size in bytes).
    pub fn dequantize_row(self, row: &[u8], out: &mut [f32]) {
        let bb = self.block_bytes();
        for (b, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(BLOCK)) {
            match self {
                Self::Q4_1 => q4_1::dequantize_block(b, o),
                Self::Q8_0 => q8_0::dequantize_block(b, o),
                Self::A8 => a8::dequantize_block(b, o),
            }
        }
    }
}

/// Activations of one or more rows, quantized to 8 bits per block of 32.
#[derive(Debug, Clone, Default)]
pub struct Q8Rows {
    /// Scale of each block.
    pub d: Vec<f32>,
    /// `d · Σ q` of each block.
    pub s: Vec<f32>,
    /// `Σ q` of each block, exact.
    pub qsum: Vec<i32>,
    /// The quantized values, 32 per block.
    pub qs: Vec<i8>,
}

impl Q8Rows {
    /// Quantizes `x` (rows of a multiple of 32 values each, back to back).
    pub fn quantize(x: &[f32]) -> Self {
        let blocks = x.len() / BLOCK;
        let mut out = Self {
            d: Vec::with_capacity(blocks),
            s: Vec::with_capacity(blocks),
            qsum: Vec::with_capacity(blocks),
            qs: vec![0; blocks * BLOCK],
        };
        for (xb, qb) in x.chunks_exact(BLOCK).zip(out.qs.chunks_exact_mut(BLOCK)) {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in qb.iter_mut().zip(xb) {
                *q = (v * id).round() as i8;
                sum += i32::from(*q);
            }
            // Rounded through f16 as GGML's Q8_0/Q8_1 store them, to stay close to llama.cpp.
            out.d.push(f16::from_f32(d).to_f32());
            out.s.push(f16::from_f32(d * sum as f32).to_f32());
            out.qsum.push(sum);
        }
        out
    }
}

/// Output rows computed per parallel task: enough work to amortize scheduling.
const ROWS_PER_TASK: usize = 16;

/// `y = x · Wᵀ` for `x` of `m` rows × `k` and `W` (`n` rows × `k` of type `ty`): returns `m` × `n`.
///
/// Each weight row is read once for all `m` activation rows, so prefill costs far less per token
/// than decode. Rows are split across rayon's pool (Web Workers in the threaded wasm build).
pub fn matmul(ty: WeightType, w: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    matmul_many(&[(ty, w, n)], k, x, m)
        .pop()
        .unwrap_or_default()
}

/// Several matmuls of the same activations (q, k and v; gate and up): the activations are
/// quantized once and all the weights' rows split across the pool in one go, so the pool is
/// woken once instead of once per matrix (what a decode step pays most for with threads).
pub fn matmul_many(
    parts: &[(WeightType, &[u8], usize)],
    k: usize,
    x: &[f32],
    m: usize,
) -> Vec<Vec<f32>> {
    let kb = k / BLOCK;
    debug_assert_eq!(x.len(), m * k);
    let xq = Q8Rows::quantize(x);
    // Computed transposed (n × m) so each task writes one contiguous slice.
    let mut outs: Vec<Vec<f32>> = parts.iter().map(|&(_, _, n)| vec![0f32; n * m]).collect();
    let mut tasks: Vec<(WeightType, &[u8], &mut [f32])> = Vec::new();
    for (&(ty, w, n), out) in parts.iter().zip(outs.iter_mut()) {
        let row_bytes = kb * ty.block_bytes();
        debug_assert_eq!(w.len(), n * row_bytes);
        for (rows, o) in w
            .chunks(ROWS_PER_TASK * row_bytes)
            .zip(out.chunks_mut(ROWS_PER_TASK * m))
        {
            tasks.push((ty, rows, o));
        }
    }
    tasks.into_par_iter().for_each(|(ty, rows, out)| {
        let row_bytes = kb * ty.block_bytes();
        for (o, row) in out.chunks_exact_mut(m).zip(rows.chunks_exact(row_bytes)) {
            for (i, v) in o.iter_mut().enumerate() {
                *v = ty.dot(row, &xq, i * kb);
            }
        }
    });
    if m == 1 {
        return outs;
    }
    outs.into_iter()
        .zip(parts)
        .map(|(yt, &(_, _, n))| {
            let mut y = vec![0f32; m * n];
            for (j, col) in yt.chunks_exact(m).enumerate() {
                for (i, &v) in col.iter().enumerate() {
                    y[i * n + j] = v;
                }
            }
            y
        })
        .collect()
}

/// `y = x · Wᵀ` the slow, obvious way, with the scalar reference kernels (tests).
pub fn matmul_reference(
    ty: WeightType,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
) -> Vec<f32> {
    let xq = Q8Rows::quantize(x);
    let row_bytes = k / BLOCK * ty.block_bytes();
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] =
                ty.dot_scalar(&w[j * row_bytes..(j + 1) * row_bytes], &xq, i * k / BLOCK);
        }
    }
    y
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A small deterministic generator (tests must not change with a crate version).
    pub fn noise(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// Random blocks of `ty`: random f16 scales (and minimums) and random quantized bytes.
    pub fn random_blocks(ty: WeightType, seed: u64, blocks: usize) -> Vec<u8> {
        let v = noise(seed, blocks * 3);
        let mut out = Vec::with_capacity(blocks * ty.block_bytes());
        for b in 0..blocks {
            out.extend_from_slice(&f16::from_f32(v[3 * b] * 0.1).to_le_bytes());
            let payload = match ty {
                WeightType::Q4_1 => {
                    out.extend_from_slice(&f16::from_f32(v[3 * b + 1]).to_le_bytes());
                    16
                }
                WeightType::Q8_0 => 32,
                WeightType::A8 => {
                    out.extend_from_slice(&f16::from_f32(v[3 * b + 1]).to_le_bytes());
                    32
                }
            };
            let mut s = (v[3 * b + 2].to_bits() as u64) | 1;
            for _ in 0..payload {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                out.push((s >> 56) as u8);
            }
        }
        out
    }

    #[test]
    fn f16_conversion_is_exact_for_finite_values() {
        for h in 0u16..=u16::MAX {
            let want = f16::from_bits(h);
            if !want.is_finite() {
                continue;
            }
            let [lo, hi] = h.to_le_bytes();
            for got in [f16_to_f32(lo, hi), f16_to_f32_portable(lo, hi)] {
                assert_eq!(got.to_bits(), want.to_f32().to_bits(), "{h:#06x}");
            }
        }
    }

    pub fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-4 * (1.0 + b.abs())
    }

    #[test]
    fn batched_matmul_matches_reference() {
        let (n, k) = (37, 96);
        for ty in [WeightType::Q4_1, WeightType::Q8_0, WeightType::A8] {
            let w = random_blocks(ty, 7, n * k / BLOCK);
            for m in [1, 2, 5] {
                let x = noise(m as u64, m * k);
                let got = matmul(ty, &w, n, k, &x, m);
                let want = matmul_reference(ty, &w, n, k, &x, m);
                for (g, r) in got.iter().zip(&want) {
                    assert!(close(*g, *r), "{ty:?} m={m}: {g} vs {r}");
                }
            }
        }
    }
}
