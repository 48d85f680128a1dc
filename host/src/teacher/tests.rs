//! Tests of the teacher: the reader, the importer against a direct implementation of face-api,
//! face-api's preprocessing.

use super::*;
use crate::onnx_kit::hwio_to_oihw;
use agecam::model::age_gender::{keys, AGE_OUTPUT, GENDER_OUTPUT};
use agecam::Error;
use image::RgbImage;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tract_onnx::prelude::*;

/// A tensor to put into a test manifest: float32, or uint8 with (scale, min).
struct Spec {
    name: String,
    shape: Vec<usize>,
    quantized: Option<(Vec<u8>, f64, f64)>,
    float: Vec<f32>,
}

/// Writes `model-weights_manifest.json` and `model.bin` into `dir`; returns the manifest.
fn write_manifest(dir: &Path, specs: &[Spec], extra_bytes: usize) -> PathBuf {
    let mut bin = Vec::new();
    let mut weights = Vec::new();
    for s in specs {
        match &s.quantized {
            Some((q, scale, min)) => {
                bin.extend_from_slice(q);
                weights.push(json!({"name": s.name, "shape": s.shape, "dtype": "float32",
                    "quantization": {"dtype": "uint8", "scale": scale, "min": min}}));
            }
            None => {
                bin.extend(s.float.iter().flat_map(|v| v.to_le_bytes()));
                weights.push(json!({"name": s.name, "shape": s.shape, "dtype": "float32"}));
            }
        }
    }
    bin.extend(std::iter::repeat_n(0u8, extra_bytes));
    std::fs::write(dir.join("model.bin"), bin).unwrap();
    let manifest = dir.join("model-weights_manifest.json");
    let text = json!([{"paths": ["model.bin"], "weights": weights}]).to_string();
    std::fs::write(&manifest, text).unwrap();
    manifest
}

fn err_text(r: Result<TfjsWeights, Error>) -> String {
    r.expect_err("must be refused").to_string()
}

#[test]
fn dequantizes_uint8_and_reads_float32() {
    let dir = tempfile::tempdir().unwrap();
    let specs = [
        Spec {
            name: "a/filters".into(),
            shape: vec![1, 1, 2, 3],
            quantized: Some((vec![0, 1, 2, 3, 4, 255], 0.5, -1.0)),
            float: vec![],
        },
        Spec {
            name: "a/bias".into(),
            shape: vec![2],
            quantized: None,
            float: vec![1.5, -2.25],
        },
        Spec {
            name: "b".into(),
            shape: vec![1],
            // 0.1 is not exact in binary: q·scale + min in f64, then rounded to f32.
            quantized: Some((vec![3], 0.1, -0.2)),
            float: vec![],
        },
    ];
    let w = read_tfjs_weights(&write_manifest(dir.path(), &specs, 0)).unwrap();
    assert_eq!(w.tensors.len(), 3);
    let a = &w.tensors["a/filters"];
    assert_eq!(a.shape, [1, 1, 2, 3]);
    // min + q·scale by hand: −1 + 0.5·q.
    assert_eq!(a.values, [-1.0, -0.5, 0.0, 0.5, 1.0, 126.5]);
    assert_eq!(w.tensors["a/bias"].values, [1.5, -2.25]);
    assert_eq!(w.tensors["b"].values, [(3.0f64 * 0.1 - 0.2) as f32]);
    assert_eq!(w.files.len(), 1);
    assert_eq!(w.files[0].0, "model.bin");

    // HWIO [1,1,2,3] (i, o) → OIHW [3,2,1,1]: out[o][i] = in[i][o].
    assert_eq!(
        hwio_to_oihw(&a.values, 1, 1, 2, 3),
        [-1.0, 0.5, -0.5, 1.0, 0.0, 126.5]
    );
}

