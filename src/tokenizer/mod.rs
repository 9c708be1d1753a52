//! Text ↔ token ids, plus streaming detokenization.
//!
//! A GGUF file's vocabulary (`tokenizer.ggml.*`) is tokenized exactly as llama.cpp does it:
//! special tokens written in the text are cut out first ([`vocab`]), then each piece of text goes
//! through the file's model, SentencePiece ([`spm`], `tokenizer.ggml.model = llama`) or
//! byte-level BPE ([`bpe`], `gpt2`: the pre-tokenizer runs on Hugging Face `tokenizers`). A
//! Hugging Face `tokenizer.json` is run whole by `tokenizers`; either GGUF vocabulary can be
//! written as one ([`Tokenizer::to_json`]) that tokenizes alike.

mod bpe;
mod hf_json;
mod spm;
mod vocab;

use crate::error::{Error, Result};
use crate::weights::{Gguf, ModelFolder};
use bpe::Bpe;
use vocab::{Defaults, Fragment, Vocab};

/// Texts of tokens that end a generation in a `tokenizer.json` (llama.cpp's list).
const END_OF_GENERATION: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
    "<EOT>",
    "<|fim_pad|>",
    "<fim-pad>",
    "<|repo_name|>",
    "<reponame>",
    "<|file_sep|>",
];

/// How text becomes tokens.
#[derive(Clone)]
enum Model {
    /// A GGUF `llama` vocabulary: SentencePiece.
    Spm(Vocab),
    /// A GGUF `gpt2` vocabulary: byte-level BPE.
    Bpe(Vocab, Box<Bpe>),
    /// A Hugging Face `tokenizer.json`.
    Hf(Box<tokenizers::Tokenizer>),
}

