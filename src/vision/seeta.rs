//! Face detection with the SeetaFace frontal cascade (`rustface`, BSD-2-Clause).
//!
//! The fallback detector: slower than BlazeFace (≈60–80 ms per 640×480 frame) but with no
//! neural network. The model file is shipped in `models/` and found through the manifest
//! (role `face_detector_fallback`),
//! so its hash is checked like every other model the device loads.

use super::{largest_faces, DetectorSettings, FaceBox, FaceDetector};
use image::RgbImage;
use std::path::Path;

/// Why bytes are not a SeetaFace cascade this build can run safely.
#[derive(Debug, thiserror::Error)]
pub enum SeetaModelError {
    #[error("not a valid SeetaFace model (the reader gave up on it)")]
    ReaderGaveUp,
    #[error("not a valid SeetaFace model ({0})")]
    Read(std::io::Error),
    #[error("not a valid SeetaFace model (it holds no classifiers)")]
    NoClassifiers,
    #[error("not a valid SeetaFace model (a LAB stage with {features} features and {bins} bins)")]
    LabStage { features: usize, bins: i32 },
    #[error("not a valid SeetaFace model (LAB feature at {x},{y}, outside the 40-pixel window)")]
    LabFeatureOutside { x: i32, y: i32 },
    #[error("not a valid SeetaFace model (a network with {layers} layers)")]
    TooFewLayers { layers: i32 },
    #[error("not a valid SeetaFace model (SURF feature {id}; the pool has 1..{SURF_FEATURES})")]
    SurfFeature { id: i32 },
    #[error(
        "not a valid SeetaFace model (a network reading {inputs} values from {features} SURF features of {SURF_VALUES})"
    )]
    NetworkInputs { inputs: usize, features: usize },
    #[error("not a valid SeetaFace model (network layer {layer} with {outputs} outputs)")]
    LayerOutputs { layer: i32, outputs: usize },
    #[error("not a valid SeetaFace model (classifier kind {0})")]
    ClassifierKind(i32),
    #[error("not a valid SeetaFace model (a level-{hierarchy} window without sources)")]
    NoSources { hierarchy: usize },
    #[error(
        "not a valid SeetaFace model (window source {window} of level {hierarchy} is not one of the {first_windows} first-level windows)"
    )]
    BadSource {
        window: i32,
        hierarchy: usize,
        first_windows: usize,
    },
    #[error("not a valid SeetaFace model (the file ends early; it is truncated)")]
    Truncated,
    #[error("not a valid SeetaFace model (negative {what} count {n})")]
    NegativeCount { what: &'static str, n: i32 },
    #[error(
        "not a valid SeetaFace model ({what} count {count} is more than the file holds; the file is truncated or damaged)"
    )]
    CountTooLarge { what: &'static str, count: usize },
}

/// The SeetaFace frontal face detector.
pub struct SeetaDetector {
    detector: Box<dyn rustface::Detector>,
    max_faces: usize,
    gray: Vec<u8>,
}

impl SeetaDetector {
    /// Loads the cascade from `model_path` (a `seeta_fd_frontal_v1.0.bin` file).
    pub fn load(
        model_path: &Path,
        settings: DetectorSettings,
    ) -> Result<SeetaDetector, crate::Error> {
        let bytes = std::fs::read(model_path).map_err(|e| crate::Error::Model {
            file: model_path.to_path_buf(),
            problem: format!("cannot read the face detector ({e})"),
        })?;
        Self::from_bytes(&bytes, settings).map_err(|problem| crate::Error::Model {
            file: model_path.to_path_buf(),
            problem: problem.to_string(),
        })
    }

    /// Builds the detector from the bytes of a model file; the error says what is wrong with them.
    pub fn from_bytes(
        bytes: &[u8],
        settings: DetectorSettings,
    ) -> Result<SeetaDetector, SeetaModelError> {
        check_layout(bytes)?;
        // The cascade reader indexes into what it read, so a damaged file can panic inside it;
        // the sha256 check in the manifest catches damage first, and this catches the rest.
        let model = std::panic::catch_unwind(|| rustface::read_model(bytes))
            .map_err(|_| SeetaModelError::ReaderGaveUp)?
            .map_err(SeetaModelError::Read)?;
        if model.get_hierarchy_count() == 0 || model.get_classifiers().is_empty() {
            return Err(SeetaModelError::NoClassifiers);
        }
        let mut detector = rustface::create_detector_with_model(model);
        detector.set_min_face_size(settings.min_face_size);
        detector.set_score_thresh(settings.score_threshold as f64);
        detector.set_pyramid_scale_factor(0.8);
        detector.set_slide_window_step(4, 4);
        Ok(SeetaDetector {
            detector,
            max_faces: settings.max_faces,
            gray: Vec::new(),
        })
    }
}

