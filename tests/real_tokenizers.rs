//! The real models' tokenizers, built from their GGUF metadata alone, against llama.cpp: every
//! string of `tests/fixtures/real/tokenizer_corpus.json` must get llama.cpp's ids (from
//! `tests/fixtures/real/<model>.llamacpp.json`, written by `scripts/llamacpp-reference.py`),
//! with and without BOS and with special tokens in the text read as text; decoding must give the
//! text back; the end-of-generation ids and Qwen's chat template must be llama.cpp's. Other BPE
//! pre-tokenizers and more conversations are checked against
//! `tests/fixtures/real/tokenizer_variants.llamacpp.json` (`scripts/tokenizer-reference.py`).
//!
//! The models come from `scripts/fetch-models.sh` (the test command fetches them).

use serde_json::Value;
use wick::weights::Gguf;
use wick::{ChatTemplate, Message, Tokenizer};

/// A model: its name for `scripts/fetch-models.sh` and its file under `models/`.
struct Model {
    name: &'static str,
    file: &'static str,
}

const QWEN: Model = Model {
    name: "qwen2.5-coder-0.5b",
    file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
};

const GEMMA: Model = Model {
    name: "gemma3-270m",
    file: "gemma-3-270m-q4_k_m.gguf",
};

impl Model {
    fn bytes(&self) -> Vec<u8> {
        let path = format!("models/{}", self.file);
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{path}: {e}. Run `scripts/fetch-models.sh {}` to fetch it.",
                self.name
            )
        })
    }

    fn reference(&self) -> Value {
        let path = format!("tests/fixtures/real/{}.llamacpp.json", self.name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }
}

