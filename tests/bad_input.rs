//! Files that are not models, or are broken ones: each must give the right `wick::Error` with a
//! message that names the problem — never a panic, never a huge allocation.
//!
//! Broken files are the tiny model of `wick::weights::tiny` with header bytes patched in place.

use std::time::{Duration, Instant};

use candle_core::quantized::{gguf_file, gguf_file::Value, QTensor};
use candle_core::Device;
use wick::weights::tiny::tiny_gguf;
use wick::weights::{Gguf, ModelFolder};
use wick::{Engine, Error};

fn tiny() -> Vec<u8> {
    tiny_gguf(1).expect("tiny model")
}

/// The error loading `bytes` gives (the engine itself is not `Debug`, so no `unwrap_err`).
fn load_err(bytes: &[u8]) -> Error {
    match Engine::from_gguf_bytes(bytes, &Device::Cpu) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e,
    }
}

/// Asserts the message of `e` contains every one of `parts`.
fn says(e: &Error, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should mention {p:?}");
    }
}

/// Offset of the first occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in file", String::from_utf8_lossy(needle)))
}

/// Offset just past the header string `s` (GGUF v2+: u64 length, then the bytes).
fn after_string(bytes: &[u8], s: &str) -> usize {
    let at = find(bytes, s.as_bytes());
    assert_eq!(
        &bytes[at - 8..at],
        &(s.len() as u64).to_le_bytes(),
        "`{s}` is a header string"
    );
    at + s.len()
}

/// Offset of the type id of tensor `name`'s header record (after its name, rank and dims).
fn tensor_type_at(bytes: &[u8], name: &str) -> usize {
    let at = after_string(bytes, name);
    let rank = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    at + 4 + 8 * rank
}

fn patch(bytes: &mut [u8], at: usize, new: &[u8]) {
    bytes[at..at + new.len()].copy_from_slice(new);
}

#[test]
fn tiny_model_loads() {
    assert!(Engine::from_gguf_bytes(&tiny(), &Device::Cpu).is_ok());
}

#[test]
fn files_that_are_not_gguf() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    let e = load_err(png);
    assert!(matches!(e, Error::NotGguf(_)), "{e:?}");
    says(&e, &["not a GGUF file", "89 50 4e 47"]);

    let e = load_err(&[]);
    assert!(matches!(e, Error::NotGguf(_)), "{e:?}");
    says(&e, &["not a GGUF file", "[]"]);

    let e = load_err(b"<!DOCTYPE html><html>404 Not Found</html>");
    assert!(matches!(e, Error::NotGguf(_)), "{e:?}");
    says(&e, &["3c 21 44 4f"]);

    let mut v99 = tiny();
    patch(&mut v99, 4, &99u32.to_le_bytes());
    let e = load_err(&v99);
    assert!(matches!(e, Error::NotGguf(_)), "{e:?}");
    says(&e, &["version 99"]);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = tiny();
    // Every cut inside the header, then every 61st byte of the tensor data, then the last byte.
    let header_end = tensor_type_at(&bytes, "output_norm.weight") + 4 + 8;
    let cuts = (0..header_end + 64)
        .chain((header_end..bytes.len()).step_by(61))
        .chain([bytes.len() - 1]);
    let mut n = 0;
    for cut in cuts {
        let e = match Gguf::parse(&bytes[..cut]) {
            Ok(_) => panic!("a file cut at {cut} of {} bytes parsed", bytes.len()),
            Err(e) => e,
        };
        assert!(
            matches!(
                e,
                Error::NotGguf(_) | Error::Truncated { .. } | Error::Corrupt(_)
            ),
            "cut at {cut}: {e:?}"
        );
        n += 1;
    }
    assert!(n > 1000);

    // A cut through the tensor data names the tensor and both sizes.
    let e = load_err(&bytes[..bytes.len() - 100]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    says(
        &e,
        &[
            "truncated",
            "output_norm.weight",
            &format!("the file has {} bytes", bytes.len() - 100),
        ],
    );
}

#[test]
fn absurd_counts_and_lengths_fail_fast() {
    let bytes = tiny();
    let huge = (1u64 << 61).to_le_bytes();
    let tokens_len_at = after_string(&bytes, "tokenizer.ggml.tokens") + 4 + 4;
    let cases: [(usize, &str); 5] = [
        (8, "tensor count"),
        (16, "metadata count"),
        (24, "metadata key"),
        (tokens_len_at, "tokenizer.ggml.tokens"),
        // The length of the first token string.
        (tokens_len_at + 8, "tokenizer.ggml.tokens"),
    ];
    for (at, what) in cases {
        let mut bad = bytes.clone();
        patch(&mut bad, at, &huge);
        let t0 = Instant::now();
        let e = load_err(&bad);
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{what}: took {:?}",
            t0.elapsed()
        );
        assert!(matches!(e, Error::Corrupt(_)), "{what}: {e:?}");
        says(&e, &[what, "bytes left"]);
    }

    // A tensor dimension so large that the element count overflows.
    let mut bad = bytes.clone();
    let dims_at = after_string(&bytes, "blk.0.ffn_up.weight") + 4;
    patch(&mut bad, dims_at, &huge);
    patch(&mut bad, dims_at + 8, &huge);
    let e = load_err(&bad);
    assert!(matches!(e, Error::Tensor { .. }), "{e:?}");
    says(&e, &["blk.0.ffn_up.weight", "absurdly large"]);

    // A large but representable dimension: the tensor would run past the end of the file.
    let mut bad = bytes.clone();
    patch(&mut bad, dims_at + 8, &(1u64 << 30).to_le_bytes());
    let e = load_err(&bad);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    says(&e, &["blk.0.ffn_up.weight", "truncated"]);
}