#[test]
fn refuses_what_it_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let good = Spec {
        name: "t/bias".into(),
        shape: vec![2],
        quantized: None,
        float: vec![1.0, 2.0],
    };
    // Bytes after the last tensor: the .bin is not this manifest's.
    let m = write_manifest(dir.path(), std::slice::from_ref(&good), 3);
    let e = err_text(read_tfjs_weights(&m));
    assert!(
        e.contains("model.bin") && e.contains("t/bias") && e.contains("11 bytes"),
        "{e}"
    );
    // Truncated .bin.
    let m = write_manifest(dir.path(), std::slice::from_ref(&good), 0);
    let bin = dir.path().join("model.bin");
    std::fs::write(&bin, [0u8; 5]).unwrap();
    let e = err_text(read_tfjs_weights(&m));
    assert!(
        e.contains("model.bin") && e.contains("`t/bias`") && e.contains("runs past"),
        "{e}"
    );
    // Another dtype and another quantization.
    for (dtype, quant, what) in [
        ("int32", None, "dtype `int32`"),
        ("float32", Some("float16"), "quantized to `float16`"),
        ("float32", Some("uint16"), "quantized to `uint16`"),
    ] {
        let mut entry = json!({"name": "odd/tensor", "shape": [2], "dtype": dtype});
        if let Some(q) = quant {
            entry["quantization"] = json!({"dtype": q, "scale": 1.0, "min": 0.0});
        }
        std::fs::write(&bin, [0u8; 8]).unwrap();
        std::fs::write(
            &m,
            json!([{"paths": ["model.bin"], "weights": [entry]}]).to_string(),
        )
        .unwrap();
        let e = err_text(read_tfjs_weights(&m));
        assert!(
            e.contains("model-weights_manifest.json")
                && e.contains("odd/tensor")
                && e.contains(what),
            "{e}"
        );
    }
    // uint8 without min.
    std::fs::write(
        &m,
        json!([{"paths": ["model.bin"], "weights": [{"name": "q", "shape": [2],
            "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 1.0}}]}])
        .to_string(),
    )
    .unwrap();
    let e = err_text(read_tfjs_weights(&m));
    assert!(e.contains("`q`") && e.contains("min"), "{e}");
    // An unknown field.
    std::fs::write(
        &m,
        json!([{"paths": ["model.bin"], "weights": [{"name": "q", "shape": [2],
            "dtype": "float32", "group": "x"}]}])
        .to_string(),
    )
    .unwrap();
    let e = err_text(read_tfjs_weights(&m));
    assert!(e.contains("group"), "{e}");
    // A missing .bin.
    let m = write_manifest(dir.path(), std::slice::from_ref(&good), 0);
    std::fs::remove_file(&bin).unwrap();
    let e = err_text(read_tfjs_weights(&m));
    assert!(e.contains("model.bin") && e.contains("cannot read"), "{e}");
}

#[test]
fn faceapi_preprocessing_by_hand() {
    let mean = MEAN_RGB_255.map(|m| m / 255.0);
    let at = |t: &Tensor, c: usize, y: usize, x: usize| {
        t.to_plain_array_view::<f32>().unwrap()[[0, c, y, x]]
    };
    // 3 wide, 2 high: one row of zeros appended below (round(1 · 0.5) = 1 after, 0 before),
    // then 3 → 112: output row r samples source row r · 3/112.
    let img = RgbImage::from_fn(3, 2, |x, y| {
        image::Rgb([(100 + 10 * x + 50 * y) as u8, 0, 255])
    });
    let t = faceapi_input(&img);
    assert_eq!(t.shape(), [1, 3, 112, 112]);
    let px = |v: f32, c: usize| v / 255.0 - mean[c];
    // (0, 0): source (0, 0) exactly.
    assert!((at(&t, 0, 0, 0) - px(100.0, 0)).abs() < 1e-6);
    // Row 56 → source row 1.5: halfway between row 1 (150) and the zero row; column 0.
    assert!((at(&t, 0, 56, 0) - px(75.0, 0)).abs() < 1e-6);
    // Row 111 → 2.97: floor 2 and ceil clamped to 2, the zero row.
    assert!((at(&t, 2, 111, 0) - px(0.0, 2)).abs() < 1e-6);
    // Column 56 of row 0 → source column 1.5 of row 0: between 110 and 120.
    assert!((at(&t, 0, 0, 56) - px(115.0, 0)).abs() < 1e-5);
    // Blue is 255 wherever the image is, green 0.
    assert!((at(&t, 2, 0, 100) - px(255.0, 2)).abs() < 1e-6);
    assert!((at(&t, 1, 20, 20) - px(0.0, 1)).abs() < 1e-6);

    // 1 wide, 3 high: a zero column each side (difference 2: 1 after, 1 before).
    let img = RgbImage::from_pixel(1, 3, image::Rgb([200, 200, 200]));
    let t = faceapi_input(&img);
    // Column 0 → source column 0, the left padding; column 38 → 1.018: mostly the image.
    assert!((at(&t, 0, 0, 0) - px(0.0, 0)).abs() < 1e-6);
    let f = (38.0f64 * 3.0 / 112.0 - 1.0) as f32; // towards the right padding
    assert!((at(&t, 0, 0, 38) - px(200.0 * (1.0 - f), 0)).abs() < 1e-4);

    // A 112×112 crop: no padding or resizing, the device's own input tensor.
    let crop = RgbImage::from_fn(112, 112, |x, y| {
        image::Rgb([x as u8, y as u8, (x ^ y) as u8])
    });
    let device = input_info()
        .input_tensor(std::slice::from_ref(&crop))
        .unwrap();
    let ours = faceapi_input(&crop);
    let (a, b) = (
        device.to_plain_array_view::<f32>().unwrap().to_owned(),
        ours.to_plain_array_view::<f32>().unwrap().to_owned(),
    );
    let worst = a
        .iter()
        .zip(b.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-6, "{worst}");
}

// ---- A tiny TinyXception + heads, imported and run by tract, against a direct
// ---- NHWC implementation of the TF.js code (TF SAME padding, HWIO filters).

/// Deterministic pseudo-random bytes.
fn bytes(seed: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 56) as u8
        })
        .collect()
}

/// Channels of the tiny network: conv_in, reduction 0, reduction 1 (= main blocks),
/// exit reduction, exit separable.
const C: [usize; 5] = [4, 5, 6, 7, 8];

/// Collects test tensors in manifest order.
struct SpecList {
    seed: u64,
    specs: Vec<Spec>,
}

impl SpecList {
    /// A uint8 filter or FC weight: He-uniform ranges, so the signal neither dies nor
    /// explodes over the layers; the heads scaled so that both outputs move visibly with
    /// the input without saturating.
    fn quantized(&mut self, name: &str, shape: Vec<usize>) {
        let n = shape.iter().product();
        let fan_in: usize = if name.ends_with("depthwise_filter") {
            shape[0] * shape[1]
        } else {
            shape[..shape.len() - 1].iter().product()
        };
        let head = match name {
            "fc/age/weights" => 4.0,
            "fc/gender/weights" => 0.05,
            _ => 1.0,
        };
        let a = head * (6.0 / fan_in as f64).sqrt();
        let q = bytes(&mut self.seed, n);
        self.specs.push(Spec {
            name: name.to_string(),
            shape,
            quantized: Some((q, 2.0 * a / 255.0, -a)),
            float: vec![],
        });
    }

    /// A float32 bias.
    fn bias(&mut self, name: &str, n: usize) {
        self.specs.push(Spec {
            name: name.to_string(),
            shape: vec![n],
            quantized: None,
            float: (0..n).map(|i| 0.05 * (i as f32) - 0.1).collect(),
        });
    }

    fn separable(&mut self, p: &str, cin: usize, cout: usize) {
        self.quantized(&format!("{p}/depthwise_filter"), vec![3, 3, cin, 1]);
        self.quantized(&format!("{p}/pointwise_filter"), vec![1, 1, cin, cout]);
        self.bias(&format!("{p}/bias"), cout);
    }
}

/// The tensor list of face-api's manifest with small channel counts. Filters are uint8
/// (scaled so activations stay moderate), biases float32.
fn tiny_specs() -> Vec<Spec> {
    let mut b = SpecList {
        seed: 7,
        specs: Vec::new(),
    };
    b.quantized("entry_flow/conv_in/filters", vec![3, 3, 3, C[0]]);
    b.bias("entry_flow/conv_in/bias", C[0]);
    let reductions = [
        ("entry_flow/reduction_block_0", C[0], C[1]),
        ("entry_flow/reduction_block_1", C[1], C[2]),
        ("exit_flow/reduction_block", C[2], C[3]),
    ];
    for (i, (p, cin, cout)) in reductions.into_iter().enumerate() {
        b.separable(&format!("{p}/separable_conv0"), cin, cout);
        b.separable(&format!("{p}/separable_conv1"), cout, cout);
        b.quantized(
            &format!("{p}/expansion_conv/filters"),
            vec![1, 1, cin, cout],
        );
        b.bias(&format!("{p}/expansion_conv/bias"), cout);
        if i == 1 {
            for m in 0..MAIN_BLOCKS {
                for k in 0..3 {
                    let p = format!("middle_flow/main_block_{m}/separable_conv{k}");
                    b.separable(&p, C[2], C[2]);
                }
            }
        }
    }
    b.separable("exit_flow/separable_conv", C[3], C[4]);
    b.quantized("fc/age/weights", vec![C[4], 1]);
    b.specs.push(Spec {
        name: "fc/age/bias".into(),
        shape: vec![1],
        quantized: None,
        float: vec![30.0],
    });
    b.quantized("fc/gender/weights", vec![C[4], 2]);
    b.bias("fc/gender/bias", 2);
    b.specs
}

/// NHWC activation of the direct implementation.
#[derive(Clone)]
struct Nhwc {
    s: usize,
    c: usize,
    v: Vec<f32>,
}

impl Nhwc {
    fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        self.v[(y * self.s + x) * self.c + c]
    }
}

