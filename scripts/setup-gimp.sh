#!/usr/bin/env bash
# Builds (once) a Debian 13 "trixie" chroot with GIMP 3 and its Python support, for the GIMP
# plug-in tests (tests/test_gimp.py, `pytest -m gimp`). Debian 12 only packages GIMP 2.10.
#
#   bash scripts/setup-gimp.sh          # idempotent: does nothing but check when the chroot is ready
#
# The chroot lives at <repo>/.chroot/trixie (gitignored; cache it in CI). Needs root and network
# access to the Debian mirror. Environment:
#   AVOW_GIMP_CHROOT   where the chroot goes (default <repo>/.chroot/trixie)
#   AVOW_DEBIAN_MIRROR the mirror (default http://deb.debian.org/debian)
# Run things inside it with scripts/gimp-run.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${AVOW_GIMP_CHROOT:-$repo/.chroot/trixie}"
mirror="${AVOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
stamp="$root/.avow-gimp-ready"
# Bump when the package list changes so cached chroots get completed.
want="6"
packages=(
    gimp python3-gi gir1.2-gimp-3.0 gir1.2-gexiv2-0.10
    ca-certificates
    # The dialog test: a virtual X server and something to press the dialog's buttons.
    xvfb xauth xdotool
    # Shared libraries a host-built CPython (pyenv) and its wheels link against: the plug-in
    # starts Avow's worker with the host venv's python, bind-mounted into the chroot.
    libssl3t64 libffi8 libsqlite3-0 libbz2-1.0 liblzma5 zlib1g libreadline8t64 libncursesw6
    libuuid1 libgdbm6t64 libexpat1 libgomp1 libstdc++6
)

t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }
log() { echo "setup-gimp: $* [$(elapsed)]"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "setup-gimp: needs root (debootstrap and chroot)" >&2
    exit 1
fi

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && [[ -x "$root/usr/bin/gimp-console-3.0" ]]; then
    log "chroot ready at $root ($(chroot "$root" dpkg-query -W -f='${Version}' gimp 2>/dev/null || echo '?'))"
    exit 0
fi

# Debian's archive keyring checks what debootstrap downloads (bookworm's already holds trixie's keys;
# on Ubuntu hosts the package exists too).
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if ! command -v debootstrap >/dev/null 2>&1 || [[ ! -f "$keyring" ]]; then
    log "installing debootstrap and debian-archive-keyring on the host"
    export DEBIAN_FRONTEND=noninteractive
    # Another apt run on this host (e.g. a concurrent setup script) holds the lock: wait for it.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap debian-archive-keyring >/dev/null
fi

if [[ ! -x "$root/usr/bin/apt-get" || ! -f "$root/.avow-debootstrap-done" ]]; then
    log "debootstrap trixie (minbase) into $root"
    rm -rf --one-file-system "$root"
    mkdir -p "$root"
    args=(--variant=minbase --keyring="$keyring")
    if ! debootstrap "${args[@]}" trixie "$root" "$mirror" >"$root.debootstrap.log" 2>&1; then
        tail -n 30 "$root.debootstrap.log" >&2
        echo "setup-gimp: debootstrap failed (log: $root.debootstrap.log)" >&2
        exit 1
    fi
    touch "$root/.avow-debootstrap-done"
    log "debootstrap done"
fi

# Package installation needs /proc and /dev: mounted in a private mount namespace, so they vanish
# with it however this script ends and the host never sees them.
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
log "installing GIMP 3 into the chroot"
unshare --mount --propagation private -- /bin/bash -euc '
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $* >/dev/null && apt-get clean"
' setup-gimp "$root" "${packages[@]}" || { echo "setup-gimp: apt-get install in the chroot failed" >&2; exit 1; }

version="$(chroot "$root" dpkg-query -W -f='${Version}' gimp)"
echo "$want" >"$stamp"
log "chroot ready at $root (gimp $version)"
