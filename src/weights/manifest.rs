//! A model's manifest: the size and sha256 of each of its files, written beside them
//! (`manifest.json` in a folder) so whoever downloads the model can check every byte; the browser
//! checks each file against it while the file streams in, and again when it reads its kept copy.

use std::fmt::Write;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The manifest's file name in a model folder (a GGUF's is `NAME.gguf.manifest.json`).
pub const FILE: &str = "manifest.json";

/// `files` with their manifest appended: `{"version": 1, "files": {NAME: {"size", "sha256"}}}`.
pub fn with_manifest(mut files: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let manifest = manifest(&files);
    files.push((FILE.to_string(), manifest));
    files
}

/// The manifest of `files` (each `(name, bytes)`), as pretty JSON ending in a newline.
pub fn manifest(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let entries: Map<String, Value> = files
        .iter()
        .map(|(name, bytes)| {
            let entry = json!({ "size": bytes.len(), "sha256": sha256_hex(bytes) });
            (name.clone(), entry)
        })
        .collect();
    let value = json!({ "version": 1, "files": entries });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text.into_bytes()
}

/// The sha256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_standard_vectors() {
        // FIPS 180-2's examples.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_manifest_lists_every_file_with_its_size_and_hash() {
        let files = vec![
            ("config.json".to_string(), b"{}".to_vec()),
            ("model.safetensors".to_string(), vec![7u8; 1000]),
        ];
        let out = with_manifest(files.clone());
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].0, FILE);
        let v: Value = serde_json::from_slice(&out[2].1).expect("the manifest is JSON");
        assert_eq!(v["version"], 1);
        for (name, bytes) in &files {
            assert_eq!(v["files"][name]["size"], bytes.len());
            assert_eq!(v["files"][name]["sha256"], sha256_hex(bytes));
        }
        assert_eq!(v["files"].as_object().map(|m| m.len()), Some(2));
    }
}
