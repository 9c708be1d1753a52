//! Causal self-attention on the CPU, on plain f32 rows, with softmax of its own (the rotary
//! embeddings before it are [`super::rope`]'s): the same arithmetic in the same order natively
//! and in wasm.
//!
//! Why not Candle's ops: its matmul (gemm) and reductions take other summation orders on AVX
//! than in wasm, and `exp`/`sin`/`cos` come from different libms. One-ulp differences then flip
//! the 8-bit rounding of some activations and the logits drift apart by up to a whole unit over
//! 30 layers. Here every sum runs in index order, `exp` is [`super::exp`]'s plain arithmetic, on
//! every target. The reference beside it is the
//! obvious Candle formulation.

/// Work (query rows × keys) below which attention stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 10;

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (each shared by `heads / kv_heads` query heads).
    pub kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Each query sees only this many positions, itself included.
    pub window: Option<usize>,
    /// Positions between one key/value head's rows and the next head's: the cache is
    /// head-major (`[kv_heads][stride][head_dim]`), so each head's keys are read in order.
    pub stride: usize,
}

/// `Σ a·b` with eight running sums (lane `l` takes elements `l`, `l + 8`, …) added pairwise at
/// the end: a fixed order, so every target rounds alike (simd128 runs the eight lanes as two
/// vectors; AVX compilers vectorize the portable loop the same way).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .fold(0.0, |s, (x, y)| s + x * y);
    sum8(lanes8(ac, bc)) + tail
}

/// The eight running sums of [`dot`] added pairwise, in one fixed order.
#[inline(always)]
fn sum8(acc: [f32; 8]) -> f32 {
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// The eight running sums of [`dot`].
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn lanes8(ac: std::slice::ChunksExact<f32>, bc: std::slice::ChunksExact<f32>) -> [f32; 8] {
    let mut acc = [0f32; 8];
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc
}

/// The eight running sums of [`dot`], as two simd128 vectors (a multiply, then an add).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn lanes8(ac: std::slice::ChunksExact<f32>, bc: std::slice::ChunksExact<f32>) -> [f32; 8] {
    use std::arch::wasm32::*;
    let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
    for (x, y) in ac.zip(bc) {
        // SAFETY: both chunks hold exactly eight f32s.
        unsafe {
            let (x0, x1) = (
                v128_load(x.as_ptr() as *const v128),
                v128_load(x.as_ptr().add(4) as *const v128),
            );
            let (y0, y1) = (
                v128_load(y.as_ptr() as *const v128),
                v128_load(y.as_ptr().add(4) as *const v128),
            );
            lo = f32x4_add(lo, f32x4_mul(x0, y0));
            hi = f32x4_add(hi, f32x4_mul(x1, y1));
        }
    }
    [
        f32x4_extract_lane::<0>(lo),
        f32x4_extract_lane::<1>(lo),
        f32x4_extract_lane::<2>(lo),
        f32x4_extract_lane::<3>(lo),
        f32x4_extract_lane::<0>(hi),
        f32x4_extract_lane::<1>(hi),
        f32x4_extract_lane::<2>(hi),
        f32x4_extract_lane::<3>(hi),
    ]
}

/// `o += w · v`, element by element (each element's sum runs in one order on every target).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn axpy(o: &mut [f32], w: f32, v: &[f32]) {
    for (o, x) in o.iter_mut().zip(v) {
        *o += w * x;
    }
}

/// `o += w · v` with simd128, four elements at a time (a multiply, then an add).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn axpy(o: &mut [f32], w: f32, v: &[f32]) {
    use std::arch::wasm32::*;
    let n = o.len().min(v.len());
    let wv = f32x4_splat(w);
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: i + 4 ≤ n, the length of both slices.
        unsafe {
            let po = o.as_mut_ptr().add(i) as *mut v128;
            let x = v128_load(v.as_ptr().add(i) as *const v128);
            v128_store(po, f32x4_add(v128_load(po), f32x4_mul(wv, x)));
        }
        i += 4;
    }
    for j in i..n {
        o[j] += w * v[j];
    }
}

