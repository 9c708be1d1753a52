//! Activation rows quantized to 8 bits, as the kernels' integer dot products take them: per
//! block of 32 ([`Q8Rows`], for the 32-element weight types) and per super-block of 256
//! ([`Q8KRows`], for the K-quants).

use super::BLOCK;
use half::f16;

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
    /// The quantized values split by sign, 64 per block: `max(q, 0)` of the block's 32, then
    /// `max(−q, 0)`; both fit 7 bits, so relaxed SIMD's dot takes them as its unsigned operand
    /// against signed weights. Filled only in builds whose kernels read it ([`SPLIT`]).
    pub split: Vec<i8>,
}

/// Whether [`Q8Rows::quantize`] fills [`Q8Rows::split`]: the wasm builds with relaxed SIMD,
/// whose byte kernels (`Q8_0`, `A8`) multiply the weights with it.
pub const SPLIT: bool = cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd"));

impl Q8Rows {
    /// Quantizes `x` (rows of a multiple of 32 values each, back to back).
    pub fn quantize(x: &[f32]) -> Self {
        let blocks = x.len() / BLOCK;
        let mut out = Self {
            d: Vec::with_capacity(blocks),
            s: Vec::with_capacity(blocks),
            qsum: Vec::with_capacity(blocks),
            qs: vec![0; blocks * BLOCK],
            split: Vec::new(),
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
        if SPLIT {
            out.split = out.qs.chunks_exact(BLOCK).flat_map(split_block).collect();
        }
        out
    }
}

/// A block's 32 quantized values as [`Q8Rows::split`] holds them (|q| ≤ 127, so `−q` fits).
fn split_block(q: &[i8]) -> [i8; 2 * BLOCK] {
    std::array::from_fn(|e| {
        if e < BLOCK {
            q[e].max(0)
        } else {
            q[e - BLOCK].saturating_neg().max(0)
        }
    })
}

/// Elements per K-quant super-block.
pub const SUPER: usize = 256;

/// Activations of one or more rows, quantized to 8 bits per super-block of 256 with an f32
/// scale, as GGML's `Q8_K` (what llama.cpp multiplies K-quant weights with).
#[derive(Debug, Clone, Default)]
pub struct Q8KRows {
    /// Scale of each super-block.
    pub d: Vec<f32>,
    /// `Σ q` of each group of 16 values, exact (16 per super-block).
    pub bsums: Vec<i16>,
    /// The quantized values, 256 per super-block.
    pub qs: Vec<i8>,
}

impl Q8KRows {
    /// Quantizes `x` (rows of a multiple of 256 values each, back to back). Like GGML, the value
    /// of largest magnitude maps to −127 and the rest round to nearest, ties to even.
    pub fn quantize(x: &[f32]) -> Self {
        let blocks = x.len() / SUPER;
        let mut out = Self {
            d: Vec::with_capacity(blocks),
            bsums: Vec::with_capacity(blocks * SUPER / 16),
            qs: vec![0; blocks * SUPER],
        };
        for (xb, qb) in x.chunks_exact(SUPER).zip(out.qs.chunks_exact_mut(SUPER)) {
            let (mut amax, mut max) = (0f32, 0f32);
            for &v in xb {
                if v.abs() > amax {
                    (amax, max) = (v.abs(), v);
                }
            }
            if amax == 0.0 {
                out.d.push(0.0);
                out.bsums.extend([0; SUPER / 16]);
                continue;
            }
            let iscale = -127.0 / max;
            for (q, &v) in qb.iter_mut().zip(xb) {
                *q = (iscale * v).round_ties_even().min(127.0) as i8;
            }
            out.bsums.extend(
                qb.chunks_exact(16)
                    .map(|g| g.iter().map(|&q| i16::from(q)).sum::<i16>()),
            );
            out.d.push(1.0 / iscale);
        }
        out
    }
}

/// One activation matrix quantized for each kind of kernel that reads it.
#[derive(Debug, Clone, Default)]
pub struct Quantized {
    /// Per block of 32 (`Q4_1`, `Q5_0`, `Q8_0`, `A8`); empty when no such weight reads it.
    pub q8: Q8Rows,
    /// Per super-block of 256 (`Q4_K`, `Q6_K`); empty when no such weight reads it.
    pub q8k: Q8KRows,
}

impl Quantized {
    /// Quantizes `x` for the 32-block kernels when `q8`, and for the K-quant kernels when `q8k`
    /// (rows must then be whole super-blocks).
    pub fn new(x: &[f32], q8: bool, q8k: bool) -> Self {
        Self {
            q8: if q8 {
                Q8Rows::quantize(x)
            } else {
                Q8Rows::default()
            },
            q8k: if q8k {
                Q8KRows::quantize(x)
            } else {
                Q8KRows::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn q8k_maps_the_largest_value_to_127_and_sums_groups() {
        let mut x: Vec<f32> = (0..SUPER).map(|i| (i as f32 - 100.0) / 50.0).collect();
        x[7] = -10.0;
        let q = Q8KRows::quantize(&x);
        assert_eq!(q.qs[7], -127);
        assert_eq!(q.d[0], 1.0 / (-127.0f32 / -10.0));
        for (g, s) in q.bsums.iter().enumerate() {
            let want: i32 = q.qs[16 * g..16 * (g + 1)]
                .iter()
                .map(|&v| i32::from(v))
                .sum();
            assert_eq!(i32::from(*s), want);
        }
        for (v, &qv) in x.iter().zip(&q.qs) {
            assert!((v - q.d[0] * f32::from(qv)).abs() <= q.d[0].abs() * 0.5 + 1e-6);
        }
        let zero = Q8KRows::quantize(&[0.0; SUPER]);
        assert_eq!((zero.d[0], zero.bsums.len()), (0.0, 16));
    }

    #[test]
    fn q8_values_fit_and_split_by_sign() {
        let mut x: Vec<f32> = (0..2 * BLOCK).map(|i| (i as f32 * 0.37).sin()).collect();
        x[5] = -3.0;
        x[40] = 2.0;
        let q = Q8Rows::quantize(&x);
        // −128 never occurs, so −q fits an i8 and the split halves fit 7 bits.
        assert!(q.qs.iter().all(|&v| v >= -127));
        assert_eq!((q.qs[5], q.qs[40]), (-127, 127));
        let split: Vec<i8> = q.qs.chunks_exact(BLOCK).flat_map(split_block).collect();
        for (b, s) in split.chunks_exact(2 * BLOCK).enumerate() {
            for e in 0..BLOCK {
                let (pos, neg) = (s[e], s[BLOCK + e]);
                assert!((0..=127).contains(&pos) && (0..=127).contains(&neg));
                assert_eq!(pos - neg, q.qs[b * BLOCK + e]);
            }
        }
        assert_eq!(q.split, if SPLIT { split } else { Vec::new() });
    }
}
