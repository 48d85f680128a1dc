//! Training crops: the device's face detector and [`crate::vision::crop::crop_face`] run over
//! a dataset once, the crops cached as PNG files with a label index, and the in-memory batches
//! (with augmentation) the trainer reads from that cache.
//!
//! Cache layout (`CACHE/`): `crops/<source file name>.png` (`CROP_SIZE`² RGB),
//! `misses.txt` (source files in which no face was found, one per line), and `labels.csv`
//! (`crop,source,age,gender` with gender 0 = male, 1 = female; written at the end of each run).
//! A re-run skips every source that already has a crop or a miss entry, so an interrupted run
//! resumes where it stopped.

use crate::model::Gender;
use crate::train::dataset::{self, Sample};
use crate::vision::crop::crop_face;
use crate::vision::{FaceBox, FaceDetector};
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Side of the cached crops. Training resamples them to its input size (with a small random
/// shift/scale), so the cache serves every input size up to this one; the device's
/// `crop_face` takes the same two steps.
pub const CROP_SIZE: u32 = crate::vision::crop::FRAMING_SIZE;

/// One cached crop and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub crop: String,
    pub source: String,
    pub age: u32,
    pub gender: Gender,
}

/// What a `crops` run did.
#[derive(Debug, Default, Clone)]
pub struct CropReport {
    pub total: usize,
    pub cached_before: usize,
    pub found_direct: usize,
    pub found_padded: usize,
    pub missed: usize,
    pub unreadable: usize,
}

/// Finds the face in a face chip: first on the image as it is, then (if nothing is found)
/// letterboxed into a canvas twice its size, since a face filling the whole frame is outside
/// what short-range detectors are trained on. Returns the box in image coordinates and
/// whether padding was needed.
pub fn find_face(det: &mut dyn FaceDetector, img: &RgbImage) -> Option<(FaceBox, bool)> {
    if let Some(f) = crate::vision::largest_faces(det.detect(img), 1).pop() {
        return Some((f, false));
    }
    let (w, h) = img.dimensions();
    let (ox, oy) = (w / 2, h / 2);
    let mut canvas = RgbImage::from_pixel(w * 2, h * 2, Rgb([128, 128, 128]));
    image::imageops::replace(&mut canvas, img, ox as i64, oy as i64);
    let f = crate::vision::largest_faces(det.detect(&canvas), 1).pop()?;
    Some((
        FaceBox {
            x: f.x - ox as f32,
            y: f.y - oy as f32,
            ..f
        },
        true,
    ))
}

/// Crops every sample of a dataset into `out` (resumable), then writes `labels.csv`.
pub fn make_crops(
    samples: &[Sample],
    det: &mut dyn FaceDetector,
    margin: f32,
    out: &Path,
    progress: &dyn Fn(usize, &CropReport),
) -> Result<CropReport> {
    let crop_dir = out.join("crops");
    std::fs::create_dir_all(&crop_dir)
        .with_context(|| format!("cannot create {}", crop_dir.display()))?;
    let miss_path = out.join("misses.txt");
    let mut missed: HashSet<String> = std::fs::read_to_string(&miss_path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let mut miss_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&miss_path)?;
    let mut r = CropReport {
        total: samples.len(),
        ..Default::default()
    };
    let mut entries = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        progress(i, &r);
        let (Some(age), Some(gender)) = (s.age, s.gender) else {
            continue;
        };
        let source = file_name(&s.path);
        let crop = format!("{source}.png");
        let entry = Entry {
            crop: crop.clone(),
            source: source.clone(),
            age,
            gender,
        };
        if crop_dir.join(&crop).exists() {
            r.cached_before += 1;
            entries.push(entry);
            continue;
        }
        if missed.contains(&source) {
            r.cached_before += 1;
            r.missed += 1;
            continue;
        }
        let img = match image::open(&s.path) {
            Ok(i) => i.to_rgb8(),
            Err(e) => {
                log::warn!("{}: {e}", s.path.display());
                r.unreadable += 1;
                continue;
            }
        };
        match find_face(det, &img) {
            Some((face, padded)) => {
                if padded {
                    r.found_padded += 1;
                } else {
                    r.found_direct += 1;
                }
                let c = crop_face(&img, &face, margin, CROP_SIZE);
                // Write then rename, so an interrupted run never leaves a half-written crop.
                let tmp = crop_dir.join(format!("{crop}.tmp"));
                c.save_with_format(&tmp, image::ImageFormat::Png)?;
                std::fs::rename(&tmp, crop_dir.join(&crop))?;
                entries.push(entry);
            }
            None => {
                r.missed += 1;
                writeln!(miss_file, "{source}")?;
                missed.insert(source);
            }
        }
    }
    write_labels(out, &entries, margin)?;
    Ok(r)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn write_labels(out: &Path, entries: &[Entry], margin: f32) -> Result<()> {
    let mut text = String::from("crop,source,age,gender\n");
    for e in entries {
        let g = match e.gender {
            Gender::Male => 0,
            Gender::Female => 1,
        };
        text.push_str(&format!("{},{},{},{g}\n", e.crop, e.source, e.age));
    }
    std::fs::write(out.join("labels.csv"), text)?;
    std::fs::write(out.join("crop_margin.txt"), format!("{margin}\n"))?;
    Ok(())
}

