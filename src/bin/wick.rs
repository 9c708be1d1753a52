//! The native command line: `wick generate` streams a reply to stdout, `wick bench` measures speed,
//! `wick train` trains a small model from scratch.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

/// The browser build has no command line; this keeps `cargo test --target wasm32…` building.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::io::Write;
    use std::process::ExitCode;

    use clap::{Args, Parser, Subcommand};
    use wick::train::{bpe, TrainOptions, Trainer};
    use wick::{Engine, Error, Event, Grammar, Message, SamplingParams};

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

    #[derive(Subcommand)]
    enum Command {
        /// Generate a reply and stream it to stdout.
        Generate(GenerateArgs),
        /// Measure prefill and decode speed on the model.
        Bench(BenchArgs),
        /// Write a GGUF file or a float Hugging Face folder as MLX-quantized safetensors.
        Quantize(QuantizeArgs),
        /// Print the last-position logits of a raw prompt as JSON (parity checks).
        Logits(LogitsArgs),
        /// Train a small Llama-style model from scratch on a text file, written as a folder.
        Train(TrainArgs),
    }

    #[derive(Args)]
    struct TrainArgs {
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

    #[derive(Args)]
    struct LogitsArgs {
        #[command(flatten)]
        model: ModelArgs,
        /// A file holding the prompt, fed as it is (no chat template).
        #[arg(long)]
        prompt_file: String,
    }

    #[derive(Args)]
    struct QuantizeArgs {
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

    #[derive(Args)]
    struct ModelArgs {
        /// A GGUF file, or a Hugging Face folder (float or MLX-quantized safetensors).
        #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
        model: String,
        /// Worker threads for the matmuls (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Tokens a conversation may hold, prompt and reply (capped by the model's own context):
        /// the KV cache never grows past it.
        #[arg(long, default_value_t = wick::session::DEFAULT_CONTEXT_LENGTH as u64,
              value_parser = clap::value_parser!(u64).range(2..))]
        context: u64,
    }

    #[derive(Args)]
    struct GenerateArgs {
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
    struct ConstraintArgs {
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
        fn is_some(&self) -> bool {
            self.json_schema.is_some() || self.regex.is_some() || self.grammar.is_some()
        }

        fn grammar(&self) -> Result<Option<Grammar>, Error> {
            let text = |path: &str| {
                String::from_utf8(read(path)?)
                    .map_err(|e| Error::Constraint(format!("{path}: {e}")))
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

    #[derive(Args)]
    struct BenchArgs {
        #[command(flatten)]
        model: ModelArgs,
        /// Runs per measurement (the median is shown).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Greedy tokens to decode per run.
        #[arg(long, default_value_t = 128)]
        decode_tokens: usize,
        /// Thread counts to measure, each in its own pool.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        thread_counts: Vec<usize>,
        /// Also measure llama.cpp on the same GGUF in the same run (needs xllamacpp or
        /// llama-cpp-python; never part of the tests) and print Wick/llama.cpp ratios.
        #[arg(long)]
        compare_llamacpp: bool,
        /// The Python that has xllamacpp or llama-cpp-python, for --compare-llamacpp.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Also decode under this constraint and show the token masks' share of a decode step.
        #[command(flatten)]
        constraint: ConstraintArgs,
    }

    /// llama.cpp's speeds at one thread count, from `scripts/llamacpp-bench.py`.
    #[derive(serde::Deserialize)]
    struct PeerRow {
        threads: usize,
        prefill: f64,
        decode: f64,
    }

    /// What `scripts/llamacpp-bench.py` prints.
    #[derive(serde::Deserialize)]
    struct Peer {
        /// The Python package that ran llama.cpp (xllamacpp or llama-cpp-python).
        package: String,
        version: String,
        rows: Vec<PeerRow>,
    }

    /// The script that measures llama.cpp through xllamacpp or llama-cpp-python.
    const LLAMACPP_BENCH: &str = include_str!("../../scripts/llamacpp-bench.py");

    /// Runs [`LLAMACPP_BENCH`] with `a.python` on the same GGUF, prompt, token count and
    /// thread counts as Wick's own measurement.
    fn llamacpp(a: &BenchArgs) -> Result<Peer, Error> {
        let fail = |problem: String| Error::Io {
            path: "--compare-llamacpp".into(),
            source: std::io::Error::other(problem),
        };
        if std::path::Path::new(&a.model.model).is_dir() {
            return Err(fail(
                "llama.cpp reads GGUF files: pass --model FILE.gguf".into(),
            ));
        }
        let prompt = std::env::temp_dir().join(format!("wick-bench-{}.txt", std::process::id()));
        std::fs::write(&prompt, BENCH_PROMPT).map_err(|e| fail(e.to_string()))?;
        let threads: Vec<String> = a.thread_counts.iter().map(|t| t.to_string()).collect();
        let out = std::process::Command::new(&a.python)
            .arg("-c")
            .arg(LLAMACPP_BENCH)
            .arg(&a.model.model)
            .arg(&prompt)
            .arg(a.decode_tokens.to_string())
            .arg(a.runs.to_string())
            .arg(threads.join(","))
            .output();
        let _ = std::fs::remove_file(&prompt);
        let out = out.map_err(|e| fail(format!("cannot run {}: {e}", a.python)))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("no output");
            return Err(fail(format!(
                "{} could not measure llama.cpp ({last}); it needs xllamacpp or \
                 llama-cpp-python (pip install xllamacpp)",
                a.python
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| fail(format!("unreadable output from the llama.cpp script: {e}")))
    }

    /// The app's default system message: with SmolLM2's own default, its greedy answer to
    /// "What is the capital of France?" starts "L'Étoile…"; with this one it is "… Paris."
    const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant.";

    /// The 122-token prompt of the shared benchmark (`bench_prompt`).
    const BENCH_PROMPT: &str = include_str!("../../tests/fixtures/bench_prompt.txt");

    fn load(args: &ModelArgs) -> Result<(Engine, f64), Error> {
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

    fn read(path: &str) -> Result<Vec<u8>, Error> {
        std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_string(),
            source,
        })
    }

    /// The files of a model folder that a Hugging Face model can use, by name.
    fn read_folder(dir: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
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

    fn logits(a: LogitsArgs) -> Result<(), Error> {
        let (mut engine, _) = load(&a.model)?;
        let prompt = String::from_utf8_lossy(&read(&a.prompt_file)?).into_owned();
        let ids = engine.tokenizer().encode(&prompt)?;
        let logits: Vec<f32> = engine.model_mut().forward(&ids)?.to_vec1()?;
        println!("{}", serde_json::json!(logits));
        Ok(())
    }

    fn train(a: TrainArgs) -> Result<(), Error> {
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

    fn quantize(a: QuantizeArgs) -> Result<(), Error> {
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

    fn generate(a: GenerateArgs) -> Result<(), Error> {
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

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// One thread count's medians: prefill tok/s, decode tok/s, time to first token, and under
    /// a constraint: decode tok/s, mask ms per token, tokens per reply.
    struct BenchRow {
        prefill: f64,
        decode: f64,
        first_token: f64,
        prompt_tokens: usize,
        constrained: Option<(f64, f64, usize)>,
    }

    /// The question a constrained reply answers in the benchmark.
    const CONSTRAINED_PROMPT: &str =
        "Write a short example of a document that follows the schema, as JSON.";

    fn bench_with(
        engine: &mut Engine,
        runs: usize,
        decode_tokens: usize,
        grammar: Option<&Grammar>,
    ) -> Result<BenchRow, Error> {
        let (mut prefill, mut decode, mut first) = (Vec::new(), Vec::new(), Vec::new());
        let ids = engine.tokenizer().encode(BENCH_PROMPT)?;
        for _ in 0..runs {
            engine.reset();
            let t0 = std::time::Instant::now();
            engine.model_mut().forward(&ids)?;
            prefill.push(ids.len() as f64 / t0.elapsed().as_secs_f64());
            engine.reset();
            // Stop at max tokens only: a fixed amount of decode work per run.
            let params = SamplingParams {
                ignore_eog: true,
                ..SamplingParams::greedy(decode_tokens)
            };
            engine.generate(BENCH_PROMPT, params, |_| {})?;
            let s = engine.stats();
            decode.push(s.generated_tokens as f64 / s.decode_seconds.max(1e-9));
            first.push(s.first_token_seconds);
        }
        let constrained = match grammar {
            None => None,
            Some(g) => {
                let (mut tps, mut mask, mut tokens) = (Vec::new(), Vec::new(), 0);
                for _ in 0..runs {
                    engine.reset();
                    let params = SamplingParams {
                        constraint: Some(g.clone()),
                        ..SamplingParams::greedy(decode_tokens)
                    };
                    engine.start_chat(&[Message::new("user", CONSTRAINED_PROMPT)], params)?;
                    while !matches!(engine.step()?, Event::Done { .. }) {}
                    let s = engine.stats();
                    let n = s.generated_tokens.max(1) as f64;
                    tps.push(n / s.decode_seconds.max(1e-9));
                    mask.push(1e3 * s.constraint_seconds / n);
                    tokens = s.generated_tokens;
                }
                Some((median(tps), median(mask), tokens))
            }
        };
        Ok(BenchRow {
            prefill: median(prefill),
            decode: median(decode),
            first_token: median(first),
            prompt_tokens: ids.len(),
            constrained,
        })
    }

    /// Peak resident memory of this process (Linux), in bytes.
    fn peak_rss() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    fn bench(a: BenchArgs) -> Result<(), Error> {
        let runs = a.runs.max(1);
        // The peer first: a missing llama.cpp package fails before minutes of measuring.
        let peer = if a.compare_llamacpp {
            Some(llamacpp(&a)?)
        } else {
            None
        };
        let grammar = a.constraint.grammar()?;
        let (mut engine, load_s) = load(&a.model)?;
        let mut rows = Vec::new();
        for &t in &a.thread_counts {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t.max(1))
                .build()
                .map_err(|e| Error::Sampling(format!("cannot start {t} threads: {e}")))?;
            rows.push(
                pool.install(|| bench_with(&mut engine, runs, a.decode_tokens, grammar.as_ref()))?,
            );
        }
        // A folder's size is that of its files.
        let file = match std::fs::read_dir(&a.model.model) {
            Ok(dir) => dir
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum(),
            Err(_) => std::fs::metadata(&a.model.model)
                .map(|m| m.len())
                .unwrap_or(0),
        };
        let cols: Vec<String> = a
            .thread_counts
            .iter()
            .map(|t| format!("{t} thread(s)"))
            .collect();
        let line = |label: &str, f: &dyn Fn(&BenchRow) -> String| {
            let cells: Vec<String> = rows.iter().map(f).collect();
            println!("| {label} | {} |", cells.join(" | "));
        };
        println!(
            "Wick native ({}), {}, medians of {runs}",
            std::env::consts::ARCH,
            a.model.model
        );
        println!("| metric | {} |", cols.join(" | "));
        println!("|---|{}", "---|".repeat(cols.len()));
        let n = rows.first().map_or(0, |r| r.prompt_tokens);
        line(&format!("prefill tok/s ({n}-token bench_prompt)"), &|r| {
            format!("{:.1}", r.prefill)
        });
        line(
            &format!("decode tok/s ({} greedy tokens)", a.decode_tokens),
            &|r| format!("{:.1}", r.decode),
        );
        line("time to first token (s)", &|r| {
            format!("{:.3}", r.first_token)
        });
        if rows.iter().all(|r| r.constrained.is_some()) {
            let c = |r: &BenchRow| r.constrained.unwrap_or_default();
            line("constrained decode tok/s (greedy reply)", &|r| {
                format!("{:.1} ({} tokens)", c(r).0, c(r).2)
            });
            line("mask time per token (ms)", &|r| format!("{:.3}", c(r).1));
            line("**mask / unconstrained decode step**", &|r| {
                format!("{:.1}%", 100.0 * c(r).1 / (1e3 / r.decode))
            });
        }
        println!("| model load (s) | {load_s:.2} |");
        if let Some(peer) = &peer {
            let find = |t: usize| peer.rows.iter().find(|r| r.threads == t.max(1));
            let cells = |f: &dyn Fn(&BenchRow, &PeerRow) -> String| -> String {
                rows.iter()
                    .zip(&a.thread_counts)
                    .map(|(r, &t)| find(t).map_or("–".into(), |p| f(r, p)))
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            let (pkg, v) = (&peer.package, &peer.version);
            println!(
                "| llama.cpp ({pkg} {v}) prefill tok/s | {} |",
                cells(&|_, p| format!("{:.1}", p.prefill))
            );
            println!(
                "| llama.cpp ({pkg} {v}) decode tok/s | {} |",
                cells(&|_, p| format!("{:.1}", p.decode))
            );
            println!(
                "| **Wick / llama.cpp, prefill** | {} |",
                cells(&|r, p| format!("{:.2}×", r.prefill / p.prefill))
            );
            println!(
                "| **Wick / llama.cpp, decode** | {} |",
                cells(&|r, p| format!("{:.2}×", r.decode / p.decode))
            );
        }
        let kv = engine.model_mut().kv_bytes_at_limit();
        println!(
            "| model files + KV cache at --context {} | {:.0} MB + {:.0} MB |",
            engine.context_length(),
            file as f64 / 1e6,
            kv as f64 / 1e6
        );
        if let Some(peak) = peak_rss() {
            println!(
                "| peak RSS | {:.0} MB ({:.2}× files + KV) |",
                peak as f64 / 1e6,
                peak as f64 / (file + kv as u64).max(1) as f64
            );
        }
        Ok(())
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        let result = match cli.command {
            Command::Generate(a) => generate(a),
            Command::Bench(a) => bench(a),
            Command::Quantize(a) => quantize(a),
            Command::Logits(a) => logits(a),
            Command::Train(a) => train(a),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
