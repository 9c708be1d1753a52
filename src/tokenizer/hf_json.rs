//! A Hugging Face `tokenizer.json` read faster than `tokenizers::Tokenizer::from_bytes` reads it,
//! into the same tokenizer.
//!
//! `tokenizers` reads the model section through two generic buffers (its model wrapper and its
//! merges are untagged enums): for SmolLM2's 49k-token BPE vocabulary that was most of the
//! ~200 ms a browser spent on the tokenizer at every load. Here a BPE model section is read
//! straight into its vocabulary and merges and built with `tokenizers`' own builder; the rest of
//! the file (normalizer, pre-tokenizer, post-processor, decoder) is read by `tokenizers` with
//! the model and the added tokens cut out, and the added tokens are then added the way its
//! reader adds them. Any other model kind is read by `tokenizers` whole.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::{AddedToken, Tokenizer};

use super::tok_err;
use crate::error::Result;

/// The sections this reader takes out of the file.
#[derive(Deserialize)]
struct Sections<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
    #[serde(borrow, default)]
    added_tokens: Option<&'a RawValue>,
}

/// A BPE model section, as `tokenizers` reads one (`type` must be "BPE"; other keys ignored).
#[derive(Deserialize)]
struct BpeSection {
    #[serde(rename = "type")]
    kind: Option<String>,
    dropout: Option<f32>,
    unk_token: Option<String>,
    continuing_subword_prefix: Option<String>,
    end_of_word_suffix: Option<String>,
    fuse_unk: Option<bool>,
    byte_fallback: Option<bool>,
    ignore_merges: Option<bool>,
    vocab: Vocab,
    merges: Vec<Merge>,
}

/// One merge: a `["a", "b"]` pair, or a legacy `"a b"` line.
enum Merge {
    Pair(String, String),
    Line(String),
}

impl<'de> Deserialize<'de> for Merge {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(MergeVisitor)
    }
}

struct MergeVisitor;

impl<'de> Visitor<'de> for MergeVisitor {
    type Value = Merge;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a merge: [\"a\", \"b\"] or \"a b\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Merge, E> {
        Ok(Merge::Line(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Merge, E> {
        Ok(Merge::Line(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Merge, A::Error> {
        let two = "a merge of two tokens";
        let a: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &two))?;
        let b: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &two))?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(3, &two));
        }
        Ok(Merge::Pair(a, b))
    }
}

/// A model section `tokenizers` accepts while the real model is built apart.
const PLACEHOLDER_MODEL: &str = r#"{"type":"BPE","vocab":{},"merges":[]}"#;

/// The tokenizer `json` describes: as `tokenizers::Tokenizer::from_bytes` gives it, faster when
/// its model is BPE.
pub(super) fn parse(json: &[u8]) -> Result<Tokenizer> {
    let whole = || Tokenizer::from_bytes(json).map_err(tok_err);
    let Ok(sections) = serde_json::from_slice::<Sections>(json) else {
        return whole();
    };
    let Ok(mut bpe) = serde_json::from_str::<BpeSection>(sections.model.get()) else {
        return whole();
    };
    if bpe.kind.as_deref().is_some_and(|k| k != "BPE") {
        return whole();
    }
    let Some(merges) = pairs(std::mem::take(&mut bpe.merges)) else {
        return whole();
    };
    let added: Vec<AddedToken> = match sections.added_tokens {
        Some(raw) => serde_json::from_str(raw.get()).map_err(tok_err)?,
        None => Vec::new(),
    };
    // The rest of the file, with the model section replaced and the added tokens left out.
    let mut cuts = vec![(sections.model.get(), PLACEHOLDER_MODEL)];
    cuts.extend(sections.added_tokens.map(|raw| (raw.get(), "[]")));
    cuts.sort_by_key(|(raw, _)| raw.as_ptr() as usize);
    let mut rest = Vec::with_capacity(json.len() / 8);
    let mut at = 0;
    for (raw, with) in cuts {
        let start = raw.as_ptr() as usize - json.as_ptr() as usize;
        rest.extend_from_slice(&json[at..start]);
        rest.extend_from_slice(with.as_bytes());
        at = start + raw.len();
    }
    rest.extend_from_slice(&json[at..]);
    let mut tokenizer = Tokenizer::from_bytes(&rest).map_err(tok_err)?;
    tokenizer.with_model(build(bpe, merges)?);
    tokenizer.add_tokens(&added);
    Ok(tokenizer)
}

