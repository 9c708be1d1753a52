//! `wick bench`: prefill and decode speed per thread count and prompt length, as min, median and
//! max over the runs, optionally beside llama.cpp on the same GGUF and the same tokens in the
//! same run, and with `--profile` where a prefill chunk and a decode step spend their time.

use std::time::Instant;

use clap::Args;
use wick::kernels::team;
use wick::model::profile::{self, Stage};
use wick::model::KvType;
use wick::session::PREFILL_CHUNK;
use wick::{Engine, Error, Event, Grammar, Message, Sampler, SamplingParams};

use crate::generate::ConstraintArgs;
use crate::model::{load, ModelArgs};

/// The flags of `wick bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Runs per measurement (min, median and max are shown).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Greedy tokens to decode per run, after the prompt.
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    /// Thread counts to measure, each in its own pool.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    thread_counts: Vec<usize>,
    /// Prompt lengths to measure (e.g. 512,2048,4096): each prompt is the first N tokens of
    /// `bench_prompt` repeated. Default: `bench_prompt` itself (122 tokens on SmolLM2).
    #[arg(long, value_delimiter = ',')]
    prompt_tokens: Vec<usize>,
    /// Also show where a prefill chunk and a decode step spend their time, stage by stage
    /// (one more run per thread count and prompt, with the timers on).
    #[arg(long)]
    profile: bool,
    /// Also measure llama.cpp on the same GGUF and the same prompt tokens in the same run
    /// (needs xllamacpp or llama-cpp-python; never part of the tests) and print Wick/llama.cpp
    /// ratios.
    #[arg(long)]
    compare_llamacpp: bool,
    /// The Python that has xllamacpp or llama-cpp-python, for --compare-llamacpp.
    #[arg(long, default_value = "python3")]
    python: String,
    /// How the KV cache stores keys and values: f32 (the default) or f16 (half the memory).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    kv_cache: String,
    /// Also decode under this constraint and show the token masks' share of a decode step.
    #[command(flatten)]
    constraint: ConstraintArgs,
}

/// The smallest, middle and largest of a measurement's runs.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
struct Spread {
    min: f64,
    median: f64,
    max: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        match (v.first(), v.last()) {
            (Some(&min), Some(&max)) => Self {
                min,
                median: v[v.len() / 2],
                max,
            },
            _ => Self::default(),
        }
    }

    /// `median (min–max)` with `digits` decimals.
    fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// llama.cpp's speeds at one thread count and prompt, from `scripts/llamacpp-bench.py`.
#[derive(serde::Deserialize)]
struct PeerRow {
    threads: usize,
    prompt_tokens: usize,
    prefill: Spread,
    decode: Spread,
}

/// What `scripts/llamacpp-bench.py` prints.
#[derive(serde::Deserialize)]
struct Peer {
    /// The Python package that ran llama.cpp (xllamacpp or llama-cpp-python).
    package: String,
    version: String,
    rows: Vec<PeerRow>,
    /// Peak resident memory of the Python process that ran it, in bytes.
    peak_rss: Option<u64>,
}

/// The script that measures llama.cpp through xllamacpp or llama-cpp-python.
const LLAMACPP_BENCH: &str = include_str!("../../../scripts/llamacpp-bench.py");

/// The error of `--compare-llamacpp`.
fn peer_error(problem: String) -> Error {
    Error::Io {
        path: "--compare-llamacpp".into(),
        source: std::io::Error::other(problem),
    }
}

