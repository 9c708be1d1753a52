//! The per-target SIMD code, one file per instruction set (like ggml-cpu's `arch/`): the vector
//! operations the tile driver ([`tile`](super::tile)) is written over, and each weight type's
//! block unpacking and integer products. Every file defines the same names; the build picks one.

#[cfg(all(wick_simd, target_arch = "wasm32"))]
mod wasm;
#[cfg(all(wick_simd, target_arch = "wasm32"))]
pub use wasm::*;

#[cfg(all(wick_simd, target_arch = "x86_64"))]
mod x86;
#[cfg(all(wick_simd, target_arch = "x86_64"))]
pub use x86::*;
