#!/usr/bin/env bash
# Builds the aarch64 `agecam` daemon without Docker, from Debian packages only.
#
# rustup cannot fetch an aarch64 standard library on machines without internet access, but
# Debian bookworm(-security) ships rustc-web/cargo-web 1.96 with a matching aarch64 std
# (libstd-rust-web-dev:arm64). This script installs those (as root, if missing), links them
# as the rustup toolchain `debian`, and builds with the linker and qemu runner from
# .cargo/config.toml. The binary needs glibc ≤ 2.36, so it runs on bookworm-based Pi OS.
#
# Usage: cross/build-aarch64.sh [--test] [extra cargo args]
#   --test   also run the library's unit tests under qemu-aarch64
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
packages=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu
          libc6-dev-arm64-cross qemu-user libclang-dev cmake make)

if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: run as root, or install: ${packages[*]}" >&2
        echo "(after: dpkg --add-architecture arm64 && apt-get update)" >&2
        exit 1
    fi
    dpkg --add-architecture arm64
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
if ! rustup run debian rustc --version >/dev/null 2>&1; then
    rustup toolchain link debian /usr
fi

# C parts (ring, sqlite, libc wrappers) and bindgen's view of the aarch64 headers.
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
# Debian's rustc must not be handed rustup's host target dir artefacts: own target dir.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/debian}"

run_tests=0
if [ "${1:-}" = "--test" ]; then
    run_tests=1
    shift
fi

cargo +debian build --release --target "$target" --features device --bin agecam "$@"
bin="$CARGO_TARGET_DIR/$target/release/agecam"
size=$(stat -c %s "$bin")
glibc=$(aarch64-linux-gnu-objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1)
echo "built $bin: $((size / 1024 / 1024)) MiB, needs $glibc"

if [ "$run_tests" = 1 ]; then
    cargo +debian test --release --target "$target" --features device --lib "$@"
fi
