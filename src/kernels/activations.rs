//! Activation rows quantized to 8 bits, as the kernels' integer dot products take them.

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
