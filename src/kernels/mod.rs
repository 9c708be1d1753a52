//! Hand-written quantized matmul kernels, for the types Candle runs with scalar code or with
//! a copy of the weights.
//!
//! Weights stay in GGML's block layout, where the file holds them. Activations are quantized to
//! 8 bits per block of 32 ([`Q8Rows`]); each weight type has a dot product with a scalar
//! reference beside its SIMD versions (simd128, with relaxed SIMD where built with it, in wasm;
//! AVX2 natively; chosen at compile time like Candle's own) and a test that they agree to the bit
//! on random data. The parallel loops run on [`team`].

pub mod a8;
pub mod attention;
pub mod q4_1;
pub mod q8_0;
pub mod team;

use half::f16;
use std::mem::MaybeUninit;

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

/// The f16 bits of `v` when `v` is exactly a finite f16 value (normal, subnormal or zero), else
/// `None` (infinities and NaNs too): a few integer ops (converting with the `half` crate and
/// back costs several times more in wasm, per scale of every quantized block at load).
#[inline]
pub fn f32_to_f16_exact(v: f32) -> Option<u16> {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127;
    let mant = bits & 0x7f_ffff;
    if bits << 1 == 0 {
        return Some(sign);
    }
    match exp {
        // Normal f16: the low 13 mantissa bits must be zero.
        -14..=15 if mant & 0x1fff == 0 => {
            Some(sign | ((exp + 15) as u16) << 10 | (mant >> 13) as u16)
        }
        // Subnormal f16 (multiples of 2^-24): the implicit bit joins the mantissa.
        -24..=-15 => {
            let full = mant | 0x80_0000;
            let shift = (-1 - exp) as u32;
            (full & ((1 << shift) - 1) == 0).then_some(sign | (full >> shift) as u16)
        }
        _ => None,
    }
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

/// The float part every dot product here shares, in one order on every target. A block's 32
/// integer products are summed exactly (`isum`); then, block by block, `acc += (d_w·d_x)·Σ` and,
/// for types with a minimum, `mins += m_w·s_x`, and the result is `acc + mins`. Integer sums do
/// not depend on how a SIMD version groups the products, so every version (scalar, simd128,
/// relaxed SIMD, AVX2) gives this reference's result to the bit, natively and in wasm alike
/// (one-ulp differences would otherwise flip the 8-bit rounding of later activations and the
/// logits would drift apart).
///
/// `w` holds whole blocks of `BB` bytes, `d` (f16) at bytes 0‥2 and, when `MIN`, `m` at 2‥4;
/// `isum(b, q)` gives block `b`'s exact integer dot with 32 activations `q`.
#[inline(always)]
fn reduce_scalar<const BB: usize, const MIN: bool>(
    w: &[u8],
    x: &Q8Rows,
    xb: usize,
    isum: impl Fn(&[u8], &[i8]) -> i32,
) -> f32 {
    let (mut acc, mut mins) = (0f32, 0f32);
    for (i, b) in w.chunks_exact(BB).enumerate() {
        let q = &x.qs[(xb + i) * BLOCK..(xb + i + 1) * BLOCK];
        acc += (f16_to_f32_portable(b[0], b[1]) * x.d[xb + i]) * isum(b, q) as f32;
        if MIN {
            mins += f16_to_f32_portable(b[2], b[3]) * x.s[xb + i];
        }
    }
    if MIN {
        acc + mins
    } else {
        acc
    }
}

/// Reads the first four bytes of a block as a little-endian word (`d` low, `m` high).
///
/// # Safety
/// `b` must point at four readable bytes.
#[inline(always)]
unsafe fn header(b: *const u8) -> u32 {
    u32::from_le_bytes(std::ptr::read_unaligned(b as *const [u8; 4]))
}

/// The few vector operations the SIMD driver ([`reduce_tile`]) needs, for simd128: `I` holds four
/// i32 lanes, `F` four f32 lanes.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use std::arch::wasm32::*;
    pub type I = v128;
    pub type F = v128;

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
}

/// [`simd`] for AVX2 (SSE-width vectors; the products themselves use 256-bit ones).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod simd {
    use std::arch::x86_64::*;
    pub type I = __m128i;
    pub type F = __m128;

    // SAFETY (every function): the build enables AVX2, so these instructions exist.
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
}

/// Blocks per row whose integer lanes [`reduce_tile`] computes in one sweep.
#[allow(dead_code)] // builds without SIMD kernels
const CHUNK: usize = 16;

