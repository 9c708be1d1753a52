//! The tokenizer of a model trained from scratch: byte-level BPE learned from the corpus with
//! Hugging Face `tokenizers`' own trainer, or plain bytes (the 256 byte symbols and no merges).
//!
//! Either way it is GPT-2's byte-level scheme, so any text encodes (no unknown token), and
//! [`crate::tokenizer::Tokenizer`] loads the `tokenizer.json` it writes like any other.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// Ends a text (and a generation).
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Control tokens: the end of a text, then ChatML's turn delimiters, so the chat template works
/// (a model trained on plain text never saw them, but chats through them all the same).
pub const SPECIAL: [&str; 3] = [END_OF_TEXT, "<|im_start|>", "<|im_end|>"];

/// ChatML, the template of the special tokens above.
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Byte symbols plus the special tokens: the vocabulary of the bytes-only tokenizer, and the
/// least a BPE vocabulary can hold.
pub const BYTE_VOCAB: usize = 256 + SPECIAL.len();

/// A byte-level BPE tokenizer with at most `vocab` tokens (special ones included) learned from
/// `text`; with `vocab == BYTE_VOCAB`, plain bytes. Fewer merges are learned when the text has
/// fewer pairs that occur twice. Deterministic: the same text gives the same tokenizer.
pub fn train(text: &str, vocab: usize) -> Result<Tokenizer> {
    if vocab < BYTE_VOCAB {
        return Err(Error::Train(format!(
            "a vocabulary of {vocab} cannot hold the 256 bytes and {} special tokens (at least {BYTE_VOCAB})",
            SPECIAL.len()
        )));
    }
    let err = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    let special: Vec<AddedToken> = SPECIAL.iter().map(|s| AddedToken::from(*s, true)).collect();
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(vocab)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(special)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tok.train(&mut trainer, text.lines()).map_err(err)?;
    // Through tokenizer.json, so what is trained is exactly what a folder's loader reads.
    let json = tok.to_string(false).map_err(err)?;
    Tokenizer::from_hf(json.as_bytes(), None, Some(END_OF_TEXT), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const TEXT: &str = "the cat sat on the mat. the cat ate the rat.\nthe dog sat on the log; \
                        the dog ate the frog.\nüñí©ødé text still encodes, byte by byte.\n";

    #[test]
    fn bpe_learns_merges_and_round_trips() {
        let tok = train(TEXT, 300).unwrap();
        assert!(tok.vocab_size() > BYTE_VOCAB, "no merge was learned");
        assert!(tok.vocab_size() <= 300);
        let ids = tok.encode(TEXT).unwrap();
        assert!(
            ids.len() * 5 < TEXT.len() * 3,
            "{} ids for {} bytes",
            ids.len(),
            TEXT.len()
        );
        assert_eq!(tok.decode(&ids).unwrap(), TEXT);
        // Text the corpus never had still encodes, through bytes.
        let other = "Zebra 🙂 ∑";
        assert_eq!(tok.decode(&tok.encode(other).unwrap()).unwrap(), other);
        assert_eq!(tok.token_id(END_OF_TEXT), Some(0));
        assert!(tok.end_of_generation().contains(&0));
        // Deterministic: the same text gives the same tokenizer.
        assert_eq!(
            train(TEXT, 300).unwrap().to_json().unwrap(),
            tok.to_json().unwrap()
        );
    }

    #[test]
    fn bytes_only_has_no_merges() {
        let tok = train(TEXT, BYTE_VOCAB).unwrap();
        assert_eq!(tok.vocab_size(), BYTE_VOCAB);
        let ids = tok.encode("héllo").unwrap();
        assert_eq!(ids.len(), "héllo".len());
        assert!(matches!(train(TEXT, 100), Err(Error::Train(_))));
    }
}
