//! The `wick` command line as a user runs it: streamed replies, and errors as one readable line
//! with a non-zero exit code.
#![cfg(not(target_arch = "wasm32"))]

use std::process::Command;

fn wick(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wick"))
        .args(args)
        .output()
        .expect("runs wick");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, bytes: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("wick-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).expect("writes a temp file");
    path.to_string_lossy().into_owned()
}

#[test]
fn generate_on_the_real_model_answers_the_france_question() {
    let (ok, out, err) = wick(&[
        "generate",
        "--prompt",
        "What is the capital of France?",
        "--temperature",
        "0",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "The capital of France is Paris.");
}

#[test]
fn generate_is_reproducible_with_a_seed_on_a_tiny_model() {
    let model = temp_file("tiny.gguf", &wick::weights::tiny::tiny_gguf(3).unwrap());
    let args = [
        "generate",
        "--model",
        &model,
        "--raw",
        "--prompt",
        "the cat",
        "--seed",
        "5",
        "--temperature",
        "1.0",
        "--max-tokens",
        "12",
    ];
    let (ok, first, err) = wick(&args);
    assert!(ok, "{err}");
    assert!(!first.trim().is_empty());
    assert_eq!(wick(&args).1, first);
}

#[test]
fn bad_input_exits_non_zero_with_the_error() {
    let not_gguf = temp_file("notes.gguf", b"just some text");
    let (ok, _, err) = wick(&["generate", "--model", &not_gguf, "--prompt", "hi"]);
    assert!(!ok);
    assert!(err.starts_with("error: not a GGUF file"), "{err}");

    let tiny = wick::weights::tiny::tiny_gguf(3).unwrap();
    let cut = temp_file("cut.gguf", &tiny[..tiny.len() / 2]);
    let (ok, _, err) = wick(&["generate", "--model", &cut, "--prompt", "hi"]);
    assert!(!ok);
    assert!(err.contains("file is truncated"), "{err}");

    let model = temp_file("tiny2.gguf", &tiny);
    let (ok, _, err) = wick(&["generate", "--model", &model, "--raw", "--prompt", ""]);
    assert!(!ok);
    assert_eq!(err.trim(), "error: the prompt is empty");

    let (ok, _, err) = wick(&[
        "generate", "--model", &model, "--prompt", "hi", "--top-p", "0",
    ]);
    assert!(!ok);
    assert!(err.contains("top-p"), "{err}");
}

#[test]
fn bench_against_llamacpp_says_what_it_needs() {
    // Measuring the peer needs xllamacpp or llama-cpp-python (never installed for the tests):
    // without a usable Python the command fails at once, saying so, before measuring anything.
    let tiny = wick::weights::tiny::tiny_gguf(5).unwrap();
    let model = temp_file("tiny-bench.gguf", &tiny);
    let (ok, out, err) = wick(&[
        "bench",
        "--model",
        &model,
        "--compare-llamacpp",
        "--python",
        "/nonexistent/python3",
    ]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with("error: --compare-llamacpp: cannot run /nonexistent/python3"),
        "{err}"
    );

    // A Python without the package: the script's own import error is quoted.
    let (ok, _, err) = wick(&[
        "bench",
        "--model",
        &model,
        "--compare-llamacpp",
        "--python",
        "/bin/false",
    ]);
    assert!(!ok);
    assert!(err.contains("needs xllamacpp or llama-cpp-python"), "{err}");

    // llama.cpp reads GGUF files only.
    let dir = std::env::temp_dir();
    let (ok, _, err) = wick(&[
        "bench",
        "--model",
        &dir.to_string_lossy(),
        "--compare-llamacpp",
    ]);
    assert!(!ok);
    assert!(err.contains("llama.cpp reads GGUF files"), "{err}");
}

#[test]
fn quantize_reads_a_sharded_folder_by_its_index() {
    use wick::weights::safetensors::{SafeTensors, Writer};
    use wick::weights::Gguf;
    // The tiny model as an MLX folder, then its weights split over two shards and an index, as
    // transformers writes big models, beside a stale file the index does not list.
    let tiny = wick::weights::tiny::tiny_gguf(3).unwrap();
    let g = Gguf::parse(&tiny).unwrap();
    let cfg = wick::Config::from_gguf(&g).unwrap();
    let tok = wick::Tokenizer::from_gguf(&g).unwrap();
    let opts = wick::quantize::Options {
        bits: 4,
        group: 32,
        requantize: false,
    };
    let (files, _) = wick::quantize::to_mlx(&cfg, &g, &tok, None, opts).unwrap();
    let st = SafeTensors::parse("model.safetensors", &files[0].1).unwrap();
    let (mut a, mut b) = (Writer::default(), Writer::default());
    let mut map = serde_json::Map::new();
    for (name, info) in &st.tensors {
        // A weight's scales and biases stay in its shard.
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        let (w, shard) = match stem.len() % 2 {
            0 => (&mut a, "model-00001-of-00002.safetensors"),
            _ => (&mut b, "model-00002-of-00002.safetensors"),
        };
        w.add(
            name,
            info.dtype,
            info.shape.clone(),
            st.bytes(name).unwrap().to_vec(),
        );
        map.insert(name.clone(), shard.into());
    }
    let dir = std::env::temp_dir().join(format!("wick-cli-{}-sharded", std::process::id()));
    let out = dir.with_extension("out");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in &files[1..] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), a.to_bytes()).unwrap();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), b.to_bytes()).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("stale.safetensors"), b"not listed, not read").unwrap();

    let (ok, _, err) = wick(&["quantize", &dir.to_string_lossy(), &out.to_string_lossy()]);
    assert!(ok, "{err}");
    let read = |d: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "stale.safetensors")
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let logits = |files: &[(String, Vec<u8>)]| -> Vec<f32> {
        let mut e = wick::Engine::from_hf_files(files, &candle_core::Device::Cpu).unwrap();
        let ids = e.tokenizer().encode("the cat sat").unwrap();
        e.model_mut().forward(&ids).unwrap().to_vec1().unwrap()
    };
    // Q4_1-sized MLX blocks are copied exactly: the re-export answers as the sharded input does.
    assert_eq!(logits(&read(&out)), logits(&read(&dir)));
    assert_eq!(logits(&read(&out)), logits(&files));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&out);
}

