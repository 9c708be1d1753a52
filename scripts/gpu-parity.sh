#!/usr/bin/env bash
# CPU-vs-CUDA parity check (tests/gpu_parity.rs) for a GPU machine that has no Rust toolchain.
#
#   scripts/gpu-parity.sh           here: build the cuda test binary into gpu/bin/ (gzipped)
#   scripts/gpu-parity.sh --pack    the same, plus the real model split into gpu/model/part-*
#                                   ($PART_MIB MiB each) with their SHA256SUMS
#   scripts/gpu-parity.sh --stash   there: copy the model parts found in gpu/model/ to $STASH
#   scripts/gpu-parity.sh --run     there: stash parts, reassemble the model when all parts are
#                                   in $STASH, run the binaries (log to $OUT/gpu-parity.log)
#
# A device call carries at most 64 MiB, the model is 94 MiB: carry the parts over consecutive
# calls while the machine stays warm, e.g.
#   1. carry gpu/model/part-aa gpu/model/SHA256SUMS            run: scripts/gpu-parity.sh --stash
#   2. carry gpu/bin gpu/model/part-ab gpu/model/SHA256SUMS    run: scripts/gpu-parity.sh --run
# (--run alone, with only gpu/bin carried, runs the tiny-model test and skips the real one.)
#
# Building needs nvcc and CUDA 13.0 headers and libraries: installed once from PyPI into
# $CUDA_TOOLS (outside the repo, about 1.2 GB). 13.0 matches driver 580: newer nvcc writes PTX
# that driver cannot load. The binaries need libcuda.so.1 (driver), libcudart.so.13,
# libcublas.so.13 (+ libcublasLt.so.13) and libcurand.so.10 at startup (candle-core asks cudarc
# for dynamic linking, not loading), which the GPU machine's driver and CUDA 13 install provide.
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_TOOLS=${CUDA_TOOLS:-/work/cuda-tools}
STASH=${STASH:-/tmp/wick-gpu}
MODEL=${WICK_GPU_MODEL_SRC:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
PART_MIB=${PART_MIB:-48}
TESTS=(gpu_parity)

log() { echo "[gpu-parity] $*" >&2; }

cuda_tools() {
  local py=$CUDA_TOOLS/bin/python
  if [ ! -x "$py" ]; then
    log "creating venv $CUDA_TOOLS"
    python3 -m venv "$CUDA_TOOLS"
  fi
  "$py" -m pip install --quiet --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
    nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14
  CUDA_DIR=$("$py" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
  # The wheels ship only versioned libraries and no libcuda: add the names the linker looks for,
  # and a stub libcuda.so exporting every driver function cudarc declares (the real one comes
  # with the driver). Each stub returns CUDA_ERROR_NO_DEVICE.
  local lib=$CUDA_DIR/lib n
  for n in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
    ln -sf "lib$n" "$lib/lib${n%.so.*}.so"
  done
  if [ ! -f "$lib/stubs/libcuda.so" ]; then
    local src
    src=$(cargo metadata --format-version 1 --features cuda 2>/dev/null | python3 -c '
import json, sys
print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"]
           if p["name"] == "cudarc" and p["version"].startswith("0.19")))')
    src=$(dirname "$src")/src/driver/sys/mod.rs
    mkdir -p "$lib/stubs"
    grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$src" | awk '{print "int " $4 "(void) { return 100; }"}' \
      | sort -u >"$lib/stubs/libcuda.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$lib/stubs/libcuda.so" "$lib/stubs/libcuda.c"
  fi
  export PATH=$CUDA_DIR/bin:$PATH CUDA_PATH=$CUDA_DIR
}

build() {
  cuda_tools
  log "building the cuda test binaries (target/cuda)"
  local json
  json=$(CUDA_COMPUTE_CAP=90 CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    nice -n 15 cargo test --release --features cuda --target-dir target/cuda --no-run \
    --message-format json-render-diagnostics $(printf -- '--test %s ' "${TESTS[@]}"))
  rm -rf gpu/bin && mkdir -p gpu/bin
  echo "$json" | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        shutil.copy(m["executable"], "gpu/bin/" + m["target"]["name"])'
  gzip -f gpu/bin/*   # 22 MB -> 5 MB: leaves room for a model part in the same call
}

pack_model() {
  [ -f "$MODEL" ] || { log "no $MODEL: run scripts/setup.sh first"; exit 1; }
  rm -rf gpu/model && mkdir -p gpu/model
  split -b "${PART_MIB}M" -a 2 "$MODEL" gpu/model/part-
  (cd gpu/model && sha256sum part-* >SHA256SUMS)
  echo "$(sha256sum <"$MODEL" | cut -d' ' -f1)  model.gguf" >>gpu/model/SHA256SUMS
}

stash() {
  mkdir -p "$STASH"
  if [ -d gpu/model ]; then cp gpu/model/* "$STASH"/ 2>/dev/null || true; fi
  [ -f "$STASH/SHA256SUMS" ] || { log "no model parts stashed yet"; return 1; }
  cd "$STASH"
  if grep part- SHA256SUMS | sha256sum -c --quiet >/dev/null 2>&1; then
    if ! grep model.gguf SHA256SUMS | sha256sum -c --quiet >/dev/null 2>&1; then
      cat part-* >model.gguf
      grep model.gguf SHA256SUMS | sha256sum -c --quiet || { cd - >/dev/null; return 1; }
    fi
    cd - >/dev/null
    log "model ready: $STASH/model.gguf"
  else
    log "stashed in $STASH: $(ls part-* 2>/dev/null | tr '\n' ' ')(not all parts yet)"
    cd - >/dev/null
    return 1
  fi
}

run() {
  if [ -z "${WICK_GPU_MODEL:-}" ] && stash; then export WICK_GPU_MODEL=$STASH/model.gguf; fi
  # The CUDA 13 libraries, wherever this machine keeps them.
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64; do
    if [ -d "$d" ]; then LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d; fi
  done
  export LD_LIBRARY_PATH
  local log_file=${OUT:+$OUT/gpu-parity.log} status=0
  (
    rc=0
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader || true
    mkdir -p "$STASH/bin"
    for z in gpu/bin/*.gz; do
      t=$STASH/bin/$(basename "$z" .gz)
      gunzip -c "$z" >"$t" && chmod +x "$t"
      if ldd "$t" | grep -q 'not found'; then ldd "$t"; fi
      echo "=== $(basename "$t")"
      "$t" --nocapture --test-threads=1 || rc=$?
    done
    echo "exit status: $rc"
    exit $rc
  ) 2>&1 | tee ${log_file:+"$log_file"} || status=$?
  return $status
}

case "${1:-}" in
  "") build ;;
  --pack) build; pack_model ;;
  --stash) stash || true; exit 0 ;;
  --run) run; exit $? ;;
  *) echo "usage: $0 [--pack | --stash | --run]" >&2; exit 2 ;;
esac
log "gpu/: $(du -sh gpu | cut -f1) in all"
du -ab gpu | sort -k2 >&2
