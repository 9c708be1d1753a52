//! Inputs the fuzz targets in `fuzz/` found to break a loader, minimized: each must now give an
//! `Err` whose message names the problem, never a panic.
//!
//! `tests/fixtures/fuzz/gguf-*.bin` go through everything the `gguf` target runs: the header
//! parser, then the model and the tokenizer built from it. Native only: they are read from disk.
#![cfg(not(target_arch = "wasm32"))]

use std::fs;
use std::path::Path;

use candle_core::Device;
use wick::weights::Gguf;
use wick::{Model, Tokenizer};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz");

/// Every `gguf-*.bin` fixture, what it broke, and words its error message must contain.
const GGUF_FINDINGS: &[(&str, &str)] = &[
    // A Q8_0 tensor of 64 × (2^58 − 1) elements: the element count fits in a usize, its byte
    // size does not; the size multiplication overflowed (a panic with overflow checks on, a
    // wrapped size, possibly small enough to pass the bounds check, without).
    (
        "gguf-tensor-size-overflow.bin",
        "tensor `token_embd.weight`: Q8_0 shape",
    ),
    // Written by hand after reading the parser (the fuzzer's inputs are too small to make it
    // costly): two tensors on the same bytes. A 625 KB file whose 7168 weight tensors all name
    // one 64 KB blob made the loader hold 470 MB; it grows with the square of the file size.
    (
        "gguf-overlapping-tensors.bin",
        "tensor `b`: its data overlaps that of `a`",
    ),
];

/// The messages of every error the `gguf` fuzz target's loaders give for `bytes` (empty: it loads).
fn gguf_errors(bytes: &[u8]) -> Vec<String> {
    let g = match Gguf::parse(bytes) {
        Ok(g) => g,
        Err(e) => return vec![e.to_string()],
    };
    let model = Model::from_gguf(&g, &Device::Cpu).err();
    let tokenizer = Tokenizer::from_gguf(&g).err();
    model
        .into_iter()
        .chain(tokenizer)
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn gguf_findings_give_readable_errors() {
    let mut seen = 0;
    for entry in fs::read_dir(FIXTURES).expect("tests/fixtures/fuzz") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("gguf-") {
            continue;
        }
        let Some((_, want)) = GGUF_FINDINGS.iter().find(|(file, _)| *file == name) else {
            panic!("{name} is not listed in GGUF_FINDINGS: say what it broke and what it must say");
        };
        let bytes = fs::read(&path).unwrap();
        let errors = gguf_errors(&bytes);
        assert!(!errors.is_empty(), "{name} loads, but it is broken");
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{name}: errors {errors:?} should mention {want:?}"
        );
        seen += 1;
    }
    assert_eq!(seen, GGUF_FINDINGS.len(), "a listed fixture is missing");
}

/// Writes the starting corpus of the `gguf` fuzz target to `fuzz/corpus/gguf/`: a few tiny models,
/// the GGUF of every architecture fixture in `tests/fixtures/hf/`, and, when the real model is
/// there, its first 64 KiB (a real header, cut short).
///
/// `cargo test --release --test fuzz_regressions -- --ignored write_gguf_seed_corpus`
#[test]
#[ignore = "writes files for the fuzzer; run by hand"]
fn write_gguf_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("fuzz/corpus/gguf");
    fs::create_dir_all(&dir).unwrap();
    for seed in [1, 2, 3] {
        let bytes = wick::weights::tiny::tiny_gguf(seed).unwrap();
        assert!(gguf_errors(&bytes).is_empty(), "the tiny model loads");
        fs::write(dir.join(format!("tiny-{seed}.gguf")), bytes).unwrap();
    }
    for entry in fs::read_dir(root.join("tests/fixtures/hf")).unwrap() {
        let folder = entry.unwrap().path();
        if let Ok(bytes) = fs::read(folder.join("model.gguf")) {
            let name = folder.file_name().unwrap().to_string_lossy().into_owned();
            fs::write(dir.join(format!("hf-{name}.gguf")), bytes).unwrap();
        }
    }
    if let Ok(real) = fs::read(root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")) {
        fs::write(dir.join("smollm2-head-64k.gguf"), &real[..64 * 1024]).unwrap();
    }
}