/// The last cell of the table row that starts with `label` (`| label | … | cell |`).
fn last_cell<'a>(out: &'a str, label: &str) -> &'a str {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("| {label} |")))
        .unwrap_or_else(|| panic!("no row {label:?} in\n{out}"));
    line.trim_end_matches('|')
        .rsplit('|')
        .next()
        .map_or("", str::trim)
}

#[test]
fn bench_prints_min_median_max_at_a_prompt_length_and_a_profile() {
    let model = temp_file(
        "tiny-bench-table.gguf",
        &wick::weights::tiny::tiny_gguf(5).unwrap(),
    );
    let (ok, out, err) = wick(&[
        "bench",
        "--model",
        &model,
        "--prompt-tokens",
        "64",
        "--runs",
        "1",
        "--decode-tokens",
        "4",
        "--thread-counts",
        "1",
        "--profile",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.lines().any(|l| l == "| metric | 1 thread(s) |"),
        "{out}"
    );
    // `median (min–max)`, min ≤ median ≤ max.
    let spread = regex::Regex::new(r"^(\d+\.\d+) \((\d+\.\d+)–(\d+\.\d+)\)$").unwrap();
    for label in [
        "prefill tok/s (64-token prompt)",
        "decode tok/s (4 greedy tokens after it)",
        "time to first token (s), 64-token prompt",
    ] {
        let cell = last_cell(&out, label);
        let c = spread
            .captures(cell)
            .unwrap_or_else(|| panic!("{label}: {cell:?}"));
        let v: Vec<f64> = (1..=3).map(|i| c[i].parse().unwrap()).collect();
        assert!(
            v[1] <= v[0] && v[0] <= v[2] && v[0] > 0.0,
            "{label}: {cell}"
        );
    }
    assert!(
        last_cell(&out, "peak RSS").ends_with("files + KV)"),
        "{out}"
    );

    // Memory: the read bandwidth, the weights a decode step reads and how far the step is off.
    let memory = regex::Regex::new(
        r"reads stream at (\d+\.\d) GB/s; a decode step reads (\d+\.\d) MB of weights",
    )
    .unwrap();
    let m = memory
        .captures(&out)
        .unwrap_or_else(|| panic!("no memory line in\n{out}"));
    assert!(m[1].parse::<f64>().unwrap() > 0.0, "{out}");
    assert!(m[2].parse::<f64>().unwrap() > 0.0, "{out}");
    assert!(
        out.contains("- decode after 64 tokens: ") && out.contains("× the weights' read time"),
        "{out}"
    );

    // The profile: one row per stage and the rest, each `ms (share%)`, for the prefill of the
    // 64-token prompt (one chunk) and the decode steps after it; the shares add up to the total.
    let header = "| stage | prefill, 64-token prompt | decode after 64 tokens |";
    assert!(out.lines().any(|l| l == header), "{out}");
    let share = regex::Regex::new(r"^(\d+\.\d+) \((\d+\.\d)%\)$").unwrap();
    let mut sums = [0f64; 2];
    for stage in wick::model::profile::Stage::ALL
        .iter()
        .map(|s| s.name())
        .chain(["other (tensor copies, glue)"])
    {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("| {stage} |")))
            .unwrap_or_else(|| panic!("no stage {stage:?} in\n{out}"));
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 3, "{line}");
        for (sum, cell) in sums.iter_mut().zip(&cells[1..]) {
            let c = share.captures(cell).unwrap_or_else(|| panic!("{line}"));
            *sum += c[2].parse::<f64>().unwrap();
        }
    }
    for sum in sums {
        assert!((sum - 100.0).abs() < 1.5, "shares add up to {sum}%\n{out}");
    }
    // The matmuls, attention and the head ran in both phases; sampling only while decoding.
    for stage in ["matmul q/k/v", "attention", "matmul down", "lm_head"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("| {stage} |")))
            .unwrap();
        assert!(!line.contains("| 0.0000 "), "{line}");
    }
    let sampling = out.lines().find(|l| l.starts_with("| sampling |")).unwrap();
    assert!(
        sampling.starts_with("| sampling | 0.0000 (0.0%) |"),
        "{sampling}"
    );
    assert!(
        !last_cell(&out, "sampling").starts_with("0.0000 "),
        "{sampling}"
    );
    assert_eq!(last_cell(&out, "total").split(' ').nth(1), Some("(100.0%)"));
}
