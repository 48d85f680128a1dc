//! The pipeline, in explicit stages: frame → faces → tracks → crops → predictions.
//!
//! [`Pipeline`] owns the vision and model stages. [`Pipeline::process`] runs them on one
//! image (a photo); [`Pipeline::frame`] runs them on one frame of a stream, as the
//! [`Schedule`] says: the detector on some frames, its boxes linked into tracks by the
//! [`Tracker`], the network on the tracks that are due. Visits that end wait in the pipeline
//! until [`Pipeline::take_visits`] hands them to the statistics.
//! [`Daemon`](crate::daemon::Daemon) drives frames through it into the outputs.

use crate::capture::{Picture, Whole};
use crate::config::{Config, DetectorKind, ScheduleConfig};
use crate::face::{FaceResult, StageTimes};
use crate::model::manifest::VerifiedModels;
use crate::model::{AgeGenderModel, Role};
use crate::schedule::{FrameWork, Schedule};
use crate::track::{AttentionRules, Track, TrackSettings, Tracker, Visit};
use crate::vision::blazeface::Variant;
use crate::vision::crop::{CropStyle, Framing};
use crate::vision::{
    BlazeFaceDetector, CascadeDetector, DetectorSettings, FaceBox, FaceDetector, SeetaDetector,
    YuNetDetector,
};
use crate::Error;
use image::RgbImage;
use std::path::Path;
use std::time::Instant;

/// The vision and model stages, loaded once: the third load stage, after [`Manifest`] and
/// [`VerifiedModels`].
pub struct Pipeline {
    detector: Box<dyn FaceDetector>,
    /// `None` while no age/gender model is installed: faces are still found and shown.
    model: Option<AgeGenderModel>,
    /// How faces are cut for the model ([`Framing::of_model`]).
    framing: Framing,
    /// Faces whose shorter box side is under this many pixels get no estimate
    /// (`model.min_face_size`).
    min_estimate_size: u32,
    /// Which model runs and under what licence, for the start-up log and `selftest`.
    licence: String,
    /// Which frames run the detector and which tracks the network (`[schedule]`).
    schedule: Schedule,
    /// The one tracker: every face found gets its track here.
    tracker: Tracker,
    /// Visits that ended and have not been taken yet ([`Pipeline::take_visits`]).
    ended: Vec<Visit>,
}

/// One frame of a stream, as the schedule ran it: every face in view with its track and its
/// visit's current estimate.
#[derive(Debug, Clone)]
pub struct Frame {
    pub faces: Vec<FaceResult>,
    pub times: StageTimes,
    pub work: FrameWork,
}

impl Pipeline {
    /// Loads the models listed in `model_dir/manifest.json` for `model.use`, checking the
    /// manifest's signature and the files' hashes: [`Manifest::load`](crate::model::Manifest::load) →
    /// [`Manifest::verify`](crate::model::Manifest::verify) → [`Pipeline::from_verified`].
    pub fn load(config: &Config, model_dir: &Path) -> Result<Pipeline, Error> {
        let verified = crate::model::verified_models(model_dir, &config.model)?;
        Pipeline::from_verified(&verified, config)
    }

