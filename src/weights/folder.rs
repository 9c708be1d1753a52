//! What a Hugging Face model folder contains, in one place: which files there are, which a
//! fetcher must ask for, and what each says (config, tokenizer settings, chat template, the
//! safetensors file or the shards its index lists, MLX quantization). The CLI, the session and
//! the browser boundary ask a [`ModelFolder`]; the worker asks [`FILES`] and [`index_shards`].

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

use super::hf::{parse_config, HfModel};
use super::safetensors::{Bytes, SafeTensors};
use crate::error::{Error, Result};

/// The model's shape and architecture.
pub const CONFIG: &str = "config.json";
/// The tokenizer (`tokenizers`' JSON).
pub const TOKENIZER: &str = "tokenizer.json";
/// Special tokens, `add_bos_token` and maybe the chat template.
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
/// The chat template as its own file (newer `transformers`).
pub const CHAT_TEMPLATE: &str = "chat_template.jinja";
/// The weights in one file.
pub const WEIGHTS: &str = "model.safetensors";
/// Which shard holds each tensor, when the weights are split.
pub const INDEX: &str = "model.safetensors.index.json";

/// Largest `tokenizer.json` read (Gemma 3's, of 262,144 tokens, is 33 MB).
pub const MAX_TOKENIZER_JSON: usize = 64 << 20;
/// Largest other JSON file or chat template read (configs and indexes are kilobytes; a
/// `tokenizer_config.json` listing every added token, a megabyte or two).
pub const MAX_JSON: usize = 16 << 20;

/// A file a fetcher asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Wanted {
    /// Its name in the folder.
    pub name: &'static str,
    /// Whether the folder is unusable without it (an optional file may be absent: HTTP 404).
    pub required: bool,
}

/// What to fetch before the weights, in order. Then the weights: [`WEIGHTS`], or when the folder
/// has none, [`INDEX`] and the shards that [`index_shards`] reads from it.
pub const FILES: [Wanted; 4] = [
    Wanted {
        name: CONFIG,
        required: true,
    },
    Wanted {
        name: TOKENIZER,
        required: true,
    },
    Wanted {
        name: TOKENIZER_CONFIG,
        required: false,
    },
    Wanted {
        name: CHAT_TEMPLATE,
        required: false,
    },
];

/// Whether a file of this name can be part of a model folder (what a directory reader keeps).
pub fn uses(name: &str) -> bool {
    name.ends_with(".json") || name.ends_with(".safetensors") || name.ends_with(".jinja")
}

