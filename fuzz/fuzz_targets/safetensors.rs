//! safetensors bytes → header → a Hugging Face model on the CPU: any input must give `Ok` or
//! `Err`, never a panic, a huge allocation or a hang. The config.json is the MLX fixture's, so
//! inputs that keep its tensor names reach the MLX unpacking and the decoder's shape checks.

#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use wick::weights::safetensors::SafeTensors;
use wick::weights::HfModel;
use wick::Model;

const CONFIG: &[u8] = include_bytes!("../../tests/fixtures/hf/smollm-mlx-q4-g32/config.json");

fuzz_target!(|data: &[u8]| {
    let Ok(st) = SafeTensors::parse("model.safetensors", data) else {
        return;
    };
    let names: Vec<String> = st.tensors.keys().cloned().collect();
    for name in &names {
        let _ = st.f32s(name);
    }
    if let Ok(hf) = HfModel::new(CONFIG, vec![st]) {
        let _ = Model::from_hf(&hf, &Device::Cpu);
    }
});
