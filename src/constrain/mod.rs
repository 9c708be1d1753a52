//! Stage 2½ of the data flow, between logits and sampler: a grammar (a JSON schema, any JSON
//! object, a regular expression or a Lark grammar) decides which tokens may come next, and every
//! other token's logit becomes −∞ before the sampler sees it.
//!
//! The grammar engine is `llguidance` (the one llama.cpp uses); it reads the model's vocabulary
//! as a trie of token bytes that [`Vocabulary`] builds from Wick's own [`Tokenizer`], with control
//! tokens marked so that no grammar matches them as text and the end-of-generation tokens allowed
//! exactly where the grammar may end.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// JSON whitespace the model may write between tokens: a newline and an indent, or one space,
/// never an unbounded run (a small model can otherwise fill its reply with blanks).
const JSON_WHITESPACE: &str = r"[\x20\x0A\x0D\x09]{0,16}";

/// What the reply must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Grammar {
    /// JSON that validates against `schema` (JSON Schema, draft 2020-12 and earlier).
    JsonSchema {
        /// The schema.
        schema: Value,
    },
    /// Any JSON object (OpenAI's `response_format: { type: "json_object" }`).
    JsonObject,
    /// Text that matches a regular expression whole (Rust `regex` syntax).
    Regex {
        /// The expression.
        pattern: String,
    },
    /// Text in the language of a Lark grammar (llguidance's dialect: `start: …`, `%json {…}`).
    Lark {
        /// The grammar.
        grammar: String,
    },
}

impl Grammar {
    /// llguidance's form of the grammar. JSON gets bounded whitespace unless the schema sets its
    /// own `x-guidance` options.
    fn to_llguidance(&self) -> TopLevelGrammar {
        let json = |mut schema: Value| {
            if let Some(o) = schema.as_object_mut() {
                o.entry("x-guidance").or_insert_with(
                    || serde_json::json!({ "whitespace_pattern": JSON_WHITESPACE }),
                );
            }
            TopLevelGrammar::from_json_schema(schema)
        };
        match self {
            Grammar::JsonSchema { schema } => json(schema.clone()),
            Grammar::JsonObject => json(serde_json::json!({ "type": "object" })),
            Grammar::Regex { pattern } => TopLevelGrammar::from_regex(pattern),
            Grammar::Lark { grammar } => TopLevelGrammar::from_lark(grammar.clone()),
        }
    }

    /// What kind of grammar this is, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            Grammar::JsonSchema { .. } => "JSON schema",
            Grammar::JsonObject => "JSON object",
            Grammar::Regex { .. } => "regular expression",
            Grammar::Lark { .. } => "Lark grammar",
        }
    }
}

/// A model's vocabulary as llguidance reads it, built once per model and shared by every
/// constrained reply (building the trie and its lexer slices takes tens of milliseconds).
#[derive(Clone)]
pub struct Vocabulary {
    factory: Arc<ParserFactory>,
}

impl Vocabulary {
    /// The vocabulary of `tok` for a model with `n_logits` outputs (at least the tokenizer's
    /// size; ids past the tokenizer are never allowed).
    pub fn new(tok: &Tokenizer, n_logits: usize) -> Result<Self> {
        let n = n_logits.max(tok.vocab_size());
        let eog = tok.end_of_generation();
        let Some(&eos) = eog.first() else {
            return Err(Error::Constraint(
                "the model names no end-of-generation token, so a constrained reply could not end"
                    .into(),
            ));
        };
        let words: Vec<Vec<u8>> = (0..n as u32).map(|id| token_word(tok, id)).collect();
        let info = TokRxInfo::new(n as u32, eos);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(eog);
        let env: Arc<dyn TokenizerEnv + Sync> = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(constraint_err)?;
        factory.quiet();
        Ok(Self {
            factory: Arc::new(factory),
        })
    }

    /// Compiles `grammar` into a fresh [`Constraint`]; a grammar that is invalid, or uses what
    /// llguidance does not support, is an error here, before any token is generated.
    pub fn constraint(&self, grammar: &Grammar) -> Result<Constraint> {
        let parser = self
            .factory
            .create_parser(grammar.to_llguidance())
            .map_err(|e| Error::Constraint(format!("invalid {}: {e}", grammar.kind())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::Constraint(format!(
                "invalid {}: {e}",
                grammar.kind()
            )));
        }
        Ok(Constraint {
            matcher,
            mask_seconds: 0.0,
        })
    }
}

/// The bytes llguidance knows token `id` by: its text, control tokens behind llguidance's
/// marker byte (0xFF, never valid UTF-8) so only a grammar that names them can match them.
fn token_word(tok: &Tokenizer, id: u32) -> Vec<u8> {
    let Some(bytes) = tok.token_bytes(id).1.filter(|b| !b.is_empty()) else {
        return Vec::new();
    };
    // A control token is written out with its text but decodes to nothing as plain text.
    let control = tok.decode(&[id]).is_ok_and(|t| t.is_empty());
    if control {
        let mut marked = vec![TokTrie::SPECIAL_TOKEN_MARKER];
        marked.extend_from_slice(&bytes);
        marked
    } else {
        bytes
    }
}

