#!/usr/bin/env bash
# Runs a command inside the GIMP 3 chroot that scripts/setup-gimp.sh builds, e.g.
#
#   scripts/gimp-run.sh gimp-console-3.0 -i --batch-interpreter=python-fu-eval -b '...' --quit
#
# The checkout, Avow's venv and the Python the venv was made from are bind-mounted into the chroot
# at the same paths as on the host, so a plug-in inside can start Avow's worker with the venv's
# python (what `avow install gimp` writes into avow.json). /tmp is shared too, so files under it
# have one path on both sides. Every mount is made in a private mount namespace (unshare -m): the
# host never sees them and they vanish when the command ends, however it ends, even when several
# runs overlap.
#
# Environment:
#   AVOW_GIMP_CHROOT  the chroot (default <repo>/.chroot/trixie)
#   AVOW_VENV         Avow's virtual environment (default <repo>/.venv)
#   AVOW_GIMP_BINDS   extra host paths to bind at the same place, colon-separated
# Passed into the chroot: HOME, TERM, TMPDIR, AVOW_*, XDG_*, GIMP_*, GEGL_*, BABL_*; nothing else
# (PATH is the chroot's own, LANG is C.UTF-8).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${AVOW_GIMP_CHROOT:-$repo/.chroot/trixie}"
venv="${AVOW_VENV:-$repo/.venv}"

if [[ $# -eq 0 ]]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi
if [[ ! -x "$root/usr/bin/gimp-console-3.0" ]]; then
    echo "gimp-run: no GIMP chroot at $root; run: bash scripts/setup-gimp.sh" >&2
    exit 2
fi

if [[ "${_AVOW_GIMP_NS:-}" != "$root" ]]; then
    # Re-enter in a private mount namespace; the mounts below die with it.
    exec env _AVOW_GIMP_NS="$root" unshare --mount --propagation private -- bash "${BASH_SOURCE[0]}" "$@"
fi

bind() {  # bind HOST_PATH at the same path inside the chroot
    local src="$1" dst="$root$1"
    [[ -e "$src" ]] || return 0
    if [[ -d "$src" ]]; then
        mkdir -p "$dst"
    else
        mkdir -p "$(dirname "$dst")"
        [[ -e "$dst" ]] || touch "$dst"
    fi
    mount --rbind "$src" "$dst"
}

mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
bind /tmp
bind "$repo"
if [[ -d "$venv" ]]; then
    case "$venv/" in "$repo"/*) ;; *) bind "$venv" ;; esac
    # The venv's python is a link into the installation it was made from: bind that installation
    # too. A separate one (~/.pyenv/versions/X, /opt/python, /usr/local) is bound whole; the host's
    # system python (/usr) only by its interpreter and standard library, over the chroot's /usr.
    if [[ -x "$venv/bin/python" ]]; then
        read -r base real stdlib < <("$venv/bin/python" -c 'import os, sys, sysconfig; print(sys.base_prefix, os.path.realpath(sys.executable), sysconfig.get_path("stdlib"))')
        case "$base" in
            /usr)
                bind "$real"
                bind "$stdlib"
                # The venv's python links to /usr/bin/python3, which in the chroot is Debian 13's own:
                # a copy of the venv's bin/ whose python links point at the host interpreter is
                # mounted over it (in this namespace only; the venv itself is not touched).
                mkdir -p "$root/run/avow-venv-bin"
                mount -t tmpfs -o mode=0755 tmpfs "$root/run/avow-venv-bin"
                cp -a "$venv/bin/." "$root/run/avow-venv-bin/"
                for link in "$root/run/avow-venv-bin"/python*; do
                    if [[ -L "$link" ]]; then ln -sfn "$real" "$link"; fi
                done
                mount --bind "$root/run/avow-venv-bin" "$root$venv/bin"
                ;;
            "$repo"/*) ;;
            *) bind "$base" ;;
        esac
    fi
fi
if [[ -n "${AVOW_GIMP_BINDS:-}" ]]; then
    IFS=: read -r -a extra <<<"$AVOW_GIMP_BINDS"
    for path in "${extra[@]}"; do
        [[ -n "$path" ]] && bind "$path"
    done
fi

envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 LC_ALL=C.UTF-8 NO_AT_BRIDGE=1
      "HOME=${HOME:-/root}")
[[ -n "${TERM:-}" ]] && envs+=("TERM=$TERM")
[[ -n "${TMPDIR:-}" ]] && envs+=("TMPDIR=$TMPDIR")
for name in $(compgen -e); do
    case "$name" in
        _AVOW_*) ;;
        AVOW_*|XDG_*|GIMP_*|GEGL_*|BABL_*) envs+=("$name=${!name}") ;;
    esac
done
mkdir -p "$root${HOME:-/root}"

exec chroot "$root" /usr/bin/env -i "${envs[@]}" "$@"
