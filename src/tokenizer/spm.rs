//! SentencePiece tokenization of a GGUF `llama` vocabulary, as llama.cpp runs it: spaces become
//! `▁`, the text starts as one symbol per character, and the adjacent pair whose joined text is
//! the best-scoring token is merged, again and again (on equal scores, the leftmost pair). A
//! symbol that never became a token is written as its bytes (`<0xNN>` tokens).
//!
//! As a Hugging Face `tokenizer.json` ([`to_hf`]) the same vocabulary is a BPE model whose merges
//! come from the scores: every way of cutting a token into two tokens is a merge, ranked by the
//! token's score, so `tokenizers` merges pairs in llama.cpp's order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as Decoders;
use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as Normalizers};
use tokenizers::processors::template::TemplateProcessing;

use super::vocab::{Kind, Vocab};
use crate::error::{Error, Result};

/// SentencePiece's stand-in for a space.
pub const SPACE: char = '▁';

/// A run of the text: `len` bytes from `start`; `len == 0` once merged into its left neighbour.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of symbols `left` and its right neighbour, `len` bytes in all.
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Pair {
    /// The best pair is the greatest: higher score, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pair {}

/// The text of one fragment as SentencePiece sees it: a leading space when `prefix`, and every
/// space as `▁`.
pub fn escape(text: &str, prefix: bool) -> String {
    let mut s = String::with_capacity(text.len() + 3);
    if prefix {
        s.push(SPACE);
    }
    for c in text.chars() {
        s.push(if c == ' ' { SPACE } else { c });
    }
    s
}

/// Appends the ids of `text` (already escaped) to `out`.
pub fn encode(vocab: &Vocab, text: &str, out: &mut Vec<u32>) -> Result<()> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (start, c) in text.char_indices() {
        let i = symbols.len();
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: None,
        });
        if i > 0 {
            symbols[i - 1].next = Some(i);
        }
    }
    if symbols.is_empty() {
        return Ok(());
    }

    let mut queue = BinaryHeap::new();
    let try_pair = |queue: &mut BinaryHeap<Pair>, symbols: &[Symbol], left: usize| {
        let Some(right) = symbols[left].next else {
            return;
        };
        let (l, r) = (symbols[left], symbols[right]);
        let joined = &text[l.start..r.start + r.len];
        if let Some(id) = vocab.id(joined) {
            queue.push(Pair {
                score: vocab.score(id),
                left,
                right,
                len: joined.len(),
            });
        }
    };
    for left in 0..symbols.len() - 1 {
        try_pair(&mut queue, &symbols, left);
    }
    while let Some(pair) = queue.pop() {
        let (l, r) = (symbols[pair.left], symbols[pair.right]);
        // Stale: one side was merged away or grew since the pair was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != pair.len {
            continue;
        }
        symbols[pair.left].len += r.len;
        symbols[pair.left].next = r.next;
        symbols[pair.right].len = 0;
        if let Some(n) = r.next {
            symbols[n].prev = Some(pair.left);
        }
        if let Some(p) = l.prev {
            try_pair(&mut queue, &symbols, p);
        }
        try_pair(&mut queue, &symbols, pair.left);
    }

    let mut at = Some(0);
    while let Some(i) = at {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    out.push(vocab.byte_id(b)?);
                }
            }
        }
        at = s.next;
    }
    Ok(())
}

/// Appends a normal token's text with `▁` turned back into spaces.
pub fn unescape(text: &str, out: &mut Vec<u8>) {
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let c = if c == SPACE { ' ' } else { c };
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
}

/// The merges of a SentencePiece vocabulary: each token cut into two tokens, best-scoring token
/// first (on equal scores, the lower id, then the shorter left part).
fn merges(vocab: &Vocab) -> Vec<(String, String)> {
    let mut cuts: Vec<(u32, usize)> = Vec::new();
    for (id, text) in vocab.texts().iter().enumerate() {
        for (at, _) in text.char_indices().skip(1) {
            if vocab.id(&text[..at]).is_some() && vocab.id(&text[at..]).is_some() {
                cuts.push((id as u32, at));
            }
        }
    }
    cuts.sort_by(|a, b| vocab.score(b.0).total_cmp(&vocab.score(a.0)).then(a.cmp(b)));
    cuts.into_iter()
        .filter_map(|(id, at)| {
            let text = vocab.text(id)?;
            Some((text[..at].to_string(), text[at..].to_string()))
        })
        .collect()
}

