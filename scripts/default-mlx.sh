#!/usr/bin/env bash
# Writes the app's default model, models/SmolLM2-135M-Instruct-MLX-4bit/: the default GGUF's
# weights as MLX-quantized safetensors, by `wick quantize` (Q4_1 and Q8_0 blocks are copied
# exactly, so the replies are the same), with the manifest.json (each file's size and sha256) the
# page checks the download against. Builds the native CLI for it. Idempotent.
# Until the folder exists the page starts with the GGUF itself (www/app.js), so scripts/dev.sh
# runs this in the background, after serving.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MLX_DIR=models/SmolLM2-135M-Instruct-MLX-4bit
echo "[default-mlx] building the native CLI and writing $MLX_DIR" >&2
cargo build --release --quiet --bin wick
# Written beside the folder, then renamed in, so the page never sees half of it.
rm -rf "$MLX_DIR.new"
target/release/wick quantize "models/$MODEL_FILE" "$MLX_DIR.new" --bits 4 --group-size 32
rm -rf "$MLX_DIR"
mv "$MLX_DIR.new" "$MLX_DIR"
