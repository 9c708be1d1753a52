//! Stage 1 of the data flow: bytes → named tensors and metadata.
//!
//! GGUF is read from an in-memory buffer (what JavaScript hands over, or a file read natively).

pub mod gguf;
pub mod tiny;

pub use gguf::Gguf;
