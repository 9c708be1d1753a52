//! Bytes → text on the tiny random-weight llama of `wick::weights::tiny`: metadata, tokenizer,
//! streaming text, KV cache, conversation cache, cancellation, errors, and a golden output.
//!
//! The golden test compares with `tests/fixtures/tiny_reference.json`. After an intended change
//! to the decoder or to the tiny model, rewrite the fixture with
//! `WICK_REGEN_FIXTURES=1 cargo test --test tiny golden` and review the diff before committing.

use candle_core::Device;
use serde::{Deserialize, Serialize};
use wick::weights::tiny::tiny_gguf;
use wick::{Engine, Error, Event, Message, SamplingParams, StopReason, TextStream};

const SEED: u64 = 42;
/// The golden prompt: ChatML with special tokens, ASCII and multi-byte text.
const GOLDEN_PROMPT: &str =
    "<|im_start|>user\nWhat is the capital of France? Ça va, 世界?<|im_end|>\n<|im_start|>assistant\n";
const GOLDEN_TOKENS: usize = 24;
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tiny_reference.json"
);

/// What `tests/fixtures/tiny_reference.json` holds (also read by `tests/wasm.rs`).
#[derive(Debug, Serialize, Deserialize)]
struct Reference {
    provenance: String,
    seed: u64,
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    logits: Vec<f32>,
}

fn engine() -> Engine {
    let bytes = tiny_gguf(SEED).expect("tiny model");
    Engine::from_gguf_bytes(&bytes, &Device::Cpu).expect("tiny model loads")
}

/// Last-position logits of `ids` run from an empty cache.
fn logits(e: &mut Engine, ids: &[u32]) -> Vec<f32> {
    e.model_mut().truncate_cache(0);
    e.model_mut().forward(ids).unwrap().to_vec1().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs the reply in progress to its end; returns the generated ids and why it stopped.
fn run(e: &mut Engine) -> (Vec<u32>, String, StopReason) {
    let (mut ids, mut text) = (Vec::new(), String::new());
    loop {
        match e.step().unwrap() {
            Event::Prefill { .. } | Event::Search { .. } => {}
            Event::Token { id, text: t, .. } => {
                ids.push(id);
                text.push_str(&t);
            }
            Event::Done { reason, text: t } => {
                text.push_str(&t);
                return (ids, text, reason);
            }
        }
    }
}

#[test]
fn config_comes_from_metadata() {
    let e = engine();
    let c = e.config();
    assert_eq!(c.architecture, "llama");
    assert_eq!(c.vocab_size, 320);
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.n_layers),
        (64, 128, 2)
    );
    assert_eq!((c.n_heads, c.n_kv_heads, c.head_dim), (4, 2, 16));
    assert_eq!(c.context_length, 256);
    assert!(matches!(
        c.positions,
        wick::model::Positions::Rotary { theta, interleaved: true, .. } if theta == 10_000.0
    ));
    assert_eq!(c.norm_eps, 1e-5);
    let t = e.tokenizer();
    assert_eq!(t.vocab_size(), 320);
    assert_eq!(t.eos_token().as_deref(), Some("<|im_end|>"));
    assert_eq!(t.bos_token().as_deref(), Some("<|im_start|>"));
    let eog: Vec<String> = t
        .end_of_generation()
        .iter()
        .filter_map(|&i| t.token_text(i))
        .collect();
    assert_eq!(eog, ["<|endoftext|>", "<|im_end|>"]);
    assert!(e.has_chat_template(), "the file's own ChatML");
}

#[test]
fn tokenizer_round_trips_text() {
    let e = engine();
    let t = e.tokenizer();
    for text in [
        "the cat is in the house",
        "héllo 世界 🙂",
        "Numbers 12345 and\n\nnew lines\ttabs   spaces ",
        "\u{0}\u{7f} \u{AD}soft hyphen, ñ, Ω, 🇫🇷",
    ] {
        let ids = t.encode(text).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), text, "{ids:?}");
    }
    // Merges apply: " the" is one token, and digits are split one by one (smollm pre-tokenizer).
    assert_eq!(t.encode(" the").unwrap().len(), 1);
    assert_eq!(t.encode("2024").unwrap().len(), 4);
}

