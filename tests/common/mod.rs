//! The Hugging Face fixtures of `tests/fixtures/hf/`, compiled into the test binaries so they run
//! where there is no file system (wasm) or no checkout (the GPU machine).
#![allow(dead_code)]

use serde::Deserialize;

/// `reference.json`: the token ids and `transformers`' f32 logits at every position.
#[derive(Deserialize)]
pub struct Reference {
    pub tokens: Vec<u32>,
    pub logits: Vec<Vec<f32>>,
}

/// One fixture folder's files.
pub struct Fixture {
    pub name: &'static str,
    pub config: &'static [u8],
    pub safetensors: &'static [u8],
    pub gguf: Option<&'static [u8]>,
    pub reference: &'static str,
}

impl Fixture {
    pub fn reference(&self) -> Reference {
        serde_json::from_str(self.reference).expect("reference parses")
    }
}

macro_rules! fixture {
    ($name:literal $(, $gguf:ident)?) => {
        Fixture {
            name: $name,
            config: include_bytes!(concat!("../fixtures/hf/", $name, "/config.json")),
            safetensors: include_bytes!(concat!("../fixtures/hf/", $name, "/model.safetensors")),
            gguf: fixture!(@gguf $name $(, $gguf)?),
            reference: include_str!(concat!("../fixtures/hf/", $name, "/reference.json")),
        }
    };
    (@gguf $name:literal, gguf) => {
        Some(include_bytes!(concat!("../fixtures/hf/", $name, "/model.gguf")))
    };
    (@gguf $name:literal) => {
        None
    };
}

/// A fixture by folder name.
pub fn fixture(name: &str) -> Fixture {
    all()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// Every fixture.
pub fn all() -> Vec<Fixture> {
    vec![
        fixture!("llama2", gguf),
        fixture!("llama3", gguf),
        fixture!("smollm", gguf),
        fixture!("llama-gelu"),
        fixture!("mistral", gguf),
        fixture!("mixtral", gguf),
        fixture!("qwen2", gguf),
        fixture!("gpt2", gguf),
        fixture!("gpt2-relu"),
        fixture!("gemma3", gguf),
        fixture!("gemma3-scaled"),
        fixture!("smollm-mlx-q4-g32"),
        fixture!("smollm-mlx-q4-g128"),
        fixture!("smollm-mlx-q8-g64"),
    ]
}