impl FaceDetector for SeetaDetector {
    fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
        let (width, height) = frame.dimensions();
        luma_into(frame, &mut self.gray);
        let image = rustface::ImageData::new(&self.gray, width, height);
        let faces = self
            .detector
            .detect(&image)
            .into_iter()
            .map(|info| {
                let r = info.bbox();
                // The cascade may report a box reaching past the frame edge; clip it.
                let x0 = r.x().max(0) as f32;
                let y0 = r.y().max(0) as f32;
                let x1 = ((r.x() + r.width() as i32) as f32).min(width as f32);
                let y1 = ((r.y() + r.height() as i32) as f32).min(height as f32);
                FaceBox {
                    x: x0,
                    y: y0,
                    width: (x1 - x0).max(0.0),
                    height: (y1 - y0).max(0.0),
                    score: info.score() as f32,
                    landmarks: None,
                }
            })
            .filter(|f| f.width > 0.0 && f.height > 0.0)
            .collect();
        largest_faces(faces, self.max_faces)
    }
}

/// BT.601 luma in integer arithmetic, reusing `out`'s allocation frame after frame.
fn luma_into(frame: &RgbImage, out: &mut Vec<u8>) {
    out.clear();
    out.extend(frame.as_raw().as_chunks::<3>().0.iter().map(|p| {
        let y = 77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32;
        ((y + 128) >> 8) as u8
    }));
}

/// Size of rustface's SURF feature pool (patch formats 1×1, 1×2, 2×1, 2×3, 3×2 of 2×2 cells
/// moved in 16-pixel steps over the 40-pixel window); its feature ids are 1-based and it looks
/// the last one up one past its end, so valid ids are `1..SURF_FEATURES`.
const SURF_FEATURES: i32 = 56;
/// Values in one SURF feature vector: 2×2 cells × 8 channels.
const SURF_VALUES: usize = 32;
/// A network's last layer gives a score and a box correction (x, y, size).
const MLP_OUTPUTS: usize = 4;

