//! A model file's identity, cheap enough to take at every load: the KV snapshots a session
//! writes name the model they belong to by it, and are refused by any other.
//!
//! It is a sha256 over the file's structure (its header: metadata, vocabulary, tensor table)
//! and three samples of every tensor's bytes — not a hash of every weight, which would cost a
//! read of the whole file, but enough that another file or a fine-tune of the same shapes differs.

use std::borrow::Cow;
use std::ops::Range;

use sha2::{Digest, Sha256};

/// Bytes read at the start, middle and end of each tensor.
const SAMPLE: usize = 256;

/// Bytes read whole at each end of a part [`Fingerprint::add_sampled`] adds.
const ENDS: usize = 64 << 10;
/// Bytes between the starts of two samples of [`Fingerprint::add_sampled`] between its ends.
const STRIDE: usize = 16 << 10;

/// A fingerprint being built, part by part.
pub struct Fingerprint(Sha256);

impl Fingerprint {
    /// A fingerprint of the kind `kind` ("gguf", "safetensors folder" …).
    pub fn new(kind: &str) -> Self {
        let mut f = Self(Sha256::new());
        f.add(kind.as_bytes());
        f
    }

    /// Adds `bytes`, their length first so that parts cannot run into each other.
    pub fn add(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// Adds three samples of the tensor lying at `range` of a file, read with `read`.
    pub fn add_tensor<'a>(
        &mut self,
        range: Range<usize>,
        read: impl Fn(Range<usize>) -> Cow<'a, [u8]>,
    ) {
        let (start, len) = (range.start, range.len());
        let middle = start + len.saturating_sub(SAMPLE) / 2;
        for at in [start, middle, range.end.saturating_sub(SAMPLE).max(start)] {
            self.add(&read(at..(at + SAMPLE).min(range.end)));
        }
    }

    /// Adds a large piece of a file's structure (a `tokenizer.json`, a GGUF header with its
    /// vocabulary): its length, its first and last [`ENDS`] bytes whole (settings, a GGUF's
    /// hyperparameters and tensor table) and a sample every [`STRIDE`] bytes between (the
    /// vocabulary). Hashing all of SmolLM2's 1.5 MB `tokenizer.json` took 60 ms of a load in the
    /// browser.
    pub fn add_sampled(&mut self, bytes: &[u8]) {
        let len = bytes.len();
        self.0.update((len as u64).to_le_bytes());
        if len <= 2 * ENDS {
            self.add(bytes);
            return;
        }
        self.add(&bytes[..ENDS]);
        for at in (ENDS..len - ENDS).step_by(STRIDE) {
            self.add(&bytes[at..(at + SAMPLE).min(len - ENDS)]);
        }
        self.add(&bytes[len - ENDS..]);
    }

    /// The sha256 of everything added.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn of(file: &[u8]) -> [u8; 32] {
        let mut f = Fingerprint::new("test");
        f.add_tensor(0..file.len(), |r| Cow::Borrowed(&file[r]));
        f.finish()
    }

    #[test]
    fn a_byte_changed_in_any_sample_changes_it() {
        let file: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let id = of(&file);
        assert_eq!(id, of(&file), "the same bytes give the same id");
        for at in [0, 2048 - SAMPLE / 2 + 1, 4095] {
            let mut other = file.clone();
            other[at] ^= 1;
            assert_ne!(of(&other), id, "byte {at} is sampled");
        }
        assert_ne!(
            of(&file[..100]),
            of(&file[..101]),
            "a short tensor is read whole"
        );
    }

    #[test]
    fn sampled_parts_see_their_length_and_every_sample() {
        let sampled = |bytes: &[u8]| {
            let mut f = Fingerprint::new("test");
            f.add_sampled(bytes);
            f.finish()
        };
        let file: Vec<u8> = (0..1_000_000u32).map(|i| (i * 13) as u8).collect();
        let id = sampled(&file);
        assert_eq!(id, sampled(&file));
        assert_ne!(sampled(&file[..999_999]), id, "the length counts");
        let last = file.len() - 1;
        for at in [
            0,
            ENDS - 1,
            ENDS,
            ENDS + 3 * STRIDE + 7,
            last - ENDS + 1,
            last,
        ] {
            let mut other = file.clone();
            other[at] ^= 1;
            assert_ne!(sampled(&other), id, "byte {at} is read");
        }
        let mut unsampled = file.clone();
        unsampled[ENDS + SAMPLE + 1] ^= 1;
        assert_eq!(
            sampled(&unsampled),
            id,
            "bytes between samples are not read"
        );
        let small = &file[..2 * ENDS];
        let mut other = small.to_vec();
        other[ENDS + SAMPLE + 1] ^= 1;
        assert_ne!(
            sampled(&other),
            sampled(small),
            "a small part is read whole"
        );
    }
}
