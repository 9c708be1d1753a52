//! Sets `cfg(wick_simd)` when the target has the SIMD that Wick's kernels are written for:
//! simd128 in wasm, AVX2 and FMA on x86-64 (one name for a condition every kernel file needs).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(wick_simd)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has = |f: &str| features.split(',').any(|x| x == f);
    let simd = match arch.as_str() {
        "wasm32" => has("simd128"),
        "x86_64" => has("avx2") && has("fma"),
        _ => false,
    };
    if simd {
        println!("cargo::rustc-cfg=wick_simd");
    }
}