/// Reads `labels.csv` of a crop cache.
pub fn read_labels(cache: &Path) -> Result<Vec<Entry>> {
    let path = cache.join("labels.csv");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (make the cache with agecam-host crops)",
            path.display()
        )
    })?;
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            anyhow::ensure!(f.len() == 4, "{}: bad line `{l}`", path.display());
            Ok(Entry {
                crop: f[0].to_string(),
                source: f[1].to_string(),
                age: f[2].parse()?,
                gender: if f[3] == "1" {
                    Gender::Female
                } else {
                    Gender::Male
                },
            })
        })
        .collect()
}

/// The crop margin a cache was made with (`None` for an older cache without the file).
pub fn cache_margin(cache: &Path) -> Option<f32> {
    std::fs::read_to_string(cache.join("crop_margin.txt"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Crops held in memory.
pub struct InMemory {
    pub images: Vec<RgbImage>,
    pub ages: Vec<u32>,
    pub genders: Vec<u32>,
}

/// Loads the cache and splits it with [`dataset::is_validation`] on the source file name (the
/// same split `agecam-host dataset` reports). Returns (train, validation).
pub fn load_split(cache: &Path, val_fraction: f64) -> Result<(InMemory, InMemory)> {
    let entries = read_labels(cache)?;
    let empty = || InMemory {
        images: Vec::new(),
        ages: Vec::new(),
        genders: Vec::new(),
    };
    let (mut train, mut val) = (empty(), empty());
    for e in entries {
        let img = image::open(cache.join("crops").join(&e.crop))
            .with_context(|| format!("cannot read crop {}", e.crop))?
            .to_rgb8();
        let side = if dataset::is_validation(&PathBuf::from(&e.source), val_fraction) {
            &mut val
        } else {
            &mut train
        };
        side.images.push(img);
        side.ages.push(e.age.min(100));
        side.genders.push(u32::from(e.gender == Gender::Female));
    }
    Ok((train, val))
}

/// Augmentation settings for one crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    pub flip: bool,
    /// Shift of the sampled square's centre, as a fraction of the crop side.
    pub dx: f32,
    pub dy: f32,
    /// Side of the sampled square relative to the whole crop (1 = the device's framing).
    pub scale: f32,
    pub brightness: f32,
    pub contrast: f32,
}

impl Augment {
    pub const NONE: Augment = Augment {
        flip: false,
        dx: 0.0,
        dy: 0.0,
        scale: 1.0,
        brightness: 0.0,
        contrast: 1.0,
    };

    /// Random flip, ±5 % shift, 0.9–1.1 scale, ±0.1 brightness, 0.8–1.2 contrast.
    pub fn random(rng: &mut impl rand::Rng) -> Augment {
        use rand::RngExt;
        Augment {
            flip: rng.random_bool(0.5),
            dx: rng.random_range(-0.05..0.05),
            dy: rng.random_range(-0.05..0.05),
            scale: rng.random_range(0.9..1.1),
            brightness: rng.random_range(-0.1..0.1),
            contrast: rng.random_range(0.8..1.2),
        }
    }
}

/// Writes one crop, resampled to `size` with augmentation `a`, normalised as the device does
/// ((v/255 − mean)/std, RGB), into `out` (CHW, `3·size²` values). With [`Augment::NONE`] the
/// whole crop is resampled bilinearly, the framing the device's `crop_face` gives.
pub fn render(
    img: &RgbImage,
    a: &Augment,
    size: usize,
    mean: [f32; 3],
    std: [f32; 3],
    out: &mut [f32],
) {
    let (w, h) = img.dimensions();
    let side = w as f32 * a.scale;
    let left = (w as f32 - side) / 2.0 + a.dx * w as f32;
    let top = (h as f32 - side) / 2.0 + a.dy * h as f32;
    let step = side / size as f32;
    let raw = img.as_raw();
    let px = |x: u32, y: u32, c: usize| raw[((y * w + x) * 3) as usize + c] as f32;
    let plane = size * size;
    for oy in 0..size {
        let sy = (top + (oy as f32 + 0.5) * step - 0.5).clamp(0.0, h as f32 - 1.0);
        let y0 = sy.floor() as u32;
        let y1 = (y0 + 1).min(h - 1);
        let fy = sy - y0 as f32;
        for ox in 0..size {
            let tx = if a.flip { size - 1 - ox } else { ox };
            let sx = (left + (tx as f32 + 0.5) * step - 0.5).clamp(0.0, w as f32 - 1.0);
            let x0 = sx.floor() as u32;
            let x1 = (x0 + 1).min(w - 1);
            let fx = sx - x0 as f32;
            for c in 0..3 {
                let t = px(x0, y0, c) * (1.0 - fx) + px(x1, y0, c) * fx;
                let b = px(x0, y1, c) * (1.0 - fx) + px(x1, y1, c) * fx;
                let mut v = (t * (1.0 - fy) + b * fy) / 255.0;
                v = ((v - 0.5) * a.contrast + 0.5 + a.brightness).clamp(0.0, 1.0);
                out[c * plane + oy * size + ox] = (v - mean[c]) / std[c];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaugmented_render_matches_the_device_crop_and_normalisation() {
        // A cached crop (CROP_SIZE square) rendered without augmentation is what the device
        // gives for the same square cut out of a frame.
        let img = RgbImage::from_fn(CROP_SIZE, CROP_SIZE, |x, y| {
            Rgb([(x * 2) as u8, (y * 2) as u8, (x * y % 256) as u8])
        });
        let mut out = vec![0f32; 3 * 32 * 32];
        render(&img, &Augment::NONE, 32, [0.5; 3], [0.5; 3], &mut out);
        let face = FaceBox {
            x: 0.0,
            y: 0.0,
            width: CROP_SIZE as f32,
            height: CROP_SIZE as f32,
            score: 1.0,
        };
        let device = crop_face(&img, &face, 0.0, 32);
        for (x, y, p) in device.enumerate_pixels() {
            for c in 0..3 {
                let want = (p.0[c] as f32 / 255.0 - 0.5) / 0.5;
                let got = out[c * 1024 + y as usize * 32 + x as usize];
                // crop_face rounds to u8; we keep the float.
                assert!(
                    (got - want).abs() <= 1.0 / 255.0 + 1e-5,
                    "{x},{y},{c}: {got} {want}"
                );
            }
        }
        let mut flipped = vec![0f32; 3 * 32 * 32];
        let a = Augment {
            flip: true,
            ..Augment::NONE
        };
        render(&img, &a, 32, [0.5; 3], [0.5; 3], &mut flipped);
        assert_eq!(flipped[5], out[31 - 5]);
    }

    struct Fixed(Vec<FaceBox>, usize);
    impl FaceDetector for Fixed {
        fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
            self.1 += 1;
            // Finds the face only in the padded canvas (twice the size).
            if frame.width() >= 100 {
                self.0.clone()
            } else {
                Vec::new()
            }
        }
    }

    #[test]
    fn crops_are_cached_resumed_and_misses_counted() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let limits = dataset::GroupLimits::default();
        for name in ["30_0_0_1.jpg.chip.jpg", "61_1_2_2.jpg.chip.jpg"] {
            RgbImage::from_pixel(60, 60, Rgb([200, 100, 50]))
                .save(data.join(name))
                .unwrap();
        }
        let samples = dataset::load_utkface(&data, &limits).unwrap().samples;
        let out = dir.path().join("cache");
        // Face box in canvas coordinates: the image sits at (30, 30).
        let face = FaceBox {
            x: 40.0,
            y: 40.0,
            width: 40.0,
            height: 40.0,
            score: 1.0,
        };
        let mut det = Fixed(vec![face], 0);
        let r = make_crops(&samples, &mut det, 0.25, &out, &|_, _| {}).unwrap();
        assert_eq!((r.found_direct, r.found_padded, r.missed), (0, 2, 0));
        assert_eq!(det.1, 4);
        let labels = read_labels(&out).unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!((labels[1].age, labels[1].gender), (61, Gender::Female));
        assert_eq!(cache_margin(&out), Some(0.25));
        // Re-run: nothing detected again.
        let r = make_crops(&samples, &mut det, 0.25, &out, &|_, _| {}).unwrap();
        assert_eq!((r.cached_before, det.1), (2, 4));
        // A detector that finds nothing: misses are recorded and not retried.
        let out2 = dir.path().join("cache2");
        let mut none = Fixed(vec![], 0);
        let r = make_crops(&samples, &mut none, 0.25, &out2, &|_, _| {}).unwrap();
        assert_eq!(r.missed, 2);
        let r = make_crops(&samples, &mut none, 0.25, &out2, &|_, _| {}).unwrap();
        assert_eq!((r.missed, none.1), (2, 4));
        assert!(read_labels(&out2).unwrap().is_empty());
        let img = image::open(out.join("crops").join(&labels[0].crop)).unwrap();
        assert_eq!(img.width(), CROP_SIZE);
    }
}
