//! End-to-end tests of `agecam-host eval` (and `quantize`) on tiny datasets the tests lay out
//! themselves from the bundled redistributable photos, with the shipped models: the report
//! folder, its numbers and its charts, for both dataset layouts.

use std::path::Path;
use std::process::{Command, Output};

#[path = "../../tests/common/mod.rs"]
mod common;
use common::{data, run_ok, text};

fn host() -> Command {
    common::command(env!("CARGO_BIN_EXE_agecam-host"))
}

/// The four bundled portraits under UTKFace names (ages and genders as perceived; see
/// tests/data/SOURCES.md), plus one malformed name that must be skipped, not guessed.
fn utkface_fixture(dir: &Path) {
    for (src, name) in [
        (
            "faces/astronaut_eileen_collins.jpg",
            "42_1_0_20170101000000001.jpg",
        ),
        (
            "faces/grace_hopper_navy_portrait.jpg",
            "77_1_0_20170101000000002.jpg",
        ),
        (
            "faces/luis_pedro_coelho.jpg",
            "30_0_0_20170101000000003.jpg",
        ),
        (
            "faces/cameraman_three_quarter_profile.png",
            "30_0_0_20170101000000004.png",
        ),
        (
            "faces/luis_pedro_coelho.jpg",
            "thirty_0_0_20170101000000005.jpg",
        ),
    ] {
        std::fs::copy(data(src), dir.join(name)).unwrap();
    }
}

fn last_json(out: &Output) -> serde_json::Value {
    let stdout = text(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn eval_writes_a_report_for_float_and_int8_on_the_same_faces() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("utk");
    std::fs::create_dir(&ds).unwrap();
    utkface_fixture(&ds);
    let report = dir.path().join("report");
    let out = run_ok(
        host()
            .args(["eval", "--all", "--format", "utkface", "--data"])
            .arg(&ds)
            .arg("--report")
            .arg(&report)
            .args([
                "--model",
                "models/age_gender_f32.onnx",
                "--model",
                "models/age_gender_int8.onnx",
            ]),
    );
    let summary = last_json(&out);
    let compared = summary["compared"].as_array().unwrap();
    assert_eq!(compared.len(), 1, "{summary}");
    let models = [&summary, &compared[0]];
    for m in models {
        // The three frontal portraits are found for sure; the profile may or may not be.
        let faces = m["n"].as_u64().unwrap();
        assert!((3..=4).contains(&faces), "{m}");
        let mae = m["age_mae"].as_f64().unwrap();
        assert!(mae > 0.0 && mae < 40.0, "{m}");
        let auc = m["gender_auc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auc), "{m}");
    }
    // Same faces, so the int8 model's answers stay close to the float model's.
    let (f, q) = (models[0], models[1]);
    assert!(f["model"]
        .as_str()
        .unwrap()
        .ends_with("age_gender_f32.onnx"));
    assert_eq!(f["n"], q["n"]);
    assert!(f["cs5"].is_number() && f["gender_acc"].is_number() && f["group3_acc"].is_number());
    let drift = (f["age_mae"].as_f64().unwrap() - q["age_mae"].as_f64().unwrap()).abs();
    assert!(
        drift < 2.0,
        "int8 drifts {drift} years from float on 4 faces"
    );

    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("Difference from"), "{md}");
    assert!(
        md.contains("| female |") && md.contains("| white |"),
        "{md}"
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics.as_array().unwrap().len(), 2);
    let csv = std::fs::read_to_string(report.join("confusion_gender_age_gender_f32.csv")).unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("true\\predicted,male,female"));
    let counted: usize = rows
        .flat_map(|r| r.split(',').skip(1).map(|c| c.parse::<usize>().unwrap()))
        .sum();
    assert_eq!(counted as u64, f["n"].as_u64().unwrap(), "{csv}");
    for png in [
        "roc_gender.png",
        "roc_groups_age_gender_f32.png",
        "confusion_groups_age_gender_f32.png",
        "confusion_gender_age_gender_int8.png",
    ] {
        let img = image::open(report.join(png)).unwrap();
        assert!(img.width() > 100 && img.height() > 100, "{png}");
    }
}