/// scripts/tokenizer-reference.py's fixture: other pre-tokenizers, more chat templates.
fn variants() -> Value {
    let path = "tests/fixtures/real/tokenizer_variants.llamacpp.json";
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an id list: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Where two id lists first differ, for a readable failure.
fn first_difference(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Tokenizes every corpus string three ways and lists where Wick and llama.cpp disagree.
fn corpus_mismatches(tok: &Tokenizer, reference: &Value) -> (usize, Vec<String>) {
    let entries = reference["tokenizer"].as_array().expect("a tokenizer list");
    assert!(
        entries.len() >= 50,
        "the corpus has {} strings",
        entries.len()
    );
    let mut bad = Vec::new();
    for e in entries {
        let text = e["text"].as_str().unwrap();
        let ways = [
            ("add_special", true, true),
            ("no_add_special", false, true),
            ("no_parse_special", false, false),
        ];
        for (key, add, parse) in ways {
            let want = ids(&e[key]);
            let got = tok.encode_with(text, add, parse).unwrap();
            if got != want {
                let at = first_difference(&got, &want);
                let show = |v: &[u32]| {
                    v[at.min(v.len())..(at + 4).min(v.len())]
                        .iter()
                        .map(|&i| format!("{i} {:?}", tok.token_text(i).unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                bad.push(format!(
                    "{} ({key}) {text:?}: from token {at}, Wick [{}] llama.cpp [{}]",
                    e["id"],
                    show(&got),
                    show(&want)
                ));
            }
        }
    }
    (entries.len(), bad)
}

fn check_corpus(model: &Model) {
    let bytes = model.bytes();
    let tok = Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap();
    let reference = model.reference();
    assert_eq!(
        tok.adds_bos(),
        reference["adds_bos"].as_bool().unwrap(),
        "adds BOS"
    );
    let (n, bad) = corpus_mismatches(&tok, &reference);
    assert!(
        bad.is_empty(),
        "{} of {n} strings tokenized differently from llama.cpp:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Every corpus string comes back from its ids (none of them has a control token when special
/// tokens are read as text, and llama.cpp round-trips them all too).
fn check_round_trip(model: &Model) {
    let bytes = model.bytes();
    let tok = Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap();
    for e in model.reference()["tokenizer"].as_array().unwrap() {
        let text = e["text"].as_str().unwrap();
        let ours = tok.encode_with(text, false, false).unwrap();
        assert_eq!(tok.decode(&ours).unwrap(), text, "{}", e["id"]);
        assert_eq!(
            tok.decode(&ids(&e["no_parse_special"])).unwrap(),
            text,
            "{} (llama.cpp's ids)",
            e["id"]
        );
    }
}

#[test]
fn qwen_tokenizes_the_corpus_as_llama_cpp() {
    check_corpus(&QWEN);
}

#[test]
fn gemma_tokenizes_the_corpus_as_llama_cpp() {
    check_corpus(&GEMMA);
}

#[test]
fn qwen_decodes_the_corpus_back() {
    check_round_trip(&QWEN);
}

#[test]
fn gemma_decodes_the_corpus_back() {
    check_round_trip(&GEMMA);
}

#[test]
fn end_of_generation_ids_are_llama_cpps() {
    // llama.cpp's `print_info: EOG token` lines when it loads each file (xllamacpp 2026.10.11549).
    let cases: [(&Model, &[(u32, &str)]); 2] = [
        (
            &QWEN,
            &[
                (128247, "</s>"),
                (151643, "<|endoftext|>"),
                (151645, "<|im_end|>"),
                (151662, "<|fim_pad|>"),
                (151663, "<|repo_name|>"),
                (151664, "<|file_sep|>"),
            ],
        ),
        (
            &GEMMA,
            &[(1, "<eos>"), (106, "<end_of_turn>"), (212, "</s>")],
        ),
    ];
    for (model, want) in cases {
        let bytes = model.bytes();
        let tok = Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap();
        let got: Vec<(u32, String)> = tok
            .end_of_generation()
            .iter()
            .map(|&i| (i, tok.token_text(i).unwrap()))
            .collect();
        let want: Vec<(u32, String)> = want.iter().map(|&(i, t)| (i, t.to_string())).collect();
        assert_eq!(got, want, "{}", model.name);
    }
}

#[test]
fn qwen_chat_template_renders_as_llama_cpp() {
    let bytes = QWEN.bytes();
    let g = Gguf::parse(&bytes).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let template = ChatTemplate::new(
        Some(g.get_str("tokenizer.chat_template").unwrap()),
        tok.bos_token(),
        tok.eos_token(),
    )
    .unwrap();
    assert!(template.is_models_own());
    // One-question chats with llama.cpp's prompt ids, and system prompts and several turns.
    let chats = QWEN.reference()["chat"].as_array().unwrap().clone();
    let more = variants()["templates"].as_array().unwrap().clone();
    assert!(chats.len() >= 3 && more.len() >= 3);
    for chat in chats.iter().chain(&more) {
        let messages: Vec<Message> = serde_json::from_value(chat["messages"].clone()).unwrap();
        let rendered = template.render(&messages).unwrap();
        assert_eq!(
            rendered,
            chat["rendered_prompt"].as_str().unwrap(),
            "{}",
            chat["id"]
        );
        if let Some(want) = chat.get("prompt_ids") {
            assert_eq!(tok.encode(&rendered).unwrap(), ids(want), "{}", chat["id"]);
        }
    }
}

#[test]
fn bpe_pre_tokenizers_split_as_llama_cpp() {
    // scripts/tokenizer-reference.py: llama.cpp on Qwen's vocabulary under each pre-tokenizer.
    let reference = variants();
    let corpus: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/real/tokenizer_corpus.json").unwrap(),
    )
    .unwrap();
    let texts: std::collections::HashMap<&str, &str> = corpus["strings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["text"].as_str().unwrap()))
        .collect();
    let bytes = QWEN.bytes();
    let mut g = Gguf::parse(&bytes).unwrap();
    let mut bad = Vec::new();
    let pre_types = reference["pre_types"].as_object().unwrap();
    assert!(pre_types.len() >= 8, "{:?}", pre_types.keys());
    for (pre, entries) in pre_types {
        g.metadata.insert(
            "tokenizer.ggml.pre".into(),
            candle_core::quantized::gguf_file::Value::String(pre.clone()),
        );
        let tok = Tokenizer::from_gguf(&g).unwrap();
        for e in entries.as_array().unwrap() {
            let id = e["id"].as_str().unwrap();
            let got = tok.encode_with(texts[id], false, true).unwrap();
            let want = ids(&e["ids"]);
            if got != want {
                let at = first_difference(&got, &want);
                bad.push(format!(
                    "{pre} {id}: from token {at}, Wick {:?} llama.cpp {:?}",
                    &got[at..(at + 4).min(got.len())],
                    &want[at.min(want.len())..(at + 4).min(want.len())]
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn qwen_tokenizer_json_tokenizes_the_corpus_alike() {
    // What `wick quantize` writes into an MLX folder, run by Hugging Face `tokenizers`.
    let bytes = QWEN.bytes();
    let tok = Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap();
    let json = tok.to_json().unwrap();
    let back = Tokenizer::from_json(json.as_bytes(), tok.eos_token().as_deref(), None).unwrap();
    let mut bad = Vec::new();
    for e in QWEN.reference()["tokenizer"].as_array().unwrap() {
        let text = e["text"].as_str().unwrap();
        if back.encode(text).unwrap() != ids(&e["no_add_special"]) {
            bad.push(e["id"].to_string());
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn tokenizer_json_is_read_into_the_tokenizer_hugging_face_tokenizers_builds() {
    // Wick reads a tokenizer.json's BPE model section itself (src/tokenizer/hf_json.rs, faster
    // at load); written out again, the tokenizer must be the one `tokenizers` reads.
    for model in [&QWEN, &GEMMA] {
        let json = Tokenizer::from_gguf(&Gguf::parse(&model.bytes()).unwrap())
            .unwrap()
            .to_json()
            .unwrap();
        let ours = Tokenizer::from_json(json.as_bytes(), None, None).unwrap();
        let theirs = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
        assert!(
            ours.to_json().unwrap() == theirs.to_string(false).unwrap(),
            "{}: the tokenizers differ",
            model.name
        );
    }
}
