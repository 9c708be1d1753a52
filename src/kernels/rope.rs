//! Rotary position embeddings on plain f32 rows: tables of cosines and sines computed in f64 by
//! the `libm` crate (not the platform's libm, which differs between targets) and rounded once,
//! so the rotated queries and keys have the same bits natively and in wasm.

/// Cosine and sine of `position × frequency` for the positions in `positions`, computed in f64
/// and rounded once: `[positions][inv_freq.len()]` each.
pub fn rope_tables(inv_freq: &[f64], positions: std::ops::Range<usize>) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::with_capacity(positions.len() * inv_freq.len());
    let mut sin = Vec::with_capacity(positions.len() * inv_freq.len());
    for p in positions {
        for f in inv_freq {
            let a = p as f64 * f;
            cos.push(libm::cos(a) as f32);
            sin.push(libm::sin(a) as f32);
        }
    }
    (cos, sin)
}

/// Rotates `x` (`rows` positions from `pos` on, each `heads × head_dim` values) in place:
/// adjacent pairs when `interleaved`, else the two halves of each head.
pub fn rope(
    x: &mut [f32],
    pos: usize,
    heads: usize,
    head_dim: usize,
    tables: (&[f32], &[f32]),
    interleaved: bool,
) {
    let half = head_dim / 2;
    let (cos, sin) = tables;
    for (r, row) in x.chunks_exact_mut(heads * head_dim).enumerate() {
        let c = &cos[(pos + r) * half..(pos + r + 1) * half];
        let s = &sin[(pos + r) * half..(pos + r + 1) * half];
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = if interleaved {
                    (2 * i, 2 * i + 1)
                } else {
                    (i, i + half)
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * c[i] - x1 * s[i];
                head[b] = x0 * s[i] + x1 * c[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rope_rotates_pairs_or_halves() {
        let inv = [1.0, 0.5];
        let (cos, sin) = rope_tables(&inv, 0..4);
        let mut a = vec![1.0, 2.0, 3.0, 4.0];
        rope(&mut a, 3, 1, 4, (&cos, &sin), true);
        let (c, s) = ((3.0f64).cos() as f32, (3.0f64).sin() as f32);
        assert!(
            (a[0] - (1.0 * c - 2.0 * s)).abs() < 1e-6 && (a[1] - (1.0 * s + 2.0 * c)).abs() < 1e-6
        );
        let mut b = vec![1.0, 2.0, 3.0, 4.0];
        rope(&mut b, 3, 1, 4, (&cos, &sin), false);
        assert!(
            (b[0] - (1.0 * c - 3.0 * s)).abs() < 1e-6 && (b[2] - (1.0 * s + 3.0 * c)).abs() < 1e-6
        );
    }
}
