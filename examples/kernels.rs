//! Wick's quantized matmul kernels against Candle's, per GGML type, on matrices of
//! Qwen2.5-Coder-0.5B's shapes, in one thread (the speed table of `src/kernels`):
//!
//!     cargo run --release --example kernels [-- --runs 9]
//!
//! Each cell is the median time of one `y = x·Wᵀ` over `--runs` timed runs (each run repeats it
//! for at least 50 ms), for one activation row (a decode step: the GB/s is weight bytes read per
//! second) and for 64 rows (a prefill chunk).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use std::time::Instant;
use wick::kernels::{self, noise, WeightType};

/// Median seconds of `f` over `runs` timed runs.
fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut per = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (t0, mut n) = (Instant::now(), 0u32);
        while n == 0 || t0.elapsed().as_secs_f64() < 0.05 {
            f();
            n += 1;
        }
        per.push(t0.elapsed().as_secs_f64() / f64::from(n));
    }
    per.sort_by(f64::total_cmp);
    per[per.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(7usize);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    // (type, tensor it stands for, n, k): the 0.5B's biggest matrix of each type.
    let cases = [
        (GgmlDType::Q5_0, "ffn_up", 4864, 896),
        (GgmlDType::Q8_0, "output head (4864 of its rows)", 4864, 896),
        (GgmlDType::Q4K, "ffn_down", 896, 4864),
        (GgmlDType::Q6K, "ffn_down", 896, 4864),
        (GgmlDType::Q4_1, "(SmolLM2's type)", 4864, 896),
    ];
    println!("one thread, median of {runs} runs; µs per matmul (GB/s of weights for 1 row)\n");
    println!("| type | shape (n × k) | Wick, 1 row | Candle, 1 row | Candle/Wick | Wick, 64 rows | Candle, 64 rows | Candle/Wick |");
    println!("|---|---|---|---|---|---|---|---|");
    let device = Device::Cpu;
    for (dtype, what, n, k) in cases {
        let w = Tensor::from_vec(noise(1, n * k), (n, k), &device)?;
        let q = QTensor::quantize(&w, dtype)?;
        let bytes = q.data()?.to_vec();
        let ty = WeightType::from_ggml(dtype, k).ok_or("a type Wick runs")?;
        let candle = QMatMul::from_qtensor(q)?;
        let mut cells = Vec::new();
        for m in [1usize, 64] {
            let x = noise(2, m * k);
            let xt = Tensor::from_vec(x.clone(), (m, k), &device)?;
            let (ours, theirs) = pool.install(|| {
                let ours = time(runs, || {
                    std::hint::black_box(kernels::matmul(ty, &bytes, n, k, &x, m));
                });
                let theirs = time(runs, || {
                    std::hint::black_box(candle.forward(&xt).map(|_| ()).ok());
                });
                (ours, theirs)
            });
            let gbs = |s: f64| bytes.len() as f64 / s / 1e9;
            let cell = |s: f64| {
                if m == 1 {
                    format!("{:.0} µs ({:.1} GB/s)", s * 1e6, gbs(s))
                } else {
                    format!("{:.0} µs", s * 1e6)
                }
            };
            cells.push(format!(
                "{} | {} | {:.2}×",
                cell(ours),
                cell(theirs),
                theirs / ours
            ));
        }
        println!("| {dtype:?} {what} | {n} × {k} | {} |", cells.join(" | "));
    }
    Ok(())
}
