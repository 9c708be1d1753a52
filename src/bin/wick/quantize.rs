//! `wick quantize`: a GGUF file or a float Hugging Face folder written as MLX-quantized
//! safetensors.

use clap::Args;
use wick::Error;

use crate::model::{read, read_folder};

/// The flags of `wick quantize`.
#[derive(Args)]
pub struct QuantizeArgs {
    /// A GGUF file, or a Hugging Face folder (config.json, *.safetensors, tokenizer.json).
    input: String,
    /// The folder to write (created if missing).
    output: String,
    /// Bits per weight: 4 or 8.
    #[arg(long, default_value_t = 4)]
    bits: usize,
    /// Inputs per scale and bias: 32, 64 or 128.
    #[arg(long, default_value_t = 32)]
    group_size: usize,
    /// Also requantize GGUF Q4_1/Q8_0 blocks, which are otherwise copied exactly.
    #[arg(long)]
    requantize: bool,
}
/// Writes the MLX folder and says what was copied and what quantized.
pub fn quantize(a: QuantizeArgs) -> Result<(), Error> {
    use wick::quantize::{to_mlx, Options};
    use wick::weights::safetensors::Bytes;
    use wick::weights::{Gguf, ModelFolder};
    let opts = Options {
        bits: a.bits,
        group: a.group_size,
        requantize: a.requantize,
    };
    let (files, summary) = if std::path::Path::new(&a.input).is_dir() {
        let files = read_folder(&a.input)?;
        let sources: Vec<(String, &dyn Bytes)> = files
            .iter()
            .map(|(n, b)| (n.clone(), b as &dyn Bytes))
            .collect();
        let folder = ModelFolder::new(&sources);
        let tokenizer = wick::Tokenizer::from_folder(&folder)?;
        let template = folder.chat_template()?;
        let hf = folder.hf_model()?;
        let cfg = wick::Config::from_hf(&hf.config)?;
        to_mlx(&cfg, &hf, &tokenizer, template.as_deref(), opts)?
    } else {
        let bytes = read(&a.input)?;
        let g = Gguf::parse(&bytes)?;
        let cfg = wick::Config::from_gguf(&g)?;
        let tokenizer = wick::Tokenizer::from_gguf(&g)?;
        let template = g.get_str("tokenizer.chat_template").ok();
        to_mlx(&cfg, &g, &tokenizer, template, opts)?
    };
    std::fs::create_dir_all(&a.output).map_err(|source| Error::Io {
        path: a.output.clone(),
        source,
    })?;
    for (name, bytes) in &files {
        let path = format!("{}/{name}", a.output);
        std::fs::write(&path, bytes).map_err(|source| Error::Io { path, source })?;
    }
    eprintln!(
        "wrote {}: {} matrices copied exactly, {} quantized to {} bits in groups of {}, {} float",
        a.output, summary.exact, summary.quantized, a.bits, a.group_size, summary.float
    );
    Ok(())
}
