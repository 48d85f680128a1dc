//! Training crops: the device's face detector and [`agecam::vision::crop::crop_face`] run over
//! a dataset once, the crops cached as PNG files with a label index, and the in-memory batches
//! (with augmentation) the trainer reads from that cache.
//!
//! Cache layout (`CACHE/`): `crops/<source key>.png` (square RGB, `CROP_SIZE` px unless made
//! with `--size`; the key is the file name, prefixed `train_`/`val_` for a dataset with its own
//! split), `framing.txt` (the crops' [`CacheFraming`]: crop style and side; a cache without it
//! holds box crops of `CROP_SIZE`), `crop_margin.txt` (the box margin), `misses.txt` (source keys
//! in which no face was found, one per line), and `labels.csv` (`crop,source,age,gender,split`:
//! age in years or an inclusive range `LO-HI`, gender 0 = male, 1 = female, split `train`,
//! `val` or empty for the hash split; written at the end of each run; the older 4-column form
//! without `split` and with whole-year ages is still read).
//! A re-run skips every source that already has a crop or a miss entry, so an interrupted run
//! resumes where it stopped.

use crate::dataset::{self, Sample, Split};
use agecam::model::Gender;
use agecam::vision::crop::{CropStyle, Framing};
use agecam::vision::{FaceBox, FaceDetector};
use image::{Rgb, RgbImage};
use rand::SeedableRng;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Side of the cached crops. Training resamples them to its input size (with a small random
/// shift/scale), so the cache serves every input size up to this one; the device's
/// `crop_face` takes the same two steps.
pub const CROP_SIZE: u32 = agecam::vision::crop::FRAMING_SIZE;

/// What a crop's age label says: an exact age (UTKFace) or an inclusive range (FairFace's
/// groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeLabel {
    Exact(u32),
    Range(u32, u32),
}

impl AgeLabel {
    /// The label of a dataset sample, if it has one.
    pub fn of(s: &Sample) -> Option<AgeLabel> {
        match (s.age, s.age_range) {
            (Some(age), _) => Some(AgeLabel::Exact(age)),
            (None, Some((lo, hi))) => Some(AgeLabel::Range(lo, hi)),
            (None, None) => None,
        }
    }

    /// The exact age, if known.
    pub fn exact(self) -> Option<u32> {
        match self {
            AgeLabel::Exact(a) => Some(a),
            AgeLabel::Range(..) => None,
        }
    }

    /// The lowest age the label allows (the 3-group of a range is that of its lower end: the
    /// nine groups' limits fall on the three groups' limits).
    pub fn lowest(self) -> u32 {
        match self {
            AgeLabel::Exact(a) | AgeLabel::Range(a, _) => a,
        }
    }

    fn parse(text: &str) -> Option<AgeLabel> {
        match text.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (lo.parse().ok()?, hi.parse().ok()?);
                (lo <= hi).then_some(AgeLabel::Range(lo, hi))
            }
            None => text.parse().ok().map(AgeLabel::Exact),
        }
    }
}

impl std::fmt::Display for AgeLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgeLabel::Exact(a) => write!(f, "{a}"),
            AgeLabel::Range(lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

/// One cached crop and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub crop: String,
    pub source: String,
    pub age: AgeLabel,
    pub gender: Gender,
    /// The dataset's own split; `None`: split by a hash of `source`.
    pub split: Option<Split>,
    /// The labelled race, where the dataset has one (caches from before it read as `None`).
    pub race: Option<crate::dataset::Race>,
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
    if let Some(f) = agecam::vision::largest_faces(det.detect(img), 1).pop() {
        return Some((f, false));
    }
    let (w, h) = img.dimensions();
    let (ox, oy) = (w / 2, h / 2);
    let mut canvas = RgbImage::from_pixel(w * 2, h * 2, Rgb([128, 128, 128]));
    image::imageops::replace(&mut canvas, img, ox as i64, oy as i64);
    let f = agecam::vision::largest_faces(det.detect(&canvas), 1).pop()?;
    Some((f.translated(-(ox as f32), -(oy as f32)), true))
}

