//! `wick train`: a small Llama-style model trained from scratch on a text file.

use clap::Args;
use wick::train::{bpe, TrainOptions, Trainer};
use wick::Error;

use crate::model::read;

/// The flags of `wick train`.
#[derive(Args)]
pub struct TrainArgs {
    /// A UTF-8 text file to train on (tokenizer and model).
    #[arg(long)]
    corpus: String,
    /// The folder to write: model.safetensors, config.json, tokenizer files, loss.svg.
    #[arg(long)]
    out: String,
    /// Transformer blocks.
    #[arg(long, default_value_t = TrainOptions::default().layers)]
    layers: usize,
    /// Width of the residual stream.
    #[arg(long, default_value_t = TrainOptions::default().dim)]
    dim: usize,
    /// Query heads.
    #[arg(long, default_value_t = TrainOptions::default().heads)]
    heads: usize,
    /// Key/value heads (fewer than --heads: grouped-query attention).
    #[arg(long, default_value_t = TrainOptions::default().kv_heads)]
    kv_heads: usize,
    /// Tokens per training window (the model's context length).
    #[arg(long, default_value_t = TrainOptions::default().context)]
    context: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = TrainOptions::default().steps)]
    steps: usize,
    /// Peak learning rate of AdamW.
    #[arg(long, default_value_t = TrainOptions::default().lr)]
    lr: f64,
    /// Windows per step.
    #[arg(long, default_value_t = TrainOptions::default().batch)]
    batch: usize,
    /// Seed of the initial weights and of the windows.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    /// Largest BPE vocabulary, special tokens included.
    #[arg(long, default_value_t = TrainOptions::default().vocab)]
    vocab: usize,
    /// Tokenize into plain bytes instead of learning BPE merges.
    #[arg(long)]
    bytes: bool,
    /// Print every N steps (the first and the last always).
    #[arg(long, default_value_t = 10)]
    log_every: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}
/// Trains, printing the loss as it goes, and writes the model folder.
pub fn train(a: TrainArgs) -> Result<(), Error> {
    if let Some(n) = a.threads {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    let corpus = String::from_utf8(read(&a.corpus)?).map_err(|_| Error::File {
        file: a.corpus.clone(),
        problem: "is not UTF-8 text".into(),
    })?;
    let opts = TrainOptions {
        layers: a.layers,
        dim: a.dim,
        heads: a.heads,
        kv_heads: a.kv_heads,
        context: a.context,
        steps: a.steps,
        lr: a.lr,
        batch: a.batch,
        seed: a.seed,
        vocab: if a.bytes { bpe::BYTE_VOCAB } else { a.vocab },
    };
    let t0 = std::time::Instant::now();
    let mut trainer = Trainer::new(&corpus, opts)?;
    let c = trainer.config();
    println!(
        "corpus {} tokens (vocabulary {}, tokenizer {:.2}s); model {} parameters: {} layers, dim {}, {}/{} heads, context {}",
        trainer.corpus_tokens(),
        c.vocab_size,
        t0.elapsed().as_secs_f64(),
        trainer.parameters(),
        c.n_layers,
        c.hidden_size,
        c.n_heads,
        c.n_kv_heads,
        c.context_length
    );
    let (mut tokens, mut seconds) = (0usize, 0f64);
    while !trainer.done() {
        let r = trainer.step()?;
        tokens += r.tokens;
        seconds += r.seconds;
        if r.step == 1 || r.step == r.steps || r.step % a.log_every.max(1) == 0 {
            println!(
                "step {:>5}/{}  loss {:.4}  lr {:.2e}  grad {:.2}  {:.0} tok/s",
                r.step,
                r.steps,
                r.loss,
                r.lr,
                r.grad_norm,
                r.tokens as f64 / r.seconds.max(1e-9)
            );
        }
    }
    std::fs::create_dir_all(&a.out).map_err(|source| Error::Io {
        path: a.out.clone(),
        source,
    })?;
    for (name, bytes) in trainer.files()? {
        let path = format!("{}/{name}", a.out);
        std::fs::write(&path, bytes).map_err(|source| Error::Io { path, source })?;
    }
    let l = trainer.losses();
    let held_out = match trainer.held_out_loss()? {
        Some(h) => format!("; held-out loss {h:.4} (the corpus's last 5%, never trained on)"),
        None => String::new(),
    };
    println!(
        "loss {:.4} → {:.4} in {} steps, {:.0} tok/s on average{held_out}",
        l.first().copied().unwrap_or(f32::NAN),
        l.last().copied().unwrap_or(f32::NAN),
        l.len(),
        tokens as f64 / seconds.max(1e-9),
    );
    println!("wrote {} (loss curve: {}/loss.svg)", a.out, a.out);
    Ok(())
}