/// [`reduce_scalar`] for a tile of four weight rows × `A` activation rows with SIMD: row `r`'s
/// result for activation row `a` is lane `r` of `out[a]`, in the reference's order to the bit.
/// `unpack(b)` reads a weight block once; `dot(u, q)` gives its products with 32 activations as
/// four i32 lanes in any grouping (only their exact sum is used). The rows start at `w` and are
/// `row_bytes` apart, `nb` blocks each; activation row `a` starts at block `xb[a]` of `x`.
///
/// Blocks are taken `CHUNK` at a time: first every row's integer sums, one row after the other
/// (the rows lie back to back, so memory is read in order; stepping the four rows block by block
/// made the hardware prefetcher give up on wide rows, 3× slower), then the float part, whose
/// scales and minimums are converted once for all activation rows.
///
/// # Safety
/// The four rows must hold `nb` whole blocks; `x` must hold blocks `xb[a]‥xb[a] + nb`; `unpack`
/// must read only the block at `b`, and `dot` only 32 activations at `q`.
#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )
))]
#[inline(always)]
unsafe fn reduce_tile<const BB: usize, const MIN: bool, const A: usize, U: Copy>(
    w: *const u8,
    row_bytes: usize,
    nb: usize,
    x: &Q8Rows,
    xb: [usize; A],
    unpack: impl Fn(*const u8) -> U,
    dot: impl Fn(U, *const i8) -> simd::I,
) -> [[f32; 4]; A] {
    use simd::*;
    let (mut acc, mut mins) = ([splat(0.0); A], [splat(0.0); A]);
    let (qs, xd, xs) = (x.qs.as_ptr(), x.d.as_ptr(), x.s.as_ptr());
    let mut sums = [[[MaybeUninit::<I>::uninit(); CHUNK]; 4]; A];
    for from in (0..nb).step_by(CHUNK) {
        let n = CHUNK.min(nb - from);
        for r in 0..4 {
            let b = w.add(r * row_bytes + from * BB);
            for c in 0..n {
                let u = unpack(b.add(c * BB));
                for (a, s) in sums.iter_mut().enumerate() {
                    s[r][c].write(dot(u, qs.add((xb[a] + from + c) * BLOCK)));
                }
            }
        }
        for c in 0..n {
            let b = w.add((from + c) * BB);
            let h = words([
                header(b),
                header(b.add(row_bytes)),
                header(b.add(2 * row_bytes)),
                header(b.add(3 * row_bytes)),
            ]);
            let (d, m) = (f16s(h), f16s(high_halves(h)));
            for a in 0..A {
                let i = xb[a] + from + c;
                let s = &sums[a];
                let p = hsum4(
                    s[0][c].assume_init(),
                    s[1][c].assume_init(),
                    s[2][c].assume_init(),
                    s[3][c].assume_init(),
                );
                acc[a] = add(acc[a], mul(mul(d, splat(*xd.add(i))), to_f32(p)));
                if MIN {
                    mins[a] = add(mins[a], mul(m, splat(*xs.add(i))));
                }
            }
        }
    }
    std::array::from_fn(|a| lanes(if MIN { add(acc[a], mins[a]) } else { acc[a] }))
}

/// A block's 32 weight bytes at `w` — signed when `SIGNED`, else unsigned — widened to i16
/// (two vectors of 16 with AVX2, four of 8 with simd128), for [`byte_dot`].
///
/// # Safety
/// `w` must point at 32 readable bytes.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn byte_unpack<const SIGNED: bool>(w: *const u8) -> [std::arch::wasm32::v128; 4] {
    use std::arch::wasm32::*;
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
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn byte_dot(u: [std::arch::wasm32::v128; 4], q: *const i8) -> std::arch::wasm32::v128 {
    use std::arch::wasm32::*;
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

/// [`byte_unpack`] with AVX2.
///
/// # Safety
/// `w` must point at 32 readable bytes.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn byte_unpack<const SIGNED: bool>(w: *const u8) -> [std::arch::x86_64::__m256i; 2] {
    use std::arch::x86_64::*;
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

/// [`byte_dot`] with AVX2.
///
/// # Safety
/// `q` must point at 32 readable bytes.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn byte_dot(u: [std::arch::x86_64::__m256i; 2], q: *const i8) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    let c = |h: usize| _mm256_cvtepi8_epi16(_mm_loadu_si128(q.add(16 * h) as *const __m128i));
    fold8(_mm256_add_epi32(
        _mm256_madd_epi16(u[0], c(0)),
        _mm256_madd_epi16(u[1], c(1)),
    ))
}

/// Eight i32 lanes folded to four (AVX2): only their total matters.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
unsafe fn fold8(s: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1))
}

