//! `agecam cost STAGE --repeat N` on x86: every stage runs once on the bundled demo frame with
//! the shipped models (benches/aarch64-cost.sh counts their instructions under qemu), and bad
//! input is refused with a message that says what to do.

use std::process::Command;

mod common;
use common::{run_ok, text};

fn agecam() -> Command {
    common::command(env!("CARGO_BIN_EXE_agecam"))
}

#[test]
fn every_stage_runs_once() {
    for stage in [
        "decode",
        "detect",
        "detect-full-range",
        "detect-back",
        "detect-seeta",
        "crop",
        "pose",
        "infer-f32",
        "infer-int8",
    ] {
        let out = run_ok(agecam().args(["cost", stage, "--repeat", "1", "--models", "models"]));
        let line = text(&out.stdout);
        assert!(
            line.starts_with(&format!(
                "cost {stage}: 1 run(s) on demo_frame_1.jpg (640x480)"
            )),
            "{stage}: {line}"
        );
    }
    let out = run_ok(agecam().args([
        "cost",
        "infer",
        "--model",
        "models/age_gender_f32.onnx",
        "--repeat",
        "2",
    ]));
    let line = text(&out.stdout);
    assert!(
        line.contains("2 run(s)") && line.contains("on one face"),
        "{line}"
    );
}

#[test]
fn bad_stage_frame_or_missing_model_is_refused_clearly() {
    let cases: [(&[&str], &str); 3] = [
        (&["cost", "bogus"], "possible values"),
        (&["cost", "decode", "--frame", "9"], "--frame takes 1 to 3"),
        (&["cost", "infer"], "--model FILE.onnx"),
    ];
    for (args, expected) in cases {
        let out = agecam().args(args).output().unwrap();
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
