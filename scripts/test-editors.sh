#!/usr/bin/env bash
# The editor tier (README, "Tests"): GIMP 3 and Krita 5 driven for real. Needs root (or sudo) and
# Debian's archive the first time: Krita from Debian 12 system-wide (scripts/setup-krita.sh), and
# GIMP 3 in a Debian 13 chroot built under .chroot/ (scripts/setup-gimp.sh, about 940 MB).
#   bash scripts/test-editors.sh [PYTEST ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh '[test,lint]'
bash scripts/setup-krita.sh
bash scripts/setup-gimp.sh
exec .venv/bin/python -m pytest -m "gimp or krita" "$@"
