//! A GGUF vocabulary read the way llama.cpp reads it (`llama-vocab.cpp`): token texts, scores and
//! kinds, the special ids and the end-of-generation set, the split of a text around the special
//! tokens written in it, and each token's piece of text for decoding.

use std::hash::BuildHasher;

use aho_corasick::AhoCorasick;
use candle_core::quantized::gguf_file::Value;
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::error::{Error, Result};
use crate::weights::Gguf;

/// What a token is, from GGUF's `tokenizer.ggml.token_type` (llama.cpp's token attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ordinary text.
    Normal,
    /// The unknown token (`<unk>`): matched whole in text, hidden on decode.
    Unknown,
    /// Control tokens (`<bos>`, `<|im_end|>`): matched whole in text, hidden on decode.
    Control,
    /// Tokens the model's authors added (`<tool_call>`, runs of spaces): matched whole, shown.
    UserDefined,
    /// Reserved ids that never appear in text and decode to nothing.
    Unused,
    /// A raw byte (`<0x0A>`), for text that has no token of its own.
    Byte,
}

impl Kind {
    /// GGUF's numbering (llama.cpp's `llama_token_type`); unknown numbers decode to nothing.
    fn from_gguf(t: i32) -> Self {
        match t {
            1 => Kind::Normal,
            2 => Kind::Unknown,
            3 => Kind::Control,
            4 => Kind::UserDefined,
            6 => Kind::Byte,
            _ => Kind::Unused,
        }
    }
}

