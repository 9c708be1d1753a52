//! KV snapshots (`Engine::save_kv` / `Engine::restore_kv`): a restored cache continues a
//! conversation exactly as a fresh prefill would — the same logits to the bit, the same reply —
//! and a snapshot of another model, of another conversation, corrupt or truncated is refused
//! with its own error, leaving the engine as it was. On the tiny random model and on the real
//! default model (SmolLM2-135M-Instruct Q4_1).

use candle_core::Device;
use wick::model::KvType;
use wick::weights::tiny::tiny_gguf;
use wick::{Engine, Error, Message, SamplingParams, StopReason};

const REAL_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

fn tiny(seed: u64) -> Engine {
    Engine::from_gguf_bytes(&tiny_gguf(seed).unwrap(), &Device::Cpu).unwrap()
}

fn real() -> Engine {
    let bytes = std::fs::read(REAL_MODEL)
        .unwrap_or_else(|e| panic!("{REAL_MODEL}: {e}. Run scripts/setup.sh to fetch it."));
    Engine::from_gguf_bytes(&bytes, &Device::Cpu).unwrap()
}

/// Last-position logits of `ids` run after what the cache holds.
fn logits(e: &mut Engine, ids: &[u32]) -> Vec<f32> {
    e.model_mut().forward(ids).unwrap().to_vec1().unwrap()
}

fn greedy_reply(e: &mut Engine, prompt: &str) -> (Vec<u32>, StopReason) {
    e.generate(prompt, SamplingParams::greedy(12), |_| {})
        .unwrap()
}

/// A first turn runs on `a` and is snapshotted; a fresh engine from `make` restores it and
/// continues with a second turn: its logits equal those of prefilling the whole second prompt
/// from an empty cache, bit for bit. With `as_text`, the second turn is also run as text through
/// the session, and its greedy reply equals a fresh engine's (the tiny random model's reply does
/// not tokenize back to itself once written out, so its second turn is built from ids).
fn restored_equals_prefill(make: impl Fn() -> Engine, as_text: bool) {
    let first = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n";
    let more = "<|im_end|>\n<|im_start|>user\nAnd three more?<|im_end|>\n<|im_start|>assistant\n";
    let mut a = make();
    let (reply, _) = greedy_reply(&mut a, first);
    let snapshot = a.save_kv().unwrap();
    let held = a.cached_tokens();
    assert!(held > 0);
    let said = a.tokenizer().decode_all(&reply).unwrap();
    let second = format!("{first}{said}{more}");
    let ids = match as_text {
        true => a.tokenizer().encode(&second).unwrap(),
        false => {
            let mut ids = a.tokenizer().encode(first).unwrap();
            ids.extend(&reply);
            ids.extend(a.tokenizer().encode(more).unwrap());
            ids
        }
    };
    let mut b = make();
    let restored = b.restore_kv(&snapshot, &ids).unwrap();
    assert!(restored > 0 && restored <= held);
    assert_eq!(b.cached_tokens(), restored);
    let rest = &ids[restored..];
    assert!(!rest.is_empty(), "the second turn adds tokens");
    let continued = logits(&mut b, rest);

    let mut fresh = make();
    let prefilled = logits(&mut fresh, &ids);
    assert_eq!(continued.len(), prefilled.len());
    let differ = continued
        .iter()
        .zip(&prefilled)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(
        differ,
        0,
        "restored + {} tokens = prefill of {}, to the bit",
        rest.len(),
        ids.len()
    );

    if !as_text {
        return;
    }
    // Through the session: the reply after a restore prefills only the rest, and is the same.
    let mut b = make();
    b.restore_kv(&snapshot, &ids).unwrap();
    let (after_restore, _) = greedy_reply(&mut b, &second);
    assert_eq!(b.stats().prefilled_tokens, ids.len() - restored);
    let mut fresh = make();
    let (after_prefill, _) = greedy_reply(&mut fresh, &second);
    assert_eq!(fresh.stats().prefilled_tokens, ids.len());
    assert_eq!(after_restore, after_prefill);
}

#[test]
fn a_restored_cache_continues_as_a_fresh_prefill_tiny() {
    restored_equals_prefill(|| tiny(42), false);
}

#[test]
fn a_restored_cache_continues_as_a_fresh_prefill_real_model() {
    restored_equals_prefill(real, true);
}

/// The tiny model with its cache kept in f16.
fn tiny_f16(seed: u64) -> Engine {
    let mut e = tiny(seed);
    e.model_mut().set_kv_type(KvType::F16);
    e
}

#[test]
fn an_f16_cache_restores_as_a_fresh_f16_prefill() {
    restored_equals_prefill(|| tiny_f16(42), false);
}

#[test]
fn an_f16_snapshot_is_half_the_size_and_refused_by_an_f32_cache() {
    let prompt = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n";
    let (mut wide, mut half) = (tiny(42), tiny_f16(42));
    greedy_reply(&mut wide, prompt);
    let (reply, _) = greedy_reply(&mut half, prompt);
    assert_eq!(wide.cached_tokens(), half.cached_tokens());
    let (w, h) = (wide.save_kv().unwrap(), half.save_kv().unwrap());
    // Header, tokens and checksum are shared; the keys and values take half the bytes.
    let fixed = 8 + 4 + 32 + 5 * 4 + 4 * wide.cached_tokens() + 32;
    assert_eq!(w.len() - fixed, 2 * (h.len() - fixed));
    let mut ids = half.tokenizer().encode(prompt).unwrap();
    ids.extend(&reply);
    ids.extend(half.tokenizer().encode("<|im_end|>\n").unwrap());
    match refused(&h, &ids) {
        Error::SnapshotMismatch(m) => assert!(m.contains("F16") && m.contains("F32"), "{m}"),
        e => panic!("expected a mismatch, got {e}"),
    }
    let mut other = tiny_f16(42);
    assert!(
        other.restore_kv(&h, &ids).unwrap() > 0,
        "an f16 cache takes it"
    );
}

