#!/bin/sh
# Installs (or upgrades) agecam on a kiosk: binary, models, default config, systemd unit and
# udev rules, and the `agecam` service user. Safe to run again: an existing config and the
# statistics in /var/lib/agecam are kept.
#
#   sudo deploy/install.sh [--binary PATH]          install or upgrade
#   sudo deploy/install.sh --uninstall [--purge]    remove; --purge also deletes config and data
#
# DESTDIR=/some/root installs into a staging root (for packaging and tests); then no user is
# created and systemd/udev are not reloaded.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
root=${DESTDIR:-}
binary="$repo/target/release/agecam"
action=install
purge=no

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --uninstall) action=uninstall; shift ;;
        --purge) purge=yes; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

live() { [ -z "$root" ]; }

if [ "$action" = uninstall ]; then
    if live; then
        systemctl disable --now agecam.service 2>/dev/null || true
    fi
    rm -f "$root/usr/bin/agecam" "$root/etc/systemd/system/agecam.service" "$root/etc/udev/rules.d/99-agecam.rules"
    rm -rf "$root/usr/share/agecam"
    if [ "$purge" = yes ]; then
        rm -rf "$root/etc/agecam" "$root/var/lib/agecam"
        echo "agecam removed, with its config and statistics"
    else
        echo "agecam removed; kept $root/etc/agecam and the statistics in $root/var/lib/agecam (--purge deletes them)"
    fi
    if live; then
        systemctl daemon-reload 2>/dev/null || true
        userdel agecam 2>/dev/null || true
    fi
    exit 0
fi

if [ ! -x "$binary" ]; then
    echo "install.sh: no agecam binary at $binary; build it (cargo build --release --features device) or pass --binary PATH" >&2
    exit 1
fi

install -d "$root/usr/bin" "$root/usr/share/agecam/models" "$root/etc/agecam" \
    "$root/etc/systemd/system" "$root/etc/udev/rules.d" "$root/var/lib/agecam"
# Replace the binary atomically, so a running daemon keeps its old file until restarted.
install -m 0755 "$binary" "$root/usr/bin/.agecam.new"
mv -f "$root/usr/bin/.agecam.new" "$root/usr/bin/agecam"
for f in "$repo"/models/*; do
    # Model files, licences, manifest and card; not the evaluation report folder.
    [ -f "$f" ] || continue
    install -m 0644 "$f" "$root/usr/share/agecam/models/"
done
# The public half of the project's model-signing key (also built into the binary), for
# checking a model set by hand: minisign -Vm manifest.json -p /usr/share/agecam/agecam-models.pub
install -m 0644 "$here/agecam-models.pub" "$root/usr/share/agecam/agecam-models.pub"
if [ -e "$root/etc/agecam/agecam.toml" ]; then
    # Keep the installer's edits; offer the new default beside it.
    install -m 0644 "$here/agecam.toml" "$root/etc/agecam/agecam.toml.default"
    echo "kept $root/etc/agecam/agecam.toml; the new default is agecam.toml.default"
else
    install -m 0644 "$here/agecam.toml" "$root/etc/agecam/agecam.toml"
fi
install -m 0644 "$here/agecam.service" "$root/etc/systemd/system/agecam.service"
install -m 0644 "$here/99-agecam.rules" "$root/etc/udev/rules.d/99-agecam.rules"

if live; then
    for group in video spi gpio; do
        getent group "$group" >/dev/null || groupadd --system "$group"
    done
    if ! id agecam >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /var/lib/agecam --shell /usr/sbin/nologin \
            --groups video,spi,gpio agecam
    fi
    chown -R agecam:agecam /var/lib/agecam
    udevadm control --reload-rules 2>/dev/null && udevadm trigger 2>/dev/null || true
    systemctl daemon-reload
    systemctl enable agecam.service
    echo "installed; start with: systemctl start agecam (check first: agecam --config /etc/agecam/agecam.toml selftest)"
else
    echo "installed into $root"
fi
