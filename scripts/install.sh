#!/usr/bin/env bash
# Sets up Avow in ./.venv, with the CPU-only build of torch unless AVOW_TORCH=cuda (README,
# "Installing"). Safe to run again: pip only installs what is missing.
#
#   bash scripts/install.sh                  # Avow, CPU torch (about 190 MB to download)
#   AVOW_TORCH=cuda bash scripts/install.sh  # PyPI's default torch: CUDA on Linux x86_64 (GBs)
#   bash scripts/install.sh '[test,lint]'    # with extras (scripts/test.sh does this)
#
# Versions come from constraints.txt: the ones the tests ran with. To switch torch builds, delete
# .venv first: an importable torch is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
# A run with the same extras since pyproject.toml and constraints.txt last changed is done already
# (the install is editable: source edits need none).
stamp=".venv/.avow-installed${extras//[^a-z,]/}"
if [[ -f $stamp && $stamp -nt pyproject.toml && $stamp -nt constraints.txt ]]; then
    echo "install: up to date in $(pwd)/.venv"
    exit 0
fi

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
pip=(.venv/bin/python -m pip install --disable-pip-version-check --constraint constraints.txt)
case "${AVOW_TORCH:-cpu}" in
    # PyTorch's own index holds the CPU-only builds (on PyPI, Linux torch needs several GB of CUDA
    # libraries). --index-url, not --extra-index-url: if that index cannot be reached, pip fails
    # rather than falling back to PyPI's CUDA build. torch alone from there (--no-deps): its
    # dependencies are the same pure-Python packages on PyPI, installed with Avow's below.
    cpu) torch_from=(--no-deps --index-url https://download.pytorch.org/whl/cpu) ;;
    cuda) torch_from=() ;;
    *) echo "install: AVOW_TORCH is cpu (the default) or cuda, not '$AVOW_TORCH'" >&2; exit 1 ;;
esac
# torch first: the `torch>=` requirement of Avow is then already met, and pip pulls no other build.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    echo "install: torch (${AVOW_TORCH:-cpu} build) ..."
    "${pip[@]}" "${torch_from[@]}" torch
fi
"${pip[@]}" -e ".$extras"
touch "$stamp"
echo "install: Avow is ready in $(pwd)/.venv (run .venv/bin/avow --help)"