/// Runs [`LLAMACPP_BENCH`] with `a.python` on the same GGUF, prompt tokens, decode length and
/// thread counts as Wick's own measurement.
fn llamacpp(a: &BenchArgs, prompts: &[Prompt]) -> Result<Peer, Error> {
    let ids: Vec<&[u32]> = prompts.iter().map(|p| &p.ids[..]).collect();
    let file = std::env::temp_dir().join(format!("wick-bench-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::json!(ids).to_string())
        .map_err(|e| peer_error(e.to_string()))?;
    let threads: Vec<String> = a.thread_counts.iter().map(|t| t.to_string()).collect();
    let out = std::process::Command::new(&a.python)
        .arg("-c")
        .arg(LLAMACPP_BENCH)
        .arg(&a.model.model)
        .arg(&file)
        .arg(a.decode_tokens.to_string())
        .arg(a.runs.to_string())
        .arg(threads.join(","))
        .output();
    let _ = std::fs::remove_file(&file);
    let out = out.map_err(|e| peer_error(format!("cannot run {}: {e}", a.python)))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no output");
        return Err(peer_error(format!(
            "{} could not measure llama.cpp ({last}); it needs xllamacpp or \
             llama-cpp-python (pip install xllamacpp)",
            a.python
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| peer_error(format!("unreadable output from the llama.cpp script: {e}")))
}

/// The 122-token prompt of the shared benchmark (`bench_prompt`).
const BENCH_PROMPT: &str = include_str!("../../../tests/fixtures/bench_prompt.txt");

/// A prompt to measure: its tokens and how the table names it.
struct Prompt {
    ids: Vec<u32>,
    label: String,
}

/// `bench_prompt` itself, or for each length the first `n` tokens of `bench_prompt` repeated.
fn prompts(engine: &Engine, lengths: &[usize]) -> Result<Vec<Prompt>, Error> {
    let base = engine.tokenizer().encode(BENCH_PROMPT)?;
    if lengths.is_empty() {
        let label = format!("{}-token bench_prompt", base.len());
        return Ok(vec![Prompt { ids: base, label }]);
    }
    let mut out = Vec::new();
    for &n in lengths {
        if n == 0 || base.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let mut ids = engine
            .tokenizer()
            .encode(&BENCH_PROMPT.repeat(n / base.len() + 2))?;
        ids.truncate(n);
        if ids.len() < n {
            return Err(Error::Sampling(format!(
                "--prompt-tokens {n}: the repeated bench_prompt gave only {} tokens",
                ids.len()
            )));
        }
        out.push(Prompt {
            ids,
            label: format!("{n}-token prompt"),
        });
    }
    Ok(out)
}

/// Each stage's seconds and calls, in [`Stage::ALL`]'s order (what `profile::take` gives).
type Stages = Vec<(Stage, f64, u64)>;

/// One run's timings, and with the profiler on, each stage's seconds and calls per phase.
struct Run {
    prefill: f64,
    first_token: f64,
    decode: f64,
    stages: Option<[Stages; 2]>,
}

/// Prefills `ids` in the chunks the engine uses, then samples and runs `decode` greedy tokens,
/// each forward on the thread team as the engine runs it.
fn run_once(engine: &mut Engine, ids: &[u32], decode: usize, profiled: bool) -> Result<Run, Error> {
    engine.reset();
    let model = engine.model_mut();
    profile::set_enabled(profiled);
    profile::take();
    let t0 = Instant::now();
    let mut logits = None;
    for chunk in ids.chunks(PREFILL_CHUNK) {
        logits = Some(team::scope(|| model.forward(chunk))?);
    }
    let prefill = t0.elapsed().as_secs_f64();
    let prefill_stages = profile::take();
    let mut logits = logits.ok_or(Error::EmptyPrompt)?;
    let mut sampler = Sampler::new(&SamplingParams::greedy(decode))?;
    let mut context = ids.to_vec();
    let (t1, mut first_token) = (Instant::now(), prefill);
    for i in 0..decode {
        let id = profile::time(Stage::Sampling, || {
            sampler.sample(&logits, &context, &context[ids.len()..])
        })?
        .id;
        if i == 0 {
            first_token += t1.elapsed().as_secs_f64();
        }
        context.push(id);
        logits = team::scope(|| model.forward(&[id]))?;
    }
    let decode = t1.elapsed().as_secs_f64();
    let decode_stages = profile::take();
    profile::set_enabled(false);
    Ok(Run {
        prefill,
        first_token,
        decode,
        stages: profiled.then_some([prefill_stages, decode_stages]),
    })
}

/// One prompt at one thread count: tok/s and seconds over the runs, and the profiled run.
struct PromptRow {
    prefill: Spread,
    decode: Spread,
    first_token: Spread,
    profile: Option<Run>,
}

/// One thread count's rows, and under a constraint: decode tok/s, mask ms per token, tokens per
/// reply.
struct BenchRow {
    prompts: Vec<PromptRow>,
    constrained: Option<(Spread, Spread, usize)>,
}

/// The question a constrained reply answers in the benchmark.
const CONSTRAINED_PROMPT: &str =
    "Write a short example of a document that follows the schema, as JSON.";

fn bench_with(
    engine: &mut Engine,
    a: &BenchArgs,
    prompts: &[Prompt],
    grammar: Option<&Grammar>,
) -> Result<BenchRow, Error> {
    let (runs, n) = (a.runs.max(1), a.decode_tokens);
    let mut rows = Vec::new();
    for p in prompts {
        let (mut prefill, mut decode, mut first) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let r = run_once(engine, &p.ids, n, false)?;
            prefill.push(p.ids.len() as f64 / r.prefill.max(1e-9));
            decode.push(n as f64 / r.decode.max(1e-9));
            first.push(r.first_token);
        }
        let profile = match a.profile {
            true => Some(run_once(engine, &p.ids, n, true)?),
            false => None,
        };
        rows.push(PromptRow {
            prefill: Spread::of(prefill),
            decode: Spread::of(decode),
            first_token: Spread::of(first),
            profile,
        });
    }
    let constrained = match grammar {
        None => None,
        Some(g) => {
            let (mut tps, mut mask, mut tokens) = (Vec::new(), Vec::new(), 0);
            for _ in 0..runs {
                engine.reset();
                let params = SamplingParams {
                    constraint: Some(g.clone()),
                    ..SamplingParams::greedy(n)
                };
                engine.start_chat(&[Message::new("user", CONSTRAINED_PROMPT)], params)?;
                while !matches!(engine.step()?, Event::Done { .. }) {}
                let s = engine.stats();
                let n = s.generated_tokens.max(1) as f64;
                tps.push(n / s.decode_seconds.max(1e-9));
                mask.push(1e3 * s.constraint_seconds / n);
                tokens = s.generated_tokens;
            }
            Some((Spread::of(tps), Spread::of(mask), tokens))
        }
    };
    Ok(BenchRow {
        prompts: rows,
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

/// Bytes per second one streaming read of a buffer far larger than the caches gets, on the
/// current pool's threads (the best of a few passes).
fn read_bandwidth() -> f64 {
    use rayon::prelude::*;
    let words = vec![1u64; 64 << 20 >> 3 << 2]; // 256 MiB
    let threads = rayon::current_num_threads().max(1);
    let per = words.len().div_ceil(threads);
    (0..4)
        .map(|_| {
            let t0 = Instant::now();
            let sum: u64 = words
                .par_chunks(per)
                .map(|c| c.iter().fold(0u64, |a, &w| a.wrapping_add(w)))
                .sum();
            let s = t0.elapsed().as_secs_f64();
            std::hint::black_box(sum);
            (words.len() * 8) as f64 / s.max(1e-9)
        })
        .fold(0.0, f64::max)
}

/// Prints one table per thread count: each stage's milliseconds per prefill chunk and per
/// decode token, with its share, for every prompt.
fn print_profiles(
    a: &BenchArgs,
    prompts: &[Prompt],
    rows: &[BenchRow],
    bandwidth: &[f64],
    weights: usize,
) {
    for ((&t, row), &bw) in a.thread_counts.iter().zip(rows).zip(bandwidth) {
        println!();
        let floor = weights as f64 / bw;
        println!(
            "Memory, {t} thread(s): reads stream at {:.1} GB/s; a decode step reads {:.1} MB of \
             weights, {:.2} ms at that speed",
            bw / 1e9,
            weights as f64 / 1e6,
            1e3 * floor
        );
        for (p, r) in prompts.iter().zip(&row.prompts) {
            let step = 1.0 / r.decode.median.max(1e-9);
            println!(
                "- decode after {} tokens: {:.2} ms per token (median), {:.2}× the weights' read time",
                p.ids.len(),
                1e3 * step,
                step / floor.max(1e-12)
            );
        }
        println!();
        println!(
            "Profile, {t} thread(s): ms per prefill chunk (≤ {PREFILL_CHUNK} tokens) and per \
             decode token, share of the phase"
        );
        let mut head = vec!["stage".to_string()];
        let mut columns: Vec<(Stages, f64, f64)> = Vec::new();
        for (p, r) in prompts.iter().zip(&row.prompts) {
            let Some(run) = &r.profile else { continue };
            let Some([pre, dec]) = &run.stages else {
                continue;
            };
            let chunks = p.ids.len().div_ceil(PREFILL_CHUNK).max(1) as f64;
            head.push(format!("prefill, {}", p.label));
            columns.push((pre.clone(), run.prefill, chunks));
            head.push(format!("decode after {} tokens", p.ids.len()));
            columns.push((dec.clone(), run.decode, a.decode_tokens.max(1) as f64));
        }
        println!("| {} |", head.join(" | "));
        println!("|---|{}", "---|".repeat(columns.len()));
        let cell = |s: f64, total: f64, per: f64| {
            format!(
                "{:.4} ({:.1}%)",
                1e3 * s / per,
                100.0 * s / total.max(1e-12)
            )
        };
        for (i, stage) in Stage::ALL.iter().enumerate() {
            let cells: Vec<String> = columns
                .iter()
                .map(|(st, total, per)| cell(st[i].1, *total, *per))
                .collect();
            println!("| {} | {} |", stage.name(), cells.join(" | "));
        }
        let other: Vec<String> = columns
            .iter()
            .map(|(st, total, per)| {
                let staged: f64 = st.iter().map(|s| s.1).sum();
                cell((total - staged).max(0.0), *total, *per)
            })
            .collect();
        println!("| other (tensor copies, glue) | {} |", other.join(" | "));
        let totals: Vec<String> = columns
            .iter()
            .map(|(_, total, per)| cell(*total, *total, *per))
            .collect();
        println!("| total | {} |", totals.join(" | "));
    }
}

/// Measures each thread count and prompt, and prints the table.
pub fn bench(a: BenchArgs) -> Result<(), Error> {
    if a.compare_llamacpp && std::path::Path::new(&a.model.model).is_dir() {
        return Err(peer_error(
            "llama.cpp reads GGUF files: pass --model FILE.gguf".into(),
        ));
    }
    let grammar = a.constraint.grammar()?;
    let (mut engine, load_s) = load(&a.model)?;
    if a.kv_cache == "f16" {
        engine.model_mut().set_kv_type(KvType::F16);
    }
    let prompts = prompts(&engine, &a.prompt_tokens)?;
    // The peer before Wick: a missing llama.cpp package fails before minutes of measuring.
    let peer = match a.compare_llamacpp {
        true => Some(llamacpp(&a, &prompts)?),
        false => None,
    };
    let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let needed = longest + a.decode_tokens;
    if engine.context_length() < needed && engine.set_context_length(needed) < needed {
        return Err(Error::ContextOverflow {
            needed,
            limit: engine.context_length(),
        });
    }
    let mut rows = Vec::new();
    let mut bandwidth = Vec::new();
    let weights = engine.model_mut().weight_bytes_per_token();
    for &t in &a.thread_counts {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build()
            .map_err(|e| Error::Sampling(format!("cannot start {t} threads: {e}")))?;
        rows.push(pool.install(|| bench_with(&mut engine, &a, &prompts, grammar.as_ref()))?);
        if a.profile {
            bandwidth.push(pool.install(read_bandwidth));
        }
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
    let cells = |f: &dyn Fn(&BenchRow) -> String| -> String {
        rows.iter().map(f).collect::<Vec<_>>().join(" | ")
    };
    println!(
        "Wick native ({}), {}, {} run(s) each: median (min–max)",
        std::env::consts::ARCH,
        a.model.model,
        a.runs.max(1)
    );
    println!("| metric | {} |", cols.join(" | "));
    println!("|---|{}", "---|".repeat(cols.len()));
    for (i, p) in prompts.iter().enumerate() {
        println!(
            "| prefill tok/s ({}) | {} |",
            p.label,
            cells(&|r| r.prompts[i].prefill.show(1))
        );
        println!(
            "| decode tok/s ({} greedy tokens after it) | {} |",
            a.decode_tokens,
            cells(&|r| r.prompts[i].decode.show(1))
        );
        println!(
            "| time to first token (s), {} | {} |",
            p.label,
            cells(&|r| r.prompts[i].first_token.show(3))
        );
    }
    if rows.iter().all(|r| r.constrained.is_some()) {
        let c = |r: &BenchRow| r.constrained.unwrap_or_default();
        println!(
            "| constrained decode tok/s (greedy reply) | {} |",
            cells(&|r| format!("{} ({} tokens)", c(r).0.show(1), c(r).2))
        );
        println!(
            "| mask time per token (ms) | {} |",
            cells(&|r| c(r).1.show(3))
        );
        let first = |r: &BenchRow| r.prompts.first().map_or(f64::NAN, |p| p.decode.median);
        println!(
            "| **mask / unconstrained decode step** | {} |",
            cells(&|r| format!("{:.1}%", 100.0 * c(r).1.median / (1e3 / first(r))))
        );
    }
    println!("| model load (s) | {load_s:.2} |");
    if let Some(peer) = &peer {
        let (pkg, v) = (&peer.package, &peer.version);
        for (i, p) in prompts.iter().enumerate() {
            let n = p.ids.len();
            let find = |t: usize| {
                peer.rows
                    .iter()
                    .find(|r| r.threads == t.max(1) && r.prompt_tokens == n)
            };
            let peer_cells = |f: &dyn Fn(&PromptRow, &PeerRow) -> String| -> String {
                rows.iter()
                    .zip(&a.thread_counts)
                    .map(|(r, &t)| find(t).map_or("–".into(), |q| f(&r.prompts[i], q)))
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            println!(
                "| llama.cpp ({pkg} {v}) prefill tok/s ({}) | {} |",
                p.label,
                peer_cells(&|_, q| q.prefill.show(1))
            );
            println!(
                "| llama.cpp ({pkg} {v}) decode tok/s (after {n} tokens) | {} |",
                peer_cells(&|_, q| q.decode.show(1))
            );
            println!(
                "| **Wick / llama.cpp, prefill ({n} tokens)** | {} |",
                peer_cells(&|r, q| format!("{:.2}×", r.prefill.median / q.prefill.median))
            );
            println!(
                "| **Wick / llama.cpp, decode (after {n} tokens)** | {} |",
                peer_cells(&|r, q| format!("{:.2}×", r.decode.median / q.decode.median))
            );
        }
    }
    let kv = engine.model_mut().kv_bytes_at_limit();
    println!(
        "| model files + KV cache at context {} | {:.0} MB + {:.0} MB |",
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
    if let Some(peak) = peer.as_ref().and_then(|p| p.peak_rss) {
        println!(
            "| llama.cpp peak RSS (its Python process) | {:.0} MB |",
            peak as f64 / 1e6
        );
    }
    if a.profile {
        print_profiles(&a, &prompts, &rows, &bandwidth, weights);
    }
    Ok(())
}
