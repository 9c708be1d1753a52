#!/usr/bin/env bash
# Runs every test: formatting and lints (native and wasm32), native unit and integration tests
# (tiny random models and the real models), the wasm tests under Node, and the browser end to
# end tests in headless Chromium against the dev server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The real models the tests compare with llama.cpp (the 1.5B only on request: WICK_BIG_MODELS=1).
scripts/fetch-models.sh qwen2.5-coder-0.5b gemma3-270m
if [ "${WICK_BIG_MODELS:-0}" = 1 ]; then scripts/fetch-models.sh qwen2.5-coder-1.5b; fi
source scripts/toolchain.sh
WASM="$(wasm_cargo)"

step() { echo; echo "=== $* ==="; }

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy (native, wasm32)"
cargo clippy --release --all-targets -- -D warnings
if $WASM clippy --version >/dev/null 2>&1; then
  $WASM clippy --release --lib --tests --target wasm32-unknown-unknown -- -D warnings
else
  echo "(no clippy for the fallback wasm toolchain; wasm32 lints skipped)"
fi

step "native tests"
cargo test --release
if [ "${WICK_BIG_MODELS:-0}" = 1 ]; then
  step "native tests of the 1.5B (WICK_BIG_MODELS=1)"
  cargo test --release --test real_models -- --ignored
fi

step "wasm tests (Node)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  $WASM test --release --target wasm32-unknown-unknown --lib --test wasm --test architectures --test formats --test train

step "wasm kernel tests with relaxed SIMD (headless Chromium)"
# The relaxed-SIMD kernels against their scalar references and the native bits. In Chromium: Node
# 20's relaxed SIMD is an experimental, pre-standard one that computes other dot products.
# webdriver.json (repo root) gives Chromium the flags it needs here (no sandbox as root).
RUSTFLAGS='-C target-feature=+simd128,+relaxed-simd --cfg getrandom_backend="wasm_js"' \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver || echo /usr/lib/chromium/chromedriver)}" \
  $WASM test --release --target wasm32-unknown-unknown --target-dir target/wasm-relaxed --lib kernels::

step "browser end-to-end tests (headless Chromium)"
node --test --test-concurrency=1 tests/e2e/