#[test]
fn eval_kaggle_layout_scores_age_groups_only() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("kaggle");
    std::fs::create_dir_all(ds.join("Train")).unwrap();
    std::fs::copy(
        data("faces/astronaut_eileen_collins.jpg"),
        ds.join("Train/1.jpg"),
    )
    .unwrap();
    std::fs::copy(
        data("faces/grace_hopper_navy_portrait.jpg"),
        ds.join("Train/2.jpg"),
    )
    .unwrap();
    std::fs::write(ds.join("train.csv"), "ID,Class\n1.jpg,MIDDLE\n2.jpg,OLD\n").unwrap();
    let report = dir.path().join("report");
    // No --model: the manifest's int8 model is scored.
    let out = run_ok(
        host()
            .args(["eval", "--all", "--format", "kaggle", "--data"])
            .arg(&ds)
            .arg("--report")
            .arg(&report),
    );
    let m = last_json(&out);
    assert!(
        m["model"]
            .as_str()
            .unwrap()
            .ends_with("age_gender_int8.onnx"),
        "{m}"
    );
    assert_eq!(m["n"], 2);
    assert!(m["age_mae"].is_null() && m["gender_acc"].is_null(), "{m}");
    let acc = m["group3_acc"].as_f64().unwrap();
    assert!([0.0, 0.5, 1.0].contains(&acc), "{m}");
    assert!(report
        .join("confusion_groups_age_gender_int8.png")
        .is_file());
    assert!(
        !report.join("roc_gender.png").exists(),
        "no genders, no ROC"
    );
}

/// `eval --visit-frames`: each face as a short visit, scored three ways side by side.
#[test]
fn eval_scores_faces_as_visits_per_face_every_frame_and_scheduled() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("utk");
    std::fs::create_dir(&ds).unwrap();
    utkface_fixture(&ds);
    let report = dir.path().join("report");
    let out = run_ok(
        host()
            .args([
                "eval",
                "--all",
                "--format",
                "utkface",
                "--visit-frames",
                "11",
                "--data",
            ])
            .arg(&ds)
            .arg("--report")
            .arg(&report),
    );
    let summary = last_json(&out);
    let compared = summary["compared"].as_array().unwrap();
    assert_eq!(compared.len(), 2, "{summary}");
    let answers = [&summary, &compared[0], &compared[1]];
    for (m, suffix) in answers
        .iter()
        .zip(["-per-face", "-visit-every-frame", "-visit-scheduled"])
    {
        assert!(m["model"].as_str().unwrap().ends_with(suffix), "{m}");
        assert_eq!(m["n"], summary["n"], "the same faces: {m}");
        let mae = m["age_mae"].as_f64().unwrap();
        assert!(mae > 0.0 && mae < 40.0, "{m}");
        assert!(m["gender_acc"].is_number(), "{m}");
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("scored as a visit of 11 frames"), "{md}");
    assert!(md.contains("did not count"), "{md}");

    // Too short for the scheduled daemon to count a visit: refused, naming the setting.
    let out = host()
        .args([
            "eval",
            "--all",
            "--format",
            "utkface",
            "--visit-frames",
            "4",
            "--data",
        ])
        .arg(&ds)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("schedule.detect_every = 5") && err.contains("at least 11"),
        "{err}"
    );
}

#[test]
fn eval_names_a_missing_dataset_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = host()
        .args([
            "eval",
            "--format",
            "utkface",
            "--data",
            "/nonexistent/utk",
            "--report",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("/nonexistent/utk"), "{stderr}");
}

