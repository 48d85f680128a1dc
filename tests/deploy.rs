//! The installer, run into a staging root: a fresh install, an upgrade over it that keeps the
//! installer's config and the statistics, and an uninstall that keeps data unless purged.

use std::path::Path;
use std::process::Command;

fn install(root: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("sh")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/install.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_agecam")])
        .args(args)
        .env("DESTDIR", root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn install_upgrade_and_uninstall_keep_config_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    install(root, &[]);
    for file in [
        "usr/bin/agecam",
        "usr/share/agecam/models/manifest.json",
        "usr/share/agecam/models/manifest.json.minisig",
        "usr/share/agecam/agecam-models.pub",
        "etc/agecam/agecam.toml",
        "etc/systemd/system/agecam.service",
        "etc/udev/rules.d/99-agecam.rules",
    ] {
        assert!(root.join(file).is_file(), "{file} missing");
    }
    // The installer edits the config and the daemon stores statistics.
    let config = root.join("etc/agecam/agecam.toml");
    std::fs::write(&config, "[camera]\nfps = 15\n").unwrap();
    let stats = root.join("var/lib/agecam/agecam-stats.sqlite");
    std::fs::write(&stats, b"statistics").unwrap();

    let out = install(root, &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept"));
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "[camera]\nfps = 15\n"
    );
    assert!(root.join("etc/agecam/agecam.toml.default").is_file());
    assert_eq!(std::fs::read(&stats).unwrap(), b"statistics");
    // The installed binary accepts the installed default config.
    let check = Command::new(root.join("usr/bin/agecam"))
        .args(["check-config"])
        .arg(root.join("etc/agecam/agecam.toml.default"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    install(root, &["--uninstall"]);
    assert!(!root.join("usr/bin/agecam").exists());
    assert!(
        config.is_file() && stats.is_file(),
        "data kept without --purge"
    );
    install(root, &["--uninstall", "--purge"]);
    assert!(!config.exists() && !stats.exists());
}
