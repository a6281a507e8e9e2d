#!/usr/bin/env bash
# The fast tier (README, "Tests"): everything but the real editors. No root, no network beyond
# PyPI and npm on the first run (Avow with its test and lint extras into ./.venv; a JS C2PA reader).
#   bash scripts/test.sh [PYTEST ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh '[test,lint]'
# A second, independent C2PA reader (pure TypeScript) for tests/test_independent_reader.py; that
# test skips when node or the package is missing, so a failed install costs only that check.
reader="$HOME/.cache/avow-tests/c2pa-ts"
if command -v npm >/dev/null && [[ ! -d "$reader/node_modules/@trustnxt/c2pa-ts" ]]; then
    npm install --prefix "$reader" --no-audit --no-fund @trustnxt/c2pa-ts@0.9.4 \
        || echo "test: could not install @trustnxt/c2pa-ts; the independent-reader test will skip" >&2
fi
exec .venv/bin/python -m pytest -m "not gimp and not krita" "$@"
