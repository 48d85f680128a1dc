//! End-to-end test of `agecam-host det-bench` on a small version of the benchmark: the bundled
//! portraits pasted at three face heights into one bundled background, 640×480 only, the
//! short-range BlazeFace detector only (a few seconds in a debug build).

use std::process::Command;

#[path = "../../tests/common/mod.rs"]
mod common;
use common::{run_ok, text};

fn host() -> Command {
    common::command(env!("CARGO_BIN_EXE_agecam-host"))
}

fn small_bench() -> (String, serde_json::Value) {
    let out = run_ok(host().args([
        "det-bench",
        "--detectors",
        "blazeface",
        "--frame-sizes",
        "640x480",
        "--face-heights",
        "24,64,160",
        "--positions",
        "2",
        "--max-backgrounds",
        "1",
        "--nonface-crops",
        "3",
        "--json",
    ]));
    let stdout = text(&out.stdout);
    let json = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    (stdout, json)
}

#[test]
fn det_bench_measures_blazeface_by_face_size() {
    let (stdout, json) = small_bench();
    assert!(stdout.contains("640x480:"), "{stdout}");
    assert!(stdout.contains("blazeface"), "{stdout}");

    for key in [
        "face_heights",
        "portraits",
        "portraits_skipped",
        "chips_used",
        "chips_skipped",
        "backgrounds",
        "min_face_size",
        "found_iou",
        "jpeg_quality",
        "seed",
        "frame_sizes",
    ] {
        assert!(json.get(key).is_some(), "no {key} in {json}");
    }
    assert_eq!(json["face_heights"], serde_json::json!([24, 64, 160]));
    assert_eq!(json["chips_used"], 0);
    let portraits = json["portraits"].as_array().unwrap().len();
    assert!(portraits >= 3, "{json}");

    let sizes = json["frame_sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 1);
    let fs = &sizes[0];
    assert_eq!(
        (fs["width"].as_u64(), fs["height"].as_u64()),
        (Some(640), Some(480))
    );
    // Every portrait at every height on a 2×2 grid; one background, three crops.
    assert_eq!(
        fs["face_frames"].as_u64().unwrap() as usize,
        portraits * 3 * 4
    );
    assert_eq!(fs["nonface_frames"], 3);

    let detectors = fs["detectors"].as_array().unwrap();
    assert_eq!(detectors.len(), 1);
    let d = &detectors[0];
    assert_eq!(d["name"], "blazeface");
    for key in [
        "per_height",
        "false_positives",
        "fp_per_frame",
        "mean_iou",
        "median_ms",
    ] {
        assert!(d.get(key).is_some(), "no {key} in {d}");
    }
    let per_height = d["per_height"].as_array().unwrap();
    let at = |h: u64| {
        per_height
            .iter()
            .find(|r| r["height"] == h)
            .unwrap_or_else(|| panic!("no {h} px row in {d}"))
    };
    let (small, large) = (at(24), at(160));
    // Every face at 160 px is found, and well framed.
    assert_eq!(large["found"], large["faces"], "{d}");
    assert_eq!(large["rate"], 1.0);
    assert!(large["mean_iou"].as_f64().unwrap() > 0.5, "{d}");
    assert!(small["rate"].as_f64().unwrap() < large["rate"].as_f64().unwrap());
    // No face in the background crops, and the short-range detector finds none there.
    assert_eq!(d["false_positives"], 0, "{d}");
    assert_eq!(d["fp_per_frame"], 0.0);
    assert!(d["median_ms"].as_f64().unwrap() > 0.0);
}

/// `--score-thresholds` runs a configuration once per threshold; a stricter one finds no more.
#[test]
fn det_bench_compares_score_thresholds() {
    let out = run_ok(host().args([
        "det-bench",
        "--detectors",
        "blazeface",
        "--score-thresholds",
        "0.5,0.9999",
        "--frame-sizes",
        "640x480",
        "--face-heights",
        "96,160",
        "--positions",
        "1",
        "--max-backgrounds",
        "1",
        "--nonface-crops",
        "1",
        "--json",
    ]));
    let stdout = text(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let detectors = json["frame_sizes"][0]["detectors"].as_array().unwrap();
    let names: Vec<&str> = detectors
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blazeface@0.5", "blazeface@0.9999"], "{stdout}");
    let found = |d: &serde_json::Value| -> u64 {
        d["per_height"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["found"].as_u64().unwrap())
            .sum()
    };
    let (loose, strict) = (found(&detectors[0]), found(&detectors[1]));
    assert!(loose > 0, "{stdout}");
    assert!(
        strict < loose,
        "a 0.9999 threshold drops some faces: {stdout}"
    );
}

#[test]
fn det_bench_names_a_missing_models_folder_and_data_folder() {
    let out = host()
        .args(["det-bench", "--models", "no/such/models"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no/such/models"), "{err}");

    let out = host()
        .args(["det-bench", "--data", "no/such/data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no/such/data/faces"), "{err}");
}