    /// Loads the detector and the age/gender model from hash-checked files.
    pub fn from_verified(models: &VerifiedModels, config: &Config) -> Result<Pipeline, Error> {
        let d = &config.detector;
        let detector = load_detector(models, d)?;
        let cache = config.model.cache_dir();
        let model = choose_model(models, config.model.precision, cache.as_deref())?.map(|m| {
            m.with_flip(config.model.flip)
                .with_prior_correction(config.model.age_prior_correction)
        });
        let trained = model.as_ref().and_then(|m| m.info().crop_margin);
        let framing = match &model {
            Some(m) => m.info().framing(d.crop_margin),
            None => Framing::boxed(d.crop_margin(None)),
        };
        let crop_margin = framing.margin;
        match (&model, trained, d.crop_margin) {
            (None, _, _) => log::warn!(
                "{} lists no age/gender model yet: faces are found and boxed, but no age or gender is estimated",
                models.manifest_file.display()
            ),
            (Some(_), Some(trained), Some(set)) if (trained - set).abs() > 1e-3 => log::warn!(
                "detector.crop_margin = {set} overrides the margin the model was trained with ({trained}); estimates will be worse unless the camera's boxes differ from the training crops"
            ),
            _ => log::info!("crop margin {crop_margin}"),
        }
        if let CropStyle::Eyes(_) = framing.style {
            log::info!(
                "crops aligned by the eyes ({}); faces without landmarks get box crops",
                framing.style
            );
        }
        let licence = models.licence_line();
        log::info!("{licence}");
        Ok(Pipeline {
            detector,
            model,
            framing,
            min_estimate_size: config.model.min_face_size,
            licence,
            schedule: Schedule::new(config.schedule),
            tracker: Tracker::new(
                TrackSettings::from_config(&config.stats)
                    .with_attention(AttentionRules::from_config(&config.attention)),
            ),
            ended: Vec::new(),
        })
    }

    /// Which age/gender model runs and its licence, in one line.
    pub fn licence(&self) -> &str {
        &self.licence
    }

    /// The margin crops are cut with ([`DetectorConfig::crop_margin`](crate::config::DetectorConfig::crop_margin)).
    pub fn crop_margin(&self) -> f32 {
        self.framing.margin
    }

    /// How faces are cut for the model (its crop style and the margin in force).
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The age/gender model, when one is installed.
    pub fn model(&self) -> Option<&AgeGenderModel> {
        self.model.as_ref()
    }

    /// Smallest face side, in frame pixels, whose age and gender are estimated.
    pub fn min_estimate_size(&self) -> u32 {
        self.min_estimate_size
    }

    /// Faces whose shorter box side is under `pixels` are counted without an estimate (see
    /// [`ModelConfig::min_face_size`](crate::config::ModelConfig::min_face_size)).
    pub fn with_min_estimate_size(mut self, pixels: u32) -> Pipeline {
        self.min_estimate_size = pixels;
        self
    }

    /// A pipeline from parts already loaded (tests, tools); it estimates every face found
    /// ([`Pipeline::with_min_estimate_size`] sets a floor) on every frame, until
    /// [`Pipeline::set_schedule`] says otherwise. Faces are cut in the model's crop style with
    /// `crop_margin`.
    pub fn from_parts(
        detector: Box<dyn FaceDetector>,
        model: Option<AgeGenderModel>,
        crop_margin: f32,
    ) -> Pipeline {
        let framing = Framing {
            style: model.as_ref().map(|m| m.info().crop).unwrap_or_default(),
            margin: crop_margin,
        };
        Pipeline {
            detector,
            model,
            framing,
            min_estimate_size: 0,
            licence: "age/gender model given by the caller".to_string(),
            schedule: Schedule::new(ScheduleConfig::every_frame()),
            tracker: Tracker::new(TrackSettings::default()),
            ended: Vec::new(),
        }
    }

    /// Runs streams as `schedule` says; faces followed so far are forgotten (a new stream)
    /// and the linking rules stay.
    pub fn set_schedule(&mut self, schedule: ScheduleConfig) {
        self.schedule = Schedule::new(schedule);
        self.tracker = Tracker::new(*self.tracker.settings());
        self.ended.clear();
    }

    /// Links faces into tracks by `tracking` from now on (faces followed so far are
    /// forgotten).
    pub fn with_tracking(mut self, tracking: TrackSettings) -> Pipeline {
        self.tracker = Tracker::new(tracking);
        self.ended.clear();
        self
    }

    /// Before [`Pipeline::frame_of`] on a frame the display shows at `shown`: when the
    /// detector also reads that frame, the larger of the two pictures is decoded first and
    /// serves both (a panel's 1/2 picture also feeds a detector reading 1/4, instead of two
    /// decodes). The whole frame for the faces classified is asked for later, only when one is.
    pub fn decode_shared(
        &self,
        pixels: &mut dyn Picture,
        shown: Option<(u32, u32)>,
    ) -> Result<(), crate::capture::CaptureError> {
        let detected = self
            .schedule
            .detects_next()
            .then(|| self.detector.reads(pixels.size()));
        if let (Some(a), Some(b)) = (shown, detected) {
            let larger = if a.0 * a.1 >= b.0 * b.1 { a } else { b };
            pixels.at_least(larger)?;
        }
        Ok(())
    }