/// Whether `name` is a plain `*.safetensors` file name: no folder, no `..`, no absolute path,
/// nothing a fetcher or the CLI could resolve outside the model folder.
pub fn is_shard_name(name: &str) -> bool {
    name.len() > ".safetensors".len()
        && name.len() <= 255
        && name.ends_with(".safetensors")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The shard names an index lists (`weight_map` values), sorted, each once; every one a plain
/// file name ([`is_shard_name`]).
pub fn index_shards(index: &[u8]) -> Result<Vec<String>> {
    let v = parse_json(INDEX, index)?;
    let mut shards: Vec<String> = v
        .get("weight_map")
        .and_then(Value::as_object)
        .map(|m| {
            m.values()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    shards.sort();
    shards.dedup();
    if let Some(bad) = shards.iter().find(|s| !is_shard_name(s)) {
        return Err(Error::File {
            file: INDEX.into(),
            problem: format!(
                "names a shard {bad:?} that is not a plain .safetensors file name (no folders, no \"..\")"
            ),
        });
    }
    if shards.is_empty() {
        return Err(Error::File {
            file: INDEX.into(),
            problem: "lists no shards (its \"weight_map\" is empty or missing)".into(),
        });
    }
    Ok(shards)
}

fn parse_json(file: &str, bytes: &[u8]) -> Result<Value> {
    check_size(file, bytes.len(), MAX_JSON)?;
    serde_json::from_slice(bytes).map_err(|e| Error::File {
        file: file.into(),
        problem: format!("is not valid JSON: {e}"),
    })
}

/// An error if a file of `len` bytes is larger than `cap` (checked before it is read).
pub fn check_size(file: &str, len: usize, cap: usize) -> Result<()> {
    if len > cap {
        return Err(Error::File {
            file: file.into(),
            problem: format!(
                "is {len} bytes, more than the {} MB Wick reads for it",
                cap >> 20
            ),
        });
    }
    Ok(())
}

/// The error for a file a model folder needs and lacks.
fn missing(name: &str) -> Error {
    Error::File {
        file: name.to_string(),
        problem: "is missing from the model folder".into(),
    }
}

/// A path's last component (`models/x/config.json` → `config.json`).
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The tokenizer settings of `tokenizer_config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// The beginning-of-sequence token's text.
    pub bos: Option<String>,
    /// The end-of-sequence token's text.
    pub eos: Option<String>,
    /// Whether a BOS token starts every encoded text.
    pub add_bos: bool,
}

/// A model folder's files by name (a path's last component counts), their bytes wherever they
/// are ([`Bytes`]: in memory, or left in JavaScript).
pub struct ModelFolder<'a> {
    files: Vec<(String, &'a dyn Bytes)>,
}

impl<'a> ModelFolder<'a> {
    /// The folder made of `files` (`(name or path, bytes)`).
    pub fn new(files: &[(String, &'a dyn Bytes)]) -> Self {
        Self {
            files: files.to_vec(),
        }
    }

    /// Copies of every file but the weights (`*.safetensors`): what the tokenizer and the chat
    /// template are read from, owned, so another thread can parse them.
    pub fn small_files(&self) -> Vec<(String, Vec<u8>)> {
        self.files
            .iter()
            .filter(|(n, _)| !n.ends_with(".safetensors"))
            .map(|(n, b)| (n.clone(), b.read(0..b.len()).into_owned()))
            .collect()
    }

    fn source(&self, name: &str) -> Option<&'a dyn Bytes> {
        self.files
            .iter()
            .find(|(n, _)| base_name(n) == name)
            .map(|(_, b)| *b)
    }

    /// A small file's bytes, refused unread when larger than `cap`.
    fn read_capped(&self, name: &str, cap: usize) -> Result<Option<Cow<'a, [u8]>>> {
        match self.source(name) {
            Some(b) => {
                check_size(name, b.len(), cap)?;
                Ok(Some(b.read(0..b.len())))
            }
            None => Ok(None),
        }
    }

    /// `config.json`'s bytes.
    pub fn config_bytes(&self) -> Result<Cow<'a, [u8]>> {
        self.read_capped(CONFIG, MAX_JSON)?
            .ok_or_else(|| missing(CONFIG))
    }

    /// `config.json`, parsed.
    pub fn config(&self) -> Result<Value> {
        parse_config(&self.config_bytes()?)
    }

    /// The MLX quantization's bits (`quantization.bits` in `config.json`), if the weights are
    /// MLX-quantized.
    pub fn mlx_bits(&self) -> Option<u64> {
        let c = self.config().ok()?;
        let q = c
            .get("quantization")
            .or_else(|| c.get("quantization_config"))?;
        q.get("bits")?.as_u64()
    }

    /// `tokenizer.json`'s bytes.
    pub fn tokenizer_json(&self) -> Result<Cow<'a, [u8]>> {
        self.read_capped(TOKENIZER, MAX_TOKENIZER_JSON)?
            .ok_or_else(|| missing(TOKENIZER))
    }

    fn tokenizer_config(&self) -> Result<Value> {
        match self.read_capped(TOKENIZER_CONFIG, MAX_JSON)? {
            Some(b) => parse_json(TOKENIZER_CONFIG, &b),
            None => Ok(Value::Null),
        }
    }

    /// The special tokens of `tokenizer_config.json` (none, and no BOS, without one).
    pub fn special_tokens(&self) -> Result<SpecialTokens> {
        let c = self.tokenizer_config()?;
        // A special token is a string, or an object whose "content" is the string.
        let token = |k: &str| {
            let v = c.get(k)?;
            v.as_str()
                .or_else(|| v.get("content").and_then(Value::as_str))
                .map(String::from)
        };
        Ok(SpecialTokens {
            bos: token("bos_token"),
            eos: token("eos_token"),
            add_bos: c.get("add_bos_token").and_then(Value::as_bool) == Some(true),
        })
    }

    /// The chat template's source: `tokenizer_config.json`'s `chat_template`, else
    /// `chat_template.jinja`, else none.
    pub fn chat_template(&self) -> Result<Option<String>> {
        let c = self.tokenizer_config()?;
        if let Some(t) = c.get("chat_template").and_then(Value::as_str) {
            return Ok(Some(t.to_string()));
        }
        Ok(self
            .read_capped(CHAT_TEMPLATE, MAX_JSON)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The safetensors files that hold the weights: those the index lists when there is one,
    /// else every `.safetensors` file given.
    pub fn shard_names(&self) -> Result<Vec<String>> {
        if let Some(index) = self.read_capped(INDEX, MAX_JSON)? {
            return index_shards(&index);
        }
        let names: Vec<String> = self
            .files
            .iter()
            .map(|(n, _)| base_name(n).to_string())
            .filter(|n| n.ends_with(".safetensors"))
            .collect();
        if names.is_empty() {
            return Err(missing(WEIGHTS));
        }
        Ok(names)
    }

    /// The weights' files, parsed (headers checked; tensors are read when loaded).
    pub fn safetensors(&self) -> Result<Vec<SafeTensors<'a>>> {
        self.shard_names()?
            .iter()
            .map(|name| {
                let bytes = self.source(name).ok_or_else(|| missing(name))?;
                SafeTensors::parse_from(name, bytes)
            })
            .collect()
    }

    /// The folder's identity for KV snapshots (see [`super::fingerprint`]): `config.json`,
    /// samples of the tokenizer and of every tensor of every shard.
    pub fn fingerprint(&self) -> Result<[u8; 32]> {
        let mut f = super::fingerprint::Fingerprint::new("safetensors folder");
        f.add(&self.config_bytes()?);
        f.add_sampled(&self.tokenizer_json()?);
        for shard in self.safetensors()? {
            shard.fingerprint_into(&mut f);
        }
        Ok(f.finish())
    }

    /// The weights under llama.cpp's names, with `config.json`.
    pub fn hf_model(&self) -> Result<HfModel<'a>> {
        let shards = self.safetensors()?;
        HfModel::new(&self.config_bytes()?, shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn folder<'a>(files: &'a [(&str, Vec<u8>)]) -> Vec<(String, &'a dyn Bytes)> {
        files
            .iter()
            .map(|(n, b)| (n.to_string(), b as &dyn Bytes))
            .collect()
    }

    #[test]
    fn the_index_decides_the_shards() {
        let index = br#"{"weight_map": {"a": "m-2.safetensors", "b": "m-1.safetensors", "c": "m-2.safetensors"}}"#;
        let files = [
            ("dir/model.safetensors.index.json", index.to_vec()),
            ("stray.safetensors", Vec::new()),
        ];
        let f = folder(&files);
        let names = ModelFolder::new(&f).shard_names().unwrap();
        assert_eq!(names, ["m-1.safetensors", "m-2.safetensors"]);
        assert!(index_shards(b"{}")
            .unwrap_err()
            .to_string()
            .contains("no shards"));
        let files = [("b.safetensors", vec![]), ("config.json", vec![])];
        let f = folder(&files);
        assert_eq!(
            ModelFolder::new(&f).shard_names().unwrap(),
            ["b.safetensors"]
        );
        let e = ModelFolder::new(&[]).shard_names().unwrap_err().to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn tokenizer_settings_and_template_come_from_their_files() {
        let tc =
            br#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>", "add_bos_token": true}"#;
        let files = [
            ("tokenizer_config.json", tc.to_vec()),
            ("chat_template.jinja", b"{{ x }}".to_vec()),
            ("config.json", br#"{"quantization": {"bits": 4}}"#.to_vec()),
        ];
        let f = folder(&files);
        let folder = ModelFolder::new(&f);
        let s = folder.special_tokens().unwrap();
        assert_eq!(
            (s.bos.as_deref(), s.eos.as_deref(), s.add_bos),
            (Some("<s>"), Some("</s>"), true)
        );
        assert_eq!(folder.chat_template().unwrap().as_deref(), Some("{{ x }}"));
        assert_eq!(folder.mlx_bits(), Some(4));
        let e = folder.tokenizer_json().err().unwrap().to_string();
        assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");
        assert!(FILES.iter().any(|w| w.name == CHAT_TEMPLATE && !w.required));
    }
}
