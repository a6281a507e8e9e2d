#!/usr/bin/env bash
# ruff and mypy with pyproject.toml's settings (README, "Tests"); .ci/run runs it.
#   bash scripts/lint.sh        (after scripts/install.sh '[test,lint]')
set -euo pipefail
cd "$(dirname "$0")/.."
python="${AVOW_PYTHON:-.venv/bin/python}"
status=0
"$python" -m ruff check . || status=1
"$python" -m mypy || status=1
exit $status
