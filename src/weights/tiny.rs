//! A tiny random-weight llama model written as GGUF bytes, so tests can go bytes → text without
//! downloading anything.
//!
//! Everything is derived from a seed through splitmix64 (not `rand`), so the bytes, and therefore
//! the golden logits in `tests/fixtures/tiny_reference.json`, never change with a crate version.

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::error::Result;

const HIDDEN: usize = 64;
const HEADS: usize = 4;
/// Fewer key/value heads than query heads, so grouped-query attention is exercised.
const KV_HEADS: usize = 2;
const FFN: usize = 128;
const LAYERS: usize = 2;
const CONTEXT: usize = 256;

/// Common English pairs in GPT-2 byte-level form (`Ġ` is a space); each merge's parts exist
/// before it, and its result becomes a token.
const MERGES: &[&str] = &[
    "Ġ t", "h e", "Ġ a", "i n", "t h", "e r", "o n", "Ġt he", "r e", "a n", "Ġ s", "o u", "Ġ w",
    "e n", "a t", "o r", "i s", "e s", "Ġ o", "Ġ c", "i t", "l l", "Ġ b", "Ġ f", "Ġ h", "in g",
    "Ġ m", "Ġ p", "a r", "e d", "Ġo f", "n d", "Ġa nd", "Ġ i", "Ġt o", "Ġ is", "Ġ d", "l e", "Ġ l",
    "Ġ n", "Ġ in", "o w", "Ġ e", "l o", "Ġh e", "Ċ Ċ", "u s", "us er", "a s", "as s",
];

/// Control tokens of ChatML; the last two delimit turns.
const CONTROL: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

const CHAT_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// GGUF token types: 1 normal, 3 control.
const NORMAL: i32 = 1;
const CONTROL_TYPE: i32 = 3;

/// splitmix64: a few lines, good enough statistics, identical on every platform forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), from the top 24 bits so every value is exact in f32.
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// A `[rows, cols]` tensor of uniform values in `center ± scale`.
    fn tensor(&mut self, rows: usize, cols: usize, center: f32, scale: f32) -> Result<Tensor> {
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| center + scale * self.next_f32())
            .collect();
        let shape: Vec<usize> = if rows == 1 {
            vec![cols]
        } else {
            vec![rows, cols]
        };
        Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
    }
}

/// GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the rest map to U+0100 + n
/// in byte order, so every byte has a visible one-character token.
fn byte_symbol(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        char::from(b)
    } else {
        let n = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(0x100 + n).unwrap_or('?')
    }
}

/// The vocabulary: 256 byte symbols, merge results, control tokens, padding to a multiple of 32.
fn vocabulary() -> (Vec<String>, Vec<i32>) {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_symbol(b).to_string()).collect();
    tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
    let mut types = vec![NORMAL; tokens.len()];
    tokens.extend(CONTROL.iter().map(|t| t.to_string()));
    types.resize(tokens.len(), CONTROL_TYPE);
    // Real vocabularies are padded with unused tokens to a round size; do the same.
    while !tokens.len().is_multiple_of(32) {
        tokens.push(format!("<pad_{}>", tokens.len()));
        types.push(CONTROL_TYPE);
    }
    (tokens, types)
}