/// The merges as pairs, in rank order: legacy lines split at their one space, `#version` lines
/// skipped, as `tokenizers` reads them; None for a line that is not two tokens (`tokenizers`
/// then reads the file and tells what is wrong).
fn pairs(merges: Vec<Merge>) -> Option<Merges> {
    let mut out = Vec::with_capacity(merges.len());
    for merge in merges {
        match merge {
            Merge::Pair(a, b) => out.push((a, b)),
            Merge::Line(line) if line.starts_with("#version") => {}
            Merge::Line(line) => {
                let mut parts = line.split(' ');
                let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
                    return None;
                };
                out.push((a.to_string(), b.to_string()));
            }
        }
    }
    Some(out)
}

/// The BPE model of a section, built as `tokenizers` builds it.
fn build(s: BpeSection, merges: Merges) -> Result<BPE> {
    let mut b = BPE::builder().vocab_and_merges(s.vocab, merges);
    if let Some(d) = s.dropout {
        b = b.dropout(d);
    }
    if let Some(u) = s.unk_token {
        b = b.unk_token(u);
    }
    if let Some(p) = s.continuing_subword_prefix {
        b = b.continuing_subword_prefix(p);
    }
    if let Some(x) = s.end_of_word_suffix {
        b = b.end_of_word_suffix(x);
    }
    if let Some(f) = s.fuse_unk {
        b = b.fuse_unk(f);
    }
    if let Some(f) = s.byte_fallback {
        b = b.byte_fallback(f);
    }
    if let Some(i) = s.ignore_merges {
        b = b.ignore_merges(i);
    }
    b.build().map_err(tok_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A small BPE tokenizer.json in the shape of SmolLM2's: byte-level, added special tokens.
    fn sample(merges: &str) -> String {
        let vocab: Vec<String> = [
            "<|endoftext|>",
            "<|im_start|>",
            "h",
            "e",
            "l",
            "o",
            "Ġ",
            "he",
            "ll",
            "hell",
            "hello",
            "Ġh",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| format!("\"{t}\": {i}"))
        .collect();
        format!(
            r#"{{"version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [
              {{"id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}},
              {{"id": 1, "content": "<|im_start|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}},
              {{"id": 12, "content": "<extra>", "single_word": false, "lstrip": true, "rstrip": false, "normalized": true, "special": false}}
            ],
            "normalizer": null,
            "pre_tokenizer": {{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}},
            "post_processor": null,
            "decoder": {{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}},
            "model": {{"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
              "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
              "vocab": {{{}}}, "merges": {merges}}}}}"#,
            vocab.join(", ")
        )
    }

    fn same(json: &str) {
        let fast = parse(json.as_bytes()).expect("the fast reader reads it");
        let reference = Tokenizer::from_bytes(json.as_bytes()).expect("tokenizers reads it");
        assert_eq!(
            fast.to_string(false).unwrap(),
            reference.to_string(false).unwrap(),
            "the same tokenizer, written out"
        );
        for text in [
            "hello hell",
            "<|im_start|>hello<|endoftext|>",
            "he <extra> llo",
        ] {
            let a = fast.encode(text, false).unwrap();
            let b = reference.encode(text, false).unwrap();
            assert_eq!(a.get_ids(), b.get_ids(), "{text}");
        }
    }

    #[test]
    fn reads_pairs_and_legacy_lines_as_tokenizers_does() {
        same(&sample(
            r#"[["h", "e"], ["l", "l"], ["he", "ll"], ["hell", "o"], ["Ġ", "h"]]"#,
        ));
        same(&sample(
            r##"["#version: 0.2", "h e", "l l", "he ll", "hell o", "Ġ h"]"##,
        ));
    }

    #[test]
    fn bad_merges_and_other_models_are_told_or_read_whole() {
        let bad = sample(r#"["h e x"]"#);
        assert!(parse(bad.as_bytes()).is_err());
        assert!(
            Tokenizer::from_bytes(bad.as_bytes()).is_err(),
            "tokenizers refuses it too"
        );
        let unknown = sample(r#"[["h", "q"]]"#);
        assert!(
            parse(unknown.as_bytes()).is_err(),
            "a merge of a token not in the vocabulary"
        );
        let wordlevel = r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1, "[UNK]": 2}, "unk_token": "[UNK]"}}"#;
        same(wordlevel);
        assert!(parse(b"{\"model\": 3").is_err());
    }
}
