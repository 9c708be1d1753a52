//! `wick generate`: a reply streamed to stdout, sampled, beam-searched or constrained.

use std::io::Write;

use clap::Args;
use wick::{Error, Event, Grammar, Message, SamplingParams};

use crate::model::{load, read, ModelArgs};

/// The flags of `wick generate`.
#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The user's message (or the whole prompt with --raw).
    #[arg(long)]
    prompt: String,
    /// Feed the prompt as it is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// System message of the chat ("" leaves it to the model's template).
    #[arg(long, default_value = DEFAULT_SYSTEM)]
    system: String,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = SamplingParams::default().temperature)]
    temperature: f64,
    /// Keep the k most likely tokens (0 = all).
    #[arg(long, default_value_t = SamplingParams::default().top_k)]
    top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = SamplingParams::default().top_p)]
    top_p: f64,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = SamplingParams::default().repeat_penalty)]
    repeat_penalty: f32,
    /// Random seed.
    #[arg(long, default_value_t = SamplingParams::default().seed)]
    seed: u64,
    /// Most tokens to generate.
    #[arg(long, default_value_t = SamplingParams::default().max_tokens)]
    max_tokens: usize,
    /// Beam search of this width instead of sampling (0 = sample, 1 = greedy): the reply
    /// with the highest total log-probability among those the beams kept.
    #[arg(long, default_value_t = 0)]
    beams: usize,
    /// With --beams: rank replies by log-probability / length^this (0 = off).
    #[arg(long, default_value_t = 0.0)]
    length_penalty: f64,
    /// Print token counts and speeds to stderr at the end.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    constraint: ConstraintArgs,
}

/// What the reply must match (at most one).
#[derive(Args)]
#[group(multiple = false)]
pub struct ConstraintArgs {
    /// The reply is JSON valid under the JSON schema in FILE.
    #[arg(long, value_name = "FILE")]
    json_schema: Option<String>,
    /// The reply matches the regular expression RE whole.
    #[arg(long, value_name = "RE")]
    regex: Option<String>,
    /// The reply follows the Lark grammar in FILE (llguidance's dialect).
    #[arg(long, value_name = "FILE")]
    grammar: Option<String>,
}

impl ConstraintArgs {
    pub fn is_some(&self) -> bool {
        self.json_schema.is_some() || self.regex.is_some() || self.grammar.is_some()
    }

    pub fn grammar(&self) -> Result<Option<Grammar>, Error> {
        let text = |path: &str| {
            String::from_utf8(read(path)?).map_err(|e| Error::Constraint(format!("{path}: {e}")))
        };
        Ok(if let Some(path) = &self.json_schema {
            let schema = serde_json::from_str(&text(path)?)
                .map_err(|e| Error::Constraint(format!("{path} is not JSON: {e}")))?;
            Some(Grammar::JsonSchema { schema })
        } else if let Some(pattern) = &self.regex {
            Some(Grammar::Regex {
                pattern: pattern.clone(),
            })
        } else if let Some(path) = &self.grammar {
            Some(Grammar::Lark {
                grammar: text(path)?,
            })
        } else {
            None
        })
    }
}

/// The app's default system message: with SmolLM2's own default, its greedy answer to
/// "What is the capital of France?" starts "L'Étoile…"; with this one it is "… Paris."
const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant.";
/// Streams the reply to stdout, and with `--stats` its counts and speeds to stderr.
pub fn generate(a: GenerateArgs) -> Result<(), Error> {
    // A grammar file that cannot be read fails before the model loads.
    let constraint = a.constraint.grammar()?;
    let (mut engine, _) = load(&a.model)?;
    let params = SamplingParams {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repeat_penalty: a.repeat_penalty,
        seed: a.seed,
        max_tokens: a.max_tokens,
        beams: a.beams,
        length_penalty: a.length_penalty,
        constraint,
        ..SamplingParams::default()
    };
    if a.raw {
        engine.start(&a.prompt, params)?;
    } else {
        let mut messages = Vec::new();
        if !a.system.is_empty() {
            messages.push(Message::new("system", &a.system));
        }
        messages.push(Message::new("user", &a.prompt));
        engine.start_chat(&messages, params)?;
    }
    let mut out = std::io::stdout().lock();
    loop {
        let (text, done) = match engine.step()? {
            Event::Prefill { .. } | Event::Search { .. } => continue,
            Event::Token { text, .. } => (text, false),
            Event::Done { text, .. } => (text, true),
        };
        // A closed stdout (e.g. piped into `head`) just ends the output.
        if write!(out, "{text}").and_then(|_| out.flush()).is_err() || done {
            break;
        }
    }
    let _ = writeln!(out);
    if a.stats {
        let s = engine.stats();
        eprintln!(
            "prompt {} tok ({:.1} tok/s), generated {} tok ({:.1} tok/s)",
            s.prompt_tokens,
            s.prefilled_tokens as f64 / s.prefill_seconds.max(1e-9),
            s.generated_tokens,
            s.generated_tokens as f64 / s.decode_seconds.max(1e-9)
        );
        if let Some(b) = &s.beam {
            let m = &b.memory;
            eprintln!(
                "{} beams: logprob {:.4}, score {:.4}, {} replies kept; KV held {} KiB \
                 (vs {} KiB for {} full copies)",
                b.beams,
                b.logprob,
                b.score,
                b.kept,
                m.held_bytes / 1024,
                m.copies_bytes / 1024,
                b.beams
            );
        }
        if a.constraint.is_some() {
            eprintln!(
                "constraint masks: {:.2} ms per token ({:.1}% of decode time)",
                1e3 * s.constraint_seconds / s.generated_tokens.max(1) as f64,
                100.0 * s.constraint_seconds / s.decode_seconds.max(1e-9)
            );
        }
    }
    Ok(())
}
