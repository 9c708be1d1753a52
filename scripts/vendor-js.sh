#!/usr/bin/env bash
# Copies the libraries the chat page runs in the browser (marked, DOMPurify) from node_modules,
# at the versions package-lock.json pins, into www/vendor/ with their licenses. The copies are
# committed, so the page needs no build step; tests/e2e/chat-app.test.mjs checks they match.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p www/vendor
cp node_modules/marked/lib/marked.esm.js www/vendor/marked.esm.js
cp node_modules/marked/LICENSE www/vendor/marked.LICENSE
cp node_modules/dompurify/dist/purify.es.mjs www/vendor/purify.es.mjs
cp node_modules/dompurify/LICENSE www/vendor/purify.LICENSE
cp node_modules/dompurify/LICENSE-MPL www/vendor/purify.LICENSE-MPL
echo "www/vendor: marked $(node -p "require('./node_modules/marked/package.json').version"), DOMPurify $(node -p "require('./node_modules/dompurify/package.json').version")"