    /// The schedule streams run with.
    pub fn schedule(&self) -> &ScheduleConfig {
        self.schedule.settings()
    }

    /// Whether ages and genders are estimated (an age/gender model is loaded).
    pub fn has_model(&self) -> bool {
        self.model.is_some()
    }

    /// The detector alone, on the whole frame.
    pub fn detect(&mut self, image: &RgbImage) -> Vec<FaceBox> {
        self.detector.detect(image)
    }

    /// Whether a face is large enough for an age/gender estimate (`model.min_face_size`)
    /// and a model is installed.
    pub fn can_estimate(&self, face: &FaceBox) -> bool {
        self.model.is_some() && face.width.min(face.height) >= self.min_estimate_size as f32
    }

    /// Crops one face and runs the age/gender network on it: its probabilities, or `None`
    /// when no model is installed.
    pub fn classify(
        &self,
        image: &RgbImage,
        face: &FaceBox,
    ) -> Result<Option<crate::model::FaceProbs>, Error> {
        let Some(model) = &self.model else {
            return Ok(None);
        };
        let crop = self.framing.crop(image, face, model.info().input_size);
        model.predict_probs(&crop).map(Some)
    }

    /// Runs every stage on one image: faces → crops → predictions, all faces in one batch;
    /// each face says whether it looks at the camera (`[attention]`).
    pub fn process(&mut self, image: &RgbImage) -> Result<(Vec<FaceResult>, StageTimes), Error> {
        let start = Instant::now();
        let faces = self.detector.detect(image);
        let detected = Instant::now();
        let mut times = StageTimes {
            detect: detected - start,
            ..StageTimes::default()
        };
        let attention = self.tracker.settings().attention;
        let Some(model) = &self.model else {
            let results = faces
                .into_iter()
                .map(|face| FaceResult {
                    looking: attention.looking(&face),
                    face,
                    estimate: None,
                    track: None,
                })
                .collect();
            return Ok((results, times));
        };
        let size = model.info().input_size;
        // Faces too small for a trustworthy estimate are kept (counted, boxed), not classified.
        let estimable: Vec<bool> = faces.iter().map(|f| self.can_estimate(f)).collect();
        let crops: Vec<RgbImage> = faces
            .iter()
            .zip(&estimable)
            .filter(|(_, &ok)| ok)
            .map(|(f, _)| self.framing.crop(image, f, size))
            .collect();
        let cropped = Instant::now();
        let mut estimates = if crops.is_empty() {
            Vec::new()
        } else {
            model.predict(&crops)?
        }
        .into_iter();
        times.crop = cropped - detected;
        times.infer = cropped.elapsed();
        let results = faces
            .into_iter()
            .zip(estimable)
            .map(|(face, ok)| FaceResult {
                looking: attention.looking(&face),
                face,
                estimate: if ok { estimates.next() } else { None },
                track: None,
            })
            .collect();
        Ok((results, times))
    }

    /// Runs one frame of a stream, seen at `now`, as the schedule says: on a detector frame
    /// the boxes are linked into tracks and the tracks due are classified; in between, the
    /// faces are carried at their last boxes. Visits that end are kept for
    /// [`Pipeline::take_visits`], even when classifying fails.
    pub fn frame(&mut self, image: &RgbImage, now: Instant) -> Result<Frame, Error> {
        self.frame_of(&mut Whole(image), now)
    }