/// Writes a tiny random-weight llama GGUF (hidden 64, 4 query / 2 key-value heads, ffn 128,
/// 2 layers, context 256) with a byte-level BPE tokenizer and a ChatML template.
///
/// The same `seed` always gives the same bytes. Attention and feed-forward weights are Q4_1,
/// the (tied) embedding is Q8_0, norms are F32, as in the real models Wick targets.
pub fn tiny_gguf(seed: u64) -> Result<Vec<u8>> {
    let mut rng = SplitMix64(seed);
    let (tokens, types) = vocabulary();
    let vocab = tokens.len();
    let kv = KV_HEADS * (HIDDEN / HEADS);
    let id = |t: &str| tokens.iter().position(|x| x == t).unwrap_or(0) as u32;

    let q = |t: Tensor, dtype| -> Result<QTensor> { Ok(QTensor::quantize(&t, dtype)?) };
    // Embedding entries of ±0.45 give logits with a spread of a few units through the tied head.
    let mut named: Vec<(String, QTensor)> = vec![(
        "token_embd.weight".into(),
        q(rng.tensor(vocab, HIDDEN, 0.0, 0.45)?, GgmlDType::Q8_0)?,
    )];
    // Matmul weights of ±sqrt(3 / fan_in) keep activations near unit scale through the blocks;
    // output projections are 4× that so the blocks outweigh the tied embedding in the residual
    // (otherwise greedy decoding just repeats the last token).
    let (s_h, s_f) = ((3.0 / HIDDEN as f32).sqrt(), (3.0 / FFN as f32).sqrt());
    for i in 0..LAYERS {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        let mats = [
            ("attn_q", HIDDEN, HIDDEN, s_h),
            ("attn_k", kv, HIDDEN, s_h),
            ("attn_v", kv, HIDDEN, s_h),
            ("attn_output", HIDDEN, HIDDEN, 4.0 * s_h),
            ("ffn_gate", FFN, HIDDEN, s_h),
            ("ffn_up", FFN, HIDDEN, s_h),
            ("ffn_down", HIDDEN, FFN, 4.0 * s_f),
        ];
        for (name, rows, cols, scale) in mats {
            let t = rng.tensor(rows, cols, 0.0, scale)?;
            named.push((p(name), q(t, GgmlDType::Q4_1)?));
        }
        for name in ["attn_norm", "ffn_norm"] {
            named.push((
                p(name),
                q(rng.tensor(1, HIDDEN, 1.0, 0.2)?, GgmlDType::F32)?,
            ));
        }
    }
    let norm = rng.tensor(1, HIDDEN, 1.0, 0.2)?;
    named.push(("output_norm.weight".into(), q(norm, GgmlDType::F32)?));

    let u32v = |n: usize| Value::U32(n as u32);
    let text = |s: &str| Value::String(s.to_string());
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", text("llama")),
        ("general.name", text(&format!("wick-tiny-{seed}"))),
        ("llama.vocab_size", u32v(vocab)),
        ("llama.context_length", u32v(CONTEXT)),
        ("llama.embedding_length", u32v(HIDDEN)),
        ("llama.feed_forward_length", u32v(FFN)),
        ("llama.block_count", u32v(LAYERS)),
        ("llama.attention.head_count", u32v(HEADS)),
        ("llama.attention.head_count_kv", u32v(KV_HEADS)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.dimension_count", u32v(HIDDEN / HEADS)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("tokenizer.ggml.model", text("gpt2")),
        ("tokenizer.ggml.pre", text("smollm")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|t| text(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(MERGES.iter().map(|m| text(m)).collect()),
        ),
        (
            "tokenizer.ggml.bos_token_id",
            Value::U32(id("<|im_start|>")),
        ),
        ("tokenizer.ggml.eos_token_id", Value::U32(id("<|im_end|>"))),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.chat_template", text(CHAT_TEMPLATE)),
    ];

    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = named.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensors)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_symbols_match_gpt2() {
        assert_eq!(byte_symbol(b'a'), 'a');
        assert_eq!(byte_symbol(b' '), 'Ġ');
        assert_eq!(byte_symbol(b'\n'), 'Ċ');
        assert_eq!(byte_symbol(0), 'Ā');
        assert_eq!(byte_symbol(0xAD), 'Ń');
        let all: std::collections::HashSet<char> = (0..=255u8).map(byte_symbol).collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn same_seed_same_bytes() {
        let a = tiny_gguf(7).unwrap();
        assert_eq!(a, tiny_gguf(7).unwrap());
        assert_ne!(a, tiny_gguf(8).unwrap());
    }
}
