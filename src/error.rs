//! The one error type of Wick: every variant says what went wrong in words a user can act on.

use thiserror::Error;

/// Everything that can go wrong between bytes and text.
#[derive(Debug, Error)]
pub enum Error {
    /// The bytes are not a GGUF file at all (wrong magic).
    #[error("not a GGUF file: {0}")]
    NotGguf(String),
    /// The file ends before a structure it announces.
    #[error("file is truncated: {what} needs bytes {start}..{end}, but the file has {len} bytes")]
    Truncated {
        /// What was being read.
        what: String,
        /// First byte needed.
        start: u64,
        /// One past the last byte needed.
        end: u64,
        /// Length of the file.
        len: u64,
    },
    /// The file is structurally invalid (absurd counts, bad types, inconsistent sizes).
    #[error("corrupt model file: {0}")]
    Corrupt(String),
    /// A metadata key the model needs is missing or has the wrong type.
    #[error("model metadata: {0}")]
    Metadata(String),
    /// A tensor the architecture needs is absent or has the wrong shape.
    #[error("tensor `{name}`: {problem}")]
    Tensor {
        /// The tensor's name in the file.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A file other than GGUF (safetensors, config.json, …) is malformed or contradicts another.
    #[error("{file}: {problem}")]
    File {
        /// The file's name.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// One tensor of a named file is malformed, missing or contradicts config.json.
    #[error("{file}: tensor `{name}`: {problem}")]
    FileTensor {
        /// The file's name.
        file: String,
        /// The tensor's name in that file.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The architecture named by the file is not one Wick runs.
    #[error("unsupported architecture `{0}` (supported: llama, mistral, mixtral, qwen2, gpt2)")]
    UnsupportedArchitecture(String),
    /// The tensor type is not one Wick can load.
    #[error("tensor `{name}` has unsupported quantization type {ggml_type}")]
    UnsupportedQuantization {
        /// The tensor's name.
        name: String,
        /// The GGML type id or name.
        ggml_type: String,
    },
    /// The tokenizer could not be built or failed to encode/decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to parse or render.
    #[error("chat template: {0}")]
    Template(String),
    /// The chat template ran past its budget of steps or output: a runaway or hostile template.
    #[error("the model's chat template was stopped: {0} (a template that loops without end, or a hostile one; the model is not usable for chat)")]
    TemplateLimit(String),
    /// The prompt is empty.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt (plus what is already in the conversation) does not fit the context window.
    #[error("the prompt is too long: {needed} tokens needed but the context holds {limit}")]
    ContextOverflow {
        /// Tokens the conversation would need.
        needed: usize,
        /// Tokens the context window holds.
        limit: usize,
    },
    /// A sampling parameter is out of range.
    #[error("invalid sampling parameter: {0}")]
    Sampling(String),
    /// An output constraint (JSON schema, regex, grammar) is invalid, unsupported, or cannot be
    /// followed with the model's vocabulary.
    #[error("output constraint: {0}")]
    Constraint(String),
    /// Generation was asked to continue while no generation is running.
    #[error("no generation in progress")]
    NotGenerating,
    /// A KV snapshot ends early: it was cut short while being written or copied.
    #[error("the KV snapshot is truncated: it needs {needed} bytes but has {len}")]
    SnapshotTruncated {
        /// Bytes its header announces.
        needed: u64,
        /// Bytes it has.
        len: u64,
    },
    /// A KV snapshot's bytes are not a snapshot, are damaged, or are of an unknown version.
    #[error("the KV snapshot is corrupt: {0}")]
    SnapshotCorrupt(String),
    /// A KV snapshot was made by another model (or another file of the same model).
    #[error("the KV snapshot was made by another model (its model id starts {snapshot}, this model's {model})")]
    SnapshotOtherModel {
        /// The first hex digits of the snapshot's model id.
        snapshot: String,
        /// The first hex digits of the loaded model's id.
        model: String,
    },
    /// A KV snapshot's tokens are not the start of the prompt it was to continue.
    #[error("the KV snapshot holds another conversation: its {tokens} tokens are not the start of this prompt (they differ at token {at})")]
    SnapshotOtherPrefix {
        /// Tokens the snapshot holds.
        tokens: usize,
        /// The first token where snapshot and prompt differ.
        at: usize,
    },
    /// A KV snapshot that fits this model but not this engine (its shape, element type, device
    /// or context length).
    #[error("the KV snapshot does not fit this engine: {0}")]
    SnapshotMismatch(String),
    /// Training options that cannot work, a corpus too short for them, or a diverged run.
    #[error("training: {0}")]
    Train(String),
    /// An error from Candle's tensor operations.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// An I/O error reading a file (native only).
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Wick's result type.
pub type Result<T> = std::result::Result<T, Error>;