    /// [`Pipeline::frame`] on a frame decoded only as large as each stage reads it: the
    /// detector's picture ([`FaceDetector::reads`]) on a detector frame, the whole frame only
    /// when a face is classified, nothing on the frames in between. A frame that turns out not
    /// to decode is a [`CaptureError::BadFrame`](crate::capture::CaptureError) (as
    /// [`Error::Capture`]).
    pub fn frame_of(&mut self, pixels: &mut dyn Picture, now: Instant) -> Result<Frame, Error> {
        let mut times = StageTimes::default();
        if !self.schedule.detect_next() {
            self.ended.extend(self.tracker.expire(now));
            return Ok(Frame {
                faces: self.in_view(),
                times,
                work: FrameWork::default(),
            });
        }
        let started = Instant::now();
        let boxes = detect_picture(self.detector.as_mut(), pixels)?;
        times.detect = started.elapsed();
        self.ended.extend(self.tracker.link(boxes, now));
        let classified = if self.schedule.is_every_frame() {
            self.classify_in_view(pixels, &mut times)?
        } else {
            let started = Instant::now();
            let classified = self.classify_due(pixels)?;
            times.infer = started.elapsed();
            classified
        };
        // Only a detector frame that ran to the end counts towards the visits.
        self.tracker.record_in_view();
        Ok(Frame {
            faces: self.in_view(),
            times,
            work: FrameWork {
                detected: true,
                classified,
            },
        })
    }

    /// The visits that ended so far, and those unseen for longer than the visit gap at `now`
    /// (a frame without detection, a camera fault). Each visit is handed out once.
    pub fn take_visits(&mut self, now: Instant) -> Vec<Visit> {
        self.ended.extend(self.tracker.expire(now));
        std::mem::take(&mut self.ended)
    }

    /// Ends every visit in progress and hands them out with those not yet taken (shutdown).
    pub fn finish_visits(&mut self) -> Vec<Visit> {
        let mut visits = std::mem::take(&mut self.ended);
        visits.extend(self.tracker.finish());
        visits
    }

    /// The faces found by the last detector frame, at their last boxes.
    fn in_view(&self) -> Vec<FaceResult> {
        self.tracker.in_view().map(Track::result).collect()
    }

    /// Every-frame reference: each track in view classified afresh, all in one batch.
    fn classify_in_view(
        &mut self,
        pixels: &mut dyn Picture,
        times: &mut StageTimes,
    ) -> Result<usize, Error> {
        let started = Instant::now();
        let Some(model) = &self.model else {
            return Ok(0);
        };
        let size = model.info().input_size;
        let estimable: Vec<bool> = self
            .tracker
            .in_view()
            .map(|t| self.can_estimate(&t.face))
            .collect();
        if !estimable.contains(&true) {
            for track in self.tracker.in_view_mut() {
                track.estimate = None;
            }
            return Ok(0);
        }
        let image = pixels.whole()?;
        let crops: Vec<RgbImage> = self
            .tracker
            .in_view()
            .zip(&estimable)
            .filter(|(_, &ok)| ok)
            .map(|(t, _)| self.framing.crop(image, &t.face, size))
            .collect();
        let cropped = Instant::now();
        let estimates = if crops.is_empty() {
            Vec::new()
        } else {
            model.predict(&crops)?
        };
        times.crop = cropped - started;
        times.infer = cropped.elapsed();
        let classified = estimates.len();
        let mut estimates = estimates.into_iter();
        for (track, ok) in self.tracker.in_view_mut().zip(estimable) {
            track.estimate = if ok { estimates.next() } else { None };
        }
        Ok(classified)
    }

    /// Scheduled: the tracks in view that are due, each classified and its probabilities
    /// added to its visit's sum.
    fn classify_due(&mut self, pixels: &mut dyn Picture) -> Result<usize, Error> {
        let Some(model) = &self.model else {
            return Ok(0);
        };
        let size = model.info().input_size;
        let min_side = self.min_estimate_size as f32;
        // Which tracks are due first: the whole frame is decoded only when one is.
        let due: Vec<bool> = self
            .tracker
            .in_view_mut()
            .map(|track| track.side() >= min_side && self.schedule.due(track))
            .collect();
        if !due.contains(&true) {
            return Ok(0);
        }
        let image = pixels.whole()?;
        let mut classified = 0;
        for (track, due) in self.tracker.in_view_mut().zip(due) {
            if !due {
                continue;
            }
            let crop = self.framing.crop(image, &track.face, size);
            let probs = model.predict_probs(&crop)?;
            let sum = match &mut track.probs {
                Some(sum) => {
                    sum.add(&probs);
                    sum
                }
                None => track.probs.insert(probs),
            };
            track.estimate = Some(model.estimate(sum));
            track.estimates += 1;
            track.since_check = 0;
            track.checked_side = track.side();
            classified += 1;
        }
        Ok(classified)
    }
}

