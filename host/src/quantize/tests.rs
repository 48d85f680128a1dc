//! Quantizer tests on a small MobileNet-like network built here (no downloaded data).

use super::*;
use agecam::model::age_gender::{AgeGenderModel, ModelInfo};
use agecam::model::inspect::explain;
use agecam::model::onnx_build::{Attr, GraphBuilder};
use agecam::model::Gender;
use rand::{RngExt, SeedableRng};
use tract_onnx::prelude::DatumType;

const SIZE: i64 = 16;

/// A conv net with MobileNetV2's shapes of layer: a 3×3 stem (stride 2) with ReLU6, one
/// inverted residual block (1×1 expand + ReLU6, 3×3 depthwise + ReLU6, linear 1×1 project,
/// Add), a 1×1 "last" conv + ReLU6, global average pooling and the two Gemm heads (transB=1,
/// as the exporter writes them). He-initialised random weights, small random biases.
fn small_net(seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut g = GraphBuilder::new("small_net");
    g.input("input", &[None, Some(3), Some(SIZE), Some(SIZE)]);
    let mut n = 0;
    let mut conv = |g: &mut GraphBuilder,
                    x: &str,
                    cin: i64,
                    cout: i64,
                    k: i64,
                    stride: i64,
                    group: i64,
                    relu6: bool|
     -> String {
        n += 1;
        let fan_in = (cin / group) * k * k;
        let a = (6.0 / fan_in as f32).sqrt();
        let w: Vec<f32> = (0..cout * fan_in)
            .map(|_| rng.random_range(-a..a))
            .collect();
        let b: Vec<f32> = (0..cout).map(|_| rng.random_range(-0.1..0.1)).collect();
        let (wn, bn, out) = (format!("w{n}"), format!("b{n}"), format!("conv{n}"));
        let p = k / 2;
        g.initializer(&wn, &[cout, cin / group, k, k], &w)
            .initializer(&bn, &[cout], &b)
            .node(
                "Conv",
                &[x, &wn, &bn],
                &[&out],
                &[
                    Attr::Ints("kernel_shape", &[k, k]),
                    Attr::Ints("strides", &[stride, stride]),
                    Attr::Ints("pads", &[p, p, p, p]),
                    Attr::Int("group", group),
                ],
            );
        if !relu6 {
            return out;
        }
        let (lo, hi, y) = (format!("zero{n}"), format!("six{n}"), format!("relu{n}"));
        g.initializer(&lo, &[], &[0.0])
            .initializer(&hi, &[], &[6.0])
            .node("Clip", &[&out, &lo, &hi], &[&y], &[]);
        y
    };
    let stem = conv(&mut g, "input", 3, 16, 3, 2, 1, true);
    let expand = conv(&mut g, &stem, 16, 64, 1, 1, 1, true);
    let dw = conv(&mut g, &expand, 64, 64, 3, 1, 64, true);
    let project = conv(&mut g, &dw, 64, 16, 1, 1, 1, false);
    g.node("Add", &[&project, &stem], &["sum"], &[]);
    let last = conv(&mut g, "sum", 16, 256, 1, 1, 1, true);
    g.node("GlobalAveragePool", &[&last], &["gap"], &[]).node(
        "Flatten",
        &["gap"],
        &["flat"],
        &[Attr::Int("axis", 1)],
    );
    for (name, classes, gain) in [("age", 101, 1.5f32), ("gender", 2, 1.0)] {
        let a = gain * (6.0 / 256f32).sqrt();
        let w: Vec<f32> = (0..classes * 256)
            .map(|_| rng.random_range(-a..a))
            .collect();
        g.initializer(&format!("{name}_w"), &[classes, 256], &w)
            .initializer(
                &format!("{name}_b"),
                &[classes],
                &vec![0.0; classes as usize],
            )
            .node(
                "Gemm",
                &["flat", &format!("{name}_w"), &format!("{name}_b")],
                &[name],
                &[Attr::Int("transB", 1)],
            )
            .output(name, &[None, Some(classes)]);
    }
    let info = ModelInfo {
        input_size: SIZE as u32,
        mean: [0.5; 3],
        std: [0.5; 3],
        age_bins: (0..=100).map(|a| a as f32).collect(),
        gender_labels: [Gender::Male, Gender::Female],
        crop_margin: None,
        crop: Default::default(),
        age_prior: None,
    };
    for (key, value) in info.to_metadata() {
        g.metadata(key, &value);
    }
    g.metadata("agecam.arch", "test");
    g.to_bytes()
}