/// `o += Σⱼ w[j]·v[j]`, `v` holding `w.len()` rows of `o.len()` values back to back: each element
/// summed in key order as [`axpy`] key by key sums it (the same bits), with 32 (then 16) elements
/// of `o` kept in registers across the keys instead of loaded and stored for each key: enough
/// independent sums that the adds do not wait on each other.
#[inline]
fn axpy_keys(o: &mut [f32], w: &[f32], v: &[f32]) {
    let hd = o.len();
    let mut c = 0;
    while c + 32 <= hd {
        axpy_keys_at::<32>(o, w, v, c);
        c += 32;
    }
    if c + 16 <= hd {
        axpy_keys_at::<16>(o, w, v, c);
        c += 16;
    }
    if c < hd {
        for (j, &wj) in w.iter().enumerate() {
            axpy(&mut o[c..], wj, &v[j * hd + c..(j + 1) * hd]);
        }
    }
}

/// [`axpy_keys`] for the `W` elements of `o` from `c` on, held in registers across the keys.
#[inline(always)]
fn axpy_keys_at<const W: usize>(o: &mut [f32], w: &[f32], v: &[f32], c: usize) {
    let hd = o.len();
    let mut acc: [f32; W] = std::array::from_fn(|l| o[c + l]);
    for (j, &wj) in w.iter().enumerate() {
        let x = &v[j * hd + c..j * hd + c + W];
        for l in 0..W {
            acc[l] += wj * x[l];
        }
    }
    o[c..c + W].copy_from_slice(&acc);
}

/// `s ← softmax(s)`: `exp(s − max)` for every score (vectorized), their sum in key order, then
/// each divided by it.
fn softmax(s: &mut [f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    s.iter_mut().for_each(|v| *v -= max);
    super::exp::exp_in_place(s);
    let sum: f32 = s.iter().sum();
    s.iter_mut().for_each(|v| *v /= sum);
}

/// Query rows per tile of [`attend`]: each block of keys is read once for this many queries.
const QUERY_BLOCK: usize = 16;
/// Keys per block of [`attend`]: a block's keys and values (64 KiB at head_dim 128) stay in L1/L2
/// while the tile's queries use them.
const KEY_BLOCK: usize = 64;

/// Four dot products of `a` with `b[t]`, each summed exactly as [`dot`] sums it (same lanes, same
/// pairwise order, so the same bits), computed side by side so they do not wait on each other.
#[inline(always)]
fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    let n8 = a.len() / 8 * 8;
    let sums = dot8x4(a, b, n8);
    std::array::from_fn(|t| {
        let tail: f32 = a[n8..]
            .iter()
            .zip(&b[t][n8..])
            .fold(0.0, |s, (x, y)| s + x * y);
        sums[t] + tail
    })
}

/// [`dot`] of the first `n8` elements (a multiple of 8) of `a` with each of the four `b`, before
/// the tail: the target's vectors where the build has them (left to the compiler, the four rows'
/// sums were interleaved across vectors with a shuffle per product, 4× slower).
#[inline(always)]
fn dot8x4(a: &[f32], b: [&[f32]; 4], n8: usize) -> [f32; 4] {
    assert!(n8.is_multiple_of(8) && a.len() >= n8 && b.iter().all(|b| b.len() >= n8));
    #[cfg(wick_simd)]
    // SAFETY: `a` and each `b` hold at least `n8` values (checked above).
    return unsafe { super::arch::dot8x4(a.as_ptr(), b.map(|b| b.as_ptr()), n8 / 8) };
    #[allow(unreachable_code)]
    b.map(|b| sum8(lanes8(a[..n8].chunks_exact(8), b[..n8].chunks_exact(8))))
}