#[test]
fn special_tokens_in_text_are_single_ids() {
    let e = engine();
    let t = e.tokenizer();
    let ids = t.encode("<|im_start|>user\nhi<|im_end|>").unwrap();
    let start = t.encode("<|im_start|>").unwrap();
    let end = t.encode("<|im_end|>").unwrap();
    assert_eq!((start.len(), end.len()), (1, 1));
    assert_eq!(ids.first(), start.first());
    assert_eq!(ids.last(), end.last());
    assert_eq!(t.token_text(start[0]).as_deref(), Some("<|im_start|>"));
    // Control tokens are hidden when decoding.
    assert_eq!(t.decode(&ids).unwrap(), "user\nhi");
}

#[test]
fn text_stream_never_splits_a_character() {
    let e = engine();
    let t = e.tokenizer();
    let text = "héllo 世界 🙂 — naïve ☃!";
    let ids = t.encode(text).unwrap();
    let mut stream = TextStream::new();
    let (mut out, mut held) = (String::new(), 0);
    for &id in &ids {
        match stream.push(t, id).unwrap() {
            Some(piece) => {
                assert!(!piece.contains('\u{FFFD}'), "piece {piece:?}");
                out.push_str(&piece);
            }
            None => held += 1,
        }
    }
    out.push_str(&stream.finish(t).unwrap().unwrap_or_default());
    assert_eq!(out, text);
    assert!(
        held > 0,
        "multi-byte characters should be held back until complete"
    );
    assert_eq!(stream.ids(), ids.as_slice());
}

#[test]
fn greedy_generation_is_deterministic_and_stops_at_max_tokens() {
    let run_once = || {
        let mut e = engine();
        let mut text = String::new();
        let (ids, reason) = e
            .generate("The cat sat on the", SamplingParams::greedy(20), |t| {
                text.push_str(t)
            })
            .unwrap();
        let decoded = e.tokenizer().decode(&ids).unwrap();
        (ids, text, decoded, reason)
    };
    let (ids, text, decoded, reason) = run_once();
    assert_eq!(reason, StopReason::MaxTokens);
    assert_eq!(ids.len(), 20);
    assert_eq!(text, decoded, "streamed text should equal the decoded ids");
    assert_eq!(run_once().0, ids);
}

#[test]
fn stop_strings_end_the_reply_before_them() {
    let prompt = "The cat sat on the";
    let mut e = engine();
    let mut full = String::new();
    e.generate(prompt, SamplingParams::greedy(20), |t| full.push_str(t))
        .unwrap();
    // A stop string from the middle of the greedy reply: the same reply ends just before it.
    let chars: Vec<(usize, char)> = full.char_indices().collect();
    assert!(chars.len() > 8, "{full:?}");
    let (from, to) = (chars[chars.len() / 2].0, chars[chars.len() / 2 + 2].0);
    let stop = full[from..to].to_string();
    let before = &full[..full.find(&stop).unwrap()];
    let params = SamplingParams {
        stop: vec!["never seen ✗".into(), stop.clone()],
        ..SamplingParams::greedy(20)
    };
    e.start(prompt, params.clone()).unwrap();
    let (ids, text, reason) = run(&mut e);
    assert_eq!(reason, StopReason::StopSequence, "{full:?} / {stop:?}");
    assert_eq!(text, before);
    assert!(ids.len() < 20);
    // The engine goes on, and a stop string never met changes nothing.
    let params = SamplingParams {
        stop: vec!["never seen ✗".into()],
        ..SamplingParams::greedy(20)
    };
    e.start(prompt, params).unwrap();
    let (_, text, reason) = run(&mut e);
    assert_eq!(
        (text.as_str(), reason),
        (full.as_str(), StopReason::MaxTokens)
    );
}

