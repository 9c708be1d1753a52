//! Byte-level BPE of a GGUF `gpt2` vocabulary, as llama.cpp runs it: the text is split into
//! words by the pre-tokenizer llama.cpp uses for the file's `tokenizer.ggml.pre` (its regexes in
//! turn, run by Hugging Face `tokenizers`), each word's bytes become GPT-2's byte characters, and
//! within a word the adjacent pair of lowest merge rank is merged, again and again (on equal
//! ranks, the leftmost pair).
//!
//! The merges are Wick's own rather than `tokenizers`' BPE model: building that model for a
//! 151k vocabulary takes half a second (it copies every token and merge into maps of strings),
//! while a table of id pairs takes a few milliseconds.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hashbrown::HashMap;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{
    OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior,
};

use super::vocab::Vocab;
use crate::error::{Error, Result};

/// GPT-2's words: contractions, letters, numbers, other symbols, each with one leading space.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Qwen2's words: GPT-4's pattern with one digit per word (llama.cpp spells the case-insensitive
/// contractions out, so `ſ` and `K` are not folded into them).
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Llama 3's words: as Qwen2's, with numbers in runs of up to three digits.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The older default (`tokenizer.ggml.pre = default`): punctuation runs, GPT-2's words,
/// number runs, then three-digit groups.
const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"];

/// DeepSeek LLM: line breaks, Latin/Greek/Cyrillic… words, ASCII and full-width punctuation,
/// trailing spaces, CJK runs, number runs. Characters that Unicode normalization would change
/// are written as `\x{…}` so no editor can alter them.
const DEEPSEEK_LLM: &[&str] = &[
    r"[\r\n]",
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\x{1F7D}ᾀ-ᾴᾶ-ᾼ\x{1FBE}ῂ-ῄῆ-ῌῐ-\x{1FD3}ῖ-\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\x{2126}ℨ\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}+",
];

/// DeepSeek Coder: line breaks, words, punctuation, CJK runs, single digits.
const DEEPSEEK_CODER: &[&str] = &[
    r"[\r\n]",
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}",
];

/// DeepSeek V3: up to three digits, CJK and kana runs, then GPT-4-like words. llama.cpp's
/// `\p{S}` leaves out `~`, so the symbol classes here do too.
const DEEPSEEK_V3: &[&str] = &[
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}[\p{S}&&[^~]]]?[\p{L}\p{M}]+| ?[\p{P}[\p{S}&&[^~]]]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];

/// How a family of vocabularies splits text before the merges (llama.cpp's pre-tokenizer types).
struct PreType {
    /// Values of `tokenizer.ggml.pre` in this family (llama.cpp's names).
    names: &'static [&'static str],
    /// Regexes applied in turn, each splitting the pieces of the one before.
    regexes: &'static [&'static str],
    /// A word that is a token is taken whole, without merging.
    ignore_merges: bool,
    /// Whether BOS is added when the file does not say.
    add_bos: bool,
}

