//! GGUF bytes → header → model and tokenizer: any input must give `Ok` or `Err`, never a panic,
//! a huge allocation or a hang.

#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use wick::weights::Gguf;
use wick::{Model, Tokenizer};

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::parse(data) else {
        return;
    };
    // Results are ignored: only panics, aborts, timeouts and allocations count as findings.
    let _ = Model::from_gguf(&g, &Device::Cpu);
    let _ = Tokenizer::from_gguf(&g);
});