#[test]
fn each_token_comes_with_its_logprobs() {
    let mut e = engine();
    let prompt = "The cat sat on the";
    let ids = e.tokenizer().encode(prompt).unwrap();
    let first = logits(&mut e, &ids);
    e.reset();
    let params = SamplingParams {
        logprobs: Some(3),
        ..SamplingParams::greedy(4)
    };
    e.start(prompt, params).unwrap();
    let mut seen = Vec::new();
    loop {
        match e.step().unwrap() {
            Event::Token { id, logprobs, .. } => seen.push((id, logprobs.unwrap())),
            Event::Done { .. } => break,
            Event::Prefill { .. } | Event::Search { .. } => {}
        }
    }
    assert_eq!(seen.len(), 4);
    // The first token's log-probability is the log-softmax of the prompt's logits.
    let lse = first.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln();
    let (id, lp) = &seen[0];
    assert!((lp.chosen.logprob as f64 - (first[*id as usize] as f64 - lse)).abs() < 1e-5);
    for (id, lp) in &seen {
        // Greedy with no penalty picks the most likely token.
        assert_eq!(lp.top_logprobs.len(), 3);
        assert_eq!(lp.top_logprobs[0], lp.chosen);
        assert!(lp
            .top_logprobs
            .windows(2)
            .all(|w| w[0].logprob >= w[1].logprob));
        assert!(lp.chosen.logprob <= 0.0);
        let (text, bytes) = e.tokenizer().token_bytes(*id);
        assert_eq!((&lp.chosen.token, &lp.chosen.bytes), (&text, &bytes));
    }
    // The JSON the browser gets is OpenAI's shape for one token.
    let event = Event::Token {
        id: seen[0].0,
        text: "x".into(),
        logprobs: Some(seen[0].1.clone()),
    };
    let json = serde_json::to_value(&event).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&json["logprobs"]),
        ["bytes", "logprob", "token", "top_logprobs"]
    );
    assert_eq!(
        keys(&json["logprobs"]["top_logprobs"][0]),
        ["bytes", "logprob", "token"]
    );
}