/// One block's cached keys or values, `[kv_heads][stride][head_dim]`, as the cache stores them.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// f32, read in place.
    F32(&'a [f32]),
    /// f16 bits, widened to f32 (exactly) a block at a time before use.
    F16(&'a [u16]),
}

impl<'a> Rows<'a> {
    /// Elements `from..to` as f32: the stored slice itself, or its f16 values widened into
    /// `scratch` (which must hold `to - from`).
    #[inline]
    fn f32s<'s>(self, from: usize, to: usize, scratch: &'s mut [f32]) -> &'s [f32]
    where
        'a: 's,
    {
        match self {
            Rows::F32(x) => &x[from..to],
            Rows::F16(x) => {
                let out = &mut scratch[..to - from];
                for (o, &h) in out.iter_mut().zip(&x[from..to]) {
                    *o = f16_bits_to_f32(h);
                }
                out
            }
        }
    }

    /// Scratch [`Rows::f32s`] needs for `n` elements: none for f32.
    fn scratch(self, n: usize) -> Vec<f32> {
        match self {
            Rows::F32(_) => Vec::new(),
            Rows::F16(_) => vec![0f32; n],
        }
    }
}

/// An f16 (its bits) as f32, exactly, with the same integer ops on every target (no F16C here,
/// so the cache's bits widen identically natively and in wasm).
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    super::f16::f16_to_f32_portable(h as u8, (h >> 8) as u8)
}

/// `x` rounded to the nearest f16 (ties to even), saturated at ±65504 so no key or value becomes
/// an infinity: the cache's storage rounding, the same on every target.
#[inline]
pub fn f32_to_f16_bits(x: f32) -> u16 {
    half::f16::from_f32(x.clamp(-65504.0, 65504.0)).to_bits()
}