/// Texts of tokens that end a generation wherever they are in a vocabulary (llama.cpp's list);
/// llama.cpp also makes each of them a control token.
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Fill-in-the-middle tokens llama.cpp recognises by text when the file names none: the metadata
/// key, whether the token ends a generation, and its known spellings. Each one found is made a
/// control token.
const FILL_IN_THE_MIDDLE: &[(&str, bool, &[&str])] = &[
    (
        "tokenizer.ggml.fim_pre_token_id",
        false,
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        "tokenizer.ggml.fim_suf_token_id",
        false,
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        "tokenizer.ggml.fim_mid_token_id",
        false,
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (
        "tokenizer.ggml.fim_pad_token_id",
        true,
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        "tokenizer.ggml.fim_rep_token_id",
        true,
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    ("tokenizer.ggml.fim_sep_token_id", true, &["<|file_sep|>"]),
];

/// Older names of the first three fill-in-the-middle keys, read when the new ones are absent.
const FILL_IN_THE_MIDDLE_OLD: &[(&str, &str)] = &[
    (
        "tokenizer.ggml.fim_pre_token_id",
        "tokenizer.ggml.prefix_token_id",
    ),
    (
        "tokenizer.ggml.fim_suf_token_id",
        "tokenizer.ggml.suffix_token_id",
    ),
    (
        "tokenizer.ggml.fim_mid_token_id",
        "tokenizer.ggml.middle_token_id",
    ),
];

/// A piece of text to tokenize, or a special token found written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment<'t> {
    /// Text without special tokens in it.
    Text(&'t str),
    /// A special token matched whole.
    Token(u32),
}

/// Where the special ids come from when the file does not say (they depend on the tokenizer).
pub struct Defaults {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// Whether encoding puts BOS first.
    pub add_bos: bool,
    /// Whether SentencePiece text gets a leading space.
    pub add_space_prefix: bool,
}

/// The token texts, stored end to end in one string, with a hash table from text to id: one
/// allocation for a whole vocabulary rather than two per token, which is what keeps loading a
/// 262k vocabulary fast.
#[derive(Clone)]
pub struct Texts {
    arena: String,
    /// Token `i` is `arena[ends[i - 1]..ends[i]]` (from 0 for the first).
    ends: Vec<usize>,
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Texts {
    /// Stores `raw`, naming an empty token `[EMPTY_i]` (as llama.cpp does, so it never matches
    /// text); a text given twice is an error.
    fn new(raw: &[&str]) -> Result<Self> {
        let mut t = Self {
            arena: String::with_capacity(raw.iter().map(|s| s.len()).sum()),
            ends: Vec::with_capacity(raw.len()),
            table: HashTable::with_capacity(raw.len()),
            hasher: DefaultHashBuilder::default(),
        };
        for (i, text) in raw.iter().enumerate() {
            let start = t.arena.len();
            match text.is_empty() {
                true => t.arena.push_str(&format!("[EMPTY_{i}]")),
                false => t.arena.push_str(text),
            }
            t.ends.push(t.arena.len());
            let text = &t.arena[start..];
            let hash = t.hasher.hash_one(text);
            let (arena, ends) = (&t.arena, &t.ends);
            let at = |id: u32| {
                let id = id as usize;
                &arena[id.checked_sub(1).map_or(0, |p| ends[p])..ends[id]]
            };
            if let Some(&first) = t.table.find(hash, |&id| at(id) == text) {
                return Err(Error::Metadata(format!(
                    "tokenizer.ggml.tokens has `{text}` twice (ids {first} and {i})"
                )));
            }
            let hasher = &t.hasher;
            t.table
                .insert_unique(hash, i as u32, |&id| hasher.hash_one(at(id)));
        }
        Ok(t)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The text of token `id`.
    pub fn get(&self, id: u32) -> Option<&str> {
        let id = id as usize;
        let end = *self.ends.get(id)?;
        let start = id.checked_sub(1).map_or(0, |p| self.ends[p]);
        Some(&self.arena[start..end])
    }

    /// The id of a token's exact text.
    pub fn id(&self, text: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(text);
        self.table
            .find(hash, |&id| self.get(id) == Some(text))
            .copied()
    }

    /// All texts, by id.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len() as u32).filter_map(|i| self.get(i))
    }
}

/// A GGUF vocabulary and its special tokens.
#[derive(Clone)]
pub struct Vocab {
    texts: Texts,
    scores: Vec<f32>,
    kinds: Vec<Kind>,
    /// Ids matched whole in text, longest text first (llama.cpp's order).
    specials: Vec<u32>,
    /// Finds which of `specials` occur in a text, so the split only tries those.
    finder: Option<AhoCorasick>,
    /// The id of each byte's token (`<0xNN>`, else the one-byte text), for byte fallback.
    byte_ids: Vec<Option<u32>>,
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// Whether encoding puts BOS first.
    pub add_bos: bool,
    /// Whether encoding puts EOS last.
    pub add_eos: bool,
    /// Whether SentencePiece text gets a leading space (after BOS and after each special token).
    pub add_space_prefix: bool,
    /// Ids that end a generation, sorted.
    pub eog: Vec<u32>,
}

/// The strings of a metadata array.
pub fn strings<'g>(g: &'g Gguf, key: &str) -> Result<Vec<&'g str>> {
    g.get_array(key)?
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_str()),
            _ => Err(Error::Metadata(format!("{key} holds a non-string"))),
        })
        .collect()
}

/// A numeric array of `n` entries, or `None` when the file has no such key.
fn numbers(g: &Gguf, key: &str, n: usize) -> Result<Option<Vec<f32>>> {
    let Ok(a) = g.get_array(key) else {
        return Ok(None);
    };
    if a.len() < n {
        return Err(Error::Metadata(format!(
            "{key} has {} entries for {n} tokens",
            a.len()
        )));
    }
    a[..n]
        .iter()
        .map(|v| match v {
            Value::F32(x) => Ok(*x),
            Value::I32(x) => Ok(*x as f32),
            _ => Err(Error::Metadata(format!("{key} holds a non-number"))),
        })
        .collect::<Result<Vec<f32>>>()
        .map(Some)
}

