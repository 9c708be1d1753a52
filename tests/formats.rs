//! Model folders: `wick quantize`'s export (GGUF → MLX safetensors) loads and answers like the
//! GGUF it came from; float folders load whole, sharded, or quantized at load; and malformed
//! folders give errors that name the file and the tensor.

use candle_core::Device;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;
use wick::quantize::{to_mlx, Options};
use wick::weights::safetensors::{SafeTensors, Writer};
use wick::weights::tiny::tiny_gguf;
use wick::weights::Gguf;
use wick::{Config, Engine, Event, SamplingParams, Tokenizer};

type Files = Vec<(String, Vec<u8>)>;

const PROMPT: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

fn export(gguf: &[u8], opts: Options) -> Files {
    let g = Gguf::parse(gguf).expect("tiny GGUF parses");
    let cfg = Config::from_gguf(&g).expect("config");
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    to_mlx(
        &cfg,
        &g,
        &tok,
        g.get_str("tokenizer.chat_template").ok(),
        opts,
    )
    .expect("exports")
    .0
}

const EXACT: Options = Options {
    bits: 4,
    group: 32,
    requantize: false,
};

fn greedy(e: &mut Engine, n: usize) -> Vec<u32> {
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: n,
        ignore_eog: true,
        ..SamplingParams::default()
    };
    e.start(PROMPT, params).expect("starts");
    let mut ids = Vec::new();
    loop {
        match e.step().expect("steps") {
            Event::Token { id, .. } => ids.push(id),
            Event::Done { .. } => return ids,
            Event::Prefill { .. } | Event::Search { .. } => {}
        }
    }
}

fn logits(e: &mut Engine, text: &str) -> Vec<f32> {
    let ids = e.tokenizer().encode(text).expect("encodes");
    e.model_mut().truncate_cache(0);
    e.model_mut()
        .forward(&ids)
        .expect("forward")
        .to_vec1()
        .expect("f32")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn exported_folder_answers_like_its_gguf() {
    let gguf = tiny_gguf(7).expect("tiny model");
    let files = export(&gguf, EXACT);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "manifest.json"
        ]
    );
    let mut from_gguf = Engine::from_gguf_bytes(&gguf, &Device::Cpu).expect("GGUF loads");
    let mut from_mlx = Engine::from_hf_files(&files, &Device::Cpu).expect("export loads");
    assert_eq!(greedy(&mut from_mlx, 12), greedy(&mut from_gguf, 12));
    // Q4_1 blocks come back byte for byte; only Q8_0 → MLX 8-bit runs a different kernel.
    let d = max_diff(
        &logits(&mut from_mlx, PROMPT),
        &logits(&mut from_gguf, PROMPT),
    );
    assert!(d < 1e-3, "logits differ by {d}");
    assert_eq!(
        from_mlx
            .render_chat(&[wick::Message::new("user", "hi")])
            .unwrap(),
        from_gguf
            .render_chat(&[wick::Message::new("user", "hi")])
            .unwrap()
    );
}

#[test]
fn requantized_exports_load_at_every_width() {
    let gguf = tiny_gguf(7).expect("tiny model");
    let mut reference = Engine::from_gguf_bytes(&gguf, &Device::Cpu).expect("GGUF loads");
    let want = logits(&mut reference, PROMPT);
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    for (bits, group, tolerance) in [(4, 64, 0.25), (8, 32, 0.05), (8, 64, 0.05)] {
        let files = export(
            &gguf,
            Options {
                bits,
                group,
                requantize: true,
            },
        );
        let config = String::from_utf8(files[1].1.clone()).unwrap();
        assert!(
            config.contains(&format!("\"group_size\": {group}")),
            "{config}"
        );
        let mut e = Engine::from_hf_files(&files, &Device::Cpu).expect("loads");
        let d = max_diff(&logits(&mut e, PROMPT), &want);
        assert!(
            d <= tolerance * scale,
            "{bits}-bit/{group}: off by {d} of {scale}"
        );
    }
}

/// A float folder (f32 safetensors) made from the tiny GGUF's dequantized tensors.
fn float_folder(gguf: &[u8]) -> Files {
    let mut files = export(gguf, EXACT);
    let st = SafeTensors::parse("model.safetensors", &files[0].1).expect("parses");
    let mut w = Writer::default();
    for name in st.tensors.keys() {
        let Some(base) = name.strip_suffix(".weight") else {
            continue;
        };
        let info = &st.tensors[name];
        if info.dtype == wick::weights::safetensors::Dtype::F32 {
            let (v, shape) = st.f32s(name).unwrap();
            w.add_f32(name, shape, &v);
            continue;
        }
        let (packed, pshape) = st.u32s(name).unwrap();
        let (scales, sshape) = st.f32s(&format!("{base}.scales")).unwrap();
        let (biases, _) = st.f32s(&format!("{base}.biases")).unwrap();
        let bits = pshape[1] * 32 / (sshape[1] * 32);
        let cols = pshape[1] * 32 / bits;
        let a = wick::weights::affine::Affine::unpack(
            &packed, bits, 32, pshape[0], cols, scales, biases,
        );
        w.add_f32(name, vec![pshape[0], cols], &a.dequantize());
    }
    files[0].1 = w.to_bytes();
    let config = String::from_utf8(files[1].1.clone()).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&config).unwrap();
    v.as_object_mut().unwrap().remove("quantization");
    v.as_object_mut().unwrap().remove("quantization_config");
    files[1].1 = v.to_string().into_bytes();
    files
}