/// How a cache's crops were cut: the crop style (with the box margin) and the side in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheFraming {
    pub style: CropStyle,
    /// The margin of box crops (and, under [`CropStyle::Eyes`], of faces without landmarks);
    /// `None` for an older cache without `crop_margin.txt`.
    pub margin: Option<f32>,
    pub size: u32,
}

impl CacheFraming {
    /// The framing that cuts crops for this cache (an unrecorded margin: the default).
    pub fn framing(&self) -> Framing {
        Framing {
            style: self.style,
            margin: self.margin.unwrap_or(agecam::config::DEFAULT_CROP_MARGIN),
        }
    }

    /// Whether crops of the two caches frame faces alike (the side may differ: training
    /// resamples every crop to its input).
    pub fn same_framing(&self, other: &CacheFraming) -> bool {
        self.style == other.style
            && match (self.margin, other.margin) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl std::fmt::Display for CacheFraming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} crops of {} px", self.style, self.size)?;
        if let Some(m) = self.margin {
            write!(f, ", margin {m}")?;
        }
        Ok(())
    }
}

/// Why a crop cache cannot be made or read: the file (a crop, `labels.csv`, `framing.txt`,
/// `teacher.csv`) or folder, what is wrong and how to remake it.
#[derive(Debug, thiserror::Error)]
pub enum CropsError {
    #[error("cannot read {} ({error})", path.display())]
    ReadFraming {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{} line {line}: {what} (remake the cache with agecam-host crops into a new folder)",
        path.display()
    )]
    BadFraming {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} holds {before}; this run would cut {wanted}: give another --out, or the options it was made with{hint}",
        out.display()
    )]
    OtherFraming {
        out: PathBuf,
        before: CacheFraming,
        wanted: CacheFraming,
        hint: &'static str,
    },
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {} (make the cache with agecam-host crops)", path.display())]
    ReadLabels {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} line {line}: {what} in `{text}` (remake the cache with agecam-host crops)",
        path.display()
    )]
    BadLabel {
        path: PathBuf,
        line: usize,
        what: &'static str,
        text: String,
    },
    #[error("cannot read crop {} (remake the cache with agecam-host crops)", path.display())]
    ReadCrop {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    /// `teacher.csv`, named with what is wrong.
    #[error(transparent)]
    TeacherLabels(#[from] agecam::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Image(#[from] image::ImageError),
}

type Result<T> = std::result::Result<T, CropsError>;

/// Name of a cache's framing record: `crop = STYLE` and `size = N` lines.
pub const FRAMING_FILE: &str = "framing.txt";

/// How a cache's crops were cut: `framing.txt` and `crop_margin.txt`; a cache from before
/// `framing.txt` holds box crops of [`CROP_SIZE`]. A record that cannot be read is an error
/// naming the file.
pub fn cache_framing(cache: &Path) -> Result<CacheFraming> {
    let path = cache.join(FRAMING_FILE);
    let mut framing = CacheFraming {
        style: CropStyle::Box,
        margin: cache_margin(cache),
        size: CROP_SIZE,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(framing),
        Err(error) => return Err(CropsError::ReadFraming { path, error }),
    };
    for (i, line) in text.lines().enumerate() {
        let bad = |what: String| CropsError::BadFraming {
            path: path.clone(),
            line: i + 1,
            what,
        };
        let Some((key, value)) = line.split_once('=') else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(bad(format!("`{line}` is not KEY = VALUE")));
        };
        match key.trim() {
            "crop" => framing.style = value.trim().parse().map_err(|e| bad(format!("{e}")))?,
            "size" => {
                framing.size = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|s| (16..=1024).contains(s))
                    .ok_or_else(|| bad(format!("size `{}` is not 16 to 1024", value.trim())))?
            }
            other => return Err(bad(format!("unknown key `{other}`"))),
        }
    }
    Ok(framing)
}

/// Records how the cache's crops are cut ([`cache_framing`] reads it back).
fn write_framing(out: &Path, framing: &CacheFraming) -> Result<()> {
    let path = out.join(FRAMING_FILE);
    std::fs::write(
        &path,
        format!("crop = {}\nsize = {}\n", framing.style, framing.size),
    )
    .map_err(|source| CropsError::Write {
        path: path.clone(),
        source,
    })?;
    if let Some(margin) = framing.margin {
        std::fs::write(out.join("crop_margin.txt"), format!("{margin}\n"))?;
    }
    Ok(())
}

