#!/usr/bin/env bash
# The fast tier (README, "Tests"): everything but the real editors. No root, no network beyond
# PyPI on the first run (it installs Avow with its test and lint extras into ./.venv first).
#   bash scripts/test.sh [PYTEST ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh '[test,lint]'
exec .venv/bin/python -m pytest -m "not gimp and not krita" "$@"