/// The bundled portraits laid out as `../shared/data/fairface.sh` lays out FairFace: the two
/// label files (with the mangled `03-Sep` / `Oct-19` names) and `fair_face/{train,val}/`.
fn fairface_fixture(dir: &Path) {
    for (split, n, src) in [
        ("train", 1, "faces/astronaut_eileen_collins.jpg"),
        ("train", 2, "faces/luis_pedro_coelho.jpg"),
        ("train", 3, "faces/grace_hopper_navy_portrait.jpg"),
        ("val", 1, "faces/grace_hopper_navy_portrait.jpg"),
        ("val", 2, "faces/astronaut_eileen_collins.jpg"),
        ("val", 3, "faces/luis_pedro_coelho.jpg"),
    ] {
        let folder = dir.join("fair_face").join(split);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(data(src), folder.join(format!("{n}.jpg"))).unwrap();
    }
    std::fs::write(
        dir.join("fairface_label_train.csv"),
        "file,age,gender,race,service_test\n\
         train/1.jpg,40-49,Female,White,TRUE\n\
         train/2.jpg,Oct-19,Male,White,FALSE\n\
         train/3.jpg,more than 70,Female,White,TRUE\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("fairface_label_val.csv"),
        "file,age,gender,race,service_test\n\
         val/1.jpg,more than 70,Female,White,TRUE\n\
         val/2.jpg,40-49,Female,White,TRUE\n\
         val/3.jpg,30-39,Male,Latino_Hispanic,FALSE\n",
    )
    .unwrap();
}

/// FairFace end to end: `dataset` reports its own split, `eval` scores its validation files
/// with the 9-group metrics and no age MAE (it has no exact ages), `crops` keeps the group
/// labels and the split, and `train` runs on the cache with the group likelihood.
#[test]
fn fairface_layout_evaluates_crops_and_trains() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("fairface");
    fairface_fixture(&ds);

    let out = run_ok(
        host()
            .args(["dataset", "--format", "fairface", "--data"])
            .arg(&ds),
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("train:      3") && stdout.contains("validation: 3"),
        "{stdout}"
    );

    let report = dir.path().join("report");
    let out = run_ok(
        host()
            .args(["eval", "--format", "fairface", "--data"])
            .arg(&ds)
            .arg("--report")
            .arg(&report),
    );
    let summary = last_json(&out);
    assert_eq!(summary["n"], 3, "{summary}");
    assert!(summary["age_mae"].is_null(), "{summary}");
    let nine = summary["group9_acc"].as_f64().unwrap();
    let within = summary["group9_within_one"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&nine) && within >= nine, "{summary}");
    assert!(summary["gender_acc"].is_number(), "{summary}");
    let direct = summary["found_direct"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&direct), "{summary}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("9-group acc.") && md.contains("| latinohispanic |"),
        "{md}"
    );

    let cache = dir.path().join("cache");
    run_ok(
        host()
            .args(["crops", "--format", "fairface", "--data"])
            .arg(&ds)
            .arg("--out")
            .arg(&cache),
    );
    let labels = std::fs::read_to_string(cache.join("labels.csv")).unwrap();
    assert!(
        labels.starts_with("crop,source,age,gender,split,race\n"),
        "{labels}"
    );
    // The race column: the index in dataset::Race::ALL (0 White, 8 Latino_Hispanic).
    assert!(
        labels.contains("train_2.jpg.png,train_2.jpg,10-19,0,train,0\n")
            && labels.contains("val_1.jpg.png,val_1.jpg,70-100,1,val,0\n")
            && labels.contains("val_3.jpg.png,val_3.jpg,30-39,0,val,8\n"),
        "{labels}"
    );

    let run = dir.path().join("run");
    let out = run_ok(
        host()
            .args(["train", "--data"])
            .arg(format!("fairface:{}", cache.display()))
            .args([
                "--input-size",
                "32",
                "--width",
                "0.35",
                "--epochs",
                "1",
                "--batch",
                "2",
                "--warmup-steps",
                "1",
                "--augment",
                "camera",
                "--out",
            ])
            .arg(&run),
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FairFace gender") && stdout.contains("9-group"),
        "{stdout}"
    );
    let history: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("history.json")).unwrap()).unwrap();
    assert_eq!(history[0]["val"][0]["data"], "fairface", "{history}");
    assert_eq!(history[0]["val"][0]["faces"], 3, "{history}");
    let onnx = dir.path().join("m.onnx");
    run_ok(
        host()
            .args(["export", "--checkpoint"])
            .arg(&run)
            .arg("--out")
            .arg(&onnx),
    );
    assert!(std::fs::metadata(&onnx).unwrap().len() > 10_000);
}