/// Crops every sample of a dataset into `out` (resumable) with `framing` at `size`×`size`,
/// then writes `labels.csv`. A cache already holding crops of another framing is refused: its
/// crops and the new ones would be trained on as one framing.
pub fn make_crops(
    samples: &[Sample],
    det: &mut dyn FaceDetector,
    framing: Framing,
    size: u32,
    out: &Path,
    progress: &dyn Fn(usize, &CropReport),
) -> Result<CropReport> {
    let crop_dir = out.join("crops");
    let wanted = CacheFraming {
        style: framing.style,
        margin: Some(framing.margin),
        size,
    };
    let holds_crops = std::fs::read_dir(&crop_dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if holds_crops {
        let before = cache_framing(out)?;
        if !(before.same_framing(&wanted) && before.size == size) {
            return Err(CropsError::OtherFraming {
                out: out.to_path_buf(),
                before,
                wanted,
                hint: match before.style {
                    CropStyle::Box => " (no --align)",
                    CropStyle::Eyes(_) => " (--align)",
                },
            });
        }
    }
    std::fs::create_dir_all(&crop_dir).map_err(|source| CropsError::Create {
        path: crop_dir.clone(),
        source,
    })?;
    write_framing(out, &wanted)?;
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
        let (Some(age), Some(gender)) = (AgeLabel::of(s), s.gender) else {
            continue;
        };
        let source = s.key();
        let crop = format!("{source}.png");
        let entry = Entry {
            crop: crop.clone(),
            source: source.clone(),
            age,
            gender,
            split: s.split,
            race: s.race,
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
                let c = framing.crop(&img, &face, size);
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
    write_labels(out, &entries)?;
    Ok(r)
}

fn write_labels(out: &Path, entries: &[Entry]) -> Result<()> {
    let mut text = String::from("crop,source,age,gender,split,race\n");
    for e in entries {
        let g = match e.gender {
            Gender::Male => 0,
            Gender::Female => 1,
        };
        let split = match e.split {
            Some(Split::Train) => "train",
            Some(Split::Validation) => "val",
            None => "",
        };
        let race = e.race.map(|r| r.index().to_string()).unwrap_or_default();
        text.push_str(&format!(
            "{},{},{},{g},{split},{race}\n",
            e.crop, e.source, e.age
        ));
    }
    std::fs::write(out.join("labels.csv"), text)?;
    Ok(())
}

/// Reads `labels.csv` of a crop cache.
pub fn read_labels(cache: &Path) -> Result<Vec<Entry>> {
    let path = cache.join("labels.csv");
    let text = std::fs::read_to_string(&path).map_err(|source| CropsError::ReadLabels {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let bad = |what: &'static str| CropsError::BadLabel {
                path: path.clone(),
                line: i + 1,
                what,
                text: l.to_string(),
            };
            let f: Vec<&str> = l.split(',').collect();
            if !(4..=6).contains(&f.len()) {
                return Err(bad("expected crop,source,age,gender,split,race"));
            }
            Ok(Entry {
                crop: f[0].to_string(),
                source: f[1].to_string(),
                age: AgeLabel::parse(f[2]).ok_or_else(|| bad("age is not AGE or LO-HI"))?,
                gender: match f[3] {
                    "0" => Gender::Male,
                    "1" => Gender::Female,
                    _ => return Err(bad("gender is not 0 or 1")),
                },
                split: match f.get(4).copied().unwrap_or("") {
                    "train" => Some(Split::Train),
                    "val" => Some(Split::Validation),
                    "" => None,
                    _ => return Err(bad("split is not train, val or empty")),
                },
                race: match f.get(5).copied().unwrap_or("") {
                    "" => None,
                    n => Some(
                        n.parse::<usize>()
                            .ok()
                            .and_then(|i| crate::dataset::Race::ALL.get(i).copied())
                            .ok_or_else(|| bad("race is not an index 0-8 or empty"))?,
                    ),
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

/// Name of the teacher's answers in a crop cache (`agecam-host teacher-label` writes it):
/// `crop,age,p_female` per cached crop.
pub const TEACHER_LABELS: &str = "teacher.csv";

/// Reads `CACHE/teacher.csv`: crop name → the teacher's age.
pub fn read_teacher_labels(cache: &Path) -> Result<std::collections::HashMap<String, f32>> {
    let bad = |file: &Path, problem: String| {
        CropsError::from(agecam::Error::Model {
            file: file.to_path_buf(),
            problem,
        })
    };
    let path = cache.join(TEACHER_LABELS);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad(
            &path,
            format!(
                "cannot read it ({e}); make it with agecam-host teacher-label --cache {}",
                cache.display()
            ),
        )
    })?;
    let mut ages = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let age = f
            .get(1)
            .and_then(|a| a.parse::<f32>().ok())
            .filter(|a| a.is_finite() && (0.0..=120.0).contains(a));
        match (f.len(), age) {
            (3, Some(age)) => {
                ages.insert(f[0].to_string(), age);
            }
            _ => {
                return Err(bad(
                    &path,
                    format!("line {}: expected crop,age,p_female with an age from 0 to 120, found `{line}`; remake it with agecam-host teacher-label", i + 1),
                ))
            }
        }
    }
    Ok(ages)
}

/// Crops held in memory, with their labels (gender 0 = male, 1 = female) and, for
/// distillation, the teacher's age of each (empty, or one entry per crop).
#[derive(Default)]
pub struct InMemory {
    pub images: Vec<RgbImage>,
    pub ages: Vec<AgeLabel>,
    pub genders: Vec<u32>,
    pub teacher_ages: Vec<Option<f32>>,
    /// Each crop's labelled race, where known (for `train --balance`).
    pub races: Vec<Option<crate::dataset::Race>>,
}

impl InMemory {
    /// Moves every crop of `other` to the end of this one.
    pub fn append(&mut self, other: InMemory) {
        let (before, added) = (self.images.len(), other.images.len());
        self.images.extend(other.images);
        self.ages.extend(other.ages);
        self.genders.extend(other.genders);
        self.races.extend(other.races);
        if !(self.teacher_ages.is_empty() && other.teacher_ages.is_empty()) {
            self.teacher_ages.resize(before, None);
            let mut theirs = other.teacher_ages;
            theirs.resize(added, None);
            self.teacher_ages.extend(theirs);
        }
    }

    /// The teacher's age for crop `i`, where the cache had one.
    pub fn teacher_age(&self, i: usize) -> Option<f32> {
        self.teacher_ages.get(i).copied().flatten()
    }
}

/// Loads the cache and splits it: by the dataset's own split where the cache records one,
/// else with [`dataset::is_validation`] on the source file name (the same split
/// `agecam-host dataset` reports). Crops are decoded on every core. Returns (train, validation).
pub fn load_split(cache: &Path, val_fraction: f64) -> Result<(InMemory, InMemory)> {
    load_split_with(cache, val_fraction, false)
}

/// [`load_split`], with the teacher's ages from `CACHE/teacher.csv` (`agecam-host
/// teacher-label`) when `with_teacher`.
pub fn load_split_with(
    cache: &Path,
    val_fraction: f64,
    with_teacher: bool,
) -> Result<(InMemory, InMemory)> {
    use rayon::prelude::*;
    let entries = read_labels(cache)?;
    let teacher = if with_teacher {
        Some(read_teacher_labels(cache)?)
    } else {
        None
    };
    let images: Vec<RgbImage> = entries
        .par_iter()
        .map(|e| {
            let path = cache.join("crops").join(&e.crop);
            Ok(image::open(&path)
                .map_err(|source| CropsError::ReadCrop {
                    path: path.clone(),
                    source,
                })?
                .to_rgb8())
        })
        .collect::<Result<_>>()?;
    let (mut train, mut val) = (InMemory::default(), InMemory::default());
    for (e, img) in entries.into_iter().zip(images) {
        let is_val = match e.split {
            Some(split) => split == Split::Validation,
            None => dataset::is_validation(&PathBuf::from(&e.source), val_fraction),
        };
        let side = if is_val { &mut val } else { &mut train };
        if let Some(teacher) = &teacher {
            side.teacher_ages.push(teacher.get(&e.crop).copied());
        }
        side.images.push(img);
        side.ages.push(e.age);
        side.genders.push(u32::from(e.gender == Gender::Female));
        side.races.push(e.race);
    }
    Ok((train, val))
}

/// Which augmentations training draws (`agecam-host train --augment`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum AugmentSet {
    /// Flip, ±5 % shift, 0.9–1.1 scale, brightness and contrast (the UTKFace-only model's).
    #[default]
    Basic,
    /// `basic` widened to what a kiosk camera and its detector give: looser and tighter crops
    /// (0.85–1.25) shifted up to ±8 %, rotations up to ±12°, colour casts and grayscale, blur,
    /// sensor noise and JPEG compression.
    Camera,
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
    /// Rotation of the sampled square about its centre, radians.
    pub angle: f32,
    pub brightness: f32,
    pub contrast: f32,
    /// Per-channel gain (a colour cast, white balance).
    pub gain: [f32; 3],
    pub grayscale: bool,
    /// Gaussian blur sigma in output pixels (0 = none).
    pub blur: f32,
    /// Standard deviation of Gaussian pixel noise, in [0, 1] units (0 = none).
    pub noise: f32,
    /// Seed of the noise.
    pub noise_seed: u64,
    /// JPEG quality the crop is re-encoded at (0 = not re-encoded).
    pub jpeg_quality: u8,
}

impl Augment {
    pub const NONE: Augment = Augment {
        flip: false,
        dx: 0.0,
        dy: 0.0,
        scale: 1.0,
        angle: 0.0,
        brightness: 0.0,
        contrast: 1.0,
        gain: [1.0; 3],
        grayscale: false,
        blur: 0.0,
        noise: 0.0,
        noise_seed: 0,
        jpeg_quality: 0,
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
            ..Augment::NONE
        }
    }

    /// One draw from `set`.
    pub fn draw(set: AugmentSet, rng: &mut impl rand::Rng) -> Augment {
        use rand::RngExt;
        match set {
            AugmentSet::Basic => Augment::random(rng),
            AugmentSet::Camera => {
                let mut gain = [1.0; 3];
                if rng.random_bool(0.5) {
                    for g in &mut gain {
                        *g = rng.random_range(0.88..1.12);
                    }
                }
                Augment {
                    flip: rng.random_bool(0.5),
                    dx: rng.random_range(-0.08..0.08),
                    dy: rng.random_range(-0.08..0.08),
                    scale: rng.random_range(0.85..1.25),
                    angle: if rng.random_bool(0.5) {
                        rng.random_range(-12f32..12.0).to_radians()
                    } else {
                        0.0
                    },
                    brightness: rng.random_range(-0.15..0.15),
                    contrast: rng.random_range(0.7..1.3),
                    gain,
                    grayscale: rng.random_bool(0.1),
                    blur: if rng.random_bool(0.25) {
                        rng.random_range(0.4..1.5)
                    } else {
                        0.0
                    },
                    noise: if rng.random_bool(0.3) {
                        rng.random_range(0.005..0.04)
                    } else {
                        0.0
                    },
                    noise_seed: rng.random(),
                    jpeg_quality: if rng.random_bool(0.3) {
                        rng.random_range(25..90)
                    } else {
                        0
                    },
                }
            }
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
    let cx = w as f32 / 2.0 + a.dx * w as f32;
    let cy = h as f32 / 2.0 + a.dy * h as f32;
    let step = side / size as f32;
    let (sin, cos) = a.angle.sin_cos();
    let raw = img.as_raw();
    let px = |x: u32, y: u32, c: usize| raw[((y * w + x) * 3) as usize + c] as f32;
    let plane = size * size;
    // Values in [0, 1], CHW, before the photometric steps.
    let mut v = vec![0f32; 3 * plane];
    for oy in 0..size {
        let v_off = (oy as f32 + 0.5) * step - side / 2.0;
        for ox in 0..size {
            let tx = if a.flip { size - 1 - ox } else { ox };
            let u_off = (tx as f32 + 0.5) * step - side / 2.0;
            let sx = (cx + u_off * cos - v_off * sin - 0.5).clamp(0.0, w as f32 - 1.0);
            let sy = (cy + u_off * sin + v_off * cos - 0.5).clamp(0.0, h as f32 - 1.0);
            let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            for c in 0..3 {
                let t = px(x0, y0, c) * (1.0 - fx) + px(x1, y0, c) * fx;
                let b = px(x0, y1, c) * (1.0 - fx) + px(x1, y1, c) * fx;
                v[c * plane + oy * size + ox] = (t * (1.0 - fy) + b * fy) / 255.0;
            }
        }
    }
    if a.blur > 0.0 {
        gaussian_blur(&mut v, size, a.blur);
    }
    let mut noise = rand::rngs::StdRng::seed_from_u64(a.noise_seed);
    for i in 0..plane {
        let mut rgb = [v[i], v[plane + i], v[2 * plane + i]];
        if a.grayscale {
            let y = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
            rgb = [y; 3];
        }
        for (c, x) in rgb.iter_mut().enumerate() {
            let mut t = *x * a.gain[c];
            t = (t - 0.5) * a.contrast + 0.5 + a.brightness;
            if a.noise > 0.0 {
                t += a.noise * standard_normal(&mut noise);
            }
            v[c * plane + i] = t.clamp(0.0, 1.0);
        }
    }
    if a.jpeg_quality > 0 {
        jpeg_round_trip_chw(&mut v, size, a.jpeg_quality);
    }
    for c in 0..3 {
        for (o, x) in out[c * plane..(c + 1) * plane]
            .iter_mut()
            .zip(&v[c * plane..(c + 1) * plane])
        {
            *o = (x - mean[c]) / std[c];
        }
    }
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut rand::rngs::StdRng) -> f32 {
    use rand::RngExt;
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Separable Gaussian blur of each `size`² plane of `v`, edges clamped.
fn gaussian_blur(v: &mut [f32], size: usize, sigma: f32) {
    let r = (sigma * 2.5).ceil() as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|d| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|x| x / sum).collect();
    let n = size as isize;
    let mut tmp = vec![0f32; size * size];
    for plane in v.chunks_exact_mut(size * size) {
        for y in 0..n {
            for x in 0..n {
                let mut acc = 0.0;
                for (j, w) in k.iter().enumerate() {
                    let sx = (x + j as isize - r).clamp(0, n - 1);
                    acc += w * plane[(y * n + sx) as usize];
                }
                tmp[(y * n + x) as usize] = acc;
            }
        }
        for y in 0..n {
            for x in 0..n {
                let mut acc = 0.0;
                for (j, w) in k.iter().enumerate() {
                    let sy = (y + j as isize - r).clamp(0, n - 1);
                    acc += w * tmp[(sy * n + x) as usize];
                }
                plane[(y * n + x) as usize] = acc;
            }
        }
    }
}

/// JPEG quality of a webcam's MJPEG frames, as `det-bench` and `eval --face-height` simulate.
pub const CAMERA_JPEG_QUALITY: u8 = 75;

/// `img` JPEG-encoded at `quality` and decoded again: the blocks and ringing a camera's MJPEG
/// stream gives.
pub fn jpeg_round_trip(img: &RgbImage, quality: u8) -> image::ImageResult<RgbImage> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(img)?;
    Ok(image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)?.to_rgb8())
}

/// [`jpeg_round_trip`] in place on a CHW [0, 1] image (left as it is if encoding fails).
fn jpeg_round_trip_chw(v: &mut [f32], size: usize, quality: u8) {
    let plane = size * size;
    let img = RgbImage::from_fn(size as u32, size as u32, |x, y| {
        let i = y as usize * size + x as usize;
        let q = |c: usize| (v[c * plane + i] * 255.0).round() as u8;
        Rgb([q(0), q(1), q(2)])
    });
    let Ok(back) = jpeg_round_trip(&img, quality) else {
        return;
    };
    for (x, y, p) in back.enumerate_pixels() {
        let i = y as usize * size + x as usize;
        for c in 0..3 {
            v[c * plane + i] = p.0[c] as f32 / 255.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agecam::vision::crop::{crop_face, EYES};

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
            landmarks: None,
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
            landmarks: None,
        };
        let mut det = Fixed(vec![face], 0);
        let r = make_crops(
            &samples,
            &mut det,
            Framing::boxed(0.25),
            CROP_SIZE,
            &out,
            &|_, _| {},
        )
        .unwrap();
        assert_eq!((r.found_direct, r.found_padded, r.missed), (0, 2, 0));
        assert_eq!(det.1, 4);
        let labels = read_labels(&out).unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(
            (labels[1].age, labels[1].gender, labels[1].split),
            (AgeLabel::Exact(61), Gender::Female, None)
        );
        assert_eq!(cache_margin(&out), Some(0.25));
        // Re-run: nothing detected again.
        let r = make_crops(
            &samples,
            &mut det,
            Framing::boxed(0.25),
            CROP_SIZE,
            &out,
            &|_, _| {},
        )
        .unwrap();
        assert_eq!((r.cached_before, det.1), (2, 4));
        // A detector that finds nothing: misses are recorded and not retried.
        let out2 = dir.path().join("cache2");
        let mut none = Fixed(vec![], 0);
        let r = make_crops(
            &samples,
            &mut none,
            Framing::boxed(0.25),
            CROP_SIZE,
            &out2,
            &|_, _| {},
        )
        .unwrap();
        assert_eq!(r.missed, 2);
        let r = make_crops(
            &samples,
            &mut none,
            Framing::boxed(0.25),
            CROP_SIZE,
            &out2,
            &|_, _| {},
        )
        .unwrap();
        assert_eq!((r.missed, none.1), (2, 4));
        assert!(read_labels(&out2).unwrap().is_empty());
        let img = image::open(out.join("crops").join(&labels[0].crop)).unwrap();
        assert_eq!(img.width(), CROP_SIZE);
    }

    /// `--align --size 160`: aligned crops of that side, the framing recorded and read back; a
    /// run of another framing into the same cache is refused; a cache from before the record
    /// reads as box crops of `CROP_SIZE`; a damaged record is an error naming its file.
    #[test]
    fn caches_record_their_framing_and_refuse_another() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        RgbImage::from_fn(120, 120, |x, y| Rgb([x as u8, y as u8, 7]))
            .save(data.join("30_0_0_1.jpg.chip.jpg"))
            .unwrap();
        let samples = dataset::load_utkface(&data, &dataset::GroupLimits::default())
            .unwrap()
            .samples;
        let mut face = FaceBox::new(30.0, 30.0, 60.0, 60.0, 1.0);
        face.landmarks = Some(agecam::vision::Landmarks {
            right_eye: [45.0, 50.0],
            left_eye: [72.0, 56.0],
            nose: [60.0, 65.0],
            mouth: [60.0, 80.0],
            mouth_corners: None,
            ears: None,
        });
        let aligned = Framing {
            style: CropStyle::Eyes(EYES),
            margin: 0.25,
        };
        let out = dir.path().join("aligned");
        let mut det = Fixed(vec![face], 0);
        make_crops(&samples, &mut det, aligned, 160, &out, &|_, _| {}).unwrap();
        let recorded = cache_framing(&out).unwrap();
        assert_eq!(
            recorded,
            CacheFraming {
                style: CropStyle::Eyes(EYES),
                margin: Some(0.25),
                size: 160
            }
        );
        assert_eq!(recorded.framing(), aligned);
        let crop = image::open(out.join("crops/30_0_0_1.jpg.chip.jpg.png"))
            .unwrap()
            .to_rgb8();
        let img = image::open(&samples[0].path).unwrap().to_rgb8();
        assert_eq!(crop, aligned.crop(&img, &face, 160));
        assert_ne!(crop, crop_face(&img, &face, 0.25, 160));
        // Box crops into the aligned cache, or aligned ones of another side: refused.
        for (framing, size) in [(Framing::boxed(0.25), 160), (aligned, CROP_SIZE)] {
            let err = make_crops(&samples, &mut det, framing, size, &out, &|_, _| {})
                .unwrap_err()
                .to_string();
            assert!(err.contains(&out.display().to_string()), "{err}");
        }
        // The same options resume.
        make_crops(&samples, &mut det, aligned, 160, &out, &|_, _| {}).unwrap();
        // A cache from before framing.txt.
        std::fs::remove_file(out.join(FRAMING_FILE)).unwrap();
        let old = cache_framing(&out).unwrap();
        assert_eq!((old.style, old.size), (CropStyle::Box, CROP_SIZE));
        std::fs::write(out.join(FRAMING_FILE), "crop = mouth\n").unwrap();
        let err = cache_framing(&out).unwrap_err().to_string();
        assert!(err.contains(FRAMING_FILE) && err.contains("mouth"), "{err}");
    }

    #[test]
    fn labels_keep_age_ranges_and_splits_and_read_the_older_form() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![
            Entry {
                crop: "train_1.jpg.png".into(),
                source: "train_1.jpg".into(),
                age: AgeLabel::Range(70, 100),
                gender: Gender::Female,
                split: Some(Split::Train),
                race: Some(crate::dataset::Race::EastAsian),
            },
            Entry {
                crop: "val_1.jpg.png".into(),
                source: "val_1.jpg".into(),
                age: AgeLabel::Range(3, 9),
                gender: Gender::Male,
                split: Some(Split::Validation),
                race: None,
            },
            Entry {
                crop: "25_0_0_1.jpg.png".into(),
                source: "25_0_0_1.jpg".into(),
                age: AgeLabel::Exact(25),
                gender: Gender::Male,
                split: None,
                race: Some(crate::dataset::Race::Black),
            },
        ];
        write_labels(dir.path(), &entries).unwrap();
        assert_eq!(read_labels(dir.path()).unwrap(), entries);

        // A cache made before group labels: four columns, whole-year ages, hash split.
        std::fs::write(
            dir.path().join("labels.csv"),
            "crop,source,age,gender\na.png,a.jpg,61,1\n",
        )
        .unwrap();
        let old = read_labels(dir.path()).unwrap();
        assert_eq!((old[0].age, old[0].split), (AgeLabel::Exact(61), None));

        // A damaged line names the file and line and says what to do.
        std::fs::write(
            dir.path().join("labels.csv"),
            "crop,source,age,gender,split\na.png,a.jpg,61,1,\nb.png,b.jpg,9-3,0,val\n",
        )
        .unwrap();
        let err = read_labels(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("labels.csv line 3") && err.contains("agecam-host crops"),
            "{err}"
        );
    }

    #[test]
    fn camera_augmentation_is_seeded_and_stays_in_range() {
        use rand::SeedableRng;
        let img = RgbImage::from_fn(CROP_SIZE, CROP_SIZE, |x, y| {
            Rgb([(x * 2) as u8, (y * 2) as u8, ((x + y) % 256) as u8])
        });
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..40)
                .map(|_| Augment::draw(AugmentSet::Camera, &mut rng))
                .collect::<Vec<_>>()
        };
        let augs = draw(7);
        assert_eq!(augs, draw(7), "same seed, same augmentations");
        assert!(augs.iter().any(|a| a.jpeg_quality > 0));
        assert!(augs.iter().any(|a| a.blur > 0.0));
        assert!(augs.iter().any(|a| a.angle != 0.0));
        let mut first = vec![0f32; 3 * 48 * 48];
        let mut again = first.clone();
        for a in &augs {
            render(&img, a, 48, [0.5; 3], [0.5; 3], &mut first);
            render(&img, a, 48, [0.5; 3], [0.5; 3], &mut again);
            assert_eq!(first, again, "{a:?}");
            assert!(first.iter().all(|v| (-1.0..=1.0).contains(v)), "{a:?}");
        }
        // Grayscale gives equal channels; blur smooths a hard edge.
        let a = Augment {
            grayscale: true,
            ..Augment::NONE
        };
        render(&img, &a, 48, [0.5; 3], [0.5; 3], &mut first);
        assert_eq!(first[100], first[48 * 48 + 100]);
        let edge = RgbImage::from_fn(CROP_SIZE, CROP_SIZE, |x, _| {
            Rgb([if x < CROP_SIZE / 2 { 0 } else { 255 }; 3])
        });
        let step = |blur| {
            let mut out = vec![0f32; 3 * 48 * 48];
            render(
                &edge,
                &Augment {
                    blur,
                    ..Augment::NONE
                },
                48,
                [0.5; 3],
                [0.5; 3],
                &mut out,
            );
            out[24 * 48 + 24] - out[24 * 48 + 23]
        };
        assert!(
            step(1.5) < step(0.0) * 0.6,
            "{} vs {}",
            step(1.5),
            step(0.0)
        );
    }
}