/// Face-like test pictures: smooth colour gradients plus noise, in sizes other than the
/// model's (calibration must crop them as the device does).
fn pictures(n: usize, seed: u64) -> Vec<RgbImage> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (r, g, b) = (
                rng.random_range(0..200u32),
                rng.random_range(0..200u32),
                rng.random_range(0..200u32),
            );
            let fx = rng.random_range(1..6u32);
            let w = rng.random_range(18..30u32);
            let mut noise = rand::rngs::StdRng::seed_from_u64(rng.random_range(0..1000u64));
            RgbImage::from_fn(w, w, |x, y| {
                let jitter = noise.random_range(0..40u32);
                image::Rgb([
                    ((r + x * fx + jitter) % 256) as u8,
                    ((g + y * 3 + jitter / 2) % 256) as u8,
                    ((b + (x + y) * fx) % 256) as u8,
                ])
            })
        })
        .collect()
}

/// (age logits, gender logits) of `path` on `images`, batch of all, via plain tract.
fn logits(path: &Path, images: &[RgbImage]) -> (Vec<f32>, Vec<f32>) {
    let model = AgeGenderModel::load(path).unwrap();
    let crops: Vec<RgbImage> = images
        .iter()
        .map(|img| {
            let whole = FaceBox {
                x: 0.0,
                y: 0.0,
                width: img.width() as f32,
                height: img.height() as f32,
                score: 1.0,
                landmarks: None,
            };
            crop_face(img, &whole, 0.0, SIZE as u32)
        })
        .collect();
    let input = model.info().input_tensor(&crops).unwrap();
    let plan = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let out = plan.run(tvec!(input.into_tvalue())).unwrap();
    let read = |i: usize| {
        out[i]
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    };
    (read(0), read(1))
}

/// Root-mean-square difference relative to the reference's RMS.
fn relative_rms(reference: &[f32], other: &[f32]) -> f32 {
    let diff: f32 = reference
        .iter()
        .zip(other)
        .map(|(a, b)| (a - b).powi(2))
        .sum();
    let norm: f32 = reference.iter().map(|a| a * a).sum();
    (diff / norm).sqrt()
}

/// Writes `small_net` and its quantized forms into `dir`; returns (f32, weight-only,
/// integer pointwise, integer all) paths.
fn all_forms(dir: &Path) -> [PathBuf; 4] {
    let float = small_net(7);
    let calib = pictures(40, 1);
    let paths = ["f32", "weights", "pointwise", "all"].map(|n| dir.join(format!("{n}.onnx")));
    std::fs::write(&paths[0], &float).unwrap();
    let forms = [
        (Form::WeightOnly, IntegerLayers::Pointwise),
        (Form::Integer, IntegerLayers::Pointwise),
        (Form::Integer, IntegerLayers::All),
    ];
    for ((form, layers), path) in forms.into_iter().zip(&paths[1..]) {
        let opts = QuantizeOptions {
            form,
            integer_layers: layers,
            float_below: 0,
            ..QuantizeOptions::default()
        };
        let (bytes, report) = quantize_model(&float, &paths[0], &opts, &calib).unwrap();
        eprintln!("{}: {report}", path.display());
        std::fs::write(path, bytes).unwrap();
    }
    paths
}