fn constraint_err(e: impl std::fmt::Display) -> Error {
    Error::Constraint(e.to_string())
}

/// One reply's grammar state: which tokens may come next, advanced token by token.
pub struct Constraint {
    matcher: Matcher,
    mask_seconds: f64,
}

impl Constraint {
    /// The tokens allowed next.
    fn allowed(&mut self) -> Result<SimpleVob> {
        let t0 = web_time::Instant::now();
        let mask = self.matcher.compute_mask().map_err(constraint_err);
        self.mask_seconds += t0.elapsed().as_secs_f64();
        let mask = mask?;
        if mask.is_zero() {
            return Err(Error::Constraint(
                "the grammar allows no token here (the vocabulary cannot spell what it asks for)"
                    .into(),
            ));
        }
        Ok(mask)
    }

    /// Sets the logit of every token the grammar does not allow next to −∞.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let allowed = self.allowed()?;
        let t0 = web_time::Instant::now();
        for (id, l) in logits.iter_mut().enumerate() {
            if !allowed.get(id) {
                *l = f32::NEG_INFINITY;
            }
        }
        self.mask_seconds += t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// Advances the grammar past token `id` (one the last mask allowed).
    pub fn accept(&mut self, id: u32) -> Result<()> {
        self.matcher.consume_token(id).map_err(constraint_err)
    }