/// TF: out = ceil(in / s), pad_total = max((out − 1)·s + k − in, 0), top = total / 2.
fn tf_same(size: usize, k: usize, s: usize) -> (usize, isize) {
    let out = size.div_ceil(s);
    let total = ((out - 1) * s + k).saturating_sub(size);
    (out, (total / 2) as isize)
}

/// `tf.conv2d(x, hwio, stride, 'same') + bias` (group 1) or, with `depthwise`, the
/// depthwise conv of a `[k, k, C, 1]` filter without bias.
fn conv(
    x: &Nhwc,
    w: &TfjsTensor,
    bias: Option<&TfjsTensor>,
    stride: usize,
    depthwise: bool,
) -> Nhwc {
    let k = w.shape[0];
    let cout = if depthwise { x.c } else { w.shape[3] };
    let (out, pad) = tf_same(x.s, k, stride);
    let mut v = vec![0f32; out * out * cout];
    for oy in 0..out {
        for ox in 0..out {
            for o in 0..cout {
                let mut sum = bias.map_or(0.0, |b| b.values[o]);
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * stride + ky) as isize - pad;
                        let ix = (ox * stride + kx) as isize - pad;
                        if iy < 0 || ix < 0 || iy >= x.s as isize || ix >= x.s as isize {
                            continue;
                        }
                        let (iy, ix) = (iy as usize, ix as usize);
                        if depthwise {
                            sum += x.at(iy, ix, o) * w.values[(ky * k + kx) * x.c + o];
                        } else {
                            for i in 0..x.c {
                                sum += x.at(iy, ix, i)
                                    * w.values[((ky * k + kx) * x.c + i) * cout + o];
                            }
                        }
                    }
                }
                v[(oy * out + ox) * cout + o] = sum;
            }
        }
    }
    Nhwc { s: out, c: cout, v }
}

