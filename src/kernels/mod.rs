//! Hand-written quantized matmul kernels, for the types Candle runs with scalar code.
//!
//! Each kernel has a scalar reference beside its SIMD versions (simd128 in wasm, AVX2 natively,
//! chosen at compile time like Candle's own) and a test that the two agree on random data.

pub mod q4_1;