/// Attention of `q` (`rows` query positions from `pos` on, `heads × head_dim` each) over the
/// cached keys and values (`pos + rows` positions of each head, laid out as [`Shape::stride`]
/// says): returns the `rows × heads × head_dim` outputs.
///
/// Tiled: a task takes [`QUERY_BLOCK`] queries of the query heads that share one key/value head
/// through the keys [`KEY_BLOCK`] at a time, so each block of keys, then of values, is read
/// (and, from an f16 cache, widened) once per tile and key/value head rather than once per query
/// (a decode step at 2k positions was bound by reading the cache three times over, once per
/// query head). Where that would leave threads idle (a decode step's few key/value heads on
/// several threads), a task takes one query head. It keeps the tile's scores (16 × 4k positions
/// is 256 KiB a head) rather than an online softmax, so each query's arithmetic is
/// [`attend_rows`]'s in the same order: the same bits, alone or in a chunk, on every target.
pub fn attend(q: &[f32], k: Rows, v: Rows, pos: usize, shape: Shape) -> Vec<f32> {
    let Shape {
        heads,
        kv_heads,
        head_dim: hd,
        window,
        stride,
    } = shape;
    let rows = q.len() / (heads * hd);
    let group = heads / kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let tiles = rows.div_ceil(QUERY_BLOCK);
    let sequential = rows * (pos + rows) * heads < PARALLEL_MIN;
    let threads = if sequential {
        1
    } else {
        rayon::current_num_threads()
    };
    // Query heads per task: a whole group, unless that gives the threads too few tasks.
    let per_task = if threads == 1 || kv_heads * tiles >= 2 * threads {
        group
    } else {
        1
    };
    // Head-major outputs: a task owns one tile's slice of each of its heads.
    let mut by_head = vec![0f32; q.len()];
    let one = |(task, mut outs): (usize, Vec<&mut [f32]>)| {
        let (h0, tile) = (task / tiles * per_task, task % tiles);
        let r0 = tile * QUERY_BLOCK;
        let n = outs[0].len() / hd;
        let g = h0 / group;
        let first_key = |r: usize| window.map_or(0, |w| (pos + r + 1).saturating_sub(w));
        // Keys `lo..hi` cover the tile; query `r` sees `first_key(r0 + r)..=pos + r0 + r`.
        let (lo, hi) = (first_key(r0), pos + r0 + n);
        let span = |r: usize| (first_key(r0 + r), pos + r0 + r + 1);
        // Scores of head `h0 + e`, query `r`, start at `(e·n + r)·width`; keys `a..b` of it.
        let width = hi - lo;
        let mut scores = vec![0f32; outs.len() * n * width];
        let at = |e: usize, r: usize, a: usize, b: usize| {
            let row = (e * n + r) * width;
            row + a - lo..row + b - lo
        };
        let mut buf = k.scratch(KEY_BLOCK * hd);
        // Blocks start at multiples of KEY_BLOCK, whichever query starts the tile.
        let blocks = || {
            let first = lo - lo % KEY_BLOCK;
            (first..hi)
                .step_by(KEY_BLOCK)
                .map(move |kb| (kb.max(lo), (kb + KEY_BLOCK).min(hi)))
        };
        // Pass 1: scores, a block of keys at a time for every query of the tile.
        for (k0, ke) in blocks() {
            let keys = k.f32s((g * stride + k0) * hd, (g * stride + ke) * hd, &mut buf);
            let key = |j: usize| &keys[(j - k0) * hd..(j - k0 + 1) * hd];
            for e in 0..outs.len() {
                let h = h0 + e;
                for r in 0..n {
                    let (a, b) = (span(r).0.max(k0), span(r).1.min(ke));
                    if a >= b {
                        continue;
                    }
                    let qh = &q[((r0 + r) * heads + h) * hd..((r0 + r) * heads + h + 1) * hd];
                    let s = &mut scores[at(e, r, a, b)];
                    let mut j = 0;
                    while j + 4 <= s.len() {
                        let d = dot4(
                            qh,
                            [key(a + j), key(a + j + 1), key(a + j + 2), key(a + j + 3)],
                        );
                        for t in 0..4 {
                            s[j + t] = d[t] * scale;
                        }
                        j += 4;
                    }
                    for (j, s) in s.iter_mut().enumerate().skip(j) {
                        *s = dot(qh, key(a + j)) * scale;
                    }
                }
            }
        }
        // Softmax per query.
        for e in 0..outs.len() {
            for r in 0..n {
                let (a, b) = span(r);
                softmax(&mut scores[at(e, r, a, b)]);
            }
        }
        // Pass 2: the weighted values, a block at a time, each output summed in key order.
        let mut buf = v.scratch(KEY_BLOCK * hd);
        for (k0, ke) in blocks() {
            let values = v.f32s((g * stride + k0) * hd, (g * stride + ke) * hd, &mut buf);
            for (e, o) in outs.iter_mut().enumerate() {
                for r in 0..n {
                    let (a, b) = (span(r).0.max(k0), span(r).1.min(ke));
                    if a >= b {
                        continue;
                    }
                    axpy_keys(
                        &mut o[r * hd..(r + 1) * hd],
                        &scores[at(e, r, a, b)],
                        &values[(a - k0) * hd..(b - k0) * hd],
                    );
                }
            }
        }
    };
    // Task `i` takes tile `i % tiles` of heads `i / tiles · per_task` on.
    let mut tiles_of: Vec<_> = by_head
        .chunks_mut(rows * hd)
        .map(|head| head.chunks_mut(QUERY_BLOCK * hd))
        .collect();
    let mut tasks: Vec<(usize, Vec<&mut [f32]>)> = Vec::with_capacity(heads / per_task * tiles);
    for (i, heads) in tiles_of.chunks_mut(per_task).enumerate() {
        for t in 0..tiles {
            let outs = heads.iter_mut().filter_map(|h| h.next()).collect();
            tasks.push((i * tiles + t, outs));
        }
    }
    if sequential {
        tasks.into_iter().for_each(one);
    } else {
        super::team::for_each(tasks, one);
    }
    // Back to position-major: `[rows][heads][head_dim]`.
    let mut out = vec![0f32; q.len()];
    for (h, head) in by_head.chunks_exact(rows * hd).enumerate() {
        for (r, x) in head.chunks_exact(hd).enumerate() {
            out[(r * heads + h) * hd..(r * heads + h + 1) * hd].copy_from_slice(x);
        }
    }
    out
}

