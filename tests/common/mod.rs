//! Helpers shared by the end-to-end tests that run the `agecam` and `agecam-host` binaries
//! (the host crate's tests include this file too).
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One of the crate's binaries (`env!("CARGO_BIN_EXE_…")`), run from the repository with the
/// environment a user's shell might add removed and info logging on.
pub fn command(exe: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.current_dir(repo())
        .env_remove("AGECAM_CONFIG")
        .env_remove("CACHE_DIRECTORY")
        .env("RUST_LOG", "info");
    cmd
}

pub fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Runs `cmd` and fails the test, with both outputs, unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "failed: {cmd:?}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// The repository's top folder (where `models/` and `tests/data/` are): the device crate's
/// folder, which is the host crate's parent.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("models/manifest.json").is_file())
        .expect("tests run inside the agecam repository (models/manifest.json above them)")
        .to_path_buf()
}

/// A file under `tests/data`.
pub fn data(path: &str) -> PathBuf {
    repo().join("tests/data").join(path)
}

/// Signs `models/manifest.json` with this process's test key (the project's secret key is not
/// in the repository) and writes the key's public half to `public`, for `model.public_keys`.
pub fn sign_with_test_key(models: &Path, public: &Path) {
    static PAIR: std::sync::OnceLock<minisign::KeyPair> = std::sync::OnceLock::new();
    let pair = PAIR.get_or_init(|| minisign::KeyPair::generate_unencrypted_keypair().unwrap());
    let manifest = std::fs::read(models.join("manifest.json")).unwrap();
    let signature = minisign::sign(
        Some(&pair.pk),
        &pair.sk,
        &manifest[..],
        None,
        Some("signature from minisign secret key"),
    )
    .unwrap();
    std::fs::write(models.join("manifest.json.minisig"), signature.to_string()).unwrap();
    std::fs::write(public, pair.pk.to_box().unwrap().to_string()).unwrap();
}