#[test]
fn per_channel_symmetric_quantization_matches_hand_values() {
    // Two output channels (axis 0) of three weights each; exact binary values, so the
    // expected integers do not hang on float rounding.
    let w = [127.0, -63.5, 0.0, 0.0, 0.0, 0.0];
    let (q, s) = quantize_per_channel(&w, &[2, 3], 0);
    assert_eq!(s, vec![1.0, 1.0]); // the zero channel gets scale 1
    assert_eq!(q, vec![127, -64, 0, 0, 0, 0]); // −63.5 rounds away from zero
                                               // Axis 1 of a [3, 2] matrix (Gemm's B without transB): columns are the channels.
    let w = [254.0, -0.6, -127.0, 0.25, 0.0, -1.0];
    let (q, s) = quantize_per_channel(&w, &[3, 2], 1);
    assert_eq!(s, vec![2.0, 1.0 / 127.0]);
    assert_eq!(q, vec![127, -76, -64, 32, 0, -127]);
    // The largest magnitude always maps to ±127 and nothing exceeds it.
    let w: Vec<f32> = (0..60)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.013)
        .collect();
    let (q, s) = quantize_per_channel(&w, &[4, 15], 0);
    for c in 0..4 {
        let row = &q[c * 15..(c + 1) * 15];
        assert_eq!(row.iter().map(|v| v.unsigned_abs()).max(), Some(127));
        for (k, v) in row.iter().enumerate() {
            assert!((*v as f32 * s[c] - w[c * 15 + k]).abs() <= s[c] / 2.0 + 1e-6);
        }
    }
}

#[test]
fn activation_params_include_zero_and_cover_the_range() {
    assert_eq!(activation_params(0.0, 6.0), (6.0 / 255.0, 0));
    let (s, z) = activation_params(-1.0, 3.0);
    assert!((s - 4.0 / 255.0).abs() < 1e-7);
    assert_eq!(z, 64); // 1/(4/255) = 63.75
                       // A range that excludes 0 is widened to include it.
    let (s, z) = activation_params(2.0, 5.1);
    assert!((s - 0.02).abs() < 1e-7 && z == 0);
    assert_eq!(activation_params(0.0, 0.0).1, 0);
}

#[test]
fn percentile_calibration_ignores_rare_outliers() {
    let mut st = RangeStats::default();
    // 0..10000 in two batches, the second widening the histogram, then one huge outlier.
    let a: Vec<f32> = (0..5000).map(|i| i as f32).collect();
    let b: Vec<f32> = (5000..10000).map(|i| i as f32).collect();
    st.add(&a);
    st.add(&b);
    st.add(&[1e5]);
    assert_eq!(st.count(), 10001);
    assert_eq!(st.range(CalibMethod::MinMax), Some((0.0, 1e5)));
    let (lo, hi) = st.range(CalibMethod::Percentile(99.9)).unwrap();
    // 10 values may be dropped per side: the top of the range is ~9990, give or take a bin
    // (2 × 131072 / 8192 = 32 wide).
    assert!((9950.0..=10030.0).contains(&hi), "{hi}");
    assert!((0.0..=40.0).contains(&lo), "{lo}");
    // Symmetric data with negative tail.
    let mut st = RangeStats::default();
    let c: Vec<f32> = (-1000..=1000).map(|i| i as f32 / 100.0).collect();
    st.add(&c);
    let (lo, hi) = st.range(CalibMethod::Percentile(99.0)).unwrap();
    assert!(
        (-9.95..=-9.75).contains(&lo) && (9.75..=9.95).contains(&hi),
        "{lo} {hi}"
    );
    assert_eq!(
        RangeStats::default().range(CalibMethod::Percentile(99.0)),
        None
    );
}