    /// Whether the grammar is complete and allows nothing more (the reply ends here).
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Seconds spent computing and applying masks so far.
    pub fn mask_seconds(&self) -> f64 {
        self.mask_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::tiny::tiny_gguf;
    use crate::weights::Gguf;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn vocabulary() -> (Tokenizer, Vocabulary) {
        let bytes = tiny_gguf(3).unwrap();
        let tok = Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap();
        let v = Vocabulary::new(&tok, tok.vocab_size()).unwrap();
        (tok, v)
    }

    /// Greedy under `grammar` with logits that prefer the lowest ids: the text spelled.
    fn spell(grammar: &Grammar, max: usize) -> (String, bool) {
        let (tok, v) = vocabulary();
        let mut c = v.constraint(grammar).unwrap();
        let mut ids = Vec::new();
        for _ in 0..max {
            let mut logits: Vec<f32> = (0..tok.vocab_size()).map(|i| -(i as f32)).collect();
            c.mask(&mut logits).unwrap();
            let (best, _) = logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap();
            if tok.end_of_generation().contains(&(best as u32)) {
                return (tok.decode(&ids).unwrap(), true);
            }
            c.accept(best as u32).unwrap();
            ids.push(best as u32);
            if c.is_finished() {
                return (tok.decode(&ids).unwrap(), true);
            }
        }
        (tok.decode(&ids).unwrap(), false)
    }

    #[test]
    fn control_tokens_are_marked_and_text_tokens_are_their_bytes() {
        let (tok, _) = vocabulary();
        let im_end = tok.token_id("<|im_end|>").unwrap();
        assert_eq!(token_word(&tok, im_end), b"\xFF<|im_end|>");
        let a = tok.encode_with(" the", false, false).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(token_word(&tok, a[0]), b" the");
    }

    #[test]
    fn a_regex_is_spelled_whole_then_the_reply_ends() {
        let (text, ended) = spell(
            &Grammar::Regex {
                pattern: "(yes|no), [0-9]{3}".into(),
            },
            40,
        );
        assert!(ended, "{text:?}");
        let (word, num) = text.split_once(", ").unwrap();
        assert!(word == "yes" || word == "no", "{text:?}");
        assert!(
            num.len() == 3 && num.bytes().all(|b| b.is_ascii_digit()),
            "{text:?}"
        );
    }

    #[test]
    fn a_lark_grammar_and_an_enum_schema_are_followed() {
        let lark = Grammar::Lark {
            grammar: "start: \"sum(\" NUM (\",\" NUM)* \")\"\nNUM: /[1-9][0-9]?/".into(),
        };
        let (text, ended) = spell(&lark, 60);
        assert!(
            ended && text.starts_with("sum(") && text.ends_with(')'),
            "{text:?}"
        );
        let schema = Grammar::JsonSchema {
            schema: serde_json::json!({
                "type": "object",
                "properties": {"color": {"enum": ["red", "green"]}, "n": {"type": "integer", "minimum": 3, "maximum": 5}},
                "required": ["color", "n"],
                "additionalProperties": false,
                "x-guidance": {"whitespace_flexible": false}
            }),
        };
        let (text, ended) = spell(&schema, 80);
        assert!(ended, "{text:?}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(
            ["red", "green"].contains(&v["color"].as_str().unwrap()),
            "{text}"
        );
        assert!((3..=5).contains(&v["n"].as_i64().unwrap()), "{text}");
    }

    #[test]
    fn invalid_grammars_are_clear_errors() {
        let (_, v) = vocabulary();
        for (g, want) in [
            (
                Grammar::JsonSchema {
                    schema: serde_json::json!({"type": "objekt"}),
                },
                "invalid JSON schema",
            ),
            (
                Grammar::Regex {
                    pattern: "(unclosed".into(),
                },
                "invalid regular expression",
            ),
            (
                Grammar::Lark {
                    grammar: "start: undefined_rule".into(),
                },
                "invalid Lark grammar",
            ),
        ] {
            let err = v.constraint(&g).err().expect("an error").to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn grammars_read_from_json() {
        let g: Grammar =
            serde_json::from_str(r#"{"type":"json_schema","schema":{"type":"string"}}"#).unwrap();
        assert_eq!(
            g,
            Grammar::JsonSchema {
                schema: serde_json::json!({"type": "string"})
            }
        );
        let g: Grammar = serde_json::from_str(r#"{"type":"json_object"}"#).unwrap();
        assert_eq!(g, Grammar::JsonObject);
    }

    /// The tiny model's greedy replies under each grammar of the fixture.
    fn tiny_replies() -> Vec<TinyCase> {
        use crate::session::Engine;
        let bytes = tiny_gguf(TINY_SEED).unwrap();
        let mut e = Engine::from_gguf_bytes(&bytes, &candle_core::Device::Cpu).unwrap();
        let cases = [
            (
                "schema",
                Grammar::JsonSchema {
                    schema: serde_json::json!({
                        "type": "object",
                        "properties": {
                            "ok": {"type": "boolean"},
                            "size": {"enum": ["small", "large"]},
                            "n": {"type": "integer", "minimum": -3, "maximum": 99},
                            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2}
                        },
                        "required": ["ok", "size", "n", "tags"],
                        "additionalProperties": false,
                        "x-guidance": {"whitespace_flexible": false}
                    }),
                },
            ),
            (
                "regex",
                Grammar::Regex {
                    pattern: "(the|a) (cat|house) is [0-9]{2}".into(),
                },
            ),
            (
                "lark",
                Grammar::Lark {
                    grammar: "start: item \",\" item (\",\" item)?\nitem: \"x\" | \"the\" | NUM\nNUM: /[0-9]/".into(),
                },
            ),
        ];
        cases
            .into_iter()
            .map(|(name, grammar)| {
                let params = crate::sample::SamplingParams {
                    constraint: Some(grammar.clone()),
                    ..crate::sample::SamplingParams::greedy(64)
                };
                let mut text = String::new();
                let (ids, reason) = e
                    .generate(TINY_PROMPT, params, |t| text.push_str(t))
                    .unwrap();
                assert_eq!(
                    reason,
                    crate::session::StopReason::EndOfGeneration,
                    "{name}: {text:?}"
                );
                TinyCase {
                    name: name.into(),
                    grammar,
                    ids,
                    text,
                }
            })
            .collect()
    }

    const TINY_SEED: u64 = 42;
    const TINY_PROMPT: &str = "<|im_start|>user\nanswer<|im_end|>\n<|im_start|>assistant\n";

    /// One case of `tests/fixtures/constrain_tiny.json`.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct TinyCase {
        name: String,
        grammar: Grammar,
        ids: Vec<u32>,
        text: String,
    }

    /// Native and wasm give the fixture's ids; rewrite it natively with
    /// `WICK_REGEN_FIXTURES=1 cargo test --release --lib constrain::` after an intended change.
    #[test]
    fn tiny_model_replies_match_the_fixture_and_their_grammars() {
        let got = tiny_replies();
        #[cfg(not(target_arch = "wasm32"))]
        if std::env::var("WICK_REGEN_FIXTURES").as_deref() == Ok("1") {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/constrain_tiny.json"
            );
            std::fs::write(path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
            return;
        }
        let want: Vec<TinyCase> =
            serde_json::from_str(include_str!("../../tests/fixtures/constrain_tiny.json")).unwrap();
        assert_eq!(got, want);
        let json: Value = serde_json::from_str(&got[0].text).unwrap();
        assert!(json["ok"].is_boolean() && (-3..=99).contains(&json["n"].as_i64().unwrap()));
        let (start, number) = got[1].text.rsplit_once(' ').unwrap();
        assert!(["the cat is", "the house is", "a cat is", "a house is"].contains(&start));
        assert!(number.len() == 2 && number.bytes().all(|b| b.is_ascii_digit()));
        let items: Vec<&str> = got[2].text.split(',').collect();
        assert!((2..=3).contains(&items.len()), "{}", got[2].text);
        assert!(items.iter().all(
            |i| ["x", "the"].contains(i) || (i.len() == 1 && i.as_bytes()[0].is_ascii_digit())
        ));
    }
}