impl Vocab {
    /// Reads `tokenizer.ggml.{tokens,scores,token_type}` and the special-token keys.
    pub fn from_gguf(g: &Gguf, defaults: Defaults) -> Result<Self> {
        let raw = strings(g, "tokenizer.ggml.tokens")?;
        let n = raw.len();
        if n == 0 || u32::try_from(n).is_err() {
            return Err(Error::Metadata(format!(
                "tokenizer.ggml.tokens has {n} tokens"
            )));
        }
        let scores = numbers(g, "tokenizer.ggml.scores", n)?.unwrap_or_else(|| vec![0.0; n]);
        let mut kinds = match g.get_array("tokenizer.ggml.token_type") {
            Ok(a) if a.len() < n => {
                return Err(Error::Metadata(format!(
                    "tokenizer.ggml.token_type has {} entries for {n} tokens",
                    a.len()
                )))
            }
            Ok(a) => a[..n]
                .iter()
                .map(|v| match v {
                    Value::I32(t) => Ok(Kind::from_gguf(*t)),
                    _ => Err(Error::Metadata(
                        "tokenizer.ggml.token_type holds a non-integer".into(),
                    )),
                })
                .collect::<Result<Vec<Kind>>>()?,
            Err(_) => vec![Kind::Normal; n],
        };

        let texts = Texts::new(&raw)?;

        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let id_at = |key: &str| -> Option<u32> {
            g.get_usize(key)
                .ok()
                .and_then(|i| u32::try_from(i).ok())
                .filter(|&i| (i as usize) < n)
        };
        let bos = id_at("tokenizer.ggml.bos_token_id").or(in_range(defaults.bos));
        let eos = id_at("tokenizer.ggml.eos_token_id").or(in_range(defaults.eos));
        let flag = |key: &str, default: bool| g.get_bool(key).unwrap_or(default);
        let add_bos = flag("tokenizer.ggml.add_bos_token", defaults.add_bos);
        let add_eos = flag("tokenizer.ggml.add_eos_token", false);
        let add_space_prefix = flag("tokenizer.ggml.add_space_prefix", defaults.add_space_prefix);
        if add_bos && bos.is_none() {
            return Err(Error::Metadata(
                "tokenizer.ggml.add_bos_token is true, but there is no BOS token".into(),
            ));
        }
        if add_eos && eos.is_none() {
            return Err(Error::Metadata(
                "tokenizer.ggml.add_eos_token is true, but there is no EOS token".into(),
            ));
        }

        let mut eog = Vec::new();
        for &(key, ends, spellings) in FILL_IN_THE_MIDDLE {
            let old = FILL_IN_THE_MIDDLE_OLD
                .iter()
                .find(|(new, _)| *new == key)
                .and_then(|(_, old)| id_at(old));
            let found = id_at(key).or(old).or_else(|| {
                let id = spellings.iter().find_map(|s| texts.id(s))?;
                kinds[id as usize] = Kind::Control;
                Some(id)
            });
            if ends {
                eog.extend(found);
            }
        }
        for t in END_OF_GENERATION {
            if let Some(id) = texts.id(t) {
                kinds[id as usize] = Kind::Control;
                eog.push(id);
            }
        }
        eog.extend(eos);
        eog.extend(id_at("tokenizer.ggml.eot_token_id"));
        eog.extend(id_at("tokenizer.ggml.eom_token_id"));
        eog.sort_unstable();
        eog.dedup();

        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                matches!(
                    kinds[i as usize],
                    Kind::Control | Kind::UserDefined | Kind::Unknown
                )
            })
            .collect();
        specials.sort_by_key(|&i| std::cmp::Reverse(texts.get(i).map_or(0, str::len)));
        let finder = match specials.is_empty() {
            true => None,
            false => Some(
                AhoCorasick::new(specials.iter().filter_map(|&i| texts.get(i)))
                    .map_err(|e| Error::Tokenizer(format!("special tokens: {e}")))?,
            ),
        };

        let mut byte_ids = vec![None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            // Else the byte as text, which only an ASCII byte can be.
            let ascii = (b < 0x80).then(|| (b as u8 as char).to_string());
            *slot = texts.id(&hex).or_else(|| ascii.and_then(|a| texts.id(&a)));
        }

        Ok(Self {
            texts,
            scores,
            kinds,
            specials,
            finder,
            byte_ids,
            bos,
            eos,
            add_bos,
            add_eos,
            add_space_prefix,
            eog,
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// The id of a token's exact text.
    pub fn id(&self, text: &str) -> Option<u32> {
        self.texts.id(text)
    }

    /// A token's text as the vocabulary stores it.
    pub fn text(&self, id: u32) -> Option<&str> {
        self.texts.get(id)
    }

    /// All token texts, by id.
    pub fn texts(&self) -> &Texts {
        &self.texts
    }

    /// A token's score (SentencePiece: higher merges first).
    pub fn score(&self, id: u32) -> f32 {
        self.scores
            .get(id as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY)
    }

    /// What a token is.
    pub fn kind(&self, id: u32) -> Option<Kind> {
        self.kinds.get(id as usize).copied()
    }

    /// Adds the vocabulary's control and unknown tokens to a HF tokenizer as special tokens, and
    /// its user-defined ones as plain tokens matched on the raw text (what a tokenizer.json of
    /// this vocabulary holds, whatever its model).
    pub fn add_to_hf(&self, hf: &mut tokenizers::Tokenizer) {
        let (mut special, mut user) = (Vec::new(), Vec::new());
        for (i, t) in self.texts.iter().enumerate() {
            match self.kind(i as u32) {
                Some(Kind::Control | Kind::Unknown) => {
                    special.push(tokenizers::AddedToken::from(t, true))
                }
                Some(Kind::UserDefined) => {
                    user.push(tokenizers::AddedToken::from(t, false).normalized(false))
                }
                _ => {}
            }
        }
        hf.add_special_tokens(&special);
        hf.add_tokens(&user);
    }

    /// The token of one byte, for text no other token covers.
    pub fn byte_id(&self, byte: u8) -> Result<u32> {
        self.byte_ids[byte as usize].ok_or_else(|| {
            Error::Tokenizer(format!(
                "the vocabulary has no token for byte 0x{byte:02X}, so this text cannot be encoded"
            ))
        })
    }

    /// Splits `text` around the special tokens written in it, as llama.cpp does: each special
    /// token in turn, longest first, cuts every remaining piece of text where it occurs. Control
    /// and unknown tokens count only when `parse_special`; user-defined ones always do.
    pub fn split_specials<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(text));
        let Some(finder) = &self.finder else {
            return frags;
        };
        // A token absent from the whole text is absent from every piece of it: try only these.
        let mut present = vec![false; self.specials.len()];
        for m in finder.find_overlapping_iter(text) {
            present[m.pattern().as_usize()] = true;
        }
        for (k, &id) in self.specials.iter().enumerate() {
            if !present[k] || (!parse_special && self.kinds[id as usize] != Kind::UserDefined) {
                continue;
            }
            let Some(token) = self.texts.get(id) else {
                continue;
            };
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(t) = f else {
                    next.push(f);
                    continue;
                };
                let mut rest = 0;
                for (at, _) in t.match_indices(token) {
                    if at > rest {
                        next.push(Fragment::Text(&t[rest..at]));
                    }
                    next.push(Fragment::Token(id));
                    rest = at + token.len();
                }
                if rest < t.len() {
                    next.push(Fragment::Text(&t[rest..]));
                }
            }
            frags = next;
        }
        frags
    }

    /// Appends the bytes token `id` decodes to, as llama.cpp's `token_to_piece`: control and
    /// unknown tokens give their text when `special` and nothing otherwise, user-defined tokens
    /// their text, bytes their byte, unused ids nothing, and normal tokens what `normal` makes
    /// of their text.
    pub fn piece(
        &self,
        id: u32,
        special: bool,
        out: &mut Vec<u8>,
        normal: impl Fn(&str, &mut Vec<u8>),
    ) {
        let (Some(kind), Some(text)) = (self.kind(id), self.text(id)) else {
            return;
        };
        match kind {
            Kind::Normal => normal(text, out),
            Kind::UserDefined => out.extend_from_slice(text.as_bytes()),
            Kind::Control | Kind::Unknown if special => out.extend_from_slice(text.as_bytes()),
            Kind::Byte => out.extend(byte_of(text)),
            Kind::Control | Kind::Unknown | Kind::Unused => {}
        }
    }
}

/// The byte a byte-fallback token such as `<0xE4>` stands for.
pub fn byte_of(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}