fn relu(x: &Nhwc) -> Nhwc {
    Nhwc {
        v: x.v.iter().map(|v| v.max(0.0)).collect(),
        ..x.clone()
    }
}

fn add(a: &Nhwc, b: &Nhwc) -> Nhwc {
    assert_eq!((a.s, a.c), (b.s, b.c));
    Nhwc {
        v: a.v.iter().zip(&b.v).map(|(a, b)| a + b).collect(),
        ..a.clone()
    }
}

/// `tf.maxPool(x, 3, 2, 'same')`: padded positions are not candidates.
fn max_pool(x: &Nhwc) -> Nhwc {
    let (out, pad) = tf_same(x.s, 3, 2);
    let mut v = vec![f32::NEG_INFINITY; out * out * x.c];
    for oy in 0..out {
        for ox in 0..out {
            for c in 0..x.c {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let iy = (oy * 2 + ky) as isize - pad;
                        let ix = (ox * 2 + kx) as isize - pad;
                        if iy >= 0 && ix >= 0 && iy < x.s as isize && ix < x.s as isize {
                            let m = &mut v[(oy * out + ox) * x.c + c];
                            *m = m.max(x.at(iy as usize, ix as usize, c));
                        }
                    }
                }
            }
        }
    }
    Nhwc { s: out, c: x.c, v }
}