/// The vocabulary as a Hugging Face tokenizer that encodes as [`encode`] does: spaces become `▁`
/// (with a leading one where the vocabulary asks for it, at the start and after each special
/// token), a BPE model with [`merges`], byte fallback, and the special tokens cut out first. Its
/// post-processor adds BOS/EOS as the vocabulary does, for other readers of the file (Wick adds
/// them itself).
pub fn to_hf(vocab: &Vocab) -> Result<tokenizers::Tokenizer> {
    let hf_err = |e: tokenizers::Error| Error::Tokenizer(format!("tokenizer.json: {e}"));
    let ids: BpeVocab = vocab
        .texts()
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let mut bpe = BPE::builder()
        .vocab_and_merges(ids, merges(vocab))
        .byte_fallback(true);
    let unknown = (0..vocab.len() as u32).find(|&i| vocab.kind(i) == Some(Kind::Unknown));
    if let Some(unk) = unknown.and_then(|i| vocab.text(i)) {
        bpe = bpe.unk_token(unk.to_string());
    }
    let bpe = bpe
        .build()
        .map_err(|e| Error::Tokenizer(format!("SentencePiece merges: {e}")))?;
    let mut hf = tokenizers::Tokenizer::new(bpe);
    let space = SPACE.to_string();
    let replace = Replace::new(" ", space.as_str()).map_err(hf_err)?;
    hf.with_normalizer(Some(match vocab.add_space_prefix {
        true => Normalizers::new(vec![Prepend::new(space.clone()).into(), replace.into()]),
        false => Normalizers::new(vec![replace.into()]),
    }));
    hf.with_decoder(Some(Decoders::new(vec![
        Replace::new(space.as_str(), " ").map_err(hf_err)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ])));
    vocab.add_to_hf(&mut hf);
    let bos = vocab.bos.filter(|_| vocab.add_bos);
    let eos = vocab.eos.filter(|_| vocab.add_eos);
    if bos.is_some() || eos.is_some() {
        let named = |id: Option<u32>| id.and_then(|i| Some((vocab.text(i)?.to_string(), i)));
        let (bos, eos) = (named(bos), named(eos));
        // One sequence of type `kind` between the BOS and EOS it gets, in template syntax.
        let around = |seq: &str, kind: u32| {
            let mut parts: Vec<String> = bos.iter().map(|(t, _)| format!("{t}:{kind}")).collect();
            parts.push(format!("{seq}:{kind}"));
            parts.extend(eos.iter().map(|(t, _)| format!("{t}:{kind}")));
            parts.join(" ")
        };
        let (single, pair) = (
            around("$A", 0),
            format!("{} {}", around("$A", 0), around("$B", 1)),
        );
        let post_err = |e: String| Error::Tokenizer(format!("tokenizer.json post-processor: {e}"));
        let post = TemplateProcessing::builder()
            .try_single(single)
            .and_then(|b| b.try_pair(pair))
            .map_err(post_err)?
            .special_tokens(bos.into_iter().chain(eos).collect::<Vec<_>>())
            .build()
            .map_err(|e| post_err(e.to_string()))?;
        hf.with_post_processor(Some(post));
    }
    Ok(hf)
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::gguf_file::Value;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::super::from_metadata;
    use crate::Tokenizer;

    const NORMAL: i32 = 1;
    const UNKNOWN: i32 = 2;
    const CONTROL: i32 = 3;
    const USER: i32 = 4;
    const BYTE: i32 = 6;

    /// A SentencePiece vocabulary of `(text, score, type)` with the usual specials first
    /// (`<pad>`, `<eos>`, `<bos>`, `<unk>`), 256 byte tokens, and `extra` metadata.
    fn spm(tokens: &[(&str, f32, i32)], extra: &[(&str, Value)]) -> Tokenizer {
        let mut all: Vec<(String, f32, i32)> = vec![
            ("<pad>".into(), 0.0, CONTROL),
            ("<eos>".into(), 0.0, CONTROL),
            ("<bos>".into(), 0.0, CONTROL),
            ("<unk>".into(), 0.0, UNKNOWN),
        ];
        all.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0, BYTE)));
        all.extend(tokens.iter().map(|&(t, s, k)| (t.to_string(), s, k)));
        let mut meta = vec![
            ("tokenizer.ggml.model", Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens",
                Value::Array(all.iter().map(|t| Value::String(t.0.clone())).collect()),
            ),
            (
                "tokenizer.ggml.scores",
                Value::Array(all.iter().map(|t| Value::F32(t.1)).collect()),
            ),
            (
                "tokenizer.ggml.token_type",
                Value::Array(all.iter().map(|t| Value::I32(t.2)).collect()),
            ),
            ("tokenizer.ggml.bos_token_id", Value::U32(2)),
            ("tokenizer.ggml.eos_token_id", Value::U32(1)),
            ("tokenizer.ggml.unknown_token_id", Value::U32(3)),
        ];
        meta.extend(extra.iter().cloned());
        from_metadata(&meta).unwrap()
    }

    /// The vocabulary of most tests: no space prefix, so each case shows exactly what it adds.
    fn plain(tokens: &[(&str, f32, i32)]) -> Tokenizer {
        spm(
            tokens,
            &[("tokenizer.ggml.add_space_prefix", Value::Bool(false))],
        )
    }

    /// The texts of `text`'s tokens, without BOS.
    fn pieces(tok: &Tokenizer, text: &str) -> Vec<String> {
        let ids = tok.encode_with(text, false, true).unwrap();
        ids.iter().map(|&i| tok.token_text(i).unwrap()).collect()
    }

    #[test]
    fn the_best_scoring_pair_merges_first() {
        let abc = [
            ("a", -1.0, NORMAL),
            ("b", -1.0, NORMAL),
            ("c", -1.0, NORMAL),
            ("ab", -3.0, NORMAL),
            ("bc", -2.0, NORMAL),
        ];
        let tok = plain(&abc);
        // "bc" scores higher than "ab", so b goes right even though "ab" is leftmost.
        assert_eq!(pieces(&tok, "abc"), ["a", "bc"]);
        let mut with_abc = abc.to_vec();
        with_abc.push(("abc", -5.0, NORMAL));
        // Merging continues while the joined text is a token, whatever its own score.
        assert_eq!(pieces(&plain(&with_abc), "abc"), ["abc"]);
        // Without "bc" the only pair is "ab".
        assert_eq!(pieces(&plain(&abc[..4]), "abc"), ["ab", "c"]);
    }

    #[test]
    fn equal_scores_merge_leftmost_first() {
        let tok = plain(&[("a", -1.0, NORMAL), ("aa", -2.0, NORMAL)]);
        assert_eq!(pieces(&tok, "aaa"), ["aa", "a"]);
        assert_eq!(pieces(&tok, "aaaaa"), ["aa", "aa", "a"]);
        // "aaa" then beats "aa" + "a" only if it is a token; with it, the left pair grows first.
        let tok = plain(&[
            ("a", -1.0, NORMAL),
            ("aa", -2.0, NORMAL),
            ("aaa", -3.0, NORMAL),
        ]);
        assert_eq!(pieces(&tok, "aaaa"), ["aa", "aa"]);
        assert_eq!(pieces(&tok, "aaaaa"), ["aa", "aaa"]);
    }

    #[test]
    fn characters_without_a_token_fall_back_to_bytes() {
        let tok = plain(&[("x", -1.0, NORMAL)]);
        assert_eq!(pieces(&tok, "xé"), ["x", "<0xC3>", "<0xA9>"]);
        assert_eq!(pieces(&tok, "🙂"), ["<0xF0>", "<0x9F>", "<0x99>", "<0x82>"]);
        // Decoding joins the bytes back into characters.
        let ids = tok.encode_with("xé🙂", false, true).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), "xé🙂");
        assert_eq!(tok.decode(&ids[..2]).unwrap(), "x\u{FFFD}");
    }

    #[test]
    fn spaces_become_the_word_marker() {
        let words = [
            ("▁", -1.0, NORMAL),
            ("h", -1.0, NORMAL),
            ("i", -1.0, NORMAL),
            ("hi", -2.0, NORMAL),
            ("▁hi", -3.0, NORMAL),
        ];
        let tok = plain(&words);
        assert_eq!(pieces(&tok, "hi hi"), ["hi", "▁hi"]);
        assert_eq!(pieces(&tok, " hi"), ["▁hi"]);
        let ids = tok.encode_with("hi  hi", false, true).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), "hi  hi");

        // With the space prefix (SentencePiece's default) text starts with a space, also after
        // a special token, and BOS comes first.
        let tok = spm(&words, &[]);
        assert!(tok.adds_bos());
        let ids = tok.encode("hi<eos>hi").unwrap();
        let texts: Vec<String> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
        assert_eq!(texts, ["<bos>", "▁hi", "<eos>", "▁hi"]);
    }

    #[test]
    fn special_tokens_are_matched_whole_longest_first() {
        let tok = plain(&[
            ("<start_of_turn>", 0.0, CONTROL),
            ("<end_of_turn>", 0.0, CONTROL),
            ("\n", 0.0, USER),
            ("\n\n", 0.0, USER),
            ("<", -1.0, NORMAL),
            ("e", -1.0, NORMAL),
            (">", -1.0, NORMAL),
            ("x", -1.0, NORMAL),
        ]);
        assert_eq!(
            pieces(&tok, "<start_of_turn>x\n\n\nx<end_of_turn>"),
            ["<start_of_turn>", "x", "\n\n", "\n", "x", "<end_of_turn>"]
        );
        // Without parse_special control tokens are text; user-defined ones still count.
        let ids = tok.encode_with("<eos>\n", false, false).unwrap();
        let texts: Vec<String> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
        assert_eq!(texts, ["<", "e", "<0x6F>", "<0x73>", ">", "\n"]);
    }

    #[test]
    fn decoding_hides_control_tokens_and_shows_user_defined_ones() {
        let tok = plain(&[
            ("<end_of_turn>", 0.0, CONTROL),
            ("  ", 0.0, USER),
            ("▁a", -1.0, NORMAL),
            ("a", -1.0, NORMAL),
        ]);
        let ids = tok.encode("a  a<end_of_turn>").unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), "a  a");
        assert_eq!(
            tok.decode(&[0, 1, 2, 3]).unwrap(),
            "",
            "pad, eos, bos and unk"
        );
    }

    #[test]
    fn end_of_generation_is_eos_and_end_of_turn() {
        let tok = plain(&[
            ("<end_of_turn>", 0.0, CONTROL),
            ("<start_of_turn>", 0.0, CONTROL),
        ]);
        let eot = tok.token_id("<end_of_turn>").unwrap();
        assert_eq!(tok.end_of_generation(), [1, eot]);
        assert_eq!(tok.eos_token().as_deref(), Some("<eos>"));
        assert_eq!(tok.bos_token().as_deref(), Some("<bos>"));
    }

    #[test]
    fn tokenizer_json_tokenizes_alike() {
        let tokens = [
            ("▁", -1.0, NORMAL),
            ("h", -1.0, NORMAL),
            ("i", -1.0, NORMAL),
            ("hi", -2.0, NORMAL),
            ("▁hi", -3.0, NORMAL),
            ("a", -1.5, NORMAL),
            ("b", -1.5, NORMAL),
            ("c", -1.5, NORMAL),
            ("ab", -4.0, NORMAL),
            ("bc", -3.5, NORMAL),
            ("abc", -6.0, NORMAL),
            ("aa", -5.0, NORMAL),
            ("aaa", -7.0, NORMAL),
            ("<end_of_turn>", 0.0, CONTROL),
            ("  ", 0.0, USER),
            ("\n", 0.0, USER),
        ];
        let texts = [
            "hi hi",
            " hi",
            "abc aaaaa",
            "xé🙂 abc  hi\n\nhi",
            "hi<end_of_turn>hi",
            "<eos>hi<bos>",
        ];
        let no_prefix = [("tokenizer.ggml.add_space_prefix", Value::Bool(false))];
        for extra in [&no_prefix[..], &[]] {
            let tok = spm(&tokens, extra);
            let json = tok.to_json().unwrap();
            let bos = tok.bos_token();
            let back =
                Tokenizer::from_json(json.as_bytes(), Some("<eos>"), bos.as_deref()).unwrap();
            for text in texts {
                for (add, parse) in [(true, true), (false, true), (false, false)] {
                    let want = tok.encode_with(text, add, parse).unwrap();
                    let got = back.encode_with(text, add, parse).unwrap();
                    assert_eq!(got, want, "{text:?}, add {add}, parse {parse}");
                    assert_eq!(back.decode(&got).unwrap(), tok.decode(&want).unwrap());
                }
            }
            assert_eq!(back.end_of_generation(), tok.end_of_generation());
            // Read by `tokenizers` alone, the file adds BOS itself.
            let hf = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
            let ids = hf.encode("hi abc", true).unwrap().get_ids().to_vec();
            assert_eq!(ids, tok.encode("hi abc").unwrap());
        }
    }

    #[test]
    fn bad_metadata_is_an_error() {
        let model = ("tokenizer.ggml.model", Value::String("llama".into()));
        let tokens = |t: &[&str]| {
            (
                "tokenizer.ggml.tokens",
                Value::Array(t.iter().map(|s| Value::String(s.to_string())).collect()),
            )
        };
        let cases = [
            (vec![model.clone(), tokens(&["a", "b", "a"])], "twice"),
            (
                vec![
                    model.clone(),
                    tokens(&["a", "b"]),
                    ("tokenizer.ggml.scores", Value::Array(vec![Value::F32(0.0)])),
                ],
                "1 entries for 2 tokens",
            ),
            (
                vec![
                    ("tokenizer.ggml.model", Value::String("t5".into())),
                    tokens(&["a"]),
                ],
                "not supported",
            ),
        ];
        for (meta, want) in cases {
            let err = from_metadata(&meta).err().unwrap();
            assert!(err.to_string().contains(want), "{err}");
        }
    }
}