/// A tokenizer plus the special ids generation needs.
#[derive(Clone)]
pub struct Tokenizer {
    model: Model,
    bos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    eos: Option<u32>,
    eog: Vec<u32>,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let (vocab, bpe) = match g.get_str("tokenizer.ggml.model")? {
            "llama" => {
                let defaults = Defaults {
                    bos: Some(1),
                    eos: Some(2),
                    add_bos: true,
                    add_space_prefix: true,
                };
                (Vocab::from_gguf(g, defaults)?, None)
            }
            "gpt2" => {
                let pre = g.get_str("tokenizer.ggml.pre").unwrap_or("default");
                // llama.cpp's defaults for a BPE vocabulary that names no BOS/EOS.
                let defaults = Defaults {
                    bos: Some(11),
                    eos: Some(11),
                    add_bos: bpe::adds_bos_by_default(pre),
                    add_space_prefix: false,
                };
                let vocab = Vocab::from_gguf(g, defaults)?;
                let merges = vocab::strings(g, "tokenizer.ggml.merges")?;
                let bpe = Bpe::new(&vocab, &merges, pre)?;
                (vocab, Some(bpe))
            }
            other => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer model `{other}` is not supported yet (supported: llama \
                     (SentencePiece), gpt2 (byte-level BPE))"
                )))
            }
        };
        Ok(Self {
            bos: vocab.bos,
            add_bos: vocab.add_bos,
            add_eos: vocab.add_eos,
            eos: vocab.eos,
            eog: vocab.eog.clone(),
            model: match bpe {
                Some(bpe) => Model::Bpe(vocab, Box::new(bpe)),
                None => Model::Spm(vocab),
            },
        })
    }

    /// Loads a Hugging Face `tokenizer.json`; `eos_token` names the end-of-sequence token and
    /// `add_bos` the beginning-of-sequence token to put first.
    pub fn from_json(json: &[u8], eos_token: Option<&str>, add_bos: Option<&str>) -> Result<Self> {
        Self::from_hf(json, add_bos, eos_token, add_bos.is_some())
    }

    /// Loads a Hugging Face `tokenizer.json` with the special tokens `tokenizer_config.json`
    /// names; `add_bos` puts the beginning-of-sequence token first.
    pub fn from_hf(
        json: &[u8],
        bos_token: Option<&str>,
        eos_token: Option<&str>,
        add_bos: bool,
    ) -> Result<Self> {
        let cap = crate::weights::folder::MAX_TOKENIZER_JSON;
        if json.len() > cap {
            return Err(Error::File {
                file: crate::weights::folder::TOKENIZER.into(),
                problem: format!(
                    "is {} bytes, more than the {} MB any real vocabulary needs",
                    json.len(),
                    cap >> 20
                ),
            });
        }
        let inner = hf_json::parse(json)?;
        let eos = eos_token.and_then(|t| inner.token_to_id(t));
        let mut eog: Vec<u32> = END_OF_GENERATION
            .iter()
            .filter_map(|t| inner.token_to_id(t))
            .chain(eos)
            .collect();
        eog.sort_unstable();
        eog.dedup();
        let bos = bos_token.and_then(|t| inner.token_to_id(t));
        Ok(Self {
            add_bos: add_bos && bos.is_some(),
            add_eos: false,
            model: Model::Hf(Box::new(inner)),
            bos,
            eos,
            eog,
        })
    }

    /// The tokenizer of a Hugging Face model folder: `tokenizer.json` with the special tokens of
    /// `tokenizer_config.json`.
    pub fn from_folder(folder: &ModelFolder) -> Result<Self> {
        let s = folder.special_tokens()?;
        let json = folder.tokenizer_json()?;
        Self::from_hf(&json, s.bos.as_deref(), s.eos.as_deref(), s.add_bos)
    }

    /// The tokenizer serialized as a Hugging Face `tokenizer.json`.
    pub fn to_json(&self) -> Result<String> {
        match &self.model {
            Model::Hf(hf) => hf.to_string(false).map_err(tok_err),
            Model::Bpe(vocab, bpe) => bpe.to_hf(vocab)?.to_string(false).map_err(tok_err),
            Model::Spm(vocab) => spm::to_hf(vocab)?.to_string(false).map_err(tok_err),
        }
    }

    /// Token ids of `text`, with the model's BOS first (and EOS last) if it asks for them;
    /// special tokens written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, true, true)
    }

    /// [`Tokenizer::encode`] with llama.cpp's two switches: `add_special` adds the model's
    /// BOS/EOS, `parse_special` turns control tokens written in the text into their ids (else
    /// they are tokenized as plain text; user-defined tokens always count).
    pub fn encode_with(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        match &self.model {
            Model::Hf(hf) => {
                let enc = match parse_special {
                    true => hf.encode(text, false),
                    // Rare (tests): a copy that reads special tokens as text.
                    false => {
                        let mut plain = hf.clone();
                        plain.set_encode_special_tokens(true);
                        plain.encode(text, false)
                    }
                };
                ids.extend_from_slice(enc.map_err(tok_err)?.get_ids());
            }
            Model::Bpe(vocab, bpe) => {
                for f in vocab.split_specials(text, parse_special) {
                    match f {
                        Fragment::Text(t) => bpe.encode(vocab, t, &mut ids)?,
                        Fragment::Token(id) => ids.push(id),
                    }
                }
            }
            Model::Spm(vocab) => {
                // The space prefix goes on text at the start and after each special token.
                let mut after_special = true;
                for f in vocab.split_specials(text, parse_special) {
                    match f {
                        Fragment::Text(t) => {
                            let t = spm::escape(t, vocab.add_space_prefix && after_special);
                            spm::encode(vocab, &t, &mut ids)?;
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            ids.push(id);
                            after_special = true;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    /// The bytes of `ids` from a GGUF vocabulary, one piece per token (llama.cpp's
    /// `token_to_piece`), control tokens written out when `special`; `None` for a
    /// `tokenizer.json`.
    fn gguf_bytes(&self, ids: &[u32], special: bool) -> Option<Vec<u8>> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        match &self.model {
            Model::Hf(_) => return None,
            Model::Bpe(vocab, _) => {
                for &id in ids {
                    vocab.piece(id, special, &mut bytes, bpe::unmap_bytes);
                }
            }
            Model::Spm(vocab) => {
                for &id in ids {
                    vocab.piece(id, special, &mut bytes, spm::unescape);
                }
            }
        }
        Some(bytes)
    }

    /// Text of `ids`, with control tokens left out; bytes that do not form UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match (&self.model, self.gguf_bytes(ids, false)) {
            (_, Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            (Model::Hf(hf), None) => hf.decode(ids, true).map_err(tok_err),
            (_, None) => Ok(String::new()),
        }
    }

    /// Text of `ids` with control tokens written out (`<|im_start|>`), so that
    /// [`Tokenizer::encode`] gives the ids back; an id outside the vocabulary is an error.
    pub fn decode_all(&self, ids: &[u32]) -> Result<String> {
        if let Some(id) = ids.iter().find(|&&id| id as usize >= self.vocab_size()) {
            return Err(Error::Tokenizer(format!(
                "token id {id} is not in the vocabulary (0..{})",
                self.vocab_size()
            )));
        }
        match (&self.model, self.gguf_bytes(ids, true)) {
            (_, Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            (Model::Hf(hf), None) => hf.decode(ids, false).map_err(tok_err),
            (_, None) => Ok(String::new()),
        }
    }

    /// One token's text and its bytes (`None` if they cannot be known): the text of a token
    /// that holds part of a UTF-8 character shows U+FFFD. A GGUF vocabulary knows every
    /// token's bytes; a `tokenizer.json`'s are read from its byte-level (GPT-2) or
    /// byte-fallback (`<0xE4>`) spelling.
    pub fn token_bytes(&self, id: u32) -> (String, Option<Vec<u8>>) {
        let Model::Hf(hf) = &self.model else {
            let bytes = self.gguf_bytes(&[id], true).unwrap_or_default();
            return (String::from_utf8_lossy(&bytes).into_owned(), Some(bytes));
        };
        let text = hf.decode(&[id], false).unwrap_or_default();
        if !text.contains('\u{FFFD}') {
            let bytes = text.as_bytes().to_vec();
            return (text, Some(bytes));
        }
        let stored = hf.id_to_token(id).unwrap_or_default();
        let bytes = vocab::byte_of(&stored)
            .map(|b| vec![b])
            .or_else(|| stored.chars().map(bpe::byte_of).collect());
        (text, bytes)
    }

    /// The text of one token as the vocabulary stores it (for diagnostics).
    pub fn token_text(&self, id: u32) -> Option<String> {
        match &self.model {
            Model::Hf(hf) => hf.id_to_token(id),
            Model::Spm(v) | Model::Bpe(v, _) => v.text(id).map(str::to_string),
        }
    }

    /// Ids that end a generation (end of sequence, end of turn …).
    pub fn end_of_generation(&self) -> &[u32] {
        &self.eog
    }

    /// The end-of-sequence token, if the model declares one.
    pub fn eos_token(&self) -> Option<String> {
        self.eos.and_then(|i| self.token_text(i))
    }

    /// The id of a token given by its text (`<|im_end|>`), if the vocabulary has it.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        match &self.model {
            Model::Hf(hf) => hf.token_to_id(text),
            Model::Spm(v) | Model::Bpe(v, _) => v.id(text),
        }
    }

    /// Whether [`Tokenizer::encode`] puts the beginning-of-sequence token first.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The beginning-of-sequence token, if the model declares one.
    pub fn bos_token(&self) -> Option<String> {
        self.bos.and_then(|i| self.token_text(i))
    }

    /// Number of tokens, added ones included.
    pub fn vocab_size(&self) -> usize {
        match &self.model {
            Model::Hf(hf) => hf.get_vocab_size(true),
            Model::Spm(v) | Model::Bpe(v, _) => v.len(),
        }
    }
}

/// Turns a stream of token ids into a stream of text pieces that never split a UTF-8 character.
///
/// It re-decodes a short window of recent tokens and emits only the text past what was already
/// emitted, holding back while the window ends in an incomplete character (U+FFFD).
#[derive(Debug, Default, Clone)]
pub struct TextStream {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl TextStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token and returns the text it completes, if any.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            let piece = now.get(before.len()..).unwrap_or_default().to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Text still held back at the end (an incomplete character), decoded lossily.
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<Option<String>> {
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(now
            .get(before.len()..)
            .filter(|s| !s.is_empty())
            .map(str::to_string))
    }

    /// All ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// A tokenizer from tokenizer metadata alone, written out as a GGUF file without tensors.
#[cfg(test)]
fn from_metadata(meta: &[(&str, candle_core::quantized::gguf_file::Value)]) -> Result<Tokenizer> {
    let meta: Vec<_> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    candle_core::quantized::gguf_file::write(&mut out, &meta, &[])?;
    let bytes = out.into_inner();
    Tokenizer::from_gguf(&Gguf::parse(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::tiny::tiny_gguf;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn tiny_tokenizer() -> Tokenizer {
        let bytes = tiny_gguf(3).unwrap();
        Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap()
    }

    /// Pushes every id of `text` and returns the pieces, `None` for held-back pushes.
    fn stream(tok: &Tokenizer, ids: &[u32]) -> (Vec<Option<String>>, Option<String>) {
        let mut s = TextStream::new();
        let pieces = ids.iter().map(|&id| s.push(tok, id).unwrap()).collect();
        (pieces, s.finish(tok).unwrap())
    }

    #[test]
    fn text_stream_holds_back_partial_characters() {
        let tok = tiny_tokenizer();
        // "é" is two bytes, so two byte-level tokens: nothing until the second arrives.
        let ids = tok.encode("é").unwrap();
        assert_eq!(ids.len(), 2);
        let (pieces, rest) = stream(&tok, &ids);
        assert_eq!(pieces, [None, Some("é".to_string())]);
        assert_eq!(rest, None);

        // A four-byte emoji after ASCII: the ASCII comes out at once, the emoji whole at the end.
        let ids = tok.encode("a🙂").unwrap();
        assert_eq!(ids.len(), 5);
        let (pieces, _) = stream(&tok, &ids);
        assert_eq!(pieces[0].as_deref(), Some("a"));
        assert_eq!(pieces[1..4], [None, None, None]);
        assert_eq!(pieces[4].as_deref(), Some("🙂"));
    }

    #[test]
    fn decode_all_keeps_control_tokens_and_rejects_unknown_ids() {
        let tok = tiny_tokenizer();
        let text = "<|im_start|>user\nhéllo<|im_end|>";
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode_all(&ids).unwrap(), text);
        assert_eq!(tok.decode(&ids).unwrap(), "user\nhéllo");
        let err = tok.decode_all(&[1, 320]).unwrap_err().to_string();
        assert!(
            err.contains("token id 320 is not in the vocabulary (0..320)"),
            "{err}"
        );
    }

    #[test]
    fn token_bytes_of_partial_characters_come_from_the_vocabulary() {
        let tok = tiny_tokenizer();
        // The GGUF vocabulary, and the same as a tokenizer.json.
        let hf = Tokenizer::from_json(tok.to_json().unwrap().as_bytes(), None, None).unwrap();
        for tok in [tok, hf] {
            let ids = tok.encode("é🙂 a").unwrap();
            let pieces: Vec<(String, Option<Vec<u8>>)> =
                ids.iter().map(|&id| tok.token_bytes(id)).collect();
            let bytes: Vec<u8> = pieces
                .iter()
                .flat_map(|(_, b)| b.clone().unwrap())
                .collect();
            assert_eq!(bytes, "é🙂 a".as_bytes());
            assert_eq!(pieces[0].0, "\u{FFFD}", "half of é shows as U+FFFD");
            assert_eq!(
                pieces.last().unwrap(),
                &(" a".to_string(), Some(b" a".to_vec()))
            );
        }
        assert_eq!(vocab::byte_of("<0xE4>"), Some(0xE4));
        assert_eq!(vocab::byte_of("<0xE4"), None);
        assert_eq!(vocab::byte_of("<0xE>"), None);
        assert_eq!(bpe::byte_of('Ġ'), Some(b' '));
        assert_eq!(bpe::byte_of('\u{2000}'), None);
    }

    #[test]
    fn text_stream_finish_flushes_an_incomplete_character() {
        let tok = tiny_tokenizer();
        let ids = tok.encode("x世").unwrap();
        let (pieces, rest) = stream(&tok, &ids[..ids.len() - 1]);
        assert_eq!(pieces[0].as_deref(), Some("x"));
        assert!(pieces[1..].iter().all(Option::is_none));
        assert_eq!(
            rest.as_deref(),
            Some("\u{FFFD}"),
            "held bytes are decoded lossily at the end"
        );
    }

    #[test]
    fn text_stream_skips_control_tokens() {
        let tok = tiny_tokenizer();
        let ids = tok.encode("hi<|im_end|> there").unwrap();
        let (pieces, rest) = stream(&tok, &ids);
        let text: String = pieces.into_iter().flatten().chain(rest).collect();
        assert_eq!(text, "hi there");
    }

    #[test]
    fn json_round_trip_gives_identical_ids() {
        let tok = tiny_tokenizer();
        let json = tok.to_json().unwrap();
        let back = Tokenizer::from_json(json.as_bytes(), Some("<|im_end|>"), None).unwrap();
        for text in [
            "the cat is in the house",
            "<|im_start|>user\nhéllo 世界 🙂 2024<|im_end|>\n",
            "  spaces\n\nand\ttabs ",
        ] {
            let ids = tok.encode(text).unwrap();
            assert_eq!(back.encode(text).unwrap(), ids, "{text:?}");
            assert_eq!(back.decode(&ids).unwrap(), tok.decode(&ids).unwrap());
        }
        assert_eq!(back.end_of_generation(), tok.end_of_generation());
        assert_eq!(back.eos_token(), tok.eos_token());
        assert_eq!(back.vocab_size(), tok.vocab_size());
    }

    #[test]
    fn from_json_rejects_garbage() {
        assert!(matches!(
            Tokenizer::from_json(b"{not json", None, None),
            Err(Error::Tokenizer(_))
        ));
    }
}