#[test]
fn unsupported_architecture_is_named() {
    let mut bad = tiny();
    let at = after_string(&bad, "general.architecture") + 4 + 8;
    assert_eq!(&bad[at..at + 5], b"llama");
    patch(&mut bad, at, b"mamba");
    let e = load_err(&bad);
    assert!(
        matches!(&e, Error::UnsupportedArchitecture(a) if a == "mamba"),
        "{e:?}"
    );
    says(&e, &["unsupported architecture", "mamba", "llama"]);
}

#[test]
fn unsupported_tensor_type_is_named() {
    let mut bad = tiny();
    let at = tensor_type_at(&bad, "blk.1.attn_q.weight");
    assert_eq!(&bad[at..at + 4], &3u32.to_le_bytes(), "Q4_1 is type 3");
    patch(&mut bad, at, &99u32.to_le_bytes());
    let e = load_err(&bad);
    assert!(
        matches!(&e, Error::UnsupportedQuantization { name, .. } if name == "blk.1.attn_q.weight"),
        "{e:?}"
    );
    says(
        &e,
        &["blk.1.attn_q.weight", "unsupported quantization", "99"],
    );
}

#[test]
fn tensor_with_the_wrong_shape_is_named() {
    let mut bad = tiny();
    // attn_k is [32, 64] (2 key/value heads of 16); claim 16 rows (the data still fits).
    let rows_at = after_string(&bad, "blk.0.attn_k.weight") + 4 + 8;
    assert_eq!(&bad[rows_at..rows_at + 8], &32u64.to_le_bytes());
    patch(&mut bad, rows_at, &16u64.to_le_bytes());
    let e = load_err(&bad);
    assert!(
        matches!(&e, Error::Tensor { name, .. } if name == "blk.0.attn_k.weight"),
        "{e:?}"
    );
    says(&e, &["blk.0.attn_k.weight", "[16, 64]", "[32, 64]"]);
}

#[test]
fn missing_tensor_and_metadata_are_named() {
    let mut bad = tiny();
    let at = find(&bad, b"output_norm.weight");
    patch(&mut bad, at, b"output_norm.wEight");
    let e = load_err(&bad);
    assert!(matches!(e, Error::Tensor { .. }), "{e:?}");
    says(&e, &["output_norm.weight", "missing"]);

    let mut bad = tiny();
    let at = find(&bad, b"llama.block_count");
    patch(&mut bad, at, b"llama.block_kount");
    let e = load_err(&bad);
    assert!(matches!(e, Error::Metadata(_)), "{e:?}");
    says(&e, &["llama.block_count", "missing"]);

    // The rms epsilon stored as a u32 instead of an f32 (same size, so the file stays readable).
    let mut bad = tiny();
    let at = after_string(&bad, "llama.attention.layer_norm_rms_epsilon");
    assert_eq!(&bad[at..at + 4], &6u32.to_le_bytes(), "F32 is value type 6");
    patch(&mut bad, at, &4u32.to_le_bytes());
    let e = load_err(&bad);
    assert!(matches!(e, Error::Metadata(_)), "{e:?}");
    says(
        &e,
        &[
            "llama.attention.layer_norm_rms_epsilon",
            "should be a float",
        ],
    );
}

#[test]
fn unknown_metadata_value_type_is_corrupt() {
    let mut bad = tiny();
    let at = after_string(&bad, "general.name");
    patch(&mut bad, at, &77u32.to_le_bytes());
    let e = load_err(&bad);
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    says(&e, &["general.name", "unknown value type 77"]);
}

/// `bytes` (a GGUF) rewritten with metadata `key` set to `value`, tensors unchanged.
fn with_metadata(bytes: &[u8], key: &str, value: Value) -> Vec<u8> {
    let g = Gguf::parse(bytes).unwrap();
    let mut metadata = g.metadata.clone();
    metadata.insert(key.to_string(), value);
    let tensors: Vec<(String, QTensor)> = g
        .tensors
        .keys()
        .map(|n| (n.clone(), g.tensor(n, &Device::Cpu).unwrap()))
        .collect();
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md, &ts).unwrap();
    out.into_inner()
}

