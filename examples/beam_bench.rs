//! Beam search on the default model: for widths 1 (greedy), 2, 4 and 8, the total
//! log-probability of the reply chosen (without and with a length penalty of 1), the time per
//! search step and per token, and the KV memory held against full per-beam copies.
//!
//! `cargo run --release --example beam_bench [-- MODEL.gguf [MAX_TOKENS]]`

use candle_core::Device;
use wick::{Engine, Message, SamplingParams};

const PROMPTS: [&str; 4] = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three primary colors.",
    "Explain in one sentence why the sky is blue.",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let max_tokens: usize = args.next().map_or(Ok(32), |s| s.parse())?;
    let mut e = Engine::from_gguf_bytes(&std::fs::read(&path)?, &Device::Cpu)?;
    println!(
        "{path}, {} prompts, max {max_tokens} tokens; means over prompts, medians for times",
        PROMPTS.len()
    );
    println!(
        "| width | length penalty | total logprob | Δ vs greedy | score | tokens | ms/step | ms/step vs greedy | KV held | N full copies |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut greedy = [0f64; 2];
    let mut greedy_step = [0f64; 2];
    for width in [1, 2, 4, 8] {
        for (pi, penalty) in [0.0, 1.0].into_iter().enumerate() {
            let (mut lp, mut score, mut tokens) = (0.0, 0.0, 0.0);
            let (mut step_ms, mut held, mut copies) = (Vec::new(), 0usize, 0usize);
            for prompt in PROMPTS {
                let chat = e.render_chat(&[Message::new("user", prompt)])?;
                let params = SamplingParams {
                    beams: width,
                    length_penalty: penalty,
                    max_tokens,
                    ..SamplingParams::default()
                };
                e.reset();
                let (ids, _) = e.generate(&chat, params, |_| {})?;
                let s = e.stats();
                let b = s.beam.as_ref().ok_or("no beam report")?;
                lp += b.logprob;
                score += b.score;
                tokens += ids.len() as f64;
                step_ms.push(1e3 * s.decode_seconds / b.steps.max(1) as f64);
                if b.memory.held_bytes > held {
                    (held, copies) = (b.memory.held_bytes, b.memory.copies_bytes);
                }
            }
            let n = PROMPTS.len() as f64;
            let (lp, score, tokens, step) = (lp / n, score / n, tokens / n, median(step_ms));
            if width == 1 {
                greedy[pi] = lp;
                greedy_step[pi] = step;
            }
            println!(
                "| {width} | {penalty} | {lp:.3} | {:+.3} | {score:.3} | {tokens:.1} | {step:.1} | {:.2}× | {} KiB | {} KiB |",
                lp - greedy[pi],
                step / greedy_step[pi],
                held / 1024,
                copies / 1024
            );
        }
    }
    Ok(())
}
