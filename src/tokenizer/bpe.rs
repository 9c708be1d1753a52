//! Byte-level BPE of a GGUF `gpt2` vocabulary, on Hugging Face `tokenizers`: the pre-tokenizer
//! llama.cpp uses for the file's `tokenizer.ggml.pre` (its regexes, in order), GPT-2's byte to
//! character mapping, and the merges by rank.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::vocab::{Kind, Vocab};
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

/// A byte-level BPE tokenizer of text without special tokens in it.
#[derive(Clone)]
pub struct Bpe {
    hf: tokenizers::Tokenizer,
}

impl Bpe {
    /// Builds the BPE of `vocab` with `merges` (`"a b"`, best first) for pre-tokenizer `pre`.
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
        let merges = merges
            .iter()
            .map(|m| {
                // llama.cpp splits at the first space after the first byte.
                let at = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
                at.map(|p| (m[..p].to_string(), m[p + 1..].to_string()))
                    .ok_or_else(|| Error::Metadata(format!("merge `{m}` has no space")))
            })
            .collect::<Result<Vec<_>>>()?;
        let ids: BpeVocab = vocab
            .texts()
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(ids, merges)
            .ignore_merges(pre_type.ignore_merges)
            .build()
            .map_err(|e| Error::Tokenizer(format!("BPE merges: {e}")))?;

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
        let mut hf = tokenizers::Tokenizer::new(bpe);
        hf.with_pre_tokenizer(Some(Sequence::new(steps)));
        hf.with_decoder(Some(ByteLevelDecoder::default()));
        Ok(Self { hf })
    }

    /// Appends the ids of `text`, which holds no special tokens.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let enc = self
            .hf
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
    }

    /// The whole tokenizer as Hugging Face `tokenizers` runs it, special tokens included (for a
    /// `tokenizer.json`).
    pub fn to_hf(&self, vocab: &Vocab) -> tokenizers::Tokenizer {
        let mut hf = self.hf.clone();
        let (mut special, mut user) = (Vec::new(), Vec::new());
        for (i, t) in vocab.texts().iter().enumerate() {
            match vocab.kind(i as u32) {
                Some(Kind::Control | Kind::Unknown) => {
                    special.push(AddedToken::from(t.as_str(), true))
                }
                Some(Kind::UserDefined) => {
                    user.push(AddedToken::from(t.as_str(), false).normalized(false))
                }
                _ => {}
            }
        }
        hf.add_special_tokens(&special);
        hf.add_tokens(&user);
        hf
    }
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

/// Appends the bytes a byte-level token's text stands for.
pub fn unmap_bytes(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        let code = c as u32;
        if printable(code) {
            out.push(code as u8);
        } else if let Some(&b) = code
            .checked_sub(0x100)
            .and_then(|i| SHIFTED.get(i as usize))
        {
            out.push(b);
        } else {
            // Not a byte character: keep it as text rather than lose it.
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}
