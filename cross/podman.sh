#!/usr/bin/env bash
# Builds (or tests) the aarch64 `agecam` daemon with `cross` and Podman, with no container
# registry: the image's base is made here from Debian packages (debootstrap + `podman import`),
# and cross builds cross/Dockerfile.aarch64 on it (Debian's rustc-web 1.96 with its aarch64
# standard library, the aarch64 gcc and libc, libclang, qemu-user).
#
# Usage: cross/podman.sh [build|test|image] [extra cargo args]
#   build  (default) cross build --release --target aarch64-unknown-linux-gnu --features device
#          --bin agecam, into target/cross/aarch64-unknown-linux-gnu/release/agecam
#   test   cross test of the device crate's unit tests (--release --lib), under qemu-aarch64
#          inside the container
#   image  only make the base image (and cross, and the toolchain link), build nothing
#
# What it makes when missing (all reused on later runs):
#   - the base image localhost/debian-bookworm:min: `debootstrap --variant=minbase bookworm`
#     and `podman import` (needs root and the packages debootstrap, podman, runc). Another
#     bookworm base: AGECAM_CROSS_BASE=IMAGE. cross's own ghcr.io image, for machines that can
#     reach it: plain `cross build` with Docker, no script needed (Cross.toml).
#   - cross 0.2.5 (`cargo install --locked` from crates.io, into ~/.cargo/bin).
#   - a rustup toolchain link `agecam-cross-<host>` (see below).
# Podman's settings come from cross/containers.conf through CONTAINERS_CONF; nothing in /etc
# is changed.
#
# The toolchain: cross mounts a host toolchain at /rust in the container and, unless
# CROSS_CUSTOM_TOOLCHAIN is set, runs `rustup target add` for the target. The image has its own
# (Debian's, in /usr/bin, ahead of /rust/bin in PATH) and that is the one that compiles, so this
# script sets CROSS_CUSTOM_TOOLCHAIN=1 and hands cross a linked toolchain that is neither active
# nor default (an alias of the host's default toolchain). The reason for the alias: cross 0.2.5
# looks for the toolchain in `rustup toolchain list` and does not understand rustup 1.28's
# "(active, default)" marker, so with the default toolchain it runs `rustup toolchain add` of it,
# which updates the machine's default toolchain wherever rustup's server is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
cross_version=0.2.5
base=${AGECAM_CROSS_BASE:-localhost/debian-bookworm:min}
mode=${1:-build}
case "$mode" in
    build | test | image) [ $# -gt 0 ] && shift ;;
    -*) mode=build ;;
    *) echo "usage: cross/podman.sh [build|test|image] [extra cargo args]" >&2; exit 2 ;;
esac

need() { # command, Debian package
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "cross/podman.sh: '$1' not found: apt-get install $2" >&2
        exit 1
    fi
}
need podman podman
need runc runc
export CONTAINERS_CONF="$PWD/cross/containers.conf"

# 1. The base image, from Debian packages only.
if ! podman image exists "$base"; then
    if [ "$base" != localhost/debian-bookworm:min ]; then
        echo "cross/podman.sh: image $base not found (podman images lists what there is)" >&2
        exit 1
    fi
    need debootstrap debootstrap
    if [ "$(id -u)" != 0 ]; then
        echo "cross/podman.sh: making the base image needs root (debootstrap); run as root once" >&2
        exit 1
    fi
    rootfs=target/cross-rootfs
    rm -rf "$rootfs"
    mkdir -p target
    echo "== base image $base: debootstrap --variant=minbase bookworm, podman import"
    start=$SECONDS
    debootstrap --variant=minbase bookworm "$rootfs" "${AGECAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
    tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
    rm -rf "$rootfs"
    echo "   made in $((SECONDS - start)) s"
fi

# 2. cross itself. Its version is asked for outside the workspace: inside it, even
#    `cross --version` goes through the toolchain checks described at the top.
cross_ok() { [[ "$(cd / && cross --version 2>/dev/null)" == "cross $cross_version"* ]]; }
if ! { command -v cross >/dev/null 2>&1 && cross_ok; }; then
    echo "== cargo install cross --version $cross_version --locked (about 2.5 min on 2 busy cores)"
    cargo install cross --version "$cross_version" --locked
fi
if ! cross_ok; then
    echo "cross/podman.sh: cross $cross_version is installed but not first in PATH (\$CARGO_HOME/bin)" >&2
    exit 1
fi

# 3. The toolchain cross is given (see the top). cross runs `cargo +<channel> metadata` on the
#    host, then names the toolchain <channel>-<the rest of the default toolchain's name> and
#    mounts ~/.rustup/toolchains/<that>: both names are linked to the default toolchain.
default_sysroot=$(readlink -f "$(rustc --print sysroot)")
default_name=$(basename "$(rustc --print sysroot)")
channel=agecam-cross
toolchain=$channel${default_name#"${default_name%%-*}"}
for name in "$channel" "$toolchain"; do
    if ! rustup toolchain list | grep -qx "$name"; then
        rustup toolchain link "$name" "$default_sysroot"
    fi
    if ! rustup toolchain list | grep -qx "$name"; then
        echo "cross/podman.sh: rustup lists the toolchain $name with a marker; cross would try to install it" >&2
        exit 1
    fi
done
[ "$mode" = image ] && { echo "base image $base, cross $cross_version, toolchain $toolchain: ready"; exit 0; }

export CROSS_CONTAINER_ENGINE=podman
export CROSS_CUSTOM_TOOLCHAIN=1
# cross builds cross/Dockerfile.aarch64 (Cross.toml) with --build-arg CROSS_BASE_IMAGE=<cross's
# image>; CROSS_BUILD_OPTS comes after that on its command line, and the last value wins. (Not
# CROSS_TARGET_…_IMAGE: with a dockerfile, cross 0.2.5 uses that setting both as the base and
# as the name of the image it builds, so each run would build on, and retag, the last one.)
export CROSS_BUILD_OPTS="--build-arg CROSS_BASE_IMAGE=$base"
# Not target/: the image's rustc (1.96) and the host's must not share build scripts' artefacts.
export CARGO_TARGET_DIR="$PWD/target/cross"

if [ "$mode" = build ]; then
    cross "+$channel" build --release --target "$target" --features device --bin agecam "$@"
    bin=$CARGO_TARGET_DIR/$target/release/agecam
    echo "built $bin: $(($(stat -c %s "$bin") / 1024 / 1024)) MiB"
else
    cross "+$channel" test --release --target "$target" --features device --lib "$@"
fi
