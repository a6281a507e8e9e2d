#!/usr/bin/env bash
# The project's test command (README and .ci/run): installs what the tests need, then runs them.
# Needs root (or sudo) the first time: Krita from Debian, and GIMP 3 in a Debian 13 chroot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/setup-krita.sh
bash scripts/setup-gimp.sh
exec .venv/bin/python -m pytest "$@"