#[test]
fn quantized_forms_load_predict_close_and_run_integer_convs() {
    let dir = tempfile::tempdir().unwrap();
    let [f32_path, weights, pointwise, all] = all_forms(dir.path());
    let test_images = pictures(12, 99);
    let (age_ref, gender_ref) = logits(&f32_path, &test_images);
    let spread = {
        let mean = age_ref.iter().sum::<f32>() / age_ref.len() as f32;
        (age_ref.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / age_ref.len() as f32).sqrt()
    };
    assert!(spread > 0.5, "test net's logits are too flat ({spread})");

    let reference = AgeGenderModel::load(&f32_path).unwrap();
    let crops: Vec<RgbImage> = test_images
        .iter()
        .map(|i| image::imageops::resize(i, 16, 16, image::imageops::FilterType::Triangle))
        .collect();
    let expected = reference.predict(&crops).unwrap();
    let ages: Vec<f32> = expected.iter().map(|e| e.age).collect();
    let age_spread = ages.iter().cloned().fold(f32::MIN, f32::max)
        - ages.iter().cloned().fold(f32::MAX, f32::min);
    eprintln!("f32 ages {ages:?}");

    // Bounds: a few times the error the quantizer actually makes. A wrong scale axis or a
    // bias in the wrong units gives errors of tens of percent and tens of years.
    for (path, max_rel, max_age) in [
        (&weights, 0.025, 0.5),
        (&pointwise, 0.035, 0.75),
        (&all, 0.035, 0.75),
    ] {
        let (age, gender) = logits(path, &test_images);
        let (ra, rg) = (
            relative_rms(&age_ref, &age),
            relative_rms(&gender_ref, &gender),
        );
        let model = AgeGenderModel::load(path).unwrap();
        let got = model.predict(&crops).unwrap();
        let worst_age = got
            .iter()
            .zip(&expected)
            .map(|(g, e)| (g.age - e.age).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{}: age logits rel RMS {ra:.4}, gender {rg:.4}, worst age {worst_age:.3} years (f32 ages span {age_spread:.1})",
            path.display()
        );
        assert!(
            ra < max_rel && rg < max_rel,
            "{}: {ra} {rg}",
            path.display()
        );
        assert!(worst_age < max_age, "{}: {worst_age}", path.display());
        // Metadata is kept and the quantization is described.
        assert_eq!(model.info(), reference.info());
    }

    // (b) Size: the int8 weights are ~4x smaller than f32; biases and scales stay float.
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let ratio = size(&f32_path) / size(&weights);
    assert!(ratio >= 3.0, "weight-only file only {ratio:.2}x smaller");

    // (c) tract keeps the integer convs integer after optimisation.
    let e = explain(&weights).unwrap();
    eprintln!("{e}");
    assert_eq!(e.integer_layers(), 0, "{e}");
    assert!(e.float_layers() >= 5, "{e}");
    let e = explain(&pointwise).unwrap();
    eprintln!("{e}");
    assert_eq!(e.integer_layers(), 3, "three 1x1 convs: {e}");
    assert!(
        e.layers
            .iter()
            .filter(|l| l.is_integer())
            .all(|l| l.accumulator == Some(DatumType::I32) && l.inputs.contains(&DatumType::I8)),
        "{e}"
    );
    let e = explain(&all).unwrap();
    eprintln!("{e}");
    assert_eq!(e.integer_layers(), 5, "every conv: {e}");
}

