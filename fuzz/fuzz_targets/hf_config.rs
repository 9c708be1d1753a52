//! config.json bytes → a Hugging Face model (the MLX fixture's weights) on the CPU: any input
//! must give `Ok` or `Err`, never a panic, a huge allocation or a hang.

#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use wick::weights::safetensors::SafeTensors;
use wick::weights::HfModel;
use wick::Model;

const WEIGHTS: &[u8] =
    include_bytes!("../../tests/fixtures/hf/smollm-mlx-q4-g32/model.safetensors");

fuzz_target!(|data: &[u8]| {
    let Ok(st) = SafeTensors::parse("model.safetensors", WEIGHTS) else {
        return;
    };
    if let Ok(hf) = HfModel::new(data, vec![st]) {
        let _ = Model::from_hf(&hf, &Device::Cpu);
    }
});
