//! `agecam models install / rollback / status` through the binary, on a real model set: the
//! shipped models signed with a test key (the project's secret key is not in the repository),
//! packed as a bundle, installed into a store, loaded by `predict`, refused when edited, and
//! rolled back.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn agecam() -> Command {
    command(env!("CARGO_BIN_EXE_agecam"))
}

/// A copy of the shipped models, its licences marked with `licence_note`, signed with the
/// test key; returns the public key's path.
fn signed_copy(to: &Path, licence_note: &str) -> PathBuf {
    let from = repo().join("models");
    std::fs::create_dir_all(to).unwrap();
    let text = std::fs::read_to_string(from.join("manifest.json")).unwrap();
    let mut entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    for e in &mut entries {
        let file = e["file"].as_str().unwrap();
        std::fs::copy(from.join(file), to.join(file)).unwrap();
        let licence = e["licence"].as_str().unwrap().to_string();
        e["licence"] = serde_json::Value::String(format!("{licence} {licence_note}"));
    }
    std::fs::write(
        to.join("manifest.json"),
        serde_json::to_string_pretty(&entries).unwrap(),
    )
    .unwrap();
    let public = to.parent().unwrap().join("test.pub");
    sign_with_test_key(to, &public);
    public
}

fn bundle_of(set: &Path, out: &Path) {
    std::fs::write(out, agecam::model::bundle::pack(set).unwrap()).unwrap();
}

#[test]
fn install_predict_refuse_and_roll_back_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let public = signed_copy(&dir.path().join("a/models"), "(set A)");
    signed_copy(&dir.path().join("b/models"), "(set B)");
    let (bundle_a, bundle_b) = (dir.path().join("a.bundle"), dir.path().join("b.bundle"));
    bundle_of(&dir.path().join("a/models"), &bundle_a);
    bundle_of(&dir.path().join("b/models"), &bundle_b);
    let config = dir.path().join("agecam.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\nstore = {:?}\npublic_keys = [{:?}]\n",
            store.display().to_string(),
            public.display().to_string()
        ),
    )
    .unwrap();
    let agecam_with = |args: &[&str]| {
        agecam()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };

    // Without the test key trusted, the bundle is refused and nothing is installed.
    let out = agecam()
        .args(["models", "install", "--store"])
        .arg(&store)
        .arg(&bundle_a)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("does not trust") && stderr.contains("agecam project"),
        "{stderr}"
    );

    let out = agecam_with(&["models", "install", bundle_a.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("PASS models") && stdout.contains("PASS inference"),
        "{stdout}"
    );
    assert!(
        stdout.contains("installed model set") && stdout.contains("restart"),
        "{stdout}"
    );

    // predict (and the daemon) now load the installed set: its licence lines say "(set A)".
    let out = agecam_with(&["selftest"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("(set A)") && stdout.contains(&store.display().to_string()),
        "{stdout}"
    );

    // One edited byte in bundle B: refused, naming the bundle; A stays current.
    let mut bytes = std::fs::read(&bundle_b).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x10;
    let edited = dir.path().join("b-edited.bundle");
    std::fs::write(&edited, &bytes).unwrap();
    let out = agecam_with(&["models", "install", edited.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("b-edited.bundle"), "{stderr}");
    let status = text(&agecam_with(&["models", "status"]).stdout);
    let id_a = status
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("current: model set "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{status}"))
        .to_string();

    let out = agecam_with(&["models", "install", bundle_b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = agecam_with(&["selftest"]);
    assert!(text(&out.stdout).contains("(set B)"));

    // An installed file edited on disk: the daemon refuses to start, naming it.
    let status = text(&agecam_with(&["models", "status"]).stdout);
    assert!(status.contains(&format!("previous: {id_a}")), "{status}");
    let current = store.join("current");
    let victim = current.join("blazeface_short_range.onnx");
    let good = std::fs::read(&victim).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 1;
    std::fs::write(&victim, &bad).unwrap();
    let out = agecam_with(&[
        "predict",
        data("faces/grace_hopper_navy_portrait.jpg")
            .to_str()
            .unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("blazeface_short_range.onnx"));
    std::fs::write(&victim, &good).unwrap();

    let out = agecam_with(&["models", "rollback"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&id_a));
    let out = agecam_with(&["selftest"]);
    assert!(text(&out.stdout).contains("(set A)"));
}