/// Runs `detector` on a frame decoded only as large as it reads it
/// ([`FaceDetector::reads`]): its faces in the whole frame's pixels.
pub fn detect_picture(
    detector: &mut dyn FaceDetector,
    pixels: &mut dyn Picture,
) -> Result<Vec<FaceBox>, crate::capture::CaptureError> {
    let size = pixels.size();
    let picture = pixels.at_least(detector.reads(size))?;
    Ok(if picture.dimensions() == size {
        detector.detect(picture)
    } else {
        detector.detect_scaled(picture, size)
    })
}

/// Loads the age/gender model form `precision` asks for. `Auto` loads both forms the manifest
/// lists, times each and keeps the faster: on x86 tract runs the weight-only int8 model at
/// float speed, while on some ARM cores its integer kernels may win, so it is measured where
/// it runs rather than assumed.
pub fn choose_model(
    models: &VerifiedModels,
    precision: crate::config::ModelPrecision,
    cache_dir: Option<&Path>,
) -> Result<Option<AgeGenderModel>, Error> {
    use crate::config::ModelPrecision;
    let int8 = models.get(Role::AgeGenderInt8).map(|f| f.path.clone());
    let f32 = models.get(Role::AgeGenderF32).map(|f| f.path.clone());
    let load_one = |path: &Path| -> Result<AgeGenderModel, Error> {
        let started = Instant::now();
        let model = AgeGenderModel::load_cached(path, cache_dir)?;
        log::info!(
            "{}: {} in {:.0} ms",
            path.display(),
            model.loaded_from(),
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok(model)
    };
    let load = |path: &Path, why: &str| -> Result<AgeGenderModel, Error> {
        let model = load_one(path)?;
        log::info!(
            "age/gender model: {} ({1}x{1} input; {why})",
            path.display(),
            model.info().input_size
        );
        Ok(model)
    };
    let chosen = match (precision, int8, f32) {
        (_, None, None) => None,
        (ModelPrecision::F32, _, Some(f)) => Some(load(&f, "model.precision = f32")?),
        (ModelPrecision::Int8, Some(i), _) => Some(load(&i, "model.precision = int8")?),
        (ModelPrecision::Auto, Some(i), Some(f)) => {
            let (mi, mf) = (load_one(&i)?, load_one(&f)?);
            let times = crate::model::inspect::time_loaded(&[&mi, &mf], 9)?;
            let (ti, tf) = (times[0], times[1]);
            // int8 is the device's designated form; float replaces it only when clearly
            // faster, not on timing noise (on x86 tract folds the int8 weights to float at
            // load, so the two run at the same speed).
            let (keep, other) = if tf < 0.9 * ti {
                (mf, "int8")
            } else {
                (mi, "f32")
            };
            log::info!(
                "model.precision = auto: int8 {ti:.2} ms, f32 {tf:.2} ms per face here; keeping {}, dropping {other} (float must be 10 % faster to win)",
                if other == "f32" { "int8" } else { "f32" }
            );
            log::info!(
                "age/gender model: {} ({1}x{1} input)",
                keep.path().display(),
                keep.info().input_size
            );
            Some(keep)
        }
        (p, i, f) => {
            // Only one form is installed: use it, and say so if another was asked for.
            let path = i.or(f).expect("one form is present");
            if p != ModelPrecision::Auto {
                log::warn!(
                    "model.precision = {p:?} but the manifest lists only {}; using it",
                    path.display()
                );
            }
            Some(load(&path, "the only form installed")?)
        }
    };
    Ok(chosen)
}

/// The model files (manifest roles) detector `kind` loads.
pub fn detector_roles(kind: DetectorKind) -> &'static [Role] {
    match kind {
        DetectorKind::Yunet => &[Role::FaceDetectorYunet, Role::FaceDetector],
        DetectorKind::BlazefaceCascade => &[Role::FaceDetectorBack, Role::FaceDetector],
        DetectorKind::Blazeface => &[Role::FaceDetector],
        DetectorKind::BlazefaceFullRange => &[Role::FaceDetectorFullRange],
        DetectorKind::BlazefaceBack => &[Role::FaceDetectorBack],
        DetectorKind::Seeta => &[Role::FaceDetectorFallback],
    }
}

