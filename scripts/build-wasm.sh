#!/usr/bin/env bash
# Builds the two wasm packages the page chooses between (both simd128, `web` profile: release
# + LTO):
#   www/pkg/          single-threaded; works on any page
#   www/pkg-threads/  matmuls on a pool of Web Workers (wasm-bindgen-rayon); needs a
#                     cross-origin-isolated page, and std rebuilt with atomics (-Z build-std,
#                     allowed on stable by RUSTC_BOOTSTRAP, which this script alone sets)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh
CARGO="$(wasm_cargo)"
TARGET=wasm32-unknown-unknown

$CARGO build --profile web --lib --target $TARGET
wasm-bindgen --target web --no-typescript --out-dir www/pkg target/$TARGET/web/wick.wasm

# Shared memory must be imported and capped, and the TLS symbols exported, or wasm-bindgen
# silently emits single-threaded glue.
THREAD_FLAGS='-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 --cfg getrandom_backend="wasm_js" -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=2147483648 -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base'
RUSTFLAGS="$THREAD_FLAGS" RUSTC_BOOTSTRAP=1 $CARGO build --profile web --lib --target $TARGET \
  --features threads -Z build-std=panic_abort,std --target-dir target/threads
wasm-bindgen --target web --no-typescript --out-dir www/pkg-threads target/threads/$TARGET/web/wick.wasm

for p in www/pkg www/pkg-threads; do
  echo "[build-wasm] $p/wick_bg.wasm: $(stat -c %s $p/wick_bg.wasm) bytes" >&2
done
