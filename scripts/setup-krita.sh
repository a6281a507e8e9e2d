#!/usr/bin/env bash
# Installs what the Krita tests (pytest -m krita) and the Krita plugin need on Debian 12:
# Krita 5.1 (kritarunner included), PyQt5 for Krita's Python, Xvfb for the GUI smoke test.
# Idempotent: does nothing when all of it is there. Prints how long each step took.
set -euo pipefail

packages=(krita python3-pyqt5 xvfb xauth)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
for tool in kritarunner krita xvfb-run; do
    command -v "$tool" >/dev/null || { [[ " ${missing[*]} " == *" krita "* ]] || missing+=(krita); }
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup-krita: already installed: ${packages[*]} (krita $(dpkg-query -W -f='${Version}' krita))"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "setup-krita: need root to install ${missing[*]}: run as root, or: apt-get install ${missing[*]}" >&2
    exit 1
fi

start=$SECONDS
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
echo "setup-krita: apt-get update: $((SECONDS - start)) s"
start=$SECONDS
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
echo "setup-krita: apt-get install ${missing[*]}: $((SECONDS - start)) s"
echo "setup-krita: krita $(dpkg-query -W -f='${Version}' krita)"
