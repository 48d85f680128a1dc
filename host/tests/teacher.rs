//! face-api's real age/gender network imported as the ONNX teacher (`agecam-host
//! import-teacher`) and compared, in tract, with face-api's own outputs in Node (TF.js wasm and
//! cpu backends), committed in `tests/data/teacher/reference_*.json` for the four 112×112
//! crops beside them (cut by `agecam-host teacher-crops` from the bundled photos).
//!
//! The npm package is not in the repository: the test looks for it in `AGECAM_FACEAPI_DIR`,
//! by default `benches/teacher_reference/node_modules/@vladmandic/face-api`
//! (`npm ci --prefix benches/teacher_reference`). Without it the test prints "skipped: ..."
//! and passes, except under CI (`CI` set), where it fails saying what to install. Where
//! `node` is on the PATH the committed reference is also re-made by `reference.mjs` and
//! checked against the file, so the file cannot drift from what the script prints.

use agecam_host::teacher::{self, compare_with_reference};
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../tests/common/mod.rs"]
mod common;
use common::{data, run_ok, text};

/// The largest difference (years or probability) the import may show against face-api.
const TOLERANCE: f32 = 1e-3;

fn repo() -> PathBuf {
    common::repo()
}

/// face-api's package folder, or `None` (after printing why) when the test must be skipped.
fn face_api_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("AGECAM_FACEAPI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo().join("benches/teacher_reference/node_modules/@vladmandic/face-api")
        });
    let manifest = dir.join("model/age_gender_model-weights_manifest.json");
    if manifest.is_file() {
        return Some(dir);
    }
    let why = format!(
        "face-api's model is not installed ({} is missing): run \
         `npm ci --prefix benches/teacher_reference` (Node.js and npm; the packages come from \
         the npm registry), or set AGECAM_FACEAPI_DIR to an unpacked @vladmandic/face-api 1.7.15",
        manifest.display()
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "under CI the teacher test must run: {why}"
    );
    println!("skipped: {why}");
    None
}

/// Whether reference.mjs can run here (node and its installed packages); prints why not,
/// and fails under CI.
fn node_ready() -> bool {
    let installed = repo().join("benches/teacher_reference/node_modules/@vladmandic/face-api");
    let why = if Command::new("node").arg("--version").output().is_err() {
        "node is not on the PATH, so reference.mjs cannot run (apt-get install nodejs)"
    } else if !installed.is_dir() {
        "reference.mjs's packages are not installed: npm ci --prefix benches/teacher_reference"
    } else {
        return true;
    };
    assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
    println!("skipped: {why}");
    false
}

/// Runs reference.mjs in `dir` on `files` there and returns what it printed.
fn run_reference(dir: &Path, backend: &str, files: &[&str]) -> String {
    let out = run_ok(
        Command::new("node")
            .current_dir(dir)
            .arg(repo().join("benches/teacher_reference/reference.mjs"))
            .args(["--backend", backend])
            .args(files),
    );
    text(&out.stdout)
}

fn references() -> [PathBuf; 2] {
    [
        data("teacher/reference_wasm.json"),
        data("teacher/reference_cpu.json"),
    ]
}

#[test]
fn imported_teacher_matches_face_api_in_node() {
    let Some(dir) = face_api_dir() else { return };
    let manifest = dir.join("model/age_gender_model-weights_manifest.json");
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("teacher.onnx");
    let summary = teacher::import_teacher(&manifest, &onnx).unwrap();
    assert!(
        summary.is_1_7_15,
        "{} is not face-api 1.7.15's age_gender_model.bin: {:?}",
        dir.display(),
        summary.files
    );
    assert_eq!(summary.tensors, 51);

    for reference in references() {
        let c = compare_with_reference(&onnx, &reference, 0).unwrap();
        println!("{}\n{c}", reference.display());
        assert_eq!(c.reference.face_api, "1.7.15");
        assert_eq!(c.faces.len(), 4, "{}", reference.display());
        let worst = c.max_abs_diff();
        assert!(
            worst <= TOLERANCE,
            "tract differs from face-api ({}) by {worst}:\n{c}",
            reference.display()
        );
        // Sanity of what is compared: plausible ages and distributions over (male, female).
        for f in &c.faces {
            assert!((1.0..100.0).contains(&f.tract.age), "{f:?}");
            assert!(
                (f.tract.gender[0] + f.tract.gender[1] - 1.0).abs() < 1e-5,
                "{f:?}"
            );
        }
    }
}

