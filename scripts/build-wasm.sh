#!/usr/bin/env bash
# Builds the wasm package the page loads: www/pkg/wick.js + wick_bg.wasm (simd128, `web` profile: release + LTO).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh
$(wasm_cargo) build --profile web --lib --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --out-dir www/pkg \
  target/wasm32-unknown-unknown/web/wick.wasm
echo "[build-wasm] www/pkg/wick_bg.wasm: $(stat -c %s www/pkg/wick_bg.wasm) bytes" >&2
