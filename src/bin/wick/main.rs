//! The native command line: `wick generate` streams a reply to stdout, `wick bench` measures speed,
//! `wick train` trains a small model from scratch. One file per subcommand; `model` holds the
//! flags and file reads they share.

#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod generate;
#[cfg(not(target_arch = "wasm32"))]
mod logits;
#[cfg(not(target_arch = "wasm32"))]
mod model;
#[cfg(not(target_arch = "wasm32"))]
mod quantize;
#[cfg(not(target_arch = "wasm32"))]
mod train;

#[cfg(not(target_arch = "wasm32"))]
use clap::{Parser, Subcommand};

#[cfg(not(target_arch = "wasm32"))]
#[derive(Parser)]
#[command(
    name = "wick",
    version,
    about = "Wick: a small LLM runtime on Candle (native CLI)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Subcommand)]
enum Command {
    /// Generate a reply and stream it to stdout.
    Generate(generate::GenerateArgs),
    /// Measure prefill and decode speed on the model.
    Bench(bench::BenchArgs),
    /// Write a GGUF file or a float Hugging Face folder as MLX-quantized safetensors.
    Quantize(quantize::QuantizeArgs),
    /// Print the last-position logits of a raw prompt as JSON (parity checks).
    Logits(logits::LogitsArgs),
    /// Train a small Llama-style model from scratch on a text file, written as a folder.
    Train(train::TrainArgs),
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => generate::generate(a),
        Command::Bench(a) => bench::bench(a),
        Command::Quantize(a) => quantize::quantize(a),
        Command::Logits(a) => logits::logits(a),
        Command::Train(a) => train::train(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The browser build has no command line; this keeps `cargo test --target wasm32…` building.
#[cfg(target_arch = "wasm32")]
fn main() {}