#[test]
fn a_hostile_chat_template_fails_the_load_within_seconds() {
    // Nested loops: 10^9 steps if nothing stopped them.
    let hostile = "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{{ a }}{% endfor %}{% endfor %}{% endfor %}";
    let bad = with_metadata(
        &tiny(),
        "tokenizer.chat_template",
        Value::String(hostile.into()),
    );
    let t0 = Instant::now();
    let e = load_err(&bad);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(matches!(e, Error::TemplateLimit(_)), "{e:?}");
    says(&e, &["chat template", "steps", "loops without end"]);

    // One that writes without end is stopped by the output cap.
    let flood = "{% for a in range(100000) %}{{ 'flood' * 100 }}{% endfor %}";
    let bad = with_metadata(
        &tiny(),
        "tokenizer.chat_template",
        Value::String(flood.into()),
    );
    let e = load_err(&bad);
    assert!(matches!(e, Error::TemplateLimit(_)), "{e:?}");
    says(&e, &["chat template", "wrote more than"]);
}

/// A GGUF v3 header with one metadata array of `n` u8 items (and no tensors).
fn gguf_with_u8_array(n: usize) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata
    b.extend(5u64.to_le_bytes());
    b.extend(b"bytes");
    b.extend(9u32.to_le_bytes()); // array
    b.extend(0u32.to_le_bytes()); // of u8
    b.extend((n as u64).to_le_bytes());
    b.resize(b.len() + n, 7);
    b
}

#[test]
fn huge_metadata_arrays_and_strings_are_refused_before_they_are_built() {
    // Each item would be a 32-byte value: 4 MB of file asking for 134 MB.
    let n = wick::weights::gguf::MAX_METADATA_ITEMS + 1;
    let bad = gguf_with_u8_array(n);
    let t0 = Instant::now();
    let e = Gguf::parse(&bad).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    says(
        &e,
        &[
            "bytes",
            n.to_string().as_str(),
            "more than any model's vocabulary",
        ],
    );
    assert!(Gguf::parse(&gguf_with_u8_array(1000)).is_ok());

    // A string longer than any metadata needs.
    let long = "x".repeat(wick::weights::gguf::MAX_METADATA_BYTES);
    let bad = with_metadata(&tiny(), "general.description", Value::String(long));
    let e = load_err(&bad);
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    says(&e, &["metadata runs past 64 MB"]);
}

/// A Hugging Face folder's files: the tiny tokenizer and a config, plus `extra`.
fn folder_with(extra: &[(&str, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let tok = wick::Tokenizer::from_gguf(&Gguf::parse(&tiny()).unwrap()).unwrap();
    let mut files = vec![
        (
            "config.json".to_string(),
            br#"{"model_type": "llama"}"#.to_vec(),
        ),
        (
            "tokenizer.json".to_string(),
            tok.to_json().unwrap().into_bytes(),
        ),
    ];
    files.extend(extra.iter().map(|(n, b)| (n.to_string(), b.clone())));
    files
}

fn folder_err(files: &[(String, Vec<u8>)]) -> Error {
    match Engine::from_hf_files(files, &Device::Cpu) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e,
    }
}

#[test]
fn shard_names_must_be_plain_safetensors_names() {
    for bad in [
        "../../etc/passwd.safetensors",
        "/etc/model.safetensors",
        "sub/model.safetensors",
        "model.bin",
        ".safetensors",
    ] {
        let index = format!(r#"{{"weight_map": {{"a": "ok.safetensors", "b": "{bad}"}}}}"#);
        let files = folder_with(&[("model.safetensors.index.json", index.into_bytes())]);
        let e = folder_err(&files);
        says(
            &e,
            &[
                "model.safetensors.index.json",
                "not a plain .safetensors file name",
            ],
        );
        assert!(e.to_string().contains(bad), "{e}");
    }
    assert!(wick::weights::folder::is_shard_name(
        "model-00001-of-00002.safetensors"
    ));
}

#[test]
fn oversized_json_files_are_refused_unread() {
    use wick::weights::folder::{MAX_JSON, MAX_TOKENIZER_JSON};
    use wick::weights::safetensors::Bytes;
    let big = vec![b' '; MAX_JSON + 1];
    for name in [
        "config.json",
        "tokenizer_config.json",
        "model.safetensors.index.json",
        "chat_template.jinja",
    ] {
        let files = [(name.to_string(), &big as &dyn Bytes)];
        let folder = ModelFolder::new(&files);
        let e = match name {
            "config.json" => folder.config().err(),
            "tokenizer_config.json" => folder.special_tokens().err(),
            "chat_template.jinja" => folder.chat_template().err(),
            _ => folder.shard_names().err(),
        }
        .unwrap();
        says(&e, &[name, "16777217 bytes", "more than the 16 MB"]);
    }
    let huge = vec![b' '; MAX_TOKENIZER_JSON + 1];
    let e = wick::Tokenizer::from_json(&huge, None, None).err().unwrap();
    says(&e, &["tokenizer.json", "67108865 bytes", "64 MB"]);
    let files = [("tokenizer.json".to_string(), &huge as &dyn Bytes)];
    let e = ModelFolder::new(&files).tokenizer_json().err().unwrap();
    says(&e, &["tokenizer.json", "more than the 64 MB"]);
}
