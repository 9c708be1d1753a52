//! A conversation's KV cache as bytes and back, so a conversation outlives its engine: the page
//! snapshots it after each reply and restores it after a reload instead of prefilling again.
//!
//! The bytes are [`Model::save_kv`]'s (model id, tokens, keys and values, checksum); this file
//! decides which tokens are kept and whether a snapshot may continue a prompt.

use super::Engine;
use crate::chat::Message;
use crate::error::{Error, Result};

impl Engine {
    /// The model's identity, which every snapshot carries: the fingerprint of the file it was
    /// loaded from ([`crate::weights::fingerprint`]), or of the model itself when built in memory.
    pub fn model_id(&mut self) -> Result<[u8; 32]> {
        if let Some(id) = self.model_id {
            return Ok(id);
        }
        let id = self.model.fingerprint()?;
        self.model_id = Some(id);
        Ok(id)
    }

    /// The prompt tokens [`Engine::start_chat`] runs for `messages`.
    pub fn chat_tokens(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.tokenizer.encode(&self.render_chat(messages)?)
    }

    /// The tokens of `messages` as the start of a longer conversation (no generation prompt):
    /// what [`Engine::warm_chat`] runs and what [`Engine::save_chat_kv`] keeps.
    pub fn start_tokens(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(&self.template.render_with(messages, false)?)
    }

    /// How many leading tokens of `ids` the cache holds already.
    pub fn cached_prefix_of(&self, ids: &[u32]) -> usize {
        self.cached_prefix(ids)
    }

    /// A snapshot of the whole cache: every token that ran and its keys and values.
    pub fn save_kv(&mut self) -> Result<Vec<u8>> {
        let tokens = self.cached.clone();
        self.save_tokens(&tokens)
    }

    /// A snapshot of the part of the cache that a finished conversation agrees with: `messages`
    /// (the last one the reply) rendered without a generation prompt. The reply's last tokens
    /// may tokenize otherwise once written out, and a snapshot must be a prefix of the next
    /// prompt to be of use.
    pub fn save_chat_kv(&mut self, messages: &[Message]) -> Result<Vec<u8>> {
        let ids = self.start_tokens(messages)?;
        let n = self.cached_prefix(&ids);
        if n == 0 {
            return Err(Error::SnapshotMismatch(
                "the cache holds none of this conversation".into(),
            ));
        }
        let tokens = self.cached[..n].to_vec();
        self.save_tokens(&tokens)
    }

    fn save_tokens(&mut self, tokens: &[u32]) -> Result<Vec<u8>> {
        if self.generation.is_some() {
            return Err(Error::SnapshotMismatch(
                "a reply is in progress; snapshot the cache once it is done".into(),
            ));
        }
        let id = self.model_id()?;
        self.model.save_kv(&id, tokens)
    }

    /// Replaces the cache with a snapshot [`Engine::save_kv`] wrote, once it is checked whole and
    /// its tokens are the start of `prompt` (the tokens the next reply runs); the next reply then
    /// prefills only the rest. Refuses a snapshot of another model, of another conversation, or
    /// one corrupt or truncated, leaving the cache as it was. Returns the tokens now cached.
    pub fn restore_kv(&mut self, bytes: &[u8], prompt: &[u32]) -> Result<usize> {
        if self.generation.is_some() {
            return Err(Error::SnapshotMismatch(
                "a reply is in progress; restore a snapshot between replies".into(),
            ));
        }
        let id = self.model_id()?;
        let mut kept = Vec::new();
        let n = self.model.restore_kv(bytes, &id, |tokens| {
            let at = tokens
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count();
            if at < tokens.len() {
                return Err(Error::SnapshotOtherPrefix {
                    tokens: tokens.len(),
                    at,
                });
            }
            kept = tokens.to_vec();
            Ok(tokens.len())
        })?;
        kept.truncate(n);
        self.cached = kept;
        Ok(n)
    }

    /// [`Engine::restore_kv`] for the reply to `messages` that [`Engine::start_chat`] would start.
    pub fn restore_chat_kv(&mut self, bytes: &[u8], messages: &[Message]) -> Result<usize> {
        let prompt = self.chat_tokens(messages)?;
        self.restore_kv(bytes, &prompt)
    }
}
