//! Seed corpora for the fuzz targets in `fuzz/`, written by an ignored test from the repository's
//! own data: the bundled frames, the shipped config and manifest, the test networks, the label
//! formats of the datasets, the files the fleet push reads (password, CA certificate) and the
//! messages the fleet collector receives (an interval as the daemon publishes it).
//!
//! Seeds are generated rather than committed so they follow the code (a changed config key or
//! a new model format shows up in the next run) and so no copy of a multi-megabyte model sits
//! in git. It writes to
//! `$AGECAM_FUZZ_SEEDS` or `fuzz/seeds/`, one folder per target.
//!
//! Run it with `cargo test --features onnx-writer --test fuzz_seeds -- --ignored` (the
//! workspace's `cargo test --workspace` enables that feature).

use agecam::capture::convert::strip_huffman_tables;
use agecam::model::onnx_build::tests_support::tiny_age_gender_onnx;
use image::{imageops::FilterType, ImageFormat, RgbImage};
use std::io::Cursor;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

/// Small versions of the bundled camera frames: small seeds keep the fuzzer fast, and the
/// decoder's paths do not depend on the picture size.
fn small_frames() -> Vec<RgbImage> {
    let dir = repo().join("tests/data/frames");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no frames in {}", dir.display());
    files
        .iter()
        .map(|f| {
            image::open(f)
                .unwrap()
                .resize_exact(32, 24, FilterType::Triangle)
                .to_rgb8()
        })
        .collect()
}

/// A raw-frame seed: format index, little-endian u16 width and height, then the buffer (the
/// layout `fuzz_targets/raw_frame.rs` reads).
fn raw_frame(format: u8, width: u16, height: u16, buf: &[u8]) -> Vec<u8> {
    let mut seed = vec![format];
    seed.extend_from_slice(&width.to_le_bytes());
    seed.extend_from_slice(&height.to_le_bytes());
    seed.extend_from_slice(buf);
    seed
}

