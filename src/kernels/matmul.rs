//! `y = x · Wᵀ` over quantized weight rows: activations quantized once, rows split into tasks
//! for the [`team`](super::team), four weight rows (and up to eight activation rows) per tile.

use super::{team, Quantized, WeightType};

/// Output rows computed per parallel task, at least: enough work to amortize scheduling.
const ROWS_PER_TASK: usize = 16;

/// Activation rows per tile of the prompt's matmuls: each weight block is unpacked once for all
/// of them.
const WIDE: usize = 8;

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
    debug_assert_eq!(x.len(), m * k);
    let xq = Quantized::new(
        x,
        parts.iter().any(|p| !p.0.is_k()),
        parts.iter().any(|p| p.0.is_k()),
    );
    let mut outs: Vec<Vec<f32>> = parts.iter().map(|&(_, _, n)| vec![0f32; m * n]).collect();
    let total: usize = parts.iter().map(|p| p.2).sum();
    // A multiple of 4, so only a matrix's last task can have rows left over from the
    // four-row tiles.
    let per_task = total
        .div_ceil(TASKS_PER_MATMUL)
        .next_multiple_of(4)
        .max(ROWS_PER_TASK);
    // Each task owns the output columns of its weight rows, in every output row: written in
    // place (row-major), not computed transposed and copied back (a strided copy of every output,
    // ~12% of a prefill natively).
    let mut tasks: Vec<(WeightType, &[u8], Columns)> = Vec::new();
    for (&(ty, w, n), out) in parts.iter().zip(outs.iter_mut()) {
        let row_bytes = ty.row_bytes(k);
        debug_assert_eq!(w.len(), n * row_bytes);
        for (t, rows) in w.chunks(per_task * row_bytes).enumerate() {
            let cols = Columns {
                out: out.as_mut_ptr(),
                m,
                n,
                first: t * per_task,
                len: rows.len() / row_bytes,
            };
            tasks.push((ty, rows, cols));
        }
    }
    team::for_each(tasks, |(ty, rows, cols)| {
        let (row_bytes, kb) = (ty.row_bytes(k), k / ty.block_len());
        // Tiles of four weight rows × eight activation rows (each weight block is unpacked once
        // for the eight), then four, then one activation row at a time.
        let mut quads = rows.chunks_exact(4 * row_bytes);
        for (q, w4) in (&mut quads).enumerate() {
            let put = |i: usize, y: &[[f32; 4]]| {
                for (a, y) in y.iter().enumerate() {
                    cols.put(i + a, 4 * q, y);
                }
            };
            let mut i = 0;
            while i + WIDE <= m {
                let xb = std::array::from_fn::<_, WIDE, _>(|a| (i + a) * kb);
                put(i, &ty.dot_tile(w4, row_bytes, &xq, xb));
                i += WIDE;
            }
            if i + 4 <= m {
                let xb = std::array::from_fn::<_, 4, _>(|a| (i + a) * kb);
                put(i, &ty.dot_tile(w4, row_bytes, &xq, xb));
                i += 4;
            }
            for i in i..m {
                put(i, &ty.dot_tile(w4, row_bytes, &xq, [i * kb]));
            }
        }
        let done = rows.len() / row_bytes / 4 * 4;
        for (r, row) in quads.remainder().chunks_exact(row_bytes).enumerate() {
            for i in 0..m {
                cols.put(i, done + r, &[ty.dot_scalar(row, &xq, i * kb)]);
            }
        }
    });
    outs
}

/// The output columns `first..first + len` of an `m × n` row-major matrix: one task's share,
/// which no other task writes.
#[derive(Clone, Copy)]
struct Columns {
    out: *mut f32,
    m: usize,
    n: usize,
    first: usize,
    len: usize,
}

// SAFETY: tasks hold disjoint column ranges of matrices that outlive the parallel loop.
unsafe impl Send for Columns {}
unsafe impl Sync for Columns {}

impl Columns {
    /// Writes `values` at output row `i`, columns `first + c` on.
    #[inline(always)]
    fn put(&self, i: usize, c: usize, values: &[f32]) {
        assert!(i < self.m && c + values.len() <= self.len);
        // SAFETY: in bounds of the matrix (row `i` < m, a column below `first + len` ≤ n), and
        // only this task writes these columns.
        unsafe {
            let at = self.out.add(i * self.n + self.first + c);
            std::ptr::copy_nonoverlapping(values.as_ptr(), at, values.len());
        }
    }
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
    let xq = Quantized::new(x, !ty.is_k(), ty.is_k());
    let (row_bytes, kb) = (ty.row_bytes(k), k / ty.block_len());
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] = ty.dot_scalar(&w[j * row_bytes..(j + 1) * row_bytes], &xq, i * kb);
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{noise, random_blocks};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn batched_matmul_matches_reference() {
        for ty in [
            WeightType::Q4_1,
            WeightType::Q5_0,
            WeightType::Q8_0,
            WeightType::A8,
            WeightType::Q4K,
            WeightType::Q6K,
        ] {
            let (n, k) = (37, if ty.is_k() { 512 } else { 96 });
            let w = random_blocks(ty, 7, n * k / ty.block_len());
            for m in [1, 2, 5, 13, 40] {
                let x = noise(m as u64, m * k);
                let got = matmul(ty, &w, n, k, &x, m);
                let want = matmul_reference(ty, &w, n, k, &x, m);
                // Tiles of eight, four and one activation row, and the rows left over from the
                // four-row tiles, all give the scalar reference's result to the bit.
                for (g, r) in got.iter().zip(&want) {
                    assert_eq!(g.to_bits(), r.to_bits(), "{ty:?} m={m}: {g} vs {r}");
                }
            }
        }
    }
}
