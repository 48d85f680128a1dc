#!/usr/bin/env bash
# Installs an aarch64 agecam .deb in an arm64 Debian bookworm container (Podman, run through
# qemu-user-static's binfmt handler) and runs `agecam selftest` there: the package's
# dependencies, maintainer scripts, paths and bundled models, checked on the architecture of
# the kiosk without a Pi.
#
# Usage: cross/arm64-selftest.sh AGECAM_DEB
#
# Needs root and the Debian packages podman, runc, debootstrap and qemu-user-static. Makes when
# missing:
#   - the binfmt_misc entry qemu-aarch64 (mounts /proc/sys/fs/binfmt_misc if needed and
#     registers /usr/lib/binfmt.d/qemu-aarch64.conf, whose F flag lets containers use it): a
#     setting of the running kernel, gone at reboot; nothing in /etc is changed
#   - the image localhost/debian-bookworm-arm64:min (debootstrap --arch=arm64, ~4 min, most of
#     it the second stage under qemu, then `podman import`)
# Podman's settings come from cross/containers.conf (see cross/podman.sh).
#
# The kiosk's configuration reads /dev/video0, which a container does not have: the selftest
# runs twice, with the installed /etc/agecam/agecam.toml (its camera check fails, nothing else
# should) and with a copy whose camera is the built-in demo frames (every check must pass).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    echo "usage: cross/arm64-selftest.sh AGECAM_DEB" >&2
    exit 2
fi
deb=$(readlink -f "$1")
image=localhost/debian-bookworm-arm64:min
if [ "$(id -u)" != 0 ]; then
    echo "cross/arm64-selftest.sh: run as root (binfmt_misc, debootstrap)" >&2
    exit 1
fi
for tool in podman:podman runc:runc debootstrap:debootstrap qemu-aarch64-static:qemu-user-static; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
        echo "cross/arm64-selftest.sh: '${tool%%:*}' not found: apt-get install ${tool#*:}" >&2
        exit 1
    fi
done
export CONTAINERS_CONF="$PWD/cross/containers.conf"

if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi

if ! podman image exists "$image"; then
    rootfs=target/arm64-rootfs
    rm -rf "$rootfs"
    mkdir -p target
    echo "== $image: debootstrap --arch=arm64 --variant=minbase bookworm, podman import"
    debootstrap --arch=arm64 --variant=minbase bookworm "$rootfs" \
        "${AGECAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
    tar -C "$rootfs" -c . | podman import --arch arm64 - "$image" >/dev/null
    rm -rf "$rootfs"
fi

echo "== apt-get install ./$(basename "$deb") in $image, then agecam selftest"
podman run --rm --arch arm64 -v "$deb:/tmp/agecam.deb:ro" "$image" sh -euc '
    uname -m
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends /tmp/agecam.deb >/dev/null
    dpkg -s agecam | grep -E "^(Status|Version|Architecture):"
    id agecam
    echo "-- agecam selftest (installed /etc/agecam/agecam.toml; no /dev/video0 here)"
    agecam selftest || echo "(exit status $?)"
    echo "-- agecam selftest, camera = the built-in demo frames"
    sed "s/^source = \"v4l2\"/source = \"demo\"/" /etc/agecam/agecam.toml > /tmp/selftest.toml
    agecam --config /tmp/selftest.toml selftest
'
