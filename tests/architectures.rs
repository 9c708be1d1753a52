//! Every architecture's tiny model against the logits Hugging Face `transformers` computed for
//! it (`tests/fixtures/hf/*`, written by `scripts/make_fixtures.py`), loaded from the HF folder
//! (safetensors + config.json) and from the GGUF file that follows llama.cpp's conventions.
//!
//! Each position's logits must be within 1e-4 of the reference: token by token through the KV
//! cache, the whole sequence at once, and in two chunks. Runs natively and in wasm (Node).

use candle_core::Device;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
use wick::weights::safetensors::SafeTensors;
use wick::weights::{Gguf, HfModel};
use wick::Model;

/// Largest difference allowed from the f32 reference.
const TOLERANCE: f32 = 1e-4;

mod common;
use common::{fixture, Fixture, Reference};

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vocabulary sizes differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn logits(m: &mut Model, ids: &[u32]) -> Vec<f32> {
    m.forward(ids)
        .expect("forward")
        .to_vec1()
        .expect("f32 logits")
}

/// Runs the three orders of evaluation and returns the largest difference seen.
fn compare(label: &str, m: &mut Model, want: &Reference) -> f32 {
    let mut worst = 0f32;
    for (t, id) in want.tokens.iter().enumerate() {
        worst = worst.max(max_diff(&logits(m, &[*id]), &want.logits[t]));
    }
    let last = want.logits.last().expect("reference has logits");
    m.truncate_cache(0);
    worst = worst.max(max_diff(&logits(m, &want.tokens), last));
    m.truncate_cache(0);
    let half = want.tokens.len() / 2;
    logits(m, &want.tokens[..half]);
    worst = worst.max(max_diff(&logits(m, &want.tokens[half..]), last));
    println!("{label}: max |Δlogit| = {worst:.2e}");
    worst
}

fn hf_model<'a>(f: &Fixture, st: SafeTensors<'a>) -> HfModel<'a> {
    HfModel::new(f.config, vec![st]).expect("config.json parses")
}

fn check(f: Fixture) {
    let want = f.reference();
    let st = SafeTensors::parse("model.safetensors", f.safetensors).expect("safetensors parses");
    let mut m = Model::from_hf(&hf_model(&f, st), &Device::Cpu).expect("HF model loads");
    let worst = compare(&format!("{} (safetensors)", f.name), &mut m, &want);
    assert!(
        worst <= TOLERANCE,
        "{}: safetensors logits off by {worst}",
        f.name
    );
    if let Some(bytes) = f.gguf {
        let g = Gguf::parse(bytes).expect("GGUF parses");
        let mut m = Model::from_gguf(&g, &Device::Cpu).expect("GGUF model loads");
        let worst = compare(&format!("{} (gguf)", f.name), &mut m, &want);
        assert!(worst <= TOLERANCE, "{}: GGUF logits off by {worst}", f.name);
    }
}

/// MLX-quantized fixtures: the weights, dequantized exactly, must give the reference within
/// 1e-4; Wick's own kernels, which round activations to 8 bits per block of 32 like llama.cpp,
/// must stay within `kernel_tolerance` of the largest reference logit.
fn check_quantized(f: Fixture, kernel_tolerance: f32) {
    let want = f.reference();
    let st = || SafeTensors::parse("model.safetensors", f.safetensors).expect("parses");
    let exact = hf_model(&f, st()).dequantized();
    let mut m = Model::from_hf(&exact, &Device::Cpu).expect("loads dequantized");
    let worst = compare(&format!("{} (dequantized)", f.name), &mut m, &want);
    assert!(
        worst <= TOLERANCE,
        "{}: dequantized logits off by {worst}",
        f.name
    );
    let mut m = Model::from_hf(&hf_model(&f, st()), &Device::Cpu).expect("loads for kernels");
    let worst = compare(&format!("{} (kernels)", f.name), &mut m, &want);
    let scale = want
        .logits
        .iter()
        .flatten()
        .fold(0f32, |a, v| a.max(v.abs()));
    assert!(
        worst <= kernel_tolerance * scale,
        "{}: kernel logits off by {worst} (largest logit {scale})",
        f.name
    );
}

#[test]
fn llama2() {
    check(fixture("llama2"));
}

#[test]
fn llama3_with_rope_scaling() {
    check(fixture("llama3"));
}

#[test]
fn smollm_with_tied_embeddings() {
    check(fixture("smollm"));
}

#[test]
fn llama_with_gated_gelu() {
    check(fixture("llama-gelu"));
}

#[test]
fn mistral_with_sliding_window() {
    check(fixture("mistral"));
}

#[test]
fn mixtral_with_top2_experts() {
    check(fixture("mixtral"));
}

#[test]
fn qwen2_with_qkv_bias() {
    check(fixture("qwen2"));
}

#[test]
fn gpt2() {
    check(fixture("gpt2"));
}

#[test]
fn gpt2_with_relu() {
    check(fixture("gpt2-relu"));
}

#[test]
fn gemma3_with_sliding_and_global_layers() {
    check(fixture("gemma3"));
}

#[test]
fn gemma3_with_attention_scalar_rope_scaling_and_softcap() {
    check(fixture("gemma3-scaled"));
}

#[test]
fn mlx_4bit_group_32() {
    check_quantized(fixture("smollm-mlx-q4-g32"), 0.1);
}

#[test]
fn mlx_4bit_group_128() {
    check_quantized(fixture("smollm-mlx-q4-g128"), 0.1);
}

#[test]
fn mlx_8bit_group_64() {
    check_quantized(fixture("smollm-mlx-q8-g64"), 0.1);
}

/// `wick quantize` writes a Gemma 3 model's config.json as transformers' `gemma3_text`: it reads
/// back as the same switches, its norms stored as w rather than llama.cpp's 1 + w (the real
/// 270M's export is checked end to end in `tests/real_models.rs`).
#[test]
fn gemma3_config_json_reads_back_as_the_same_switches() {
    let f = fixture("gemma3");
    let g = Gguf::parse(f.gguf.expect("gemma3 has a GGUF")).expect("parses");
    let cfg = wick::Config::from_gguf(&g).expect("config");
    // The fixture has no vocabulary; the tiny llama's tokenizer stands in.
    let tiny = wick::weights::tiny::tiny_gguf(3).expect("tiny model");
    let tok = wick::Tokenizer::from_gguf(&Gguf::parse(&tiny).expect("parses")).expect("tokenizer");
    let json = wick::quantize::hf_config(&cfg, true, &tok, None).expect("writes");
    let back = wick::Config::from_hf(&json).expect("reads back");
    assert_eq!(back.architecture, "gemma3_text");
    let switches = |c: &wick::Config| {
        (
            (c.n_layers, c.hidden_size, c.intermediate_size),
            (c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size),
            (c.sliding_window, c.full_attention_layers.clone()),
            (c.local_rope_theta, c.positions.clone()),
            // No scalar means the head size.
            (
                c.query_pre_attn_scalar.unwrap_or(c.head_dim as f32),
                c.final_logit_softcap,
                c.norm_eps,
            ),
            (c.qk_norm, c.post_norms, c.activation, c.embed_scale),
        )
    };
    assert_eq!(switches(&back), switches(&cfg));
    assert_eq!(
        (back.norm_weight_offset, cfg.norm_weight_offset),
        (1.0, 0.0)
    );
}