/// The scalar reference of [`attend`]: one query at a time, all its scores, then softmax, then
/// the weighted sum of values (each key read once per query). Same inputs and outputs.
pub fn attend_rows(q: &[f32], k: &[f32], v: &[f32], pos: usize, shape: Shape) -> Vec<f32> {
    let Shape {
        heads,
        kv_heads,
        head_dim,
        window,
        stride,
    } = shape;
    let rows = q.len() / (heads * head_dim);
    let group = heads / kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut out = vec![0f32; q.len()];
    let one = |(task, o): (usize, &mut [f32])| {
        let (r, h) = (task / heads, task % heads);
        let qp = pos + r;
        let first = window.map_or(0, |w| (qp + 1).saturating_sub(w));
        let qh = &q[task * head_dim..(task + 1) * head_dim];
        let g = h / group;
        let mut scores: Vec<f32> = (first..=qp)
            .map(|j| {
                let kh = &k[(g * stride + j) * head_dim..(g * stride + j + 1) * head_dim];
                dot(qh, kh) * scale
            })
            .collect();
        softmax(&mut scores);
        for (j, s) in (first..=qp).zip(&scores) {
            let vh = &v[(g * stride + j) * head_dim..(g * stride + j + 1) * head_dim];
            axpy(o, *s, vh);
        }
    };
    if rows * (pos + rows) * heads < PARALLEL_MIN {
        out.chunks_exact_mut(head_dim).enumerate().for_each(one);
    } else {
        super::team::for_each(out.chunks_exact_mut(head_dim).enumerate().collect(), one);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::noise;
    use candle_core::{Device, Tensor, D};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The obvious formulation with Candle's ops: softmax(q·kᵀ·scale + mask)·v per head.
    fn reference(q: &[f32], k: &[f32], v: &[f32], pos: usize, s: Shape) -> Vec<f32> {
        let dev = Device::Cpu;
        let (rows, total) = (
            q.len() / (s.heads * s.head_dim),
            pos + q.len() / (s.heads * s.head_dim),
        );
        let q = Tensor::from_slice(q, (rows, s.heads, s.head_dim), &dev).unwrap();
        let k = Tensor::from_slice(k, (total, s.kv_heads, s.head_dim), &dev).unwrap();
        let v = Tensor::from_slice(v, (total, s.kv_heads, s.head_dim), &dev).unwrap();
        let mut out = Vec::new();
        for r in 0..rows {
            for h in 0..s.heads {
                let g = h / (s.heads / s.kv_heads);
                let qh = q.get(r).unwrap().get(h).unwrap().unsqueeze(0).unwrap();
                let kh = k.narrow(1, g, 1).unwrap().squeeze(1).unwrap();
                let vh = v.narrow(1, g, 1).unwrap().squeeze(1).unwrap();
                let scores =
                    (qh.matmul(&kh.t().unwrap()).unwrap() / (s.head_dim as f64).sqrt()).unwrap();
                let mask: Vec<f32> = (0..total)
                    .map(|j| {
                        let qp = pos + r;
                        let out = j > qp || s.window.is_some_and(|w| qp >= j + w);
                        if out {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let scores = scores
                    .broadcast_add(&Tensor::new(mask, &dev).unwrap())
                    .unwrap();
                let p = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
                out.extend(
                    p.matmul(&vh)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap(),
                );
            }
        }
        out
    }

    #[test]
    fn matches_the_candle_formulation() {
        for (rows, pos, window) in [
            (1, 0, None),
            (5, 0, None),
            (1, 9, None),
            (4, 7, Some(3)),
            (6, 0, Some(4)),
        ] {
            let total = pos + rows;
            let s = Shape {
                heads: 4,
                kv_heads: 2,
                head_dim: 8,
                window,
                stride: total + 3,
            };
            let q = noise(1, rows * 32);
            let k = noise(2, total * 16);
            let v = noise(3, total * 16);
            // The cache's head-major layout, with room to spare after each head.
            let head_major = |x: &[f32]| {
                let mut out = vec![f32::NAN; 2 * s.stride * 8];
                for (j, row) in x.chunks_exact(16).enumerate() {
                    for g in 0..2 {
                        out[(g * s.stride + j) * 8..][..8].copy_from_slice(&row[g * 8..][..8]);
                    }
                }
                out
            };
            let (hk, hv) = (head_major(&k), head_major(&v));
            let got = attend(&q, Rows::F32(&hk), Rows::F32(&hv), pos, s);
            let want = reference(&q, &k, &v, pos, s);
            let err = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err < 1e-5, "rows {rows} pos {pos} window {window:?}: {err}");
        }
    }

    #[test]
    fn the_tiled_kernel_matches_the_row_by_row_reference() {
        // Prefill chunks and decode steps, across key-block and query-tile edges, with and
        // without a window, head widths with and without a tail past the eight lanes (56: the
        // weighted values 32, then 16, then one at a time).
        for (rows, pos, window, head_dim) in [
            (1, 0, None, 64),
            (1, 200, None, 64),
            (37, 0, None, 64),
            (40, 130, None, 12),
            (20, 70, None, 56),
            (17, 63, Some(70), 64),
            (16, 300, Some(5), 8),
            (1, 500, Some(100), 64),
        ] {
            let (heads, kv_heads) = (6, 2);
            let total = pos + rows;
            let s = Shape {
                heads,
                kv_heads,
                head_dim,
                window,
                stride: total + 7,
            };
            let q = noise(11, rows * heads * head_dim);
            let k = noise(12, kv_heads * s.stride * head_dim);
            let v = noise(13, kv_heads * s.stride * head_dim);
            // Large scores too, so the softmax's max matters.
            let q: Vec<f32> = q.iter().map(|x| x * 8.0).collect();
            let got = attend(&q, Rows::F32(&k), Rows::F32(&v), pos, s);
            let want = attend_rows(&q, &k, &v, pos, s);
            assert_eq!(got, want, "rows {rows} pos {pos} window {window:?}");
            // The same keys give the same bits whether a query comes alone or in a chunk.
            if rows > 1 {
                let last = &q[(rows - 1) * heads * head_dim..];
                let alone = attend(last, Rows::F32(&k), Rows::F32(&v), pos + rows - 1, s);
                assert_eq!(alone, got[(rows - 1) * heads * head_dim..].to_vec());
            }
        }
    }

    #[test]
    fn an_f16_cache_is_the_f32_kernel_on_its_widened_values() {
        // Chunks and decode steps over several key blocks, with and without a window.
        for (rows, pos, window) in [
            (1, 0, None),
            (1, 300, None),
            (40, 90, None),
            (19, 70, Some(50)),
        ] {
            let (heads, kv_heads, head_dim) = (6, 2, 64);
            let total = pos + rows;
            let s = Shape {
                heads,
                kv_heads,
                head_dim,
                window,
                stride: total + 5,
            };
            let q = noise(21, rows * heads * head_dim);
            let half = |seed| -> Vec<u16> {
                let x = noise(seed, kv_heads * s.stride * head_dim);
                x.iter().map(|&x| f32_to_f16_bits(x * 3.0)).collect()
            };
            let (k16, v16) = (half(22), half(23));
            let wide = |h: &[u16]| -> Vec<f32> { h.iter().map(|&h| f16_bits_to_f32(h)).collect() };
            let (k32, v32) = (wide(&k16), wide(&v16));
            let got = attend(&q, Rows::F16(&k16), Rows::F16(&v16), pos, s);
            let want = attend(&q, Rows::F32(&k32), Rows::F32(&v32), pos, s);
            assert_eq!(got, want, "rows {rows} pos {pos} window {window:?}");
        }
    }

    #[test]
    fn f16_storage_rounds_to_nearest_and_saturates() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            1.0 + 1.0 / 4096.0,
            -3.3,
            1e-6,
            6e-8,
            65504.0,
            1e-3,
        ] {
            let want = half::f16::from_f32(x).to_f32();
            assert_eq!(
                f16_bits_to_f32(f32_to_f16_bits(x)).to_bits(),
                want.to_bits(),
                "{x}"
            );
        }
        assert_eq!(f16_bits_to_f32(f32_to_f16_bits(1e6)), 65504.0);
        assert_eq!(f16_bits_to_f32(f32_to_f16_bits(-1e6)), -65504.0);
    }
}
