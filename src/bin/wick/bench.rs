//! `wick bench`: prefill and decode speed per thread count, optionally beside llama.cpp on the
//! same GGUF in the same run.

use clap::Args;
use wick::{Engine, Error, Event, Grammar, Message, SamplingParams};

use crate::generate::ConstraintArgs;
use crate::model::{load, ModelArgs};

/// The flags of `wick bench`.
#[derive(Args)]
pub struct BenchArgs {
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
const LLAMACPP_BENCH: &str = include_str!("../../../scripts/llamacpp-bench.py");

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

/// The 122-token prompt of the shared benchmark (`bench_prompt`).
const BENCH_PROMPT: &str = include_str!("../../../tests/fixtures/bench_prompt.txt");

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
/// Measures each thread count and prints the table.
pub fn bench(a: BenchArgs) -> Result<(), Error> {
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
