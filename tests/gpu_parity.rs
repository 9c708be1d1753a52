//! CPU vs CUDA parity: the same token ids through the same weights on both devices must give the
//! same last-position logits, up to float noise. Built only with `--features cuda`; each test is
//! skipped (passes with a message) where no CUDA device can be opened.
//!
//! Built here and run on a GPU machine by `scripts/gpu-parity.sh`. The real-model test reads
//! `models/SmolLM2-135M-Instruct.Q4_1.gguf`, or the file named by `WICK_GPU_MODEL`.
#![cfg(feature = "cuda")]

mod common;

use candle_core::Device;
use wick::quantize::{to_mlx, Options};
use wick::weights::safetensors::SafeTensors;
use wick::weights::{Gguf, HfModel};
use wick::{Config, Model, Tokenizer};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Relative error at most this far (max |cpu - cuda| / max |cpu|).
const TOLERANCE: f32 = 1e-2;
/// Relative to the working directory: the repository root under cargo and under the script.
const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The first CUDA device, or `None` (after saying so) where there is none.
fn cuda() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            // The first line only: candle appends a backtrace.
            let e = e.to_string();
            println!(
                "no CUDA device: skipped ({})",
                e.lines().next().unwrap_or("")
            );
            None
        }
    }
}

/// Last-position logits of `ids` on `device`, from a fresh model: with every weight
/// dequantized to f32 when `exact`, else with each device's own quantized kernels.
fn logits(g: &Gguf, device: &Device, ids: &[u32], exact: bool) -> wick::Result<Vec<f32>> {
    let mut model = match exact {
        true => Model::from_gguf_f32(g, device)?,
        false => Model::from_gguf(g, device)?,
    };
    Ok(model.forward(ids)?.to_vec1::<f32>()?)
}

/// CPU vs CUDA on the same f32 weights (must agree within the tolerance), then each device's
/// quantized kernels (Wick's 8-bit-activation kernels vs Candle's CUDA ones: printed, and the
/// top token must agree).
fn gguf_parity(what: &str, g: &Gguf, gpu: &Device, ids: &[u32]) -> wick::Result<f32> {
    let cpu = logits(g, &Device::Cpu, ids, true)?;
    let cuda = logits(g, gpu, ids, true)?;
    let rel = compare(&format!("{what}, f32 weights"), &cpu, &cuda);
    let cpu = logits(g, &Device::Cpu, ids, false)?;
    let cuda = logits(g, gpu, ids, false)?;
    compare(&format!("{what}, quantized kernels"), &cpu, &cuda);
    assert_eq!(argmax(&cpu), argmax(&cuda), "{what}: top tokens differ");
    Ok(rel)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Compares the two logit vectors, prints the figures and returns the relative error.
fn compare(what: &str, cpu: &[f32], gpu: &[f32]) -> f32 {
    assert_eq!(cpu.len(), gpu.len(), "{what}: logits of different lengths");
    assert!(
        gpu.iter().all(|x| x.is_finite()),
        "{what}: CUDA logits not finite"
    );
    let max_abs = cpu.iter().fold(0f32, |m, x| m.max(x.abs()));
    let max_diff = cpu
        .iter()
        .zip(gpu)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let rel = max_diff / max_abs;
    println!(
        "{what}: vocab {}, max |cpu| {max_abs:.4}, max abs diff {max_diff:.6}, relative {rel:.3e}, \
         argmax cpu {} cuda {}",
        cpu.len(),
        argmax(cpu),
        argmax(gpu)
    );
    rel
}

#[test]
fn tiny_model_cpu_vs_cuda() -> TestResult {
    let Some(gpu) = cuda() else { return Ok(()) };
    let bytes = wick::weights::tiny::tiny_gguf(42)?;
    let g = Gguf::parse(&bytes)?;
    let ids: Vec<u32> = (0..24u32).map(|i| (i * 37 + 5) % 200).collect();
    let rel = gguf_parity("tiny", &g, &gpu, &ids)?;
    assert!(
        rel <= TOLERANCE,
        "tiny: relative error {rel:.3e} > {TOLERANCE:e}"
    );
    Ok(())
}

/// Last-position logits of `ids` from a Hugging Face folder's files on `device`, MLX weights
/// dequantized to f32 (what every device but the CPU runs them as).
fn hf_logits(config: &[u8], st: &[u8], device: &Device, ids: &[u32]) -> wick::Result<Vec<f32>> {
    let hf = HfModel::new(config, vec![SafeTensors::parse("model.safetensors", st)?])?;
    let mut model = Model::from_hf(&hf.dequantized(), device)?;
    Ok(model.forward(ids)?.to_vec1::<f32>()?)
}

#[test]
fn every_architecture_cpu_vs_cuda() -> TestResult {
    let Some(gpu) = cuda() else { return Ok(()) };
    let mut worst = 0f32;
    for f in common::all() {
        let ids = f.reference().tokens;
        let cpu = hf_logits(f.config, f.safetensors, &Device::Cpu, &ids)?;
        let cuda = hf_logits(f.config, f.safetensors, &gpu, &ids)?;
        worst = worst.max(compare(&format!("{} (safetensors)", f.name), &cpu, &cuda));
        if let Some(bytes) = f.gguf {
            let g = Gguf::parse(bytes)?;
            worst = worst.max(gguf_parity(&format!("{} (gguf)", f.name), &g, &gpu, &ids)?);
        }
    }
    assert!(
        worst <= TOLERANCE,
        "architectures: relative error {worst:.3e} > {TOLERANCE:e}"
    );
    Ok(())
}

#[test]
fn real_model_cpu_vs_cuda() -> TestResult {
    let Some(gpu) = cuda() else { return Ok(()) };
    let path = std::env::var("WICK_GPU_MODEL").unwrap_or_else(|_| DEFAULT_MODEL.to_string());
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            println!("no model at {path} ({e}): skipped");
            return Ok(());
        }
    };
    let g = Gguf::parse(&bytes)?;
    let ids = Tokenizer::from_gguf(&g)?.encode("The capital of France is")?;
    println!("{path}: prompt ids {ids:?}");
    let rel = gguf_parity("SmolLM2-135M Q4_1 (gguf)", &g, &gpu, &ids)?;
    assert!(
        rel <= TOLERANCE,
        "real model: relative error {rel:.3e} > {TOLERANCE:e}"
    );
    // The MLX 4-bit folder the app loads by default, exported in memory as `wick quantize` does.
    let cfg = Config::from_gguf(&g)?;
    let tok = Tokenizer::from_gguf(&g)?;
    let opts = Options {
        bits: 4,
        group: 32,
        requantize: false,
    };
    let (files, _) = to_mlx(&cfg, &g, &tok, None, opts)?;
    let cpu = hf_logits(&files[1].1, &files[0].1, &Device::Cpu, &ids)?;
    let cuda = hf_logits(&files[1].1, &files[0].1, &gpu, &ids)?;
    let rel = compare("SmolLM2-135M MLX 4-bit (safetensors)", &cpu, &cuda);
    assert!(
        rel <= TOLERANCE,
        "real model, MLX: relative error {rel:.3e} > {TOLERANCE:e}"
    );
    Ok(())
}