#[test]
fn reference_file_is_what_reference_mjs_prints() {
    if face_api_dir().is_none() || !node_ready() {
        return;
    }
    for (reference, backend) in references().iter().zip(["wasm", "cpu"]) {
        let committed: teacher::Reference =
            serde_json::from_str(&std::fs::read_to_string(reference).unwrap()).unwrap();
        let files: Vec<&str> = committed.results.iter().map(|r| r.file.as_str()).collect();
        let printed = run_reference(&data("teacher"), backend, &files);
        let fresh: teacher::Reference = serde_json::from_str(&printed)
            .unwrap_or_else(|e| panic!("reference.mjs printed no JSON ({e}):\n{printed}"));
        assert_eq!(fresh.backend, backend);
        assert_eq!(fresh.results.len(), committed.results.len());
        for (a, b) in fresh.results.iter().zip(&committed.results) {
            assert_eq!(a.file, b.file);
            // The same package on the same inputs; only the last bits of a float may move
            // (e.g. another CPU's SIMD path in the wasm backend).
            let d = (a.age - b.age)
                .abs()
                .max((a.gender[0] - b.gender[0]).abs())
                .max((a.gender[1] - b.gender[1]).abs());
            assert!(
                d < 1e-4,
                "{}: node now gives {a:?}, the file has {b:?}",
                a.file
            );
        }
    }
}

#[test]
fn host_commands_import_and_check() {
    let Some(dir) = face_api_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("teacher.onnx");
    let host = || common::command(env!("CARGO_BIN_EXE_agecam-host"));
    let out = run_ok(
        host()
            .arg("import-teacher")
            .arg("--manifest")
            .arg(dir.join("model/age_gender_model-weights_manifest.json"))
            .arg("--out")
            .arg(&onnx),
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains(teacher::BIN_SHA256_1_7_15), "{stdout}");
    assert!(stdout.contains("51 tensors"), "{stdout}");
    let out = run_ok(
        host()
            .arg("teacher-check")
            .arg("--model")
            .arg(&onnx)
            .arg("--reference")
            .arg(data("teacher/reference_wasm.json"))
            .args(["--runs", "5"]),
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("max abs diff vs face-api 1.7.15 (wasm backend)"),
        "{stdout}"
    );
    assert!(stdout.contains("ms per face"), "{stdout}");

    // A tolerance nothing can meet fails the command, naming the model and the reference.
    let out = host()
        .arg("teacher-check")
        .arg("--model")
        .arg(&onnx)
        .arg("--reference")
        .arg(data("teacher/reference_wasm.json"))
        .args(["--runs", "0", "--tolerance", "0"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    // Exactly equal outputs would make tolerance 0 pass; the two runtimes sum in other orders.
    assert!(
        !out.status.success(),
        "tolerance 0 passed:\n{}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains("reference_wasm.json") && stderr.contains("differs"),
        "{stderr}"
    );

    // A manifest that is not face-api's is refused with the file and the tensor named.
    let bad = tmp.path().join("bad-weights_manifest.json");
    std::fs::write(tmp.path().join("bad.bin"), [0u8; 4]).unwrap();
    std::fs::write(
        &bad,
        r#"[{"paths": ["bad.bin"], "weights": [{"name": "w", "shape": [1], "dtype": "int32"}]}]"#,
    )
    .unwrap();
    let out = host()
        .arg("import-teacher")
        .arg("--manifest")
        .arg(&bad)
        .arg("--out")
        .arg(tmp.path().join("bad.onnx"))
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad-weights_manifest.json") && stderr.contains("`w`"),
        "{stderr}"
    );
}

/// Images that are not 112×112 go through face-api's own pad-to-square and resize in Node and
/// through `teacher::faceapi_input` (the replication) in Rust: same outputs within 1e-3.
#[test]
fn faceapi_preprocessing_matches_node_on_other_sizes() {
    let Some(dir) = face_api_dir() else { return };
    if !node_ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("teacher.onnx");
    let manifest = dir.join("model/age_gender_model-weights_manifest.json");
    teacher::import_teacher(&manifest, &onnx).unwrap();
    let open = |f: &str| image::open(data(f)).unwrap().to_rgb8();
    let astronaut = open("faces/astronaut_eileen_collins.jpg");
    let hopper = open("faces/grace_hopper_navy_portrait.jpg");
    let inputs = [
        // 300×377: taller than wide by an odd amount.
        ("portrait_300x377.png", open("faces/luis_pedro_coelho.jpg")),
        // Wider than high by an odd amount, around the face.
        (
            "wide_161x120.png",
            image::imageops::crop_imm(&astronaut, 170, 40, 161, 120).to_image(),
        ),
        // Square but not 112: resized only.
        (
            "square_300.png",
            image::imageops::crop_imm(&hopper, 100, 60, 300, 300).to_image(),
        ),
        // Smaller than 112: upsampled.
        (
            "small_60x47.png",
            image::imageops::resize(
                &image::imageops::crop_imm(&hopper, 120, 80, 240, 188).to_image(),
                60,
                47,
                image::imageops::FilterType::Triangle,
            ),
        ),
    ];
    for (name, img) in &inputs {
        img.save(tmp.path().join(name)).unwrap();
    }
    let files: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let reference = tmp.path().join("reference.json");
    std::fs::write(&reference, run_reference(tmp.path(), "cpu", &files)).unwrap();
    let c = compare_with_reference(&onnx, &reference, 0).unwrap();
    println!("{c}");
    assert_eq!(c.faces.len(), inputs.len());
    assert!(
        c.max_abs_diff() <= TOLERANCE,
        "face-api's preprocessing is not replicated:\n{c}"
    );
}
