//! `wick logits`: the last position's logits of a raw prompt as JSON, for parity checks.

use clap::Args;
use wick::Error;

use crate::model::{load, read, ModelArgs};

/// The flags of `wick logits`.
#[derive(Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A file holding the prompt, fed as it is (no chat template).
    #[arg(long)]
    prompt_file: String,
}
/// Prints the logits as one JSON array.
pub fn logits(a: LogitsArgs) -> Result<(), Error> {
    let (mut engine, _) = load(&a.model)?;
    let prompt = String::from_utf8_lossy(&read(&a.prompt_file)?).into_owned();
    let ids = engine.tokenizer().encode(&prompt)?;
    let logits: Vec<f32> = engine.model_mut().forward(&ids)?.to_vec1()?;
    println!("{}", serde_json::json!(logits));
    Ok(())
}
