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
    // Measuring the peer needs llama-cpp-python (never installed for the tests): without a
    // usable Python the command fails at once, saying so, before measuring anything.
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
    assert!(err.contains("needs llama-cpp-python"), "{err}");

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