/// Loads the detector `config.kind()` names from its manifest entry: YuNet
/// (`face_detector_yunet`, research use only), the BlazeFace networks (`face_detector`,
/// `_full_range`, `_back`; the cascade takes the back-camera and the short-range one) or SeetaFace (`face_detector_fallback`). A detector asked for by name never falls back
/// to another, except short-range BlazeFace in a models folder from before BlazeFace (SeetaFace,
/// with its default threshold).
pub fn load_detector(
    models: &VerifiedModels,
    config: &crate::config::DetectorConfig,
) -> Result<Box<dyn FaceDetector>, Error> {
    let detector = load_whole_frame_detector(models, config)?;
    Ok(match config.tiles {
        Some([cols, rows]) => {
            log::info!("face detector: also on {cols}x{rows} overlapping tiles of each frame");
            let grid = crate::vision::tiled::TileGrid {
                cols,
                rows,
                ..Default::default()
            };
            Box::new(
                crate::vision::tiled::TiledDetector::new(detector, grid)
                    .with_max_faces(config.max_faces),
            )
        }
        None => detector,
    })
}

/// The configured detector run on the whole frame (no tiles).
fn load_whole_frame_detector(
    models: &VerifiedModels,
    config: &crate::config::DetectorConfig,
) -> Result<Box<dyn FaceDetector>, Error> {
    let settings = DetectorSettings {
        min_face_size: config.min_face_size,
        score_threshold: config.score_threshold(),
        max_faces: config.max_faces,
    };
    let manifest_file = &models.manifest_file;
    let path_of = |role: Role| -> Result<std::path::PathBuf, Error> {
        models.get(role).map(|f| f.path.clone()).ok_or_else(|| Error::Model {
            file: manifest_file.clone(),
            problem: if role == Role::FaceDetectorYunet
                && models.model_use == crate::config::ModelUse::Commercial
            {
                "lists no face_detector_yunet model for model.use = \"commercial\": YuNet is for research use only (models/LICENSE.yunet); remove detector.kind to run \"blazeface-cascade\"".to_string()
            } else {
                format!(
                    "lists no {} model for model.use = \"{}\"; reinstall the models",
                    role.name(),
                    models.model_use.name()
                )
            },
        })
    };
    let licence = |role: Role| {
        if let Some(line) = models.detector_licence_line(role) {
            log::info!("{line}");
        }
    };
    let seeta = |settings: DetectorSettings| -> Result<Box<dyn FaceDetector>, Error> {
        let path = path_of(Role::FaceDetectorFallback)?;
        let detector = SeetaDetector::load(&path, settings)?;
        log::info!(
            "face detector: SeetaFace {} (score threshold {})",
            path.display(),
            settings.score_threshold
        );
        Ok(Box::new(detector))
    };
    let blazeface =
        |variant: Variant, settings: DetectorSettings| -> Result<BlazeFaceDetector, Error> {
            let role = match variant {
                Variant::ShortRange => Role::FaceDetector,
                Variant::FullRange => Role::FaceDetectorFullRange,
                Variant::Back => Role::FaceDetectorBack,
            };
            let path = path_of(role)?;
            let detector = BlazeFaceDetector::load(&path, variant, settings)?;
            log::info!(
                "face detector: BlazeFace {} {} (score threshold {})",
                variant.name(),
                path.display(),
                settings.score_threshold
            );
            licence(role);
            Ok(detector)
        };
    // Candidates confirmed by the short-range network on a magnified crop around each (it sees
    // magnified crops: no minimum size of its own).
    let verified_by_short_range =
        |proposer: Box<dyn FaceDetector>| -> Result<Box<dyn FaceDetector>, Error> {
            let verifier = blazeface(
                Variant::ShortRange,
                DetectorSettings {
                    min_face_size: 1,
                    ..settings
                },
            )?;
            log::info!(
                "face detector: candidates confirmed by BlazeFace short-range on a magnified crop (score threshold {})",
                settings.score_threshold
            );
            Ok(Box::new(CascadeDetector::new(
                proposer,
                Box::new(verifier),
                None,
                settings,
            )))
        };
    match config.kind() {
        DetectorKind::Seeta => seeta(settings),
        DetectorKind::Yunet => {
            let path = path_of(Role::FaceDetectorYunet)?;
            let proposer = YuNetDetector::load(
                &path,
                config.input_size(),
                DetectorSettings {
                    score_threshold: crate::vision::yunet::PROPOSE_THRESHOLD,
                    max_faces: crate::vision::cascade::MAX_CANDIDATES,
                    ..settings
                },
            )?;
            log::info!(
                "face detector: YuNet {} (input {} px on the longer side, candidates from {})",
                path.display(),
                config.input_size(),
                crate::vision::yunet::PROPOSE_THRESHOLD
            );
            licence(Role::FaceDetectorYunet);
            verified_by_short_range(Box::new(proposer))
        }
        DetectorKind::BlazefaceCascade => {
            let proposer = blazeface(
                Variant::Back,
                DetectorSettings {
                    score_threshold: crate::vision::cascade::PROPOSE_THRESHOLD,
                    max_faces: crate::vision::cascade::MAX_CANDIDATES,
                    ..settings
                },
            )?;
            verified_by_short_range(Box::new(proposer))
        }
        DetectorKind::BlazefaceFullRange => Ok(Box::new(blazeface(Variant::FullRange, settings)?)),
        DetectorKind::BlazefaceBack => Ok(Box::new(blazeface(Variant::Back, settings)?)),
        DetectorKind::Blazeface => match models.get(Role::FaceDetector) {
            Some(_) => Ok(Box::new(blazeface(Variant::ShortRange, settings)?)),
            None => {
                log::warn!(
                    "{} lists no face_detector (BlazeFace) model; falling back to SeetaFace with its default threshold",
                    manifest_file.display()
                );
                seeta(DetectorSettings {
                    score_threshold: DetectorKind::Seeta.default_score_threshold(),
                    ..settings
                })
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AgeGender;

    /// The default detectors of both uses, as the daemon loads them: the bundled non-face
    /// images (objects, textures, a cat) give no box but for the one known miss below, which
    /// det-bench counts (docs/models.md, "Detection range and small faces"); the bundled faces are found, with
    /// landmarks. Short-range BlazeFace, the default before them, boxes the cat, the cells and
    /// the Hubble field.
    #[test]
    fn the_default_detectors_find_the_faces_and_nothing_else() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let models = crate::model::Manifest::load(
            &dir.join("models"),
            &crate::model::TrustedKeys::project(),
        )
        .unwrap();
        for model_use in [
            crate::config::ModelUse::Research,
            crate::config::ModelUse::Commercial,
        ] {
            let config = crate::config::DetectorConfig {
                kind: Some(DetectorKind::default_for(model_use)),
                ..Default::default()
            };
            let mut detector = load_detector(&models.verify(model_use).unwrap(), &config).unwrap();
            for folder in [
                "tests/data/nonfaces",
                "tests/data/blazeface/nonfaces",
                "tests/data/blazeface/animals",
            ] {
                for entry in std::fs::read_dir(dir.join(folder)).unwrap() {
                    let path = entry.unwrap().path();
                    let found = detector.detect(&image::open(&path).unwrap().to_rgb8());
                    // The commercial cascade confirms one blob of the microscope image.
                    let known = model_use == crate::config::ModelUse::Commercial
                        && path.ends_with("cell_microscopy.jpg");
                    assert!(
                        found.len() <= usize::from(known),
                        "{model_use:?}: {}: {found:?}",
                        path.display()
                    );
                }
            }
            let two = image::open(dir.join("tests/data/blazeface/faces/two_faces_640x480.jpg"))
                .unwrap()
                .to_rgb8();
            let found = detector.detect(&two);
            let near = FaceBox::new(94.0, 214.0, 72.0, 76.0, 1.0);
            assert!(
                found.iter().any(|f| f.iou(&near) > 0.5),
                "{model_use:?}: {found:?}"
            );
            assert!(found.iter().all(|f| f.landmarks.is_some()), "{found:?}");
        }
    }

    /// Two fixed faces: one on the left half of the frame, one on the right.
    struct TwoFaces;

    impl FaceDetector for TwoFaces {
        fn detect(&mut self, _: &RgbImage) -> Vec<FaceBox> {
            let face = |x| FaceBox {
                x,
                y: 4.0,
                width: 24.0,
                height: 24.0,
                score: 1.0,
                landmarks: None,
            };
            vec![face(4.0), face(36.0)]
        }
    }

    #[test]
    fn each_face_is_cropped_and_estimated_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let model = crate::model::onnx_build::tests_support::tiny_age_gender_model(dir.path(), 16);
        let mut pipeline = Pipeline::from_parts(Box::new(TwoFaces), Some(model), 0.0);
        // Left half magenta (red + blue: age 60, female), right half green (age 20, male).
        let frame = RgbImage::from_fn(64, 32, |x, _| {
            if x < 32 {
                image::Rgb([255, 0, 255])
            } else {
                image::Rgb([0, 255, 0])
            }
        });
        let (results, _) = pipeline.process(&frame).unwrap();
        let estimates: Vec<AgeGender> = results.iter().map(|r| r.estimate.unwrap()).collect();
        assert!((estimates[0].age - 60.0).abs() < 1.5, "{estimates:?}");
        assert_eq!(estimates[0].gender, crate::model::Gender::Female);
        assert!((estimates[1].age - 20.0).abs() < 1.5, "{estimates:?}");
        assert_eq!(estimates[1].gender, crate::model::Gender::Male);
    }

    /// A detector that finds one 16 px face at the left and one 32 px face at the right.
    struct NearAndFar;

    impl FaceDetector for NearAndFar {
        fn detect(&mut self, _: &RgbImage) -> Vec<FaceBox> {
            let face = |x, side| FaceBox {
                x,
                y: 0.0,
                width: side,
                height: side,
                score: 1.0,
                landmarks: None,
            };
            vec![face(4.0, 16.0), face(32.0, 32.0)]
        }
    }

    #[test]
    fn faces_under_the_estimate_floor_are_kept_without_an_estimate() {
        let dir = tempfile::tempdir().unwrap();
        let model = crate::model::onnx_build::tests_support::tiny_age_gender_model(dir.path(), 16);
        let frame = RgbImage::from_fn(64, 32, |x, _| {
            if x < 32 {
                image::Rgb([255, 0, 255])
            } else {
                image::Rgb([0, 255, 0])
            }
        });
        let mut pipeline =
            Pipeline::from_parts(Box::new(NearAndFar), Some(model), 0.0).with_min_estimate_size(20);
        let (results, _) = pipeline.process(&frame).unwrap();
        assert_eq!(results.len(), 2, "both faces are kept");
        assert_eq!(results[0].face.width, 16.0);
        assert_eq!(results[0].estimate, None, "16 px is under the 20 px floor");
        // The right-hand (green) face is estimated as its own crop: age 20, male.
        let near = results[1].estimate.expect("32 px is estimated");
        assert!((near.age - 20.0).abs() < 1.5, "{near:?}");
        assert_eq!(near.gender, crate::model::Gender::Male);

        // Every face under the floor: no inference at all, both still reported.
        let mut pipeline = pipeline.with_min_estimate_size(40);
        let (results, _) = pipeline.process(&frame).unwrap();
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r.estimate.is_none()));
    }
}