/// face-api's forward pass on one NHWC image already normalised.
fn direct_forward(w: &TfjsWeights, input: &Nhwc) -> (f32, [f32; 2]) {
    let t = |n: &str| &w.tensors[n];
    let sep = |x: &Nhwc, p: &str| {
        let d = conv(x, t(&format!("{p}/depthwise_filter")), None, 1, true);
        conv(
            &d,
            t(&format!("{p}/pointwise_filter")),
            Some(t(&format!("{p}/bias"))),
            1,
            false,
        )
    };
    let reduction = |x: &Nhwc, p: &str, activate: bool| {
        let mut out = if activate { relu(x) } else { x.clone() };
        out = sep(&out, &format!("{p}/separable_conv0"));
        out = sep(&relu(&out), &format!("{p}/separable_conv1"));
        out = max_pool(&out);
        let e = conv(
            x,
            t(&format!("{p}/expansion_conv/filters")),
            Some(t(&format!("{p}/expansion_conv/bias"))),
            2,
            false,
        );
        add(&out, &e)
    };
    let mut x = relu(&conv(
        input,
        t("entry_flow/conv_in/filters"),
        Some(t("entry_flow/conv_in/bias")),
        2,
        false,
    ));
    x = reduction(&x, "entry_flow/reduction_block_0", false);
    x = reduction(&x, "entry_flow/reduction_block_1", true);
    for b in 0..MAIN_BLOCKS {
        let p = format!("middle_flow/main_block_{b}");
        let mut out = x.clone();
        for k in 0..3 {
            out = sep(&relu(&out), &format!("{p}/separable_conv{k}"));
        }
        x = add(&out, &x);
    }
    x = reduction(&x, "exit_flow/reduction_block", true);
    x = relu(&sep(&x, "exit_flow/separable_conv"));
    assert_eq!(x.s, 7);
    let pooled: Vec<f32> = (0..x.c)
        .map(|c| (0..49).map(|i| x.v[i * x.c + c]).sum::<f32>() / 49.0)
        .collect();
    let fc = |p: &str, n: usize| -> Vec<f32> {
        let (wt, b) = (t(&format!("{p}/weights")), t(&format!("{p}/bias")));
        (0..n)
            .map(|o| {
                b.values[o]
                    + pooled
                        .iter()
                        .enumerate()
                        .map(|(i, v)| v * wt.values[i * n + o])
                        .sum::<f32>()
            })
            .collect()
    };
    let age = fc("fc/age", 1)[0];
    let g = fc("fc/gender", 2);
    let m = g[0].max(g[1]);
    let e = [(g[0] - m).exp(), (g[1] - m).exp()];
    (age, [e[0] / (e[0] + e[1]), e[1] / (e[0] + e[1])])
}

