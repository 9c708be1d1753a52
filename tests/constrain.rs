//! Constrained decoding end to end on the default model (SmolLM2-135M-Instruct Q4_1): every reply
//! under a JSON schema parses and validates with an independent validator (the `jsonschema`
//! crate, formats checked); the real-world schemas fetched by `scripts/fetch-schemas.sh` measure
//! what share llguidance supports; regexes, grammars, invalid schemas and the CLI.
//!
//! The MLX folder's reply to `SCHEMA_PROMPT` is written to `tests/fixtures/constrain_smollm2.json`
//! (`WICK_REGEN_FIXTURES=1 cargo test --release --test constrain fixture`), where the browser test
//! (`tests/e2e/constrain.test.mjs`) finds the text the tab must give through `response_format`.
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;
use std::process::Command;

use candle_core::Device;
use serde_json::{json, Value};
use wick::{Engine, Error, Event, Grammar, Message, SamplingParams, StopReason};

const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const MLX: &str = "models/SmolLM2-135M-Instruct-MLX-4bit";
const SYSTEM: &str = "You are a helpful AI assistant.";
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/constrain_smollm2.json"
);

/// Schemas of the real-world set that compile; the test fails if a change lowers it.
const MIN_SUPPORTED: usize = 16;
/// Of those, replies the default model completes within `CORPUS_TOKENS`; likewise.
const MIN_COMPLETED: usize = 3;
const CORPUS_TOKENS: usize = 160;

fn engine() -> Engine {
    let bytes = std::fs::read(MODEL).unwrap_or_else(|e| {
        panic!("{MODEL}: {e}. Run scripts/setup.sh to fetch the default model.")
    });
    Engine::from_gguf_bytes(&bytes, &Device::Cpu).unwrap()
}

fn chat(user: &str) -> Vec<Message> {
    vec![Message::new("system", SYSTEM), Message::new("user", user)]
}

/// Runs the reply in progress to its end: its text and why it stopped.
fn finish(e: &mut Engine) -> (String, StopReason) {
    let mut text = String::new();
    loop {
        match e.step().unwrap() {
            Event::Prefill { .. } | Event::Search { .. } => {}
            Event::Token { text: t, .. } => text.push_str(&t),
            Event::Done { reason, text: t } => {
                text.push_str(&t);
                return (text, reason);
            }
        }
    }
}

/// The greedy reply to `user` under `grammar`.
fn reply(e: &mut Engine, user: &str, grammar: Grammar, max_tokens: usize) -> (String, StopReason) {
    let params = SamplingParams {
        constraint: Some(grammar),
        ..SamplingParams::greedy(max_tokens)
    };
    e.start_chat(&chat(user), params).unwrap();
    finish(e)
}

/// Whether `text` is JSON valid under `schema`, formats included; the errors if not.
fn validate(schema: &Value, text: &str) -> Result<(), String> {
    let instance: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| format!("the validator rejects the schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("; ")),
    }
}

/// Hand-written schemas for prompts a small model can answer: enums, bounds, formats, nesting.
fn prompt_set() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Describe a fictional person as JSON with their name, age and email.",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 40},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "email": {"type": "string", "format": "email"}
                },
                "required": ["name", "age", "email"],
                "additionalProperties": false
            }),
        ),
        (
            "List three fruits with their colors as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "fruits": {
                        "type": "array",
                        "minItems": 3,
                        "maxItems": 3,
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string", "maxLength": 20},
                                "color": {"enum": ["red", "green", "yellow", "orange", "purple", "blue"]}
                            },
                            "required": ["name", "color"],
                            "additionalProperties": false
                        }
                    }
                },
                "required": ["fruits"],
                "additionalProperties": false
            }),
        ),
        (
            "Is Paris the capital of France? Answer as JSON with your confidence.",
            json!({
                "type": "object",
                "properties": {
                    "answer": {"type": "boolean"},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "source": {"anyOf": [{"type": "string", "maxLength": 30}, {"type": "null"}]}
                },
                "required": ["answer", "confidence"],
                "additionalProperties": false
            }),
        ),
        (
            "Plan a meeting tomorrow at 10am as JSON.",
            json!({
                "type": "object",
                "properties": {
                    "title": {"type": "string", "maxLength": 40},
                    "date": {"type": "string", "format": "date"},
                    "attendees": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 4},
                    "priority": {"enum": ["low", "normal", "high"]}
                },
                "required": ["title", "date", "priority"],
                "additionalProperties": false
            }),
        ),
    ]
}