#[test]
fn a_chat_snapshot_is_a_prefix_of_the_next_turn() {
    let mut a = real();
    let mut messages = vec![Message::new("user", "What is the capital of France?")];
    a.start_chat(&messages, SamplingParams::greedy(16)).unwrap();
    let mut reply = String::new();
    while a.is_generating() {
        match a.step().unwrap() {
            wick::Event::Token { text, .. } | wick::Event::Done { text, .. } => {
                reply.push_str(&text)
            }
            _ => {}
        }
    }
    messages.push(Message::new("assistant", &reply));
    let snapshot = a.save_chat_kv(&messages).unwrap();
    messages.push(Message::new("user", "And of Italy?"));
    let prompt = a.chat_tokens(&messages).unwrap();

    let mut b = real();
    let restored = b.restore_chat_kv(&snapshot, &messages).unwrap();
    assert!(
        restored > 10,
        "the first turn is reused ({restored} tokens)"
    );
    b.start_chat(&messages, SamplingParams::greedy(8)).unwrap();
    assert_eq!(b.stats().prefilled_tokens, prompt.len() - restored);
}

/// A snapshot of the tiny model's conversation, the prompt it continues, and the engine.
fn snapshot() -> (Engine, Vec<u8>, Vec<u32>) {
    let mut e = tiny(42);
    let prompt = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n";
    greedy_reply(&mut e, prompt);
    let bytes = e.save_kv().unwrap();
    let ids = e.tokenizer().encode(prompt).unwrap();
    (e, bytes, ids)
}

/// Restores `bytes` into an engine that holds a conversation of its own, expecting a refusal;
/// the engine's cache is untouched and it still answers.
fn refused(bytes: &[u8], prompt: &[u32]) -> Error {
    let mut e = tiny(42);
    greedy_reply(&mut e, "<|im_start|>user\nSomething else<|im_end|>\n");
    let held = e.cached_tokens();
    let err = e.restore_kv(bytes, prompt).unwrap_err();
    assert_eq!(
        e.cached_tokens(),
        held,
        "a refused snapshot leaves the cache"
    );
    let (ids, _) = greedy_reply(&mut e, "<|im_start|>user\nSomething else<|im_end|>\n");
    assert!(!ids.is_empty(), "the engine still answers");
    err
}

#[test]
fn a_snapshot_of_another_model_is_refused() {
    let mut other = tiny(43);
    let prompt = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n";
    greedy_reply(&mut other, prompt);
    let bytes = other.save_kv().unwrap();
    let ids = other.tokenizer().encode(prompt).unwrap();
    let err = refused(&bytes, &ids);
    assert!(matches!(err, Error::SnapshotOtherModel { .. }), "{err}");
    assert!(err.to_string().contains("another model"), "{err}");
}

#[test]
fn a_snapshot_of_another_conversation_is_refused() {
    let (_, bytes, _) = snapshot();
    let e = tiny(42);
    let other = e
        .tokenizer()
        .encode("<|im_start|>user\nGoodbye now<|im_end|>\n<|im_start|>assistant\nbye")
        .unwrap();
    let err = refused(&bytes, &other);
    assert!(matches!(err, Error::SnapshotOtherPrefix { .. }), "{err}");
}

#[test]
fn a_corrupt_snapshot_is_refused() {
    let (_, bytes, ids) = snapshot();
    for at in [0, 9, 20, 70, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let err = refused(&bad, &ids);
        assert!(matches!(err, Error::SnapshotCorrupt(_)), "byte {at}: {err}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(refused(&longer, &ids), Error::SnapshotCorrupt(_)));
}

#[test]
fn a_truncated_snapshot_is_refused() {
    let (_, bytes, ids) = snapshot();
    for len in [0, 7, 8, 60, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = refused(&bytes[..len], &ids);
        assert!(
            matches!(err, Error::SnapshotTruncated { .. }),
            "{len} bytes: {err}"
        );
    }
}

#[test]
fn a_snapshot_longer_than_the_context_is_refused() {
    let (_, bytes, ids) = snapshot();
    let mut e = tiny(42);
    e.set_context_length(ids.len() / 2);
    let err = e.restore_kv(&bytes, &ids).unwrap_err();
    assert!(matches!(err, Error::SnapshotMismatch(_)), "{err}");
}

#[test]
fn a_snapshot_is_refused_while_a_reply_runs() {
    let (mut e, bytes, ids) = snapshot();
    e.start("<|im_start|>user\nHi", SamplingParams::greedy(4))
        .unwrap();
    assert!(e.save_kv().is_err());
    assert!(e.restore_kv(&bytes, &ids).is_err());
}

#[test]
fn the_model_id_is_the_files() {
    let (a, b) = (tiny(42).model_id().unwrap(), tiny(42).model_id().unwrap());
    assert_eq!(a, b, "the same file, the same id");
    assert_ne!(a, tiny(43).model_id().unwrap());
}