/// The pre-tokenizer types Wick knows, each tested against llama.cpp.
const PRE_TYPES: &[PreType] = &[
    PreType {
        names: &["default"],
        regexes: DEFAULT,
        ignore_merges: false,
        add_bos: false,
    },
    PreType {
        names: &[
            "gpt-2",
            "phi-2",
            "mpt",
            "olmo",
            "jais",
            "exaone4",
            "trillion",
            "granite-docling",
            "mellum",
            "gigachat",
        ],
        regexes: &[GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreType {
        names: &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        regexes: &[r"\p{N}", GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreType {
        names: &[
            "qwen2",
            "deepseek-r1-qwen",
            "stablelm2",
            "megrez",
            "hunyuan",
            "kormo",
        ],
        regexes: &[QWEN2],
        ignore_merges: false,
        add_bos: false,
    },
    PreType {
        names: &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
        ],
        regexes: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    },
    PreType {
        names: &["deepseek-llm"],
        regexes: DEEPSEEK_LLM,
        ignore_merges: false,
        add_bos: false,
    },
    PreType {
        names: &["deepseek-coder"],
        regexes: DEEPSEEK_CODER,
        ignore_merges: false,
        add_bos: false,
    },
    PreType {
        names: &["deepseek-v3"],
        regexes: DEEPSEEK_V3,
        ignore_merges: false,
        add_bos: false,
    },
];

/// Names of the pre-tokenizers Wick knows, for error messages.
fn known() -> String {
    PRE_TYPES
        .iter()
        .flat_map(|p| p.names)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a vocabulary of pre-tokenizer `pre` adds BOS when the file does not say.
pub fn adds_bos_by_default(pre: &str) -> bool {
    PRE_TYPES
        .iter()
        .any(|p| p.add_bos && p.names.contains(&pre))
}

/// A merge candidate: the pair starting at symbol `left`, `len` bytes in all, of merge `rank`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    rank: u32,
    left: usize,
    right: usize,
    len: usize,
}

/// A run of a word: `len` bytes from `start` (0 once merged into its left neighbour), and its
/// token if the run is one.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    id: Option<u32>,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A byte-level BPE tokenizer of text without special tokens in it.
#[derive(Clone)]
pub struct Bpe {
    pre: PreTokenizerWrapper,
    /// Merge rank of each pair of token ids (`left << 32 | right`).
    ranks: HashMap<u64, u32>,
    /// The merges by rank, for writing a `tokenizer.json`.
    merges: Vec<(u32, u32)>,
    /// A word that is a token is taken whole, without merging.
    ignore_merges: bool,
}

impl Bpe {
    /// Builds the BPE of `vocab` with `merges` (`"a b"`, best first) for pre-tokenizer `pre`.
    /// A merge of a text that is not a token is left out: it could only apply to a piece that
    /// an earlier merge made, and merges make tokens.
    pub fn new(vocab: &Vocab, merges: &[&str], pre: &str) -> Result<Self> {
        let pre_type = PRE_TYPES
            .iter()
            .find(|p| p.names.contains(&pre))
            .ok_or_else(|| {
                Error::Tokenizer(format!(
                    "pre-tokenizer `{pre}` is not supported yet (supported: {})",
                    known()
                ))
            })?;
        let mut ranks = HashMap::with_capacity(merges.len());
        let mut pairs = Vec::with_capacity(merges.len());
        for m in merges {
            // llama.cpp splits at the first space after the first byte.
            let at = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            let Some(at) = at else {
                return Err(Error::Metadata(format!("merge `{m}` has no space")));
            };
            let (Some(a), Some(b)) = (vocab.id(&m[..at]), vocab.id(&m[at + 1..])) else {
                continue;
            };
            // The first of two equal merges wins, as in llama.cpp.
            let rank = pairs.len() as u32;
            if ranks.try_insert(key(a, b), rank).is_ok() {
                pairs.push((a, b));
            }
        }

        let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
        for r in pre_type.regexes {
            let split = Split::new(
                SplitPattern::Regex(r.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| Error::Tokenizer(format!("pre-tokenizer `{pre}`: {e}")))?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());
        Ok(Self {
            pre: Sequence::new(steps).into(),
            ranks,
            merges: pairs,
            ignore_merges: pre_type.ignore_merges,
        })
    }

    /// Appends the ids of `text`, which holds no special tokens.
    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut words = PreTokenizedString::from(text);
        self.pre
            .pre_tokenize(&mut words)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        for (word, _, _) in words.get_splits(OffsetReferential::Original, OffsetType::Byte) {
            self.encode_word(vocab, word, out);
        }
        Ok(())
    }

    /// Appends the ids of one word, already in byte characters.
    fn encode_word(&self, vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
        if self.ignore_merges {
            if let Some(id) = vocab.id(word) {
                out.push(id);
                return;
            }
        }
        let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
        for (start, c) in word.char_indices() {
            let i = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                id: vocab.id(&word[start..start + c.len_utf8()]),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                symbols[i - 1].next = Some(i);
            }
        }
        let mut queue = BinaryHeap::new();
        let try_pair = |queue: &mut BinaryHeap<Reverse<Pair>>, symbols: &[Symbol], left: usize| {
            let Some(right) = symbols[left].next else {
                return;
            };
            let (l, r) = (symbols[left], symbols[right]);
            if let (Some(a), Some(b)) = (l.id, r.id) {
                if let Some(&rank) = self.ranks.get(&key(a, b)) {
                    queue.push(Reverse(Pair {
                        rank,
                        left,
                        right,
                        len: l.len + r.len,
                    }));
                }
            }
        };
        for left in 0..symbols.len().saturating_sub(1) {
            try_pair(&mut queue, &symbols, left);
        }
        while let Some(Reverse(pair)) = queue.pop() {
            let (l, r) = (symbols[pair.left], symbols[pair.right]);
            // Stale: one side was merged away or grew since the pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != pair.len {
                continue;
            }
            let merged = &mut symbols[pair.left];
            merged.len += r.len;
            merged.next = r.next;
            merged.id = vocab.id(&word[l.start..l.start + pair.len]);
            symbols[pair.right].len = 0;
            if let Some(n) = r.next {
                symbols[n].prev = Some(pair.left);
            }
            if let Some(p) = l.prev {
                try_pair(&mut queue, &symbols, p);
            }
            try_pair(&mut queue, &symbols, pair.left);
        }
        let mut at = (!symbols.is_empty()).then_some(0);
        while let Some(i) = at {
            let s = symbols[i];
            match s.id {
                Some(id) => out.push(id),
                // llama.cpp then looks each byte up as a one-byte token: only ASCII can be one.
                None => out.extend(
                    word[s.start..s.start + s.len]
                        .bytes()
                        .filter(u8::is_ascii)
                        .filter_map(|b| vocab.id(&(b as char).to_string())),
                ),
            }
            at = s.next;
        }
    }

    /// The whole tokenizer as Hugging Face `tokenizers` runs it, special tokens included (for a
    /// `tokenizer.json`).
    pub fn to_hf(&self, vocab: &Vocab) -> Result<tokenizers::Tokenizer> {
        let text = |id: u32| vocab.text(id).unwrap_or_default().to_string();
        let ids: BpeVocab = vocab
            .texts()
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let merges = self
            .merges
            .iter()
            .map(|&(a, b)| (text(a), text(b)))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(ids, merges)
            .ignore_merges(self.ignore_merges)
            .build()
            .map_err(|e| Error::Tokenizer(format!("BPE merges: {e}")))?;
        let mut hf = tokenizers::Tokenizer::new(bpe);
        hf.with_pre_tokenizer(Some(self.pre.clone()));
        hf.with_decoder(Some(ByteLevelDecoder::default()));
        vocab.add_to_hf(&mut hf);
        Ok(hf)
    }
}

/// The merge table's key of a pair of token ids.
fn key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// Whether GPT-2's byte-level text writes byte `b` as the character of the same number.
const fn printable(b: u32) -> bool {
    (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xFF && b != 0xAD)
}

/// The 68 other bytes, in order: GPT-2 writes them as U+0100, U+0101, …
const SHIFTED: [u8; 68] = {
    let mut table = [0u8; 68];
    let (mut b, mut n) = (0, 0);
    while b < 256 {
        if !printable(b) {
            table[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    table
};

/// The byte a byte-level character stands for, if it is one.
pub fn byte_of(c: char) -> Option<u8> {
    let code = c as u32;
    match printable(code) {
        true => Some(code as u8),
        false => code
            .checked_sub(0x100)
            .and_then(|i| SHIFTED.get(i as usize))
            .copied(),
    }
}

/// Appends the bytes a byte-level token's text stands for.
pub fn unmap_bytes(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match byte_of(c) {
            Some(b) => out.push(b),
            None => {
                // Not a byte character: keep it as text rather than lose it.
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::gguf_file::Value;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::super::from_metadata;
    use crate::error::Result;
    use crate::Tokenizer;

    /// A byte-level vocabulary of a few letters and digits, `Ġ` (a space), some merged tokens
    /// and `merges`, split by pre-tokenizer `pre`.
    fn bpe(pre: &str, merges: &[&str]) -> Result<Tokenizer> {
        let tokens = [
            "a", "b", "c", "1", "2", "3", "Ġ", "ab", "bc", "abc", "aa", "12", "Ġab", "<|end|>",
        ];
        let text = |s: &str| Value::String(s.to_string());
        let mut types = vec![Value::I32(1); tokens.len()];
        types[tokens.len() - 1] = Value::I32(3);
        from_metadata(&[
            ("tokenizer.ggml.model", text("gpt2")),
            ("tokenizer.ggml.pre", text(pre)),
            (
                "tokenizer.ggml.tokens",
                Value::Array(tokens.iter().map(|t| text(t)).collect()),
            ),
            ("tokenizer.ggml.token_type", Value::Array(types)),
            (
                "tokenizer.ggml.merges",
                Value::Array(merges.iter().map(|m| text(m)).collect()),
            ),
            ("tokenizer.ggml.eos_token_id", Value::U32(13)),
        ])
    }

    fn pieces(tok: &Tokenizer, text: &str) -> Vec<String> {
        let ids = tok.encode_with(text, false, true).unwrap();
        ids.iter().map(|&i| tok.token_text(i).unwrap()).collect()
    }

    const MERGES: &[&str] = &["b c", "a b", "ab c", "1 2", "a a", "Ġ ab"];

    #[test]
    fn the_lowest_rank_merges_first() {
        let tok = bpe("gpt-2", MERGES).unwrap();
        // "b c" outranks "a b", and "a bc" is no merge.
        assert_eq!(pieces(&tok, "abc"), ["a", "bc"]);
        // Without "b c", "a b" then "ab c" apply.
        let tok = bpe("gpt-2", &MERGES[1..]).unwrap();
        assert_eq!(pieces(&tok, "abc"), ["abc"]);
    }

    #[test]
    fn equal_pairs_merge_leftmost_first() {
        let tok = bpe("gpt-2", MERGES).unwrap();
        assert_eq!(pieces(&tok, "aaa"), ["aa", "a"]);
        assert_eq!(pieces(&tok, "aaaaa"), ["aa", "aa", "a"]);
    }

    #[test]
    fn llama3_takes_a_word_that_is_a_token_whole() {
        let tok = bpe("llama3", MERGES).unwrap();
        assert_eq!(pieces(&tok, "abc"), ["abc"]);
        // Llama 3 vocabularies add BOS unless the file says otherwise; GPT-2's do not.
        assert!(tok.adds_bos());
        assert!(!bpe("gpt-2", MERGES).unwrap().adds_bos());
    }

    #[test]
    fn pre_tokenizers_split_digits_their_way() {
        // Qwen2 and SmolLM split numbers into single digits; GPT-2 and Llama 3 (three at a
        // time) keep "123" one word, so "1 2" merges.
        for (pre, want) in [
            ("qwen2", &["1", "2", "3"][..]),
            ("smollm", &["1", "2", "3"]),
            ("gpt-2", &["12", "3"]),
            ("llama3", &["12", "3"]),
        ] {
            let tok = bpe(pre, MERGES).unwrap();
            assert_eq!(pieces(&tok, "123"), want, "{pre}");
        }
    }

    #[test]
    fn spaces_are_byte_characters_and_decode_back() {
        let tok = bpe("gpt-2", MERGES).unwrap();
        assert_eq!(pieces(&tok, "c ab"), ["c", "Ġab"]);
        let ids = tok.encode("c ab<|end|>").unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), "c ab");
        assert_eq!(tok.end_of_generation(), [13]);
    }

    #[test]
    fn unknown_pre_tokenizers_and_bad_merges_are_errors() {
        let err = bpe("klingon", MERGES).err().unwrap().to_string();
        assert!(err.contains("klingon") && err.contains("qwen2"), "{err}");
        let err = bpe("gpt-2", &["ab"]).err().unwrap().to_string();
        assert!(err.contains("no space"), "{err}");
    }
}
