//! The tiny model run as WebAssembly (under Node) must give what it gives natively: the same
//! greedy ids and logits within 1e-3 of `tests/fixtures/tiny_reference.json`.
//!
//! Run with:
//! `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner cargo test --target wasm32-unknown-unknown --test wasm`
#![cfg(target_arch = "wasm32")]

use candle_core::Device;
use serde::Deserialize;
use wasm_bindgen_test::wasm_bindgen_test;
use wick::weights::tiny::tiny_gguf;
use wick::{Engine, SamplingParams};

/// The fields of the fixture this test needs (written natively by `tests/tiny.rs`).
#[derive(Deserialize)]
struct Reference {
    seed: u64,
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    logits: Vec<f32>,
}

const FIXTURE: &str = include_str!("fixtures/tiny_reference.json");

#[wasm_bindgen_test]
fn tiny_model_matches_the_native_reference() {
    let want: Reference = serde_json::from_str(FIXTURE).expect("fixture parses");
    let bytes = tiny_gguf(want.seed).expect("tiny model");
    let mut e = Engine::from_gguf_bytes(&bytes, &Device::Cpu).expect("tiny model loads");

    let ids = e.tokenizer().encode(&want.prompt).unwrap();
    assert_eq!(ids, want.prompt_ids);

    let logits: Vec<f32> = e.model_mut().forward(&ids).unwrap().to_vec1().unwrap();
    assert_eq!(logits.len(), want.logits.len());
    let mut worst = 0f32;
    for (i, (a, b)) in logits.iter().zip(&want.logits).enumerate() {
        let err = (a - b).abs() / b.abs().max(1.0);
        assert!(err <= 1e-3, "logit {i}: wasm {a}, native {b}");
        worst = worst.max(err);
    }
    wasm_bindgen_test::console_log!("largest relative logit difference from native: {worst:e}");

    e.reset();
    let params = SamplingParams::greedy(want.greedy_ids.len());
    let (greedy, _) = e.generate(&want.prompt, params, |_| {}).unwrap();
    assert_eq!(greedy, want.greedy_ids);
}

/// The fields of `tests/fixtures/beam_reference.json` (written natively by `tests/beam.rs`):
/// the same replies and the same log-probabilities to the bit.
#[derive(Deserialize)]
struct BeamReference {
    seed: u64,
    prompt: String,
    cases: Vec<BeamCase>,
}

#[derive(Deserialize)]
struct BeamCase {
    beams: usize,
    length_penalty: f64,
    max_tokens: usize,
    ids: Vec<u32>,
    logprob: f64,
}

#[wasm_bindgen_test]
fn tiny_beam_search_matches_the_native_reference() {
    let want: BeamReference =
        serde_json::from_str(include_str!("fixtures/beam_reference.json")).expect("parses");
    let bytes = tiny_gguf(want.seed).expect("tiny model");
    let mut e = Engine::from_gguf_bytes(&bytes, &Device::Cpu).expect("tiny model loads");
    for case in &want.cases {
        let params = SamplingParams {
            beams: case.beams,
            length_penalty: case.length_penalty,
            ..SamplingParams::greedy(case.max_tokens)
        };
        let (ids, _) = e.generate(&want.prompt, params, |_| {}).unwrap();
        assert_eq!(ids, case.ids, "beams {}", case.beams);
        let logprob = e.stats().beam.as_ref().expect("a beam report").logprob;
        let diff = (logprob - case.logprob).abs();
        wasm_bindgen_test::console_log!(
            "beams {} penalty {}: logprob {logprob} (native {}, difference {diff:e})",
            case.beams,
            case.length_penalty,
            case.logprob
        );
        assert!(
            diff <= 1e-3,
            "beams {}: wasm {logprob}, native {}",
            case.beams,
            case.logprob
        );
    }
}

/// A KV snapshot taken and restored in wasm continues as a prefill of the same tokens does, to
/// the bit, and a damaged one is refused (`tests/kv_snapshot.rs` has the rest, natively).
#[wasm_bindgen_test]
fn tiny_kv_snapshot_restores_as_a_prefill() {
    let bytes = tiny_gguf(42).expect("tiny model");
    let engine = || Engine::from_gguf_bytes(&bytes, &Device::Cpu).expect("tiny model loads");
    let mut a = engine();
    let prompt = "<|im_start|>user\nName three colours.<|im_end|>\n";
    let (reply, _) = a
        .generate(prompt, SamplingParams::greedy(6), |_| {})
        .unwrap();
    let snapshot = a.save_kv().unwrap();
    let mut ids = a.tokenizer().encode(prompt).unwrap();
    ids.extend(&reply);
    ids.extend(a.tokenizer().encode("<|im_start|>user\nMore?").unwrap());

    let mut b = engine();
    let n = b.restore_kv(&snapshot, &ids).unwrap();
    assert!(n > 0);
    let continued: Vec<f32> = b.model_mut().forward(&ids[n..]).unwrap().to_vec1().unwrap();
    let prefilled: Vec<f32> = engine()
        .model_mut()
        .forward(&ids)
        .unwrap()
        .to_vec1()
        .unwrap();
    let same = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
    assert!(
        same(&continued, &prefilled),
        "restored + rest = prefill, to the bit"
    );

    let mut bad = snapshot.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 1;
    assert!(matches!(
        engine().restore_kv(&bad, &ids),
        Err(wick::Error::SnapshotCorrupt(_))
    ));
}

/// Model files must come as `Uint8Array`s, which the engine reads in place (never copied whole);
/// anything else is refused by name, not read.
#[wasm_bindgen_test]
fn model_files_that_are_not_bytes_are_refused_by_name() {
    use wasm_bindgen::JsCast;
    let files = js_sys::Array::of1(&"{}".into());
    let Err(e) = wick::web::WickEngine::from_files(vec!["config.json".into()], files, None) else {
        panic!("a string was taken for a file");
    };
    let message = String::from(e.unchecked_into::<js_sys::Error>().message());
    assert_eq!(message, "config.json is not a Uint8Array");
}
