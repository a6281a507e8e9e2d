#!/usr/bin/env bash
# Sets up Avow in ./.venv. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "install: Avow needs Python 3.11 or newer (python3 is $(python3 --version 2>&1))" >&2
    exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
    if ! python3 -m venv .venv; then
        echo "install: python3 -m venv failed; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2
        exit 1
    fi
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: any later 'torch>=' requirement is then already met, so no other build
# (on PyPI, several GB of CUDA libraries) is pulled in behind the user's back.
.venv/bin/python -c 'import torch' 2>/dev/null || "${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[test]"
echo "install: Avow is ready in $(pwd)/.venv (run .venv/bin/avow --help)"