fn write_all(dir: &Path, target: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
#[ignore = "writes the fuzzing seed corpora; run by fuzz/ci.sh"]
fn write_fuzz_seeds() {
    let out = std::env::var_os("AGECAM_FUZZ_SEEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("fuzz/seeds"));

    // Camera frames and still images.
    let frames = small_frames();
    let mut mjpeg = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let jpeg = encode(frame, ImageFormat::Jpeg);
        let stripped = strip_huffman_tables(&jpeg);
        let mut padded = stripped.clone();
        padded.extend_from_slice(&[0; 16]);
        mjpeg.push((format!("frame{i}_with_dht.jpg"), jpeg.clone()));
        mjpeg.push((format!("frame{i}_without_dht.mjpeg"), stripped.clone()));
        mjpeg.push((format!("frame{i}_zero_padded.mjpeg"), padded));
        mjpeg.push((
            format!("frame{i}_truncated.mjpeg"),
            stripped[..stripped.len() / 2].to_vec(),
        ));
        mjpeg.push((format!("frame{i}.png"), encode(frame, ImageFormat::Png)));
    }
    let mjpeg: Vec<(&str, Vec<u8>)> = mjpeg.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    write_all(&out, "mjpeg", &mjpeg);

    // The BlazeFace TFLite file the converter is tested on, whole and cut short.
    let tflite =
        std::fs::read(repo().join("tests/data/blazeface/face_detection_short_range.tflite"))
            .unwrap();
    write_all(
        &out,
        "tflite_model",
        &[
            ("blazeface.tflite", tflite.clone()),
            (
                "blazeface_truncated.tflite",
                tflite[..tflite.len() / 3].to_vec(),
            ),
        ],
    );

    // Raw buffers in every format, of the right length and of wrong ones.
    let frame = &frames[0];
    let (w, h) = (frame.width() as u16, frame.height() as u16);
    let rgb = frame.as_raw().clone();
    let grey: Vec<u8> = rgb.as_chunks::<3>().0.iter().map(|p| p[1]).collect();
    let yuyv: Vec<u8> = rgb
        .as_chunks::<6>()
        .0
        .iter()
        .flat_map(|p| [p[1], p[2], p[4], p[0]])
        .collect();
    let jpeg = strip_huffman_tables(&encode(frame, ImageFormat::Jpeg));
    write_all(
        &out,
        "raw_frame",
        &[
            ("mjpeg", raw_frame(0, w, h, &jpeg)),
            ("yuyv", raw_frame(1, w, h, &yuyv)),
            ("yuyv_short", raw_frame(1, w, h, &yuyv[..yuyv.len() - 3])),
            ("yuyv_long", raw_frame(1, w, h - 2, &yuyv)),
            ("yuyv_odd_width", raw_frame(1, w - 1, h, &yuyv)),
            ("rgb3", raw_frame(2, w, h, &rgb)),
            ("rgb3_short", raw_frame(2, w, h, &rgb[..rgb.len() / 2])),
            ("grey", raw_frame(3, w, h, &grey)),
            ("grey_zero_size", raw_frame(3, 0, h, &grey)),
        ],
    );

    // Configuration: the shipped file and one file per section with values at the edges.
    let shipped = std::fs::read(repo().join("deploy/agecam.toml")).unwrap();
    write_all(
        &out,
        "config",
        &[
            ("shipped.toml", shipped),
            ("empty.toml", Vec::new()),
            ("camera.toml", b"[camera]\ndevice = \"/dev/video0\"\nwidth = 640\nheight = 480\nfps = 15\n".to_vec()),
            ("detector.toml", b"[detector]\nkind = \"seeta\"\nscore_threshold = 3.5\nmin_face_size = 40\nmax_faces = 4\ncrop_margin = 0.25\n".to_vec()),
            ("stats.toml", b"[stats]\nunit_id = \"hall-2\"\ninterval_minutes = 15\nage_buckets = [0, 18, 30, 45, 65]\n".to_vec()),
            ("push.toml", b"[push]\nenabled = true\nhost = \"broker.example.org\"\ntls = true\nca_file = \"/etc/agecam/ca.pem\"\nretry_seconds = 30\n".to_vec()),
            ("typo.toml", b"[camra]\nfps = = 3\n".to_vec()),
        ],
    );

    // Dataset labels: UTKFace names (good and the malformed kinds in the real set) and a
    // Kaggle train.csv, one seed per line kind.
    write_all(
        &out,
        "dataset",
        &[
            ("utk_chip", b"100_1_2_20170105174847679.jpg.chip.jpg".to_vec()),
            ("utk_plain", b"29_0_4_20170103230112345.jpg".to_vec()),
            ("utk_missing_field", b"39_1_20170116174525125.jpg.chip.jpg".to_vec()),
            ("kaggle_csv", "\u{feff}ID,Class\n1.jpg,MIDDLE\n2.jpg,YOUNG\n3.jpg,ANCIENT\n\nnonsense\n4.jpg , OLD\r\n".as_bytes().to_vec()),
        ],
    );

    // The model manifest and its signature as shipped.
    let manifest = std::fs::read(repo().join("models/manifest.json")).unwrap();
    let signature = std::fs::read(repo().join("models/manifest.json.minisig")).unwrap();
    write_all(
        &out,
        "manifest",
        &[
            ("manifest.json", manifest.clone()),
            ("manifest.json.minisig", signature.clone()),
        ],
    );

    // A model bundle: the shipped manifest and signature (which verify) with small stand-ins
    // for the model files (which then fail their hashes), in the canonical form; and with the
    // stand-ins left out.
    let entries = agecam::model::manifest::parse_entries(&manifest).unwrap();
    let names = agecam::model::bundle::listed_files(&entries).unwrap();
    let stand_in = b"not the network".to_vec();
    let mut files = vec![
        ("manifest.json", &manifest[..]),
        ("manifest.json.minisig", &signature[..]),
    ];
    let head = files.clone();
    files.extend(names.iter().map(|n| (n.as_str(), &stand_in[..])));
    write_all(
        &out,
        "model_bundle",
        &[
            (
                "stand_ins.tar",
                agecam::model::bundle::write_canonical(Vec::new(), files).unwrap(),
            ),
            (
                "manifest_only.tar",
                agecam::model::bundle::write_canonical(Vec::new(), head).unwrap(),
            ),
        ],
    );

    // ONNX models: the tiny test network whole and cut at a few points, and the start of the
    // shipped models (their first kilobytes hold the graph's opening, all a fuzzer needs).
    let tiny = tiny_age_gender_onnx(16);
    let int8 = std::fs::read(repo().join("models/age_gender_int8.onnx")).unwrap();
    let blaze = std::fs::read(repo().join("models/blazeface_short_range.onnx")).unwrap();
    write_all(
        &out,
        "onnx_model",
        &[
            ("tiny.onnx", tiny.clone()),
            ("tiny_half.onnx", tiny[..tiny.len() / 2].to_vec()),
            ("tiny_minus_one.onnx", tiny[..tiny.len() - 1].to_vec()),
            ("int8_head.onnx", int8[..4096].to_vec()),
            ("blazeface_head.onnx", blaze[..4096].to_vec()),
        ],
    );

    // The SeetaFace cascade: its start, where the reader learns the structure.
    let seeta = std::fs::read(repo().join("models/seeta_fd_frontal_v1.0.bin")).unwrap();
    write_all(
        &out,
        "seeta_model",
        &[
            ("head_1k.bin", seeta[..1024].to_vec()),
            ("head_8k.bin", seeta[..8192].to_vec()),
        ],
    );

    // What the fleet push parses itself (first byte: 0 password file, 1 CA PEM, 2 topic):
    // passwords with each line end, an empty first line, a PEM CA certificate (a self-signed EC
    // one made for these seeds, no key kept), text that is no PEM, and topics good and bad.
    let ca_pem = b"-----BEGIN CERTIFICATE-----\n\
MIIBkjCCATegAwIBAgIUBGpAKW4PuOPOMSF1FwpfZBQSLxAwCgYIKoZIzj0EAwIw\n\
HjEcMBoGA1UEAwwTYWdlY2FtIGZ1enogc2VlZCBDQTAeFw0yNjEyMDIxNjQ1MDVa\n\
Fw0zNjExMjkxNjQ1MDVaMB4xHDAaBgNVBAMME2FnZWNhbSBmdXp6IHNlZWQgQ0Ew\n\
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARy3p9Igo/RDztB7EoOGUzkswnvYmg9\n\
rvBRRfh+jNp3Lsp1YHCkl5EK1VanYRBsIbnAAX7zTKqli0ix6aQD0bMQo1MwUTAd\n\
BgNVHQ4EFgQUyRVQZTSeQ2GOpY1JRiRKyE2TGjgwHwYDVR0jBBgwFoAUyRVQZTSe\n\
Q2GOpY1JRiRKyE2TGjgwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBG\n\
AiEA8h12Oq3qPPXqbLErNfoqWc4BPoRf08yXFdEMveZG+94CIQCaVn+mW6buu5I8\n\
vLqZPIrLeLqyZ7r+AT0ZTmzJORTicg==\n\
-----END CERTIFICATE-----\n";
    let part = |kind: u8, bytes: &[u8]| [&[kind][..], bytes].concat();
    write_all(
        &out,
        "push_files",
        &[
            ("password_lf", part(0, b"s3cret\nignored\n")),
            ("password_crlf", part(0, b"s3cret\r\n")),
            ("password_no_end", part(0, b"s3cret")),
            ("password_empty_line", part(0, b"\nsecond\n")),
            ("ca_pem", part(1, ca_pem)),
            ("ca_not_pem", part(1, b"not a certificate")),
            ("topic", part(2, b"agecam/hall/intervals")),
            ("topic_wildcard", part(2, b"agecam/+/intervals")),
        ],
    );

    // The export range of `agecam stats export --since/--until`.
    write_all(
        &out,
        "stats_time",
        &[
            ("date", b"2026-11-23".to_vec()),
            ("timestamp", b"2026-11-23T08:00:00Z".to_vec()),
            ("offset", b"2026-11-23T08:00:00+01:00".to_vec()),
        ],
    );

    // The statistics database as the daemon leaves it, with one interval saved.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stats.db");
    {
        let mut store = agecam::stats::store::Store::open(&db).unwrap();
        let mut cells = std::collections::BTreeMap::new();
        cells.insert(("18-29".to_string(), "female".to_string()), 3);
        store
            .save(&agecam::stats::aggregate::IntervalStats {
                unit_id: "hall-2".into(),
                start: 1_795_392_000,
                length_s: 900,
                uptime_s: 900.0,
                frames: 13_500,
                camera_faults: 0,
                cells,
                attention: [(
                    ("18-29".to_string(), "female".to_string()),
                    agecam::stats::aggregate::CellAttention {
                        posed: 3,
                        watchers: 2,
                        attention_s: 4.5,
                    },
                )]
                .into(),
                dwell_total_s: 12.5,
                dwell_max_s: 6.0,
            })
            .unwrap();
    }
    write_all(
        &out,
        "stats_store",
        &[("one_interval.db", std::fs::read(&db).unwrap())],
    );

    // Messages as the fleet collector receives them (topic, newline, payload): the interval
    // above as the unit publishes it (exactly its `stats export --format json` line), with every
    // cell shown (k = 1) and under the default k = 5 (cells merged or withheld), a schema 1
    // message as older units send it, and the kinds the collector must refuse.
    let saved = agecam::stats::store::Store::open(&db)
        .unwrap()
        .load(i64::MIN, i64::MAX)
        .unwrap()
        .remove(0);
    let message = |topic: &str, payload: &str| format!("{topic}\n{payload}").into_bytes();
    let published = |k: u32| {
        agecam::stats::privacy::to_json(&agecam::stats::privacy::publish(
            &saved,
            &agecam::stats::privacy::PrivacySettings { k, epsilon: 0.0 },
        ))
    };
    let topic = "agecam/hall-2/intervals";
    let every_cell = published(1);
    let schema_1 = r#"{"id":"hall@1795392000","unit_id":"hall","start":1795392000,"end":1795392900,"uptime_s":900.0,"frames":27000,"camera_faults":0,"cells":[{"age_bucket":"25-34","gender":"female","visits":6},{"age_bucket":"25-34","gender":"male","visits":5}],"suppressed_cells":1,"dwell_mean_s":7.5,"start_time":"2026-11-23T00:00:00Z","end_time":"2026-11-23T00:15:00Z"}"#;
    write_all(
        &out,
        "fleet_message",
        &[
            ("every_cell", message(topic, &every_cell)),
            ("k5", message(topic, &published(5))),
            ("schema_1", message("agecam/hall/intervals", schema_1)),
            ("no_topic", schema_1.as_bytes().to_vec()),
            ("other_unit", message("agecam/lobby/intervals", &every_cell)),
            (
                "schema_3",
                message(topic, &every_cell.replace("\"schema\":2", "\"schema\":3")),
            ),
            (
                "truncated",
                message(topic, &every_cell[..every_cell.len() / 2]),
            ),
        ],
    );
    println!("fuzz seeds written to {}", out.display());
}