#[test]
fn a_context_length_below_the_models_bounds_the_conversation() {
    let mut e = engine();
    assert_eq!(e.context_length(), 256);
    assert_eq!(
        e.set_context_length(100_000),
        256,
        "never above the model's"
    );
    assert_eq!(e.set_context_length(40), 40);
    let long = "x y ".repeat(30);
    match e.start(&long, SamplingParams::greedy(4)) {
        Err(Error::ContextOverflow { limit, .. }) => assert_eq!(limit, 40),
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    let prompt = "The cat sat on the";
    let n = e.tokenizer().encode(prompt).unwrap().len();
    e.start(prompt, SamplingParams::greedy(100)).unwrap();
    let (ids, _, reason) = run(&mut e);
    assert_eq!(reason, StopReason::ContextFull);
    assert_eq!(n + ids.len(), 40, "prompt and reply fill the context");
    assert!(e.cached_tokens() < 40);
    // Shrinking below what is cached forgets the conversation.
    e.set_context_length(10);
    assert_eq!(e.cached_tokens(), 0);
}

#[test]
fn kv_cache_gives_the_same_logits_as_one_pass() {
    let mut e = engine();
    let ids = e
        .tokenizer()
        .encode("Once upon a time, in the land of 世界, there was")
        .unwrap();
    assert!(ids.len() > 10);
    let full = logits(&mut e, &ids);

    let split = ids.len() / 3;
    let _ = logits(&mut e, &ids[..split]);
    let two_chunks: Vec<f32> = e
        .model_mut()
        .forward(&ids[split..])
        .unwrap()
        .to_vec1()
        .unwrap();

    e.model_mut().truncate_cache(0);
    let mut last = None;
    for &id in &ids {
        last = Some(e.model_mut().forward(&[id]).unwrap());
    }
    let one_by_one: Vec<f32> = last.unwrap().to_vec1().unwrap();

    assert!(
        max_diff(&full, &two_chunks) <= 1e-4,
        "{}",
        max_diff(&full, &two_chunks)
    );
    assert!(
        max_diff(&full, &one_by_one) <= 1e-4,
        "{}",
        max_diff(&full, &one_by_one)
    );
    // Truncating the cache rewinds: re-running the tail gives the same logits again.
    e.model_mut().truncate_cache(split);
    assert_eq!(e.model_mut().cached_len(), split);
    let rerun: Vec<f32> = e
        .model_mut()
        .forward(&ids[split..])
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(max_diff(&full, &rerun) <= 1e-4);
}

#[test]
fn conversation_cache_prefills_only_the_new_turn() {
    let mut e = engine();
    let mut chat = vec![Message::new("user", "Hello there, how are you?")];
    e.start_chat(&chat, SamplingParams::greedy(8)).unwrap();
    let (reply_ids, reply, reason) = run(&mut e);
    assert_eq!(reason, StopReason::MaxTokens);
    let first = e.stats().clone();
    assert_eq!(first.prefilled_tokens, first.prompt_tokens);

    chat.push(Message::new("assistant", &reply));
    chat.push(Message::new("user", "And what is the weather like?"));
    e.start_chat(&chat, SamplingParams::greedy(8)).unwrap();
    let (cached_ids, _, _) = run(&mut e);
    let second = e.stats().clone();
    assert!(
        second.prefilled_tokens < second.prompt_tokens,
        "{} of {} tokens prefilled",
        second.prefilled_tokens,
        second.prompt_tokens
    );
    // Reused is exactly the common prefix of what ran (prompt and reply) and the new prompt; the
    // reply's text may tokenize differently once the template follows it, so not all of it.
    let t = e.tokenizer();
    let ran: Vec<u32> = [
        t.encode(&e.render_chat(&chat[..1]).unwrap()).unwrap(),
        reply_ids,
    ]
    .concat();
    let new = t.encode(&e.render_chat(&chat).unwrap()).unwrap();
    let common = ran.iter().zip(&new).take_while(|(a, b)| a == b).count();
    assert_eq!(second.prompt_tokens - second.prefilled_tokens, common);
    assert!(
        common >= first.prompt_tokens - 1,
        "{common} of {} reused",
        first.prompt_tokens
    );

    let mut fresh = engine();
    fresh.start_chat(&chat, SamplingParams::greedy(8)).unwrap();
    let (fresh_ids, _, _) = run(&mut fresh);
    assert_eq!(cached_ids, fresh_ids);
}

#[test]
fn a_warmed_system_prompt_is_not_prefilled_again_and_changes_nothing() {
    let system = Message::new("system", "You are a helpful AI assistant.");
    let chat = vec![
        system.clone(),
        Message::new("user", "Hello there, how are you?"),
    ];
    let mut e = engine();
    let cached = e.warm_chat(std::slice::from_ref(&system), 128).unwrap();
    let system_ids = e
        .tokenizer()
        .encode(&e.render_chat(&chat[..1]).unwrap())
        .unwrap();
    assert!(cached > 0 && cached < system_ids.len(), "{cached} cached");
    // Warming again costs nothing; a limit below the work skips it.
    assert_eq!(
        e.warm_chat(std::slice::from_ref(&system), 128).unwrap(),
        cached
    );
    assert_eq!(
        engine()
            .warm_chat(std::slice::from_ref(&system), 2)
            .unwrap(),
        0
    );

    e.start_chat(&chat, SamplingParams::greedy(8)).unwrap();
    let (warm_ids, _, _) = run(&mut e);
    let stats = e.stats().clone();
    assert_eq!(stats.prompt_tokens - stats.prefilled_tokens, cached);

    let mut fresh = engine();
    fresh.start_chat(&chat, SamplingParams::greedy(8)).unwrap();
    let (fresh_ids, _, _) = run(&mut fresh);
    assert_eq!(warm_ids, fresh_ids);
}

#[test]
fn cancel_stops_the_reply_and_the_engine_goes_on() {
    let mut e = engine();
    assert!(e.cancel().is_none(), "nothing to cancel yet");
    e.start("The cat sat on the", SamplingParams::greedy(100))
        .unwrap();
    let mut tokens = 0;
    while tokens < 3 {
        if let Event::Token { .. } = e.step().unwrap() {
            tokens += 1;
        }
    }
    match e.cancel() {
        Some(Event::Done { reason, .. }) => assert_eq!(reason, StopReason::Cancelled),
        other => panic!("expected Done(Cancelled), got {other:?}"),
    }
    assert!(!e.is_generating());
    assert!(matches!(e.step(), Err(Error::NotGenerating)));

    let (ids, reason) = e
        .generate("the house", SamplingParams::greedy(5), |_| {})
        .unwrap();
    assert_eq!((ids.len(), reason), (5, StopReason::MaxTokens));
    let mut fresh = engine();
    let (fresh_ids, _) = fresh
        .generate("the house", SamplingParams::greedy(5), |_| {})
        .unwrap();
    assert_eq!(
        ids, fresh_ids,
        "a cancelled reply must not leak into the next one"
    );
}

#[test]
fn prompt_longer_than_the_context_is_an_error() {
    let mut e = engine();
    let long = "x y ".repeat(200);
    match e.start(&long, SamplingParams::greedy(4)) {
        Err(Error::ContextOverflow { needed, limit }) => {
            assert_eq!(limit, 256);
            assert!(needed > 256);
        }
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    let err = e.start_chat(&[Message::new("user", &long)], SamplingParams::greedy(4));
    assert!(matches!(err, Err(Error::ContextOverflow { .. })), "{err:?}");
    // The engine is still usable.
    assert!(e.generate("the", SamplingParams::greedy(2), |_| {}).is_ok());
}

#[test]
fn empty_prompt_is_an_error() {
    let mut e = engine();
    assert!(matches!(
        e.start("", SamplingParams::greedy(4)),
        Err(Error::EmptyPrompt)
    ));
    let blank = [Message::new("user", "  \n")];
    assert!(matches!(
        e.start_chat(&blank, SamplingParams::greedy(4)),
        Err(Error::EmptyPrompt)
    ));
    assert!(matches!(
        e.start_chat(&[], SamplingParams::greedy(4)),
        Err(Error::EmptyPrompt)
    ));
    assert!(matches!(
        e.model_mut().forward(&[]),
        Err(Error::EmptyPrompt)
    ));
}

/// Computes what the fixture records: prompt ids, last-position logits, greedy ids.
fn reference() -> Reference {
    let mut e = engine();
    let prompt_ids = e.tokenizer().encode(GOLDEN_PROMPT).unwrap();
    let logits = logits(&mut e, &prompt_ids);
    e.reset();
    let (greedy_ids, _) = e
        .generate(GOLDEN_PROMPT, SamplingParams::greedy(GOLDEN_TOKENS), |_| {})
        .unwrap();
    Reference {
        provenance: format!(
            "WICK_REGEN_FIXTURES=1 cargo test --test tiny golden; wick::weights::tiny::tiny_gguf({SEED}), \
             last-position logits of the prompt from an empty cache and {GOLDEN_TOKENS} greedy ids of \
             Engine::generate, native {}-{} CPU, candle-core 0.9.2",
            std::env::consts::ARCH,
            std::env::consts::OS
        ),
        seed: SEED,
        prompt: GOLDEN_PROMPT.to_string(),
        prompt_ids,
        greedy_ids,
        logits,
    }
}

#[test]
fn golden_logits_and_greedy_ids_match_the_fixture() {
    let got = reference();
    if std::env::var("WICK_REGEN_FIXTURES").as_deref() == Ok("1") {
        let json = serde_json::to_string_pretty(&got).unwrap();
        std::fs::write(FIXTURE, json + "\n").unwrap();
        eprintln!("rewrote {FIXTURE}");
        return;
    }
    let text =
        std::fs::read_to_string(FIXTURE).expect("fixture exists (WICK_REGEN_FIXTURES=1 writes it)");
    let want: Reference = serde_json::from_str(&text).unwrap();
    assert_eq!(want.seed, SEED);
    assert_eq!(want.prompt, GOLDEN_PROMPT);
    assert_eq!(got.prompt_ids, want.prompt_ids);
    assert_eq!(got.logits.len(), want.logits.len());
    for (i, (a, b)) in got.logits.iter().zip(&want.logits).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "logit {i}: got {a}, fixture {b}"
        );
    }
    assert_eq!(got.greedy_ids, want.greedy_ids);
    // The fixture must be meaningful: varied logits and a full-length reply.
    assert_eq!(want.greedy_ids.len(), GOLDEN_TOKENS);
    let n = want.logits.len() as f32;
    let mean = want.logits.iter().sum::<f32>() / n;
    let std = (want.logits.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
    assert!(std > 0.5, "logits are nearly flat (std {std})");
}
