//! Which model `wick` runs and how it is read: the `--model`, `--threads` and `--context` flags
//! every subcommand shares, and the file reads they need.

use clap::Args;
use wick::{Engine, Error};

/// The model flags every subcommand that runs a model shares.
#[derive(Args)]
pub struct ModelArgs {
    /// A GGUF file, or a Hugging Face folder (float or MLX-quantized safetensors).
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: String,
    /// Worker threads for the matmuls (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Tokens a conversation may hold, prompt and reply (capped by the model's own context):
    /// the KV cache never grows past it.
    #[arg(long, default_value_t = wick::session::DEFAULT_CONTEXT_LENGTH as u64,
          value_parser = clap::value_parser!(u64).range(2..))]
    pub context: u64,
}

/// Loads the model `args` name (a GGUF file is mapped, a folder read) on `--threads` threads;
/// returns it with the seconds the load took.
pub fn load(args: &ModelArgs) -> Result<(Engine, f64), Error> {
    if let Some(n) = args.threads {
        // Only fails if a pool already exists, which cannot happen this early.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    let t0 = std::time::Instant::now();
    let mut engine = if std::path::Path::new(&args.model).is_dir() {
        Engine::from_hf_files(&read_folder(&args.model)?, &candle_core::Device::Cpu)?
    } else {
        // Mapped, not read: the file's pages are the weights' only copy.
        Engine::from_gguf_file(&args.model, &candle_core::Device::Cpu)?
    };
    engine.set_context_length(usize::try_from(args.context).unwrap_or(usize::MAX));
    Ok((engine, t0.elapsed().as_secs_f64()))
}

/// The bytes of the file at `path`.
pub fn read(path: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_string(),
        source,
    })
}

/// The files of a model folder that a Hugging Face model can use, by name.
pub fn read_folder(dir: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let io = |source| Error::Io {
        path: dir.to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry
            .map_err(io)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if wick::weights::folder::uses(&name) {
            let bytes = read(&format!("{dir}/{name}"))?;
            files.push((name, bytes));
        }
    }
    Ok(files)
}
