//! The float part every dot product shares ([`reduce_scalar`], the reference order), and the
//! SIMD driver that computes it for a tile of four weight rows ([`reduce_tile`]), written once
//! over the per-target vector operations of [`arch`](super::arch).

use super::{f16_to_f32_portable, Q8Rows, BLOCK};

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
pub(super) fn reduce_scalar<const BB: usize, const MIN: bool>(
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

/// Checks what [`reduce_tile`] reads: four rows of `row_bytes` (whole blocks of `bb` bytes) in
/// `w`, and the activation blocks from each `xb` on (`qb` bytes each in `acts`). Returns the
/// blocks per row.
#[cfg(wick_simd)]
fn check_tile(
    w: &[u8],
    row_bytes: usize,
    bb: usize,
    x: &Q8Rows,
    acts: &[i8],
    qb: usize,
    xb: &[usize],
) -> usize {
    let nb = row_bytes / bb;
    let end = xb.iter().max().map_or(0, |&b| b + nb);
    assert!(
        row_bytes.is_multiple_of(bb)
            && w.len() >= 4 * row_bytes
            && acts.len() >= end * qb
            && x.d.len() >= end
            && x.s.len() >= end
            && x.qsum.len() >= end,
        "four weight rows and their activations expected"
    );
    nb
}

/// Reads the first four bytes of a block as a little-endian word (`d` low, `m` high).
///
/// # Safety
/// `b` must point at four readable bytes.
#[cfg(wick_simd)]
#[inline(always)]
unsafe fn header(b: *const u8) -> u32 {
    u32::from_le_bytes(std::ptr::read_unaligned(b as *const [u8; 4]))
}

/// Blocks per row whose integer lanes [`reduce_tile`] computes in one sweep.
#[cfg(wick_simd)]
const CHUNK: usize = 16;

/// [`reduce_scalar`] for a tile of four weight rows × `A` activation rows with SIMD: row `r`'s
/// result for activation row `a` is lane `r` of `out[a]`, in the reference's order to the bit.
/// `unpack(b)` reads a weight block once; `dot(u, q)` gives its products with one activation
/// block (`QB` bytes at `q` of `acts`: [`Q8Rows::qs`] or [`Q8Rows::split`]) as four i32 lanes in
/// any grouping (only their exact sum is used), for weights stored `OFF` above their value:
/// `OFF·Σq_x` ([`Q8Rows::qsum`]) is taken off that sum, exactly, before the float part. The rows
/// start at `w` and are `row_bytes` apart, `nb` blocks each; activation row `a` starts at block
/// `xb[a]`.
///
/// Blocks are taken `CHUNK` at a time: first every row's integer sums, one row after the other
/// (the rows lie back to back, so memory is read in order; stepping the four rows block by block
/// made the hardware prefetcher give up on wide rows, 3× slower), then the float part, whose
/// scales and minimums are converted once for all activation rows.
///
/// # Safety
/// The four rows must hold `nb` whole blocks; `x` must hold blocks `xb[a]‥xb[a] + nb`; `unpack`
/// must read only the block at `b`, and `dot` only 32 activations at `q`.
#[cfg(wick_simd)]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn reduce_tile<
    const BB: usize,
    const MIN: bool,
    const QB: usize,
    const OFF: i32,
    const A: usize,
    U: Copy,
>(
    w: *const u8,
    row_bytes: usize,
    nb: usize,
    x: &Q8Rows,
    acts: *const i8,
    xb: [usize; A],
    unpack: impl Fn(*const u8) -> U,
    dot: impl Fn(U, *const i8) -> super::arch::I,
) -> [[f32; 4]; A] {
    use super::arch::*;
    use std::mem::MaybeUninit;
    let (mut acc, mut mins) = ([splat(0.0); A], [splat(0.0); A]);
    let (xd, xs, xsum) = (x.d.as_ptr(), x.s.as_ptr(), x.qsum.as_ptr());
    let mut sums = [[[MaybeUninit::<I>::uninit(); CHUNK]; 4]; A];
    for from in (0..nb).step_by(CHUNK) {
        let n = CHUNK.min(nb - from);
        for r in 0..4 {
            let b = w.add(r * row_bytes + from * BB);
            for c in 0..n {
                let u = unpack(b.add(c * BB));
                for (a, s) in sums.iter_mut().enumerate() {
                    s[r][c].write(dot(u, acts.add((xb[a] + from + c) * QB)));
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
                let mut p = hsum4(
                    s[0][c].assume_init(),
                    s[1][c].assume_init(),
                    s[2][c].assume_init(),
                    s[3][c].assume_init(),
                );
                if OFF != 0 {
                    p = isub(p, isplat(OFF * *xsum.add(i)));
                }
                acc[a] = add(acc[a], mul(mul(d, splat(*xd.add(i))), to_f32(p)));
                if MIN {
                    mins[a] = add(mins[a], mul(m, splat(*xs.add(i))));
                }
            }
        }
    }
    std::array::from_fn(|a| lanes(if MIN { add(acc[a], mins[a]) } else { acc[a] }))
}

/// [`reduce_tile`] over four rows of `w` against the activations' `qs` (32 bytes a block), after
/// checking that they and the activations are there ([`check_tile`]).
///
/// # Safety
/// `unpack` must read only the `BB`-byte block it is given, and `dot` only 32 activations.
#[cfg(wick_simd)]
#[inline(always)]
pub(super) unsafe fn tile<
    const BB: usize,
    const MIN: bool,
    const OFF: i32,
    const A: usize,
    U: Copy,
>(
    w: &[u8],
    row_bytes: usize,
    x: &Q8Rows,
    xb: [usize; A],
    unpack: impl Fn(*const u8) -> U,
    dot: impl Fn(U, *const i8) -> super::arch::I,
) -> [[f32; 4]; A] {
    let nb = check_tile(w, row_bytes, BB, x, &x.qs, BLOCK, &xb);
    reduce_tile::<BB, MIN, BLOCK, OFF, A, U>(
        w.as_ptr(),
        row_bytes,
        nb,
        x,
        x.qs.as_ptr(),
        xb,
        unpack,
        dot,
    )
}

/// [`tile`] for the types whose payload is 32 plain bytes at offset `OFF` of a `BB`-byte block,
/// signed or not (`Q8_0`: signed at 2, no minimum; `A8`: unsigned at 4, with one). Where the
/// target multiplies bytes with the sign-split activations ([`BYTES_SPLIT`](super::arch)), it
/// reads [`Q8Rows::split`], and multiplies unsigned bytes as the signed `q − 128` (`OFF` −128).
#[cfg(wick_simd)]
pub(super) fn byte_tile<
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
    use super::arch::{byte_dot, byte_unpack, BYTES_SPLIT};
    const { assert!(OFF + 32 <= BB) };
    let (acts, qb) = if BYTES_SPLIT {
        (&x.split, 2 * BLOCK)
    } else {
        (&x.qs, BLOCK)
    };
    let nb = check_tile(w, row_bytes, BB, x, acts, qb, &xb);
    // SAFETY: the 32 bytes at OFF lie inside the block; `byte_dot` reads one block of `acts`.
    unsafe {
        let unpack = |b: *const u8| byte_unpack::<SIGNED>(b.add(OFF));
        match (BYTES_SPLIT, SIGNED) {
            (true, false) => reduce_tile::<BB, MIN, { 2 * BLOCK }, -128, A, _>(
                w.as_ptr(),
                row_bytes,
                nb,
                x,
                acts.as_ptr(),
                xb,
                unpack,
                |u, q| byte_dot(u, q),
            ),
            (true, true) => reduce_tile::<BB, MIN, { 2 * BLOCK }, 0, A, _>(
                w.as_ptr(),
                row_bytes,
                nb,
                x,
                acts.as_ptr(),
                xb,
                unpack,
                |u, q| byte_dot(u, q),
            ),
            (false, _) => reduce_tile::<BB, MIN, BLOCK, 0, A, _>(
                w.as_ptr(),
                row_bytes,
                nb,
                x,
                acts.as_ptr(),
                xb,
                unpack,
                |u, q| byte_dot(u, q),
            ),
        }
    }
}

// ---- K-quants: super-blocks of 256 against `Q8_K` activations ----

/// The float part of the K-quant dot products, in one order on every target. Per super-block,
/// `isum(b, q, bsums)` gives two exact integers: `Σ` (every sub-block's products, times its
/// scale) and, for types with minimums, `Σm` (each sub-block's minimum times its activations'
/// sum). Then, super-block by super-block, `acc += (d_w·d_x)·Σ` and, when `MIN`,
/// `mins += (dmin_w·d_x)·Σm`; the result is `acc − mins`. `d` (f16) is at byte `D` of a
/// `BB`-byte block, `dmin` (when `MIN`) at `D + 2`.
#[inline(always)]
pub(super) fn reduce_scalar_k<const BB: usize, const D: usize, const MIN: bool>(
    w: &[u8],
    x: &super::Q8KRows,
    xb: usize,
    isum: impl Fn(&[u8], &[i8], &[i16]) -> (i32, i32),
) -> f32 {
    use super::activations::SUPER;
    let (mut acc, mut mins) = (0f32, 0f32);
    for (i, b) in w.chunks_exact(BB).enumerate() {
        let j = xb + i;
        let (s, m) = isum(
            b,
            &x.qs[j * SUPER..(j + 1) * SUPER],
            &x.bsums[j * 16..(j + 1) * 16],
        );
        let dx = x.d[j];
        acc += (f16_to_f32_portable(b[D], b[D + 1]) * dx) * s as f32;
        if MIN {
            mins += (f16_to_f32_portable(b[D + 2], b[D + 3]) * dx) * m as f32;
        }
    }
    if MIN {
        acc - mins
    } else {
        acc
    }
}

/// Super-blocks per row whose integer lanes [`tile_k`] computes in one sweep.
#[cfg(wick_simd)]
const CHUNK_K: usize = 4;

/// [`reduce_scalar_k`] for a tile of four weight rows × `A` activation rows with SIMD, to the
/// bit (as [`tile`] for the 32-blocks): row `r`'s result for activation row `a` is lane `r` of
/// `out[a]`. `unpack(b)` reads what a super-block's products need once (its scales);
/// `dot(b, u, q, bsums)` gives `Σ` as four i32 lanes in any grouping, and `Σm`.
///
/// # Safety
/// `unpack` and `dot` must read only the `BB`-byte block at `b`, 256 activations at `q` and 16
/// sums at `bsums`.
#[cfg(wick_simd)]
#[inline(always)]
pub(super) unsafe fn tile_k<
    const BB: usize,
    const D: usize,
    const MIN: bool,
    const A: usize,
    U: Copy,
>(
    w: &[u8],
    row_bytes: usize,
    x: &super::Q8KRows,
    xb: [usize; A],
    unpack: impl Fn(*const u8) -> U,
    dot: impl Fn(*const u8, U, *const i8, *const i16) -> (super::arch::I, i32),
) -> [[f32; 4]; A] {
    use super::activations::SUPER;
    use super::arch::*;
    use std::mem::MaybeUninit;
    const { assert!(D + if MIN { 4 } else { 2 } <= BB) };
    let nb = row_bytes / BB;
    let end = xb.iter().max().map_or(0, |&b| b + nb);
    assert!(
        row_bytes.is_multiple_of(BB)
            && w.len() >= 4 * row_bytes
            && x.qs.len() >= end * SUPER
            && x.bsums.len() >= end * 16
            && x.d.len() >= end,
        "four weight rows and their activations expected"
    );
    let (w, qs, bs) = (w.as_ptr(), x.qs.as_ptr(), x.bsums.as_ptr());
    // The f16 at `D` (and the one after it when `MIN`) of four blocks, as a word each.
    let head = |b: *const u8| -> u32 {
        if MIN {
            header(b.add(D))
        } else {
            u32::from(u16::from_le_bytes(std::ptr::read_unaligned(
                b.add(D) as *const [u8; 2]
            )))
        }
    };
    let (mut acc, mut mins) = ([splat(0.0); A], [splat(0.0); A]);
    let mut sums = [[[MaybeUninit::<I>::uninit(); CHUNK_K]; 4]; A];
    let mut msums = [[[0u32; 4]; CHUNK_K]; A];
    for from in (0..nb).step_by(CHUNK_K) {
        let n = CHUNK_K.min(nb - from);
        for r in 0..4 {
            let b = w.add(r * row_bytes + from * BB);
            for c in 0..n {
                let blk = b.add(c * BB);
                let u = unpack(blk);
                for a in 0..A {
                    let j = xb[a] + from + c;
                    let (s, m) = dot(blk, u, qs.add(j * SUPER), bs.add(j * 16));
                    sums[a][r][c].write(s);
                    msums[a][c][r] = m as u32;
                }
            }
        }
        for c in 0..n {
            let b = w.add((from + c) * BB);
            let h = words([
                head(b),
                head(b.add(row_bytes)),
                head(b.add(2 * row_bytes)),
                head(b.add(3 * row_bytes)),
            ]);
            let (d, dmin) = (f16s(h), f16s(high_halves(h)));
            for a in 0..A {
                let dx = splat(*x.d.as_ptr().add(xb[a] + from + c));
                let s = &sums[a];
                let p = hsum4(
                    s[0][c].assume_init(),
                    s[1][c].assume_init(),
                    s[2][c].assume_init(),
                    s[3][c].assume_init(),
                );
                acc[a] = add(acc[a], mul(mul(d, dx), to_f32(p)));
                if MIN {
                    let m = to_f32(words(msums[a][c]));
                    mins[a] = add(mins[a], mul(mul(dmin, dx), m));
                }
            }
        }
    }
    std::array::from_fn(|a| lanes(if MIN { sub(acc[a], mins[a]) } else { acc[a] }))
}
