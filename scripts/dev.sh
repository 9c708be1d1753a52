#!/usr/bin/env bash
# Sets everything up (idempotent) and serves the app with the default model.
#   scripts/dev.sh [--port 8080]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec node scripts/serve.mjs "$@"