#[test]
fn metadata_is_kept_and_mistakes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let float = small_net(3);
    let path = dir.path().join("m.onnx");
    let opts = QuantizeOptions {
        form: Form::WeightOnly,
        float_below: 0,
        ..QuantizeOptions::default()
    };
    let (bytes, report) = quantize_model(&float, &path, &opts, &[]).unwrap();
    assert_eq!(report.int8_weights, 7);
    let model = pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let meta: HashMap<_, _> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(meta.get("agecam.arch"), Some(&"test"));
    assert!(meta[QUANTIZATION_KEY].starts_with("weight-only"));
    // Every float weight is gone; only biases (rank 1) and scalars stay float.
    let g = model.graph.unwrap();
    assert!(g
        .initializer
        .iter()
        .all(|t| t.data_type != FLOAT || t.dims.len() <= 1));

    // Quantizing twice, garbage, and a missing calibration set.
    let err = quantize_model(&bytes, &path, &opts, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("already quantized"), "{err}");
    let err = quantize_model(b"not a model at all", &path, &opts, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("m.onnx is not an ONNX file") && err.contains("agecam-host export"),
        "{err}"
    );
    let integer = QuantizeOptions {
        float_below: 0,
        ..QuantizeOptions::default()
    };
    let err = quantize_model(&float, &path, &integer, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--calib"), "{err}");
    let err = load_calibration_images(dir.path(), 10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no PNG or JPEG"), "{err}");

    // A crop cache folder is accepted (its crops/ is used), and --max-calib picks evenly.
    let crops = dir.path().join("cache/crops");
    std::fs::create_dir_all(&crops).unwrap();
    for (i, img) in pictures(6, 5).iter().enumerate() {
        img.save(crops.join(format!("{i}.png"))).unwrap();
    }
    assert_eq!(
        load_calibration_images(&dir.path().join("cache"), 4)
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn a_dead_channel_with_a_bias_gets_a_scale_that_keeps_the_bias_in_int32() {
    // Channel 0: weights ~0 but (folded BatchNorm) bias 5 at x_scale 1/255 would need a bias
    // of ~1.6e11 units at scale 1e-9/127; the floor raises its scale instead.
    let floor = [5.0 / (MAX_BIAS / 255.0), 0.0];
    let (q, s) = quantize_per_channel_floor(&[1e-9, -1e-9, 0.5, 0.25], &[2, 2], 0, &floor);
    assert_eq!(s[0], floor[0]);
    assert_eq!(&q[..2], &[0, 0]);
    assert_eq!((s[1], &q[2..]), (0.5 / 127.0, &[127i8, 64][..]));
    let bias_units = 5.0 / ((1.0 / 255.0) * s[0]);
    assert!(bias_units <= MAX_BIAS * 1.001, "{bias_units}");
}

#[test]
fn weights_smaller_than_float_below_stay_float_and_the_rest_become_int8() {
    let float = small_net(3);
    let path = Path::new("m.onnx");
    let model = pb::ModelProto::decode(float.as_slice()).unwrap();
    let g = model.graph.unwrap();
    let weights: Vec<(String, usize)> = g
        .node
        .iter()
        .filter(|n| matches!(n.op_type.as_str(), "Conv" | "Gemm"))
        .filter_map(|n| g.initializer.iter().find(|t| t.name == n.input[1]))
        .map(|t| (t.name.clone(), t.dims.iter().product::<i64>() as usize))
        .collect();
    let mut sizes: Vec<usize> = weights.iter().map(|w| w.1).collect();
    sizes.sort();
    let limit = sizes[sizes.len() / 2];
    let small: Vec<&String> = weights
        .iter()
        .filter(|w| w.1 < limit)
        .map(|w| &w.0)
        .collect();
    assert!(
        !small.is_empty() && small.len() < weights.len(),
        "{sizes:?}"
    );

    let opts = QuantizeOptions {
        form: Form::WeightOnly,
        float_below: limit,
        ..QuantizeOptions::default()
    };
    let (bytes, report) = quantize_model(&float, path, &opts, &[]).unwrap();
    assert_eq!(report.float_weights, small.len());
    assert_eq!(report.int8_weights, weights.len() - small.len());
    assert!(
        report.description.contains("kept float"),
        "{}",
        report.description
    );
    let out = pb::ModelProto::decode(bytes.as_slice())
        .unwrap()
        .graph
        .unwrap();
    for (name, size) in &weights {
        let kept = out
            .initializer
            .iter()
            .any(|t| &t.name == name && t.data_type == FLOAT);
        assert_eq!(kept, *size < limit, "{name} ({size} values)");
    }
}
