#!/usr/bin/env bash
# Sets everything up (idempotent) and serves the app with the default model.
#   scripts/dev.sh [--port 8080]
# It serves as soon as the wasm build the browser picks first is ready (threaded relaxed SIMD,
# what Chromium runs on a machine with more than one core; WICK_WASM_FIRST=NAME picks another)
# and writes the MLX default model (scripts/default-mlx.sh: the native CLI) and builds the other
# three in the background meanwhile; the page runs whichever builds exist (www/wasm.js), and the
# GGUF until the MLX folder is there (www/app.js). Stopping the server stops that build too.
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=(pkg-threads-relaxed pkg-threads pkg-relaxed pkg)
first=${WICK_WASM_FIRST:-$([ "$(nproc)" -gt 1 ] && echo pkg-threads-relaxed || echo pkg-relaxed)}
scripts/setup.sh --wasm "$first" --no-mlx

rest=()
for b in "${ALL[@]}"; do [ "$b" = "$first" ] || rest+=("$b"); done
log=target/build-wasm-background.log
mkdir -p target
echo "[dev] serving with www/$first; writing the MLX default model, then building ${rest[*]} in the background (log: $log)" >&2
# Job control gives the build its own process group, so it can be stopped as a whole.
set -m
{
  if nice -n 10 scripts/default-mlx.sh >"$log" 2>&1 && nice -n 10 scripts/build-wasm.sh "${rest[@]}" >>"$log" 2>&1; then
    echo "[dev] every wasm build is ready" >&2
  else
    echo "[dev] a background wasm build failed: see $log" >&2
  fi
} &
builder=$!
set +m
trap 'kill -- -$builder 2>/dev/null || true' EXIT
node scripts/serve.mjs "$@"