/// [`reduce_tile`] for the types whose payload is 32 plain bytes at offset `OFF` of a `BB`-byte
/// block, signed or not (`Q8_0`: signed at 2, no minimum; `A8`: unsigned at 4, with one).
#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )
))]
fn byte_tile<
    const BB: usize,
    const MIN: bool,
    const SIGNED: bool,
    const OFF: usize,
    const A: usize,
>(
    w: &[u8],
    row_bytes: usize,
    x: &Q8Rows,
    xb: [usize; A],
) -> [[f32; 4]; A] {
    const { assert!(OFF + 32 <= BB) };
    // SAFETY: the 32 bytes at OFF lie inside the block; `byte_dot` reads 32 activations.
    unsafe {
        tile::<BB, MIN, A, _>(
            w,
            row_bytes,
            x,
            xb,
            |b| byte_unpack::<SIGNED>(b.add(OFF)),
            |u, q| byte_dot(u, q),
        )
    }
}

/// [`reduce_tile`] over four rows of `w`, after checking that they and the activations are
/// there ([`check_tile`]).
///
/// # Safety
/// `unpack` must read only the `BB`-byte block it is given, and `dot` only 32 activations.
#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )
))]
#[inline(always)]
unsafe fn tile<const BB: usize, const MIN: bool, const A: usize, U: Copy>(
    w: &[u8],
    row_bytes: usize,
    x: &Q8Rows,
    xb: [usize; A],
    unpack: impl Fn(*const u8) -> U,
    dot: impl Fn(U, *const i8) -> simd::I,
) -> [[f32; 4]; A] {
    let nb = check_tile(w, row_bytes, BB, x, &xb);
    reduce_tile::<BB, MIN, A, U>(w.as_ptr(), row_bytes, nb, x, xb, unpack, dot)
}

/// Checks what [`reduce_tile`] reads: four rows of `row_bytes` (whole blocks of `bb` bytes) in
/// `w`, and the activation blocks from each `xb` on. Returns the blocks per row.
#[allow(dead_code)] // builds without SIMD kernels
fn check_tile(w: &[u8], row_bytes: usize, bb: usize, x: &Q8Rows, xb: &[usize]) -> usize {
    let nb = row_bytes / bb;
    let end = xb.iter().max().map_or(0, |&b| b + nb);
    assert!(
        row_bytes.is_multiple_of(bb)
            && w.len() >= 4 * row_bytes
            && x.qs.len() >= end * BLOCK
            && x.d.len() >= end
            && x.s.len() >= end,
        "four weight rows and their activations expected"
    );
    nb
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

    /// Dot products of four weight rows, `row_bytes` apart in `w`, with the `A` activation rows
    /// whose blocks start at blocks `xb`: the SIMD kernels where the build has them.
    #[inline]
    fn dot_tile<const A: usize>(
        self,
        w: &[u8],
        row_bytes: usize,
        x: &Q8Rows,
        xb: [usize; A],
    ) -> [[f32; 4]; A] {
        #[cfg(any(
            all(target_arch = "wasm32", target_feature = "simd128"),
            all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            )
        ))]
        return match self {
            Self::Q4_1 => q4_1::dot_tile(w, row_bytes, x, xb),
            Self::Q8_0 => {
                byte_tile::<{ q8_0::BLOCK_BYTES }, false, true, 2, A>(w, row_bytes, x, xb)
            }
            Self::A8 => byte_tile::<{ a8::BLOCK_BYTES }, true, false, 4, A>(w, row_bytes, x, xb),
        };
        #[allow(unreachable_code)]
        xb.map(|b| {
            std::array::from_fn(|r| self.dot_scalar(&w[r * row_bytes..(r + 1) * row_bytes], x, b))
        })
    }

    /// One row's dot product with the scalar reference kernels.
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

/// Output rows computed per parallel task, at least: enough work to amortize scheduling.
const ROWS_PER_TASK: usize = 16;

/// Tasks one matmul is split into, at most: enough to balance a few threads, few enough that
/// claiming them (a contended atomic each) costs little next to the work.
const TASKS_PER_MATMUL: usize = 16;