#[test]
fn tiny_network_matches_a_direct_implementation_of_face_api() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), &tiny_specs(), 0);
    let onnx = dir.path().join("teacher.onnx");
    let summary = import_teacher(&manifest, &onnx).unwrap();
    assert!(!summary.is_1_7_15);
    let teacher = Teacher::load(&onnx).unwrap();
    let weights = read_tfjs_weights(&manifest).unwrap();

    // Two crops, one asymmetric so a transposed layout would show.
    let s = INPUT_SIZE as u32;
    let crops = [
        RgbImage::from_fn(s, s, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x * y) % 251) as u8])
        }),
        RgbImage::from_fn(s, s, |x, y| {
            image::Rgb([((x + 3 * y) % 256) as u8, 200, (255 - y * 2) as u8])
        }),
    ];
    let got = teacher.predict(&crops).unwrap();
    for (crop, got) in crops.iter().zip(&got) {
        // face-api's normalisation: (x − mean) / 255, NHWC.
        let v = crop
            .pixels()
            .flat_map(|p| (0..3).map(move |c| (p.0[c] as f32 - MEAN_RGB_255[c]) / 255.0))
            .collect();
        let (age, gender) = direct_forward(
            &weights,
            &Nhwc {
                s: INPUT_SIZE,
                c: 3,
                v,
            },
        );
        assert!((got.age - age).abs() < 1e-3, "age {} vs {age}", got.age);
        for k in 0..2 {
            assert!(
                (got.gender[k] - gender[k]).abs() < 1e-4,
                "gender {:?} vs {gender:?}",
                got.gender
            );
        }
        assert!((got.gender[0] + got.gender[1] - 1.0).abs() < 1e-5);
    }
    // The two crops must not give the same output, or the check above proves little.
    assert!((got[0].age - got[1].age).abs() > 0.1, "{got:?}");
    assert!(
        (got[0].gender[0] - got[1].gender[0]).abs() > 0.01,
        "{got:?}"
    );
}

#[test]
fn import_refuses_missing_extra_and_misshapen_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let mut specs = tiny_specs();
    specs.retain(|s| s.name != "fc/gender/bias");
    let m = write_manifest(dir.path(), &specs, 0);
    let e = build_teacher_onnx(&read_tfjs_weights(&m).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`fc/gender/bias` is missing") && e.contains("manifest.json"),
        "{e}"
    );

    let mut specs = tiny_specs();
    specs.push(Spec {
        name: "middle_flow/main_block_2/separable_conv0/bias".into(),
        shape: vec![1],
        quantized: None,
        float: vec![0.0],
    });
    let m = write_manifest(dir.path(), &specs, 0);
    let e = build_teacher_onnx(&read_tfjs_weights(&m).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("main_block_2") && e.contains("not part of"),
        "{e}"
    );

    let mut specs = tiny_specs();
    let age = specs
        .iter_mut()
        .find(|s| s.name == "fc/age/weights")
        .unwrap();
    age.shape = vec![1, C[4]];
    let m = write_manifest(dir.path(), &specs, 0);
    let e = build_teacher_onnx(&read_tfjs_weights(&m).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("`fc/age/weights` has shape [1, 8]"), "{e}");
}

#[test]
fn metadata_documents_input_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), &tiny_specs(), 0);
    let bytes = build_teacher_onnx(&read_tfjs_weights(&manifest).unwrap()).unwrap();
    let model = tract_onnx::onnx()
        .proto_model_for_read(&mut bytes.as_slice())
        .unwrap();
    let meta: BTreeMap<&str, &str> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(meta[keys::INPUT_SIZE], "112");
    assert_eq!(meta[keys::STD], "1,1,1");
    assert_eq!(meta[keys::GENDER_LABELS], "male,female");
    let mean: Vec<f32> = meta[keys::MEAN]
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!((mean[0] * 255.0 - 122.782).abs() < 1e-4 && (mean[2] * 255.0 - 104.298).abs() < 1e-4);
    assert!(meta[teacher_keys::DATA].contains("non-commercial"));
    for set in [
        "UTK", "FGNET", "ChaLearn", "Wiki", "IMDB", "CACD", "MegaAge",
    ] {
        assert!(meta[teacher_keys::DATA].contains(set), "{set}");
    }
    // Not the 1.7.15 file, so not labelled as it.
    assert!(!meta[teacher_keys::TEACHER].contains("1.7.15 (MIT)"));
    assert!(meta[teacher_keys::SOURCE_SHA256].starts_with("model.bin sha256 "));
    let g = model.graph.unwrap();
    let outs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outs, [AGE_OUTPUT, GENDER_OUTPUT]);
    assert_eq!(g.input[0].name, "input");
}