/// Walks the cascade file's layout (the format `rustface::read_model` reads) and checks that
/// every count fits in the bytes that follow it. rustface allocates what a count asks for
/// before reading the items, so one damaged count of hundreds of millions makes the allocation
/// fail and aborts the process, which `catch_unwind` cannot stop (found by fuzz/seeta_model).
fn check_layout(bytes: &[u8]) -> Result<(), SeetaModelError> {
    let mut file = Layout { rest: bytes };
    let hierarchies = file.count("hierarchy", 1)?;
    let mut first_windows = 0;
    for hierarchy in 0..hierarchies {
        // Each window holds at least its stage count and its source count.
        let windows = file.count("window", 2)?;
        if hierarchy == 0 {
            first_windows = windows;
        }
        for _ in 0..windows {
            let stages = file.count("stage", 1)?;
            for _ in 0..stages {
                match file.int()? {
                    0 => {
                        let features = file.count("feature", 4)?;
                        let bins = file.int()?;
                        // rustface looks weights up by an 8-bit LAB value and scores features
                        // in groups of 10, and reads pixels at the feature's offset inside the
                        // 40-pixel window: other values index out of bounds while detecting,
                        // where the panic aborts (found by fuzzing).
                        if bins < 255 || features % 10 != 0 {
                            return Err(SeetaModelError::LabStage { features, bins });
                        }
                        for _ in 0..features {
                            let (x, y) = (file.int()?, file.int()?);
                            if !(0..40).contains(&x) || !(0..40).contains(&y) {
                                return Err(SeetaModelError::LabFeatureOutside { x, y });
                            }
                        }
                        // A threshold per feature, then bins + 1 weights each.
                        let bins = bins as usize;
                        file.skip(features.saturating_mul(bins.saturating_add(2)))?;
                    }
                    1 => {
                        let layers = file.int()?;
                        // rustface loads a network without weight layers, then panics on the
                        // first frame, where the panic cannot unwind (found by fuzzing).
                        if layers < 2 {
                            return Err(SeetaModelError::TooFewLayers { layers });
                        }
                        let features = file.count("feature", 1)?;
                        for _ in 0..features {
                            let id = file.int()?;
                            if !(1..SURF_FEATURES).contains(&id) {
                                return Err(SeetaModelError::SurfFeature { id });
                            }
                        }
                        file.skip(1)?; // threshold
                                       // rustface writes each feature's vector into the first layer's input
                                       // without a bounds check, and a zero-sized layer panics in `chunks`
                                       // while detecting (fuzz/seeta_model's fifth crash): the sizes must chain
                                       // from the features' values to the score and box outputs.
                        let mut inputs = file.count("layer input", 0)?;
                        if inputs != features * SURF_VALUES {
                            return Err(SeetaModelError::NetworkInputs { inputs, features });
                        }
                        for layer in 1..layers {
                            let outputs = file.count("layer output", 0)?;
                            let last = layer == layers - 1;
                            if outputs == 0 || (last && outputs != MLP_OUTPUTS) {
                                return Err(SeetaModelError::LayerOutputs { layer, outputs });
                            }
                            file.skip(inputs.saturating_mul(outputs).saturating_add(outputs))?;
                            inputs = outputs;
                        }
                    }
                    kind => return Err(SeetaModelError::ClassifierKind(kind)),
                }
            }
            // rustface reads a negative source count as none.
            let sources = file.int()?.max(0) as usize;
            if hierarchy == 0 {
                file.skip(sources)?;
                continue;
            }
            // Later windows merge the first level's proposals: rustface indexes them by these
            // numbers while detecting, where a bad one aborts the process (found by fuzzing).
            if sources == 0 {
                return Err(SeetaModelError::NoSources { hierarchy });
            }
            for _ in 0..sources {
                let source = file.int()?;
                if usize::try_from(source).map_or(true, |s| s >= first_windows) {
                    return Err(SeetaModelError::BadSource {
                        window: source,
                        hierarchy,
                        first_windows,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The unread part of a cascade file, read as little-endian 4-byte values.
struct Layout<'a> {
    rest: &'a [u8],
}

impl Layout<'_> {
    fn int(&mut self) -> Result<i32, SeetaModelError> {
        let (value, rest) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or(SeetaModelError::Truncated)?;
        self.rest = rest;
        Ok(i32::from_le_bytes(*value))
    }

    /// A count of items of at least `values_each` 4-byte values: not negative and, when the
    /// items take room, no more than the rest of the file holds.
    fn count(&mut self, what: &'static str, values_each: usize) -> Result<usize, SeetaModelError> {
        let n = self.int()?;
        let count = usize::try_from(n).map_err(|_| SeetaModelError::NegativeCount { what, n })?;
        let needed = count.saturating_mul(values_each).saturating_mul(4);
        // Dimensions (no room of their own) are bounded by the file too: the reader allocates
        // their product.
        if needed > self.rest.len() || (values_each == 0 && count > self.rest.len() / 4) {
            return Err(SeetaModelError::CountTooLarge { what, count });
        }
        Ok(count)
    }

    fn skip(&mut self, values: usize) -> Result<(), SeetaModelError> {
        let bytes = values.saturating_mul(4);
        if bytes > self.rest.len() {
            return Err(SeetaModelError::Truncated);
        }
        self.rest = &self.rest[bytes..];
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_of_primaries() {
        let mut img = RgbImage::new(4, 1);
        img.put_pixel(0, 0, image::Rgb([255, 255, 255]));
        img.put_pixel(1, 0, image::Rgb([255, 0, 0]));
        img.put_pixel(2, 0, image::Rgb([0, 255, 0]));
        img.put_pixel(3, 0, image::Rgb([0, 0, 255]));
        let mut out = vec![1, 2, 3];
        luma_into(&img, &mut out);
        assert_eq!(out, vec![255, 77, 149, 29]);
    }

    #[test]
    fn garbage_model_is_an_error_not_a_panic() {
        let settings = DetectorSettings {
            min_face_size: 40,
            score_threshold: 2.0,
            max_faces: 4,
        };
        assert!(SeetaDetector::from_bytes(&[0u8; 64], settings).is_err());
        assert!(SeetaDetector::from_bytes(&[], settings).is_err());
    }

    fn settings() -> DetectorSettings {
        DetectorSettings {
            min_face_size: 40,
            score_threshold: 2.0,
            max_faces: 4,
        }
    }

    /// The input fuzz/seeta_model found: a hierarchy count of 2^31 - 1 in an otherwise short
    /// file. rustface reserved memory for all of them first, and the failed allocation aborted.
    #[test]
    fn seeta_file_with_a_huge_count_is_refused_before_rustface_allocates() {
        let mut bytes = i32::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 60]);
        let err = SeetaDetector::from_bytes(&bytes, settings())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("more than the file holds"), "{err}");
        // The same for a count deep inside the shipped model: its first weight-bin count.
        let shipped = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/seeta_fd_frontal_v1.0.bin"),
        )
        .unwrap();
        let mut damaged = shipped.clone();
        damaged[20..24].copy_from_slice(&0x2A00_0000i32.to_le_bytes());
        assert!(SeetaDetector::from_bytes(&damaged, settings()).is_err());
    }

    /// The second input fuzz/seeta_model found: an MLP stage with no weight layers loaded, and
    /// the first frame then panicked inside rustface where the panic cannot unwind (abort).
    #[test]
    fn seeta_mlp_stage_without_layers_is_refused_at_load() {
        // One hierarchy of one window with one MLP stage: 1 layer, no features, threshold 0,
        // input size 0; then no window sources.
        let values: [i32; 9] = [1, 1, 1, 1, 1, 0, 0, 0, 0];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let err = SeetaDetector::from_bytes(&bytes, settings())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("1 layers"), "{err}");
    }

    /// The third input fuzz/seeta_model found: a window source pointing past the first level's
    /// windows loaded, then rustface's detect indexed out of bounds and aborted.
    #[test]
    fn seeta_window_source_outside_the_first_level_is_refused_at_load() {
        // Two levels of one window each; the first has one linear stage with no features.
        let level = |source: i32| -> Vec<i32> {
            vec![1, 1, 0, 0, 255, 1, source] // windows, stages, kind, features, bins, sources, id
        };
        let file = |source: i32| -> Vec<u8> {
            let mut values = vec![2];
            values.extend(level(0));
            values.extend(level(source));
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        };
        check_layout(&file(0)).unwrap();
        for bad in [1, 7, -1] {
            let err = check_layout(&file(bad)).unwrap_err().to_string();
            assert!(err.contains(&format!("window source {bad}")), "{err}");
        }
    }

    /// The fourth input fuzz/seeta_model found: a LAB stage whose weights rustface indexes
    /// with 8-bit values, in groups of 10 features, at offsets inside a 40-pixel window.
    #[test]
    fn seeta_lab_stage_rustface_would_index_out_of_bounds_is_refused_at_load() {
        let file = |features: i32, bins: i32, x: i32| -> Vec<u8> {
            let mut values = vec![1, 1, 1, 0, features, bins];
            for _ in 0..features {
                values.extend([x, 3]);
            }
            let weights = features.max(0) as usize * (bins.max(0) as usize + 2);
            values.extend(std::iter::repeat_n(0, weights));
            values.push(0); // no window sources
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        };
        check_layout(&file(10, 255, 39)).unwrap();
        let few_bins = check_layout(&file(10, 16, 5)).unwrap_err().to_string();
        assert!(few_bins.contains("16 bins"), "{few_bins}");
        let ragged = check_layout(&file(7, 255, 5)).unwrap_err().to_string();
        assert!(ragged.contains("7 features"), "{ragged}");
        let outside = check_layout(&file(10, 255, 40)).unwrap_err().to_string();
        assert!(outside.contains("outside the 40-pixel window"), "{outside}");
    }

    /// The fifth input fuzz/seeta_model found: a network layer of size 0 loaded, then rustface
    /// panicked in `chunks(0)` while detecting. Its first layer's input also has to match the
    /// features it is fed (rustface writes them there unchecked), and the last layer give 4 values.
    #[test]
    fn seeta_network_whose_sizes_do_not_chain_is_refused_at_load() {
        // One level, one window, one MLP stage: layers, features + ids, threshold, sizes.
        let file = |ids: &[i32], sizes: &[i32]| -> Vec<u8> {
            let mut values = vec![1, 1, 1, 1, sizes.len() as i32, ids.len() as i32];
            values.extend(ids);
            values.extend([0, sizes[0]]);
            for pair in sizes.windows(2) {
                // Each layer: its output size, then weights and biases.
                values.push(pair[1]);
                values.extend(std::iter::repeat_n(
                    0,
                    (pair[0] * pair[1] + pair[1]) as usize,
                ));
            }
            values.push(0); // no window sources
                            // Room after the end, so a size is judged by its value and not by the file length.
            values.extend([0; 128]);
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        };
        check_layout(&file(&[1, 55], &[64, 3, 4])).unwrap();
        let zero = check_layout(&file(&[1, 55], &[64, 0, 4]))
            .unwrap_err()
            .to_string();
        assert!(zero.contains("layer 1 with 0 outputs"), "{zero}");
        let short_input = check_layout(&file(&[1, 55], &[32, 3, 4]))
            .unwrap_err()
            .to_string();
        assert!(
            short_input.contains("reading 32 values from 2 SURF features"),
            "{short_input}"
        );
        let no_box = check_layout(&file(&[1], &[32, 1])).unwrap_err().to_string();
        assert!(no_box.contains("layer 1 with 1 outputs"), "{no_box}");
        for bad in [0, 56, -3] {
            let err = check_layout(&file(&[bad], &[32, 4]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("SURF feature {bad}")), "{err}");
        }
    }

    #[test]
    fn shipped_seeta_model_passes_the_layout_check_and_truncations_do_not() {
        let shipped = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/seeta_fd_frontal_v1.0.bin"),
        )
        .unwrap();
        check_layout(&shipped).unwrap();
        for cut in [3, 100, shipped.len() / 2, shipped.len() - 1] {
            let err = SeetaDetector::from_bytes(&shipped[..cut], settings())
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("truncated"), "cut at {cut}: {err}");
        }
    }
}