#[test]
fn default_model_replies_validate_under_each_schema() {
    let mut e = engine();
    for (prompt, schema) in prompt_set() {
        let (text, reason) = reply(
            &mut e,
            prompt,
            Grammar::JsonSchema {
                schema: schema.clone(),
            },
            200,
        );
        eprintln!("{prompt}\n  → {text}");
        assert_eq!(reason, StopReason::EndOfGeneration, "{text}");
        validate(&schema, &text).unwrap_or_else(|err| panic!("{text}: {err}"));
        assert!(e.stats().constraint_seconds > 0.0);
    }
    // Any JSON object.
    let (text, reason) = reply(
        &mut e,
        "Return a JSON object with two keys, name and age, for a cat called Tom who is 3.",
        Grammar::JsonObject,
        200,
    );
    eprintln!("json_object → {text}");
    assert_eq!(reason, StopReason::EndOfGeneration, "{text}");
    assert!(serde_json::from_str::<Value>(&text).unwrap().is_object());
}

#[test]
fn default_model_follows_regexes_and_grammars() {
    let mut e = engine();
    let (text, reason) = reply(
        &mut e,
        "What is the date of the first Moon landing?",
        Grammar::Regex {
            pattern: r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])".into(),
        },
        20,
    );
    eprintln!("date regex → {text}");
    assert_eq!(reason, StopReason::EndOfGeneration);
    let re =
        regex::Regex::new(r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$").unwrap();
    assert!(re.is_match(&text), "{text}");

    let lark = r#"
start: "SELECT " columns " FROM " NAME (" WHERE " NAME " = " VALUE)? ";"
columns: "*" | NAME (", " NAME)*
NAME: /[a-z_][a-z0-9_]{0,15}/
VALUE: /[0-9]{1,6}/ | /'[a-z ]{0,20}'/
"#;
    let (text, reason) = reply(
        &mut e,
        "Write an SQL query that lists the names of all users older than 30.",
        Grammar::Lark {
            grammar: lark.into(),
        },
        60,
    );
    eprintln!("SQL grammar → {text}");
    assert_eq!(reason, StopReason::EndOfGeneration);
    let re = regex::Regex::new(
        r"^SELECT (\*|[a-z_][a-z0-9_]{0,15}(, [a-z_][a-z0-9_]{0,15})*) FROM [a-z_][a-z0-9_]{0,15}( WHERE [a-z_][a-z0-9_]{0,15} = ([0-9]{1,6}|'[a-z ]{0,20}'))?;$",
    )
    .unwrap();
    assert!(re.is_match(&text), "{text}");
}

#[test]
fn an_invalid_schema_fails_before_any_token() {
    let mut e = engine();
    let warm = e.warm_chat(&chat("hello"), 512).unwrap();
    for (grammar, want) in [
        (
            Grammar::JsonSchema {
                schema: json!({"type": "object", "properties": {"a": {"type": "strin"}}}),
            },
            "invalid JSON schema",
        ),
        (
            Grammar::JsonSchema {
                schema: json!({"type": "integer", "minimum": 5, "maximum": 1}),
            },
            "invalid JSON schema",
        ),
        (
            Grammar::Regex {
                pattern: "[a-".into(),
            },
            "invalid regular expression",
        ),
        (
            Grammar::Lark {
                grammar: "start: foo".into(),
            },
            "invalid Lark grammar",
        ),
    ] {
        let params = SamplingParams {
            constraint: Some(grammar),
            ..SamplingParams::greedy(8)
        };
        let err = e.start_chat(&chat("hello"), params).unwrap_err();
        assert!(matches!(err, Error::Constraint(_)), "{err:?}");
        assert!(err.to_string().contains(want), "{err}");
        assert!(!e.is_generating());
        assert_eq!(e.cached_tokens(), warm, "nothing ran");
    }
}

