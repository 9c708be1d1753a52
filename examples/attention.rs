//! Wick's attention kernel on SmolLM2-135M's shapes (9 query heads, 3 key/value heads, width
//! 64) at long contexts: the row-by-row reference (`attend_rows`, the kernel before tiling)
//! against the tiled kernel over an f32 cache and over an f16 one, for a 128-token prefill chunk
//! and a decode step after `P` cached positions, on 1 and 2 threads:
//!
//!     cargo run --release --example attention [-- --runs 9]
//!
//! Each cell is the median of `--runs` timed calls; the variants take turns within each run, so
//! a noisy machine slows them alike.

use std::time::Instant;
use wick::kernels::attention::{attend, attend_rows, f32_to_f16_bits, Rows, Shape};
use wick::kernels::{noise, team};

fn median(mut x: Vec<f64>) -> f64 {
    x.sort_by(f64::total_cmp);
    x[x.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(5);
    let (heads, kv_heads, hd) = (9, 3, 64);
    println!("| threads | cached positions | rows | reference ms | tiled f32 ms | tiled f16 ms | reference / tiled f32 | f32 / f16 |");
    println!("|---|---|---|---|---|---|---|---|");
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        for pos in [512, 2048, 4096] {
            for rows in [128, 1] {
                let stride = pos + rows;
                let shape = Shape {
                    heads,
                    kv_heads,
                    head_dim: hd,
                    window: None,
                    stride,
                };
                let q = noise(1, rows * heads * hd);
                let k = noise(2, kv_heads * stride * hd);
                let v = noise(3, kv_heads * stride * hd);
                let half =
                    |x: &[f32]| -> Vec<u16> { x.iter().map(|&x| f32_to_f16_bits(x)).collect() };
                let (k16, v16) = (half(&k), half(&v));
                let variants: [&(dyn Fn() -> Vec<f32> + Sync); 3] = [
                    &|| attend_rows(&q, &k, &v, pos, shape),
                    &|| attend(&q, Rows::F32(&k), Rows::F32(&v), pos, shape),
                    &|| attend(&q, Rows::F16(&k16), Rows::F16(&v16), pos, shape),
                ];
                let mut t = [Vec::new(), Vec::new(), Vec::new()];
                pool.install(|| {
                    team::scope(|| {
                        for _ in 0..runs {
                            for (t, f) in t.iter_mut().zip(&variants) {
                                let t0 = Instant::now();
                                std::hint::black_box(f());
                                t.push(t0.elapsed().as_secs_f64() * 1e3);
                            }
                        }
                    })
                });
                let [a, b, c] = t.map(median);
                println!(
                    "| {threads} | {pos} | {rows} | {a:.2} | {b:.2} | {c:.2} | {:.2}× | {:.2}× |",
                    a / b,
                    b / c
                );
            }
        }
    }
    Ok(())
}
