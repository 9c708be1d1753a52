#!/usr/bin/env bash
# Builds the four wasm packages the page chooses between (`web` profile: release + LTO):
#   www/pkg/                   simd128, single-threaded; works on any page
#   www/pkg-threads/           simd128, matmuls on a pool of Web Workers (wasm-bindgen-rayon);
#                              needs a cross-origin-isolated page, and std rebuilt with atomics
#                              (-Z build-std, allowed on stable by RUSTC_BOOTSTRAP, which this
#                              script alone sets)
#   www/pkg-relaxed/           the same two with relaxed SIMD as well (one dot-product
#   www/pkg-threads-relaxed/   instruction per 16 products), for browsers that validate it
#   scripts/build-wasm.sh [pkg-threads-relaxed pkg ...]   builds only those, in that order
# Each package appears whole or not at all (written beside it, then renamed into place), so a
# page served while the others are still being built (scripts/dev.sh) never loads half of one;
# www/wasm.js picks among the packages that exist.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh
CARGO="$(wasm_cargo)"
TARGET=wasm32-unknown-unknown
# RUSTFLAGS replaces .cargo/config.toml's flags for the target, so the shared ones are repeated.
BASE='--cfg getrandom_backend="wasm_js"'
# Shared memory must be imported and capped, and the TLS symbols exported, or wasm-bindgen
# silently emits single-threaded glue. The cap is wasm32's whole 4 GiB (what the single-threaded
# builds may grow to as well): V8 only reserves it, and a 1.5B model with its KV cache needs more
# than 2 GiB. www/memory.js refuses a model that cannot fit under it before downloading it.
THREADS='-C target-feature=+atomics,+bulk-memory,+mutable-globals -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base'

# build OUT_DIR TARGET_DIR SIMD_FEATURES [threads]
build() {
  local out=$1 dir=$2 simd=$3
  if [ "${4:-}" = threads ]; then
    RUSTFLAGS="-C target-feature=$simd $THREADS $BASE" RUSTC_BOOTSTRAP=1 $CARGO build --profile web \
      --lib --target $TARGET --features threads -Z build-std=panic_abort,std --target-dir "$dir"
  elif [ "$simd" = +simd128 ]; then
    # .cargo/config.toml's flags, and the target dir the wasm tests build their dependencies in.
    $CARGO build --profile web --lib --target $TARGET --target-dir "$dir"
  else
    RUSTFLAGS="-C target-feature=$simd $BASE" $CARGO build --profile web --lib --target $TARGET \
      --target-dir "$dir"
  fi
  rm -rf "$out.new" "$out.old"
  wasm-bindgen --target web --no-typescript --out-dir "$out.new" "$dir/$TARGET/web/wick.wasm"
  if [ -d "$out" ]; then mv "$out" "$out.old"; fi
  mv "$out.new" "$out"
  rm -rf "$out.old"
  echo "[build-wasm] $out/wick_bg.wasm: $(stat -c %s "$out/wick_bg.wasm") bytes" >&2
}

# build_named NAME: one of the four packages, by its folder name under www/.
build_named() {
  case $1 in
    pkg) build www/pkg target +simd128 ;;
    pkg-threads) build www/pkg-threads target/threads +simd128 threads ;;
    pkg-relaxed) build www/pkg-relaxed target/wasm-relaxed +simd128,+relaxed-simd ;;
    pkg-threads-relaxed) build www/pkg-threads-relaxed target/threads-relaxed +simd128,+relaxed-simd threads ;;
    *) echo "[build-wasm] unknown package '$1' (pkg, pkg-threads, pkg-relaxed, pkg-threads-relaxed)" >&2; exit 2 ;;
  esac
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(pkg pkg-threads pkg-relaxed pkg-threads-relaxed)
for n in "${names[@]}"; do build_named "$n"; done