/// Where `scripts/fetch-schemas.sh` put the real-world schemas.
fn schema_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    cache.join("wick/schemas")
}

/// Every schema of the real-world set, by `package/file`, sorted.
fn real_world_schemas() -> Vec<(String, Value)> {
    let dir = schema_dir();
    let mut out = Vec::new();
    let packages = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}. Run scripts/fetch-schemas.sh.", dir.display()));
    for package in packages {
        let package = package.unwrap().path();
        if !package.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&package).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|x| x == "json") {
                let name = format!(
                    "{}/{}",
                    package.file_name().unwrap().to_string_lossy(),
                    path.file_name().unwrap().to_string_lossy()
                );
                let schema = serde_json::from_slice(&std::fs::read(&path).unwrap())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                out.push((name, schema));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn real_world_schema_coverage() {
    let schemas = real_world_schemas();
    assert!(schemas.len() >= 30, "only {} schemas", schemas.len());
    let mut e = engine();
    let (mut supported, mut completed) = (0, 0);
    println!("| schema | compiles | reply ({CORPUS_TOKENS} tokens at most) |");
    println!("|---|---|---|");
    for (name, schema) in &schemas {
        let params = SamplingParams {
            constraint: Some(Grammar::JsonSchema {
                schema: schema.clone(),
            }),
            ..SamplingParams::greedy(CORPUS_TOKENS)
        };
        let title = schema["title"].as_str().unwrap_or(name);
        let prompt = format!("Write a short example of a {title} document as JSON.");
        if let Err(err) = e.start_chat(&chat(&prompt), params) {
            let msg = err.to_string();
            assert!(
                msg.starts_with("output constraint: invalid JSON schema: "),
                "{name}: {msg}"
            );
            println!("| {name} | no: {} | – |", msg.lines().next().unwrap_or(""));
            continue;
        }
        supported += 1;
        let (text, reason) = finish(&mut e);
        let outcome = match reason {
            StopReason::EndOfGeneration => {
                validate(schema, &text).unwrap_or_else(|err| panic!("{name}: {text}\n{err}"));
                completed += 1;
                format!("valid, {} bytes", text.len())
            }
            other => format!("stopped at {other:?} after {} bytes", text.len()),
        };
        println!("| {name} | yes | {outcome} |");
    }
    println!(
        "coverage: {supported}/{} schemas compile ({:.0}%); {completed} replies complete and valid",
        schemas.len(),
        100.0 * supported as f64 / schemas.len() as f64
    );
    assert!(
        supported >= MIN_SUPPORTED,
        "coverage fell: {supported} < {MIN_SUPPORTED}"
    );
    assert!(completed >= MIN_COMPLETED, "{completed} < {MIN_COMPLETED}");
}

/// The MLX folder the browser tests load, read natively.
fn mlx_engine() -> Engine {
    let files: Vec<(String, Vec<u8>)> = [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ]
    .iter()
    .map(|name| {
        let path = format!("{MLX}/{name}");
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}. Run scripts/setup.sh to write it."));
        (name.to_string(), bytes)
    })
    .collect();
    Engine::from_hf_files(&files, &Device::Cpu).unwrap()
}