#[test]
fn float_folders_load_whole_sharded_and_quantized_at_load() {
    let gguf = tiny_gguf(3).expect("tiny model");
    let files = float_folder(&gguf);
    let mut whole = Engine::from_hf_files(&files, &Device::Cpu).expect("float loads");
    let want = logits(&mut whole, PROMPT);

    // Two shards and an index, as transformers writes them for big models.
    let st = SafeTensors::parse("model.safetensors", &files[0].1).unwrap();
    let (mut a, mut b) = (Writer::default(), Writer::default());
    let mut map = serde_json::Map::new();
    for (i, name) in st.tensors.keys().enumerate() {
        let (v, shape) = st.f32s(name).unwrap();
        let (w, file) = if i % 2 == 0 {
            (&mut a, "model-00001-of-00002.safetensors")
        } else {
            (&mut b, "model-00002-of-00002.safetensors")
        };
        w.add_f32(name, shape, &v);
        map.insert(name.clone(), file.into());
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map}).to_string();
    let mut sharded: Files = files[1..].to_vec();
    sharded.push(("model-00001-of-00002.safetensors".into(), a.to_bytes()));
    sharded.push(("model-00002-of-00002.safetensors".into(), b.to_bytes()));
    sharded.push(("model.safetensors.index.json".into(), index.into_bytes()));
    let mut e = Engine::from_hf_files(&sharded, &Device::Cpu).expect("shards load");
    assert_eq!(logits(&mut e, PROMPT), want);

    // A shard the index names but nobody fetched.
    let missing: Files = sharded
        .iter()
        .filter(|(n, _)| !n.starts_with("model-00002"))
        .cloned()
        .collect();
    let err = Engine::from_hf_files(&missing, &Device::Cpu)
        .err()
        .expect("fails")
        .to_string();
    assert!(
        err.contains("model-00002-of-00002.safetensors") && err.contains("missing"),
        "{err}"
    );

    let mut q = Engine::from_hf_files_with(&files, &Device::Cpu, Some((8, 32))).expect("loads");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = max_diff(&logits(&mut q, PROMPT), &want);
    assert!(
        d <= 0.05 * scale,
        "quantized at load: off by {d} of {scale}"
    );
    assert!(Engine::from_hf_files_with(&files, &Device::Cpu, Some((3, 32))).is_err());
}

/// Replaces `files[i]` by `f(files[i])` and returns the load error's text.
fn load_error(files: &Files, i: usize, f: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let mut files = files.clone();
    files[i].1 = f(&files[i].1);
    match Engine::from_hf_files(&files, &Device::Cpu) {
        Ok(_) => panic!("loaded a broken folder"),
        Err(e) => e.to_string(),
    }
}

fn edit_config(files: &Files, f: impl Fn(&mut serde_json::Value)) -> String {
    load_error(files, 1, |b| {
        let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
        f(&mut v);
        v.to_string().into_bytes()
    })
}

#[test]
fn broken_folders_name_the_file_and_tensor() {
    let gguf = tiny_gguf(7).expect("tiny model");
    let files = export(&gguf, EXACT);

    let e = load_error(&files, 1, |_| b"{not json".to_vec());
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
    let e = edit_config(&files, |v| v["model_type"] = "t5".into());
    assert!(e.contains("unsupported architecture `t5`"), "{e}");
    let e = edit_config(&files, |v| v["intermediate_size"] = 96.into());
    assert!(
        e.contains("model.safetensors")
            && e.contains("mlp.gate_proj.weight")
            && e.contains("shape"),
        "{e}"
    );
    let e = edit_config(&files, |v| v["num_hidden_layers"] = 3.into());
    assert!(e.contains("blk.2") && e.contains("no tensor"), "{e}");
    let e = edit_config(&files, |v| v["quantization"]["bits"] = 3.into());
    assert!(e.contains("config.json") && e.contains("bits"), "{e}");

    // A tensor renamed away, and a dtype that contradicts the quantization.
    let st_bytes = files[0].1.clone();
    let st = SafeTensors::parse("model.safetensors", &st_bytes).unwrap();
    let rewrite = |skip: &str, as_f32: &str| {
        let mut w = Writer::default();
        for (name, info) in &st.tensors {
            if name == skip {
                continue;
            }
            let raw = st.bytes(name).unwrap().to_vec();
            if name == as_f32 {
                let n = raw.len() / 4;
                w.add_f32(name, vec![n], &vec![0.0; n]);
            } else {
                w.add(name, info.dtype, info.shape.clone(), raw);
            }
        }
        w.to_bytes()
    };
    let q = "model.layers.0.self_attn.q_proj.weight";
    let e = load_error(&files, 0, |_| {
        rewrite("model.layers.1.mlp.up_proj.weight", "")
    });
    assert!(e.contains("blk.1.ffn_up.weight"), "{e}");
    let e = load_error(&files, 0, |_| rewrite("", q));
    assert!(
        e.contains("model.safetensors") && e.contains(q) && e.contains("U32"),
        "{e}"
    );
    let e = load_error(&files, 0, |b| b[..b.len() / 2].to_vec());
    assert!(
        e.contains("model.safetensors") && e.contains("outside"),
        "{e}"
    );
    let e = load_error(&files, 0, |_| b"GGUF this is not safetensors".to_vec());
    assert!(e.contains("model.safetensors"), "{e}");
    let no_tok: Files = files
        .iter()
        .filter(|(n, _)| n != "tokenizer.json")
        .cloned()
        .collect();
    let e = Engine::from_hf_files(&no_tok, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");
}