/// `y = x · Wᵀ` for `x` of `m` rows × `k` and `W` (`n` rows × `k` of type `ty`): returns `m` × `n`.
///
/// Each weight row is read once for all `m` activation rows, so prefill costs far less per token
/// than decode. Rows are split across the threads ([`team`]; Web Workers in the threaded wasm
/// build).
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
    let total: usize = parts.iter().map(|p| p.2).sum();
    // A multiple of 4, so only a matrix's last task can have rows left over from the
    // four-row tiles.
    let per_task = total
        .div_ceil(TASKS_PER_MATMUL)
        .next_multiple_of(4)
        .max(ROWS_PER_TASK);
    for (&(ty, w, n), out) in parts.iter().zip(outs.iter_mut()) {
        let row_bytes = kb * ty.block_bytes();
        debug_assert_eq!(w.len(), n * row_bytes);
        for (rows, o) in w
            .chunks(per_task * row_bytes)
            .zip(out.chunks_mut(per_task * m))
        {
            tasks.push((ty, rows, o));
        }
    }
    team::for_each(tasks, |(ty, rows, out)| {
        let row_bytes = kb * ty.block_bytes();
        // Tiles of four weight rows × four activation rows (each weight block is unpacked once
        // for the four), then one activation row at a time.
        let mut quads = rows.chunks_exact(4 * row_bytes);
        let mut outs = out.chunks_exact_mut(4 * m);
        for (w4, o4) in (&mut quads).zip(&mut outs) {
            let mut put = |i: usize, y: [f32; 4]| {
                for (r, v) in y.into_iter().enumerate() {
                    o4[r * m + i] = v;
                }
            };
            for i in (0..m - m % 4).step_by(4) {
                let xb = [i * kb, (i + 1) * kb, (i + 2) * kb, (i + 3) * kb];
                for (a, y) in ty.dot_tile(w4, row_bytes, &xq, xb).into_iter().enumerate() {
                    put(i + a, y);
                }
            }
            for i in m - m % 4..m {
                let [y] = ty.dot_tile(w4, row_bytes, &xq, [i * kb]);
                put(i, y);
            }
        }
        let rest = quads.remainder().chunks_exact(row_bytes);
        for (o, row) in outs.into_remainder().chunks_exact_mut(m).zip(rest) {
            for (i, v) in o.iter_mut().enumerate() {
                *v = ty.dot_scalar(row, &xq, i * kb);
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

    /// Checks that [`WeightType::dot_tile`] gives each of four random rows of `blocks` blocks,
    /// with one and with four activation rows, the scalar reference's result to the bit.
    pub fn assert_tile_is_scalar(ty: WeightType, seed: u64, blocks: usize) {
        let row_bytes = blocks * ty.block_bytes();
        let w = random_blocks(ty, seed, 4 * blocks);
        // Five activation rows, used out of order: `xb` must be honoured.
        let x = Q8Rows::quantize(&noise(seed + 100, 5 * blocks * BLOCK));
        let xb = [3 * blocks, blocks, 4 * blocks, 0];
        let tile = ty.dot_tile(&w, row_bytes, &x, xb);
        let [single] = ty.dot_tile(&w, row_bytes, &x, [xb[2]]);
        for (a, got) in tile.iter().chain([&single]).enumerate() {
            let b = if a < 4 { xb[a] } else { xb[2] };
            for (r, g) in got.iter().enumerate() {
                let want = ty.dot_scalar(&w[r * row_bytes..(r + 1) * row_bytes], &x, b);
                assert_eq!(
                    g.to_bits(),
                    want.to_bits(),
                    "{ty:?}, {blocks} blocks, tile row {a}, weight row {r}: simd {g} vs scalar {want}"
                );
            }
        }
    }

    /// One row's dot product through the SIMD tile kernel (the row given four times).
    pub fn simd_dot(ty: WeightType, w: &[u8], x: &Q8Rows) -> f32 {
        let [got] = ty.dot_tile(&w.repeat(4), w.len(), x, [0]);
        assert!(
            got.iter().all(|g| g.to_bits() == got[0].to_bits()),
            "{got:?}"
        );
        got[0]
    }

    #[test]
    fn exact_f16_conversion_agrees_with_the_half_crate() {
        for h in 0u16..=u16::MAX {
            let v = f16::from_bits(h);
            if v.is_finite() {
                assert_eq!(f32_to_f16_exact(v.to_f32()), Some(h), "{h:#06x}");
            }
        }
        for v in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            assert_eq!(f32_to_f16_exact(v), None, "{v}");
        }
        for v in noise(5, 10_000)
            .into_iter()
            .chain([1e-8, 7e4, 1.0 + 1e-7, 3e-5, -6e-8])
        {
            let round_trip = f16::from_f32(v);
            let exact = round_trip.to_f32().to_bits() == v.to_bits();
            assert_eq!(
                f32_to_f16_exact(v),
                exact.then_some(round_trip.to_bits()),
                "{v:e}"
            );
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