/// The replies `tests/e2e/constrain.test.mjs` expects from the tab: the MLX folder's greedy
/// replies to the prompt set's first three prompts under their schemas, and one JSON object.
#[test]
fn mlx_replies_are_the_browser_fixture() {
    let mut e = mlx_engine();
    let mut cases = Vec::new();
    let set = prompt_set();
    let jobs = set
        .iter()
        .take(3)
        .map(|(p, s)| (*p, Some(s.clone())))
        .chain([(
            "Return a JSON object with two keys, name and age, for a cat called Tom who is 3.",
            None,
        )]);
    for (prompt, schema) in jobs {
        let grammar = match &schema {
            Some(s) => Grammar::JsonSchema { schema: s.clone() },
            None => Grammar::JsonObject,
        };
        let (text, reason) = reply(&mut e, prompt, grammar, 200);
        assert_eq!(reason, StopReason::EndOfGeneration, "{text}");
        match &schema {
            Some(s) => validate(s, &text).unwrap_or_else(|err| panic!("{text}: {err}")),
            None => assert!(serde_json::from_str::<Value>(&text).unwrap().is_object()),
        }
        cases.push(json!({"prompt": prompt, "schema": schema, "max_tokens": 200, "text": text}));
    }
    let got = json!({
        "provenance": "WICK_REGEN_FIXTURES=1 cargo test --release --test constrain fixture: greedy chat replies of models/SmolLM2-135M-Instruct-MLX-4bit read natively, under each schema (null: response_format json_object)",
        "system": SYSTEM,
        "cases": cases,
    });
    if std::env::var("WICK_REGEN_FIXTURES").as_deref() == Ok("1") {
        std::fs::write(FIXTURE, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        return;
    }
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(FIXTURE).expect("fixture (WICK_REGEN_FIXTURES=1 writes it)"),
    )
    .unwrap();
    assert_eq!(got, want);
}

/// `wick generate` with each constraint option, and a schema file that is not JSON.
#[test]
fn cli_constraint_options() {
    let dir = std::env::temp_dir().join(format!("wick-constrain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (prompt, schema) = prompt_set().swap_remove(0);
    let schema_file = dir.join("person.schema.json");
    std::fs::write(&schema_file, schema.to_string()).unwrap();
    let grammar_file = dir.join("yes-no.lark");
    std::fs::write(&grammar_file, "start: (\"yes\" | \"no\") \".\"\n").unwrap();
    let not_json = dir.join("broken.json");
    std::fs::write(&not_json, "{\"type\": ").unwrap();
    let wick = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wick"))
            .args([
                "generate",
                "--model",
                MODEL,
                "--temperature",
                "0",
                "--max-tokens",
                "120",
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    let (ok, out, err) = wick(&[
        "--prompt",
        prompt,
        "--json-schema",
        &path(&schema_file),
        "--stats",
    ]);
    assert!(ok, "{err}");
    validate(&schema, out.trim_end()).unwrap_or_else(|e| panic!("{out}: {e}"));
    assert!(err.contains("constraint masks: "), "{err}");
    let (ok, out, err) = wick(&[
        "--prompt",
        "How many legs has a cat?",
        "--regex",
        "[0-9]{1,2} legs",
    ]);
    assert!(ok, "{err}");
    assert!(
        regex::Regex::new("^[0-9]{1,2} legs$")
            .unwrap()
            .is_match(out.trim_end()),
        "{out}"
    );
    let (ok, out, err) = wick(&[
        "--prompt",
        "Is the sky blue?",
        "--grammar",
        &path(&grammar_file),
    ]);
    assert!(ok, "{err}");
    assert!(["yes.", "no."].contains(&out.trim_end()), "{out}");
    let (ok, _, err) = wick(&["--prompt", "x", "--json-schema", &path(&not_json)]);
    assert!(!ok);
    assert!(err.contains("broken.json is not JSON"), "{err}");
    let (ok, _, err) = wick(&[
        "--prompt",
        "x",
        "--regex",
        "a",
        "--grammar",
        &path(&grammar_file),
    ]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
