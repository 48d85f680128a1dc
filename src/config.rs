//! The daemon's configuration: a TOML file, parsed strictly and validated once at start.
//!
//! Every key has a default, so an empty file (or none) is a working configuration. Unknown keys
//! are errors because a typo in a kiosk's config should stop it at install time, not silently
//! fall back to a default for months. Every error names the file, the key, what was found and
//! what is allowed, on one line, so it reads well in `journalctl`.

use crate::buckets::AgeBuckets;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a configuration error was found and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file the configuration came from.
    pub file: PathBuf,
    /// Dotted key path such as `camera.fps`; empty for a file-level problem.
    pub key: String,
    /// 1-based line of the offending value, when the parser knows it.
    pub line: Option<usize>,
    /// What is wrong, including what was found and what is allowed.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ", key `{}`", self.key)?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub camera: CameraConfig,
    pub detector: DetectorConfig,
    pub model: ModelConfig,
    pub schedule: ScheduleConfig,
    pub display: DisplayConfig,
    pub stats: StatsConfig,
    pub attention: AttentionConfig,
    pub push: PushConfig,
}

/// How much work each frame gets (`[schedule]`): the detector on every Nth frame, the
/// age/gender network on a visit's first frames and now and then after. `detect_every = 1`
/// with `settle_estimates = 0` is the every-frame daemon.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Run the detector on every Nth frame (1 = every frame); in between, the faces are
    /// followed at their last boxes. A new arrival waits at most N − 1 frames to be found.
    pub detect_every: u32,
    /// Classify a face on its first N frames large enough for an estimate, summing the
    /// network's probabilities; then the visit's estimate is settled. 0 classifies every
    /// face in every frame it is detected.
    pub settle_estimates: u32,
    /// Classify a settled face again every N detector frames it is seen in (0: never).
    pub recheck_every: u32,
    /// Start a face's estimate afresh when its box side has grown or shrunk by this factor
    /// since it was last classified: someone else may have stepped into the same place.
    pub recheck_on_resize: f32,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            detect_every: 5,
            settle_estimates: 5,
            recheck_every: 30,
            recheck_on_resize: 1.5,
        }
    }
}

impl ScheduleConfig {
    /// Today's every-frame work: the detector on every frame, every face classified.
    pub fn every_frame() -> ScheduleConfig {
        ScheduleConfig {
            detect_every: 1,
            settle_estimates: 0,
            ..ScheduleConfig::default()
        }
    }
}

/// Where frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraSource {
    /// A V4L2 camera (`/dev/videoN`); needs the `device` build.
    V4l2,
    /// Still images from a folder, in file-name order.
    Folder,
    /// The sample frames built into the binary, each held for a second's worth of frames
    /// (what `agecam run --demo` uses); for trying agecam without a camera.
    Demo,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    pub source: CameraSource,
    pub device: PathBuf,
    pub folder: PathBuf,
    /// With `source = "folder"`: start again at the first image after the last one.
    pub repeat: bool,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            source: CameraSource::V4l2,
            device: PathBuf::from("/dev/video0"),
            folder: PathBuf::from("/usr/share/agecam/demo"),
            repeat: false,
            width: 640,
            height: 480,
            fps: 30,
        }
    }
}

/// Default `detector.score_threshold` of the detectors whose candidates short-range BlazeFace
/// confirms (`yunet`, `blazeface-cascade`): the confirming network's probability. Chosen by
/// `agecam-host det-bench` (docs/models.md, "Detection range and small faces").
pub const CONFIRM_SCORE_THRESHOLD: f32 = 0.7;
/// Default `detector.input_size` (YuNet's input's longer side, pixels): a 640×480 frame is read
/// as it is; at 384 YuNet loses most faces under 40 px.
pub const DEFAULT_YUNET_INPUT_SIZE: u32 = 640;

/// Which face detector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorKind {
    /// YuNet (libfacedetection; the default with `model.use = "research"`) candidates, each
    /// confirmed by BlazeFace short-range on a magnified crop (YuNet alone boxes a coffee cup).
    /// YuNet's weights are Apache-2.0 but it was trained on WIDER FACE, whose annotations are
    /// for non-commercial research, so it is not loaded with `model.use = "commercial"`.
    /// Scores are the short-range network's probabilities.
    Yunet,
    /// BlazeFace back-camera candidates, each confirmed by BlazeFace short-range on a magnified
    /// crop around it (the default with `model.use = "commercial"`: every part Apache-2.0,
    /// trained on Google's own data). Scores are the short-range network's probabilities.
    BlazefaceCascade,
    /// MediaPipe BlazeFace short-range (128×128 input, faces within ~2 m; a small network run
    /// by tract, ~10x faster than SeetaFace). Scores are probabilities from 0 to 1.
    Blazeface,
    /// MediaPipe BlazeFace full-range (192×192 input, one dense 48×48 anchor grid, made for
    /// faces up to ~5 m). Scores are probabilities.
    BlazefaceFullRange,
    /// MediaPipe BlazeFace back-camera (256×256 input, short-range's anchor layout at twice
    /// the resolution). Scores are probabilities.
    BlazefaceBack,
    /// The SeetaFace cascade (the fallback). Scores are the cascade's own, unbounded scale.
    Seeta,
}

impl DetectorKind {
    /// The detector that runs when `detector.kind` is not set: it follows `model.use`, so a
    /// commercial unit never loads a detector trained on non-commercial data.
    pub fn default_for(model_use: ModelUse) -> DetectorKind {
        match model_use {
            ModelUse::Research => DetectorKind::Yunet,
            ModelUse::Commercial => DetectorKind::BlazefaceCascade,
        }
    }

    /// The score threshold used when `detector.score_threshold` is not set.
    pub fn default_score_threshold(self) -> f32 {
        match self {
            DetectorKind::Yunet | DetectorKind::BlazefaceCascade => CONFIRM_SCORE_THRESHOLD,
            DetectorKind::Blazeface
            | DetectorKind::BlazefaceFullRange
            | DetectorKind::BlazefaceBack => 0.5,
            DetectorKind::Seeta => 2.0,
        }
    }

    /// Whether scores are probabilities (0 to 1); SeetaFace's are not.
    pub fn scores_are_probabilities(self) -> bool {
        self != DetectorKind::Seeta
    }

    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::Yunet => "yunet",
            DetectorKind::BlazefaceCascade => "blazeface-cascade",
            DetectorKind::Blazeface => "blazeface",
            DetectorKind::BlazefaceFullRange => "blazeface-full-range",
            DetectorKind::BlazefaceBack => "blazeface-back",
            DetectorKind::Seeta => "seeta",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Which detector runs; unset, the one `model.use` allows ([`DetectorKind::default_for`]):
    /// `None` is the research default, and [`Config::parse`] fills in the commercial one for
    /// `model.use = "commercial"`. Read it through [`DetectorConfig::kind`].
    pub kind: Option<DetectorKind>,
    /// Smallest face side, in pixels of the camera frame, that is looked for.
    pub min_face_size: u32,
    /// Score a face must reach, on the scale of `kind` (see [`DetectorConfig::score_threshold`]);
    /// `None` takes that detector's default.
    pub score_threshold: Option<f32>,
    /// At most this many faces per frame, largest first.
    pub max_faces: usize,
    /// Margin added around the detected box on each side, as a fraction of the box side.
    /// Unset (the default): the margin the age/gender model was trained with, from its
    /// metadata (see [`DetectorConfig::crop_margin`] for the one precedence rule).
    pub crop_margin: Option<f32>,
    /// `[columns, rows]`: also run the detector on that grid of overlapping tiles of the frame
    /// (each at full resolution, so small faces are magnified), merging the boxes; unset, the
    /// whole frame only. Costs one more detector run per tile.
    pub tiles: Option<[u32; 2]>,
    /// YuNet only: the longer side of the network's input, in pixels (a multiple of 32); the
    /// frame is scaled to it. Unset: 640 (a 640×480 frame is read as it is).
    pub input_size: Option<u32>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            kind: None,
            // As small as the SeetaFace cascade looks: a distant face is counted even when it
            // is too small for an age/gender estimate (`model.min_face_size`).
            min_face_size: 20,
            score_threshold: None,
            max_faces: 8,
            crop_margin: None,
            tiles: None,
            input_size: None,
        }
    }
}

/// Crop margin for a model that does not say which margin it was trained with.
pub const DEFAULT_CROP_MARGIN: f32 = 0.25;

/// The one precedence rule for the crop margin: `explicit` (a configured value) wins, else
/// the model's metadata, else [`DEFAULT_CROP_MARGIN`].
pub fn resolve_crop_margin(explicit: Option<f32>, model: Option<f32>) -> f32 {
    explicit.or(model).unwrap_or(DEFAULT_CROP_MARGIN)
}

impl DetectorConfig {
    /// The crop margin in force — the one rule for a value both the config and the model
    /// carry: an explicit `detector.crop_margin` wins, else the model's `agecam.crop_margin`
    /// metadata, else [`DEFAULT_CROP_MARGIN`]. The device and `agecam-host eval` both use it.
    pub fn crop_margin(&self, model: Option<f32>) -> f32 {
        resolve_crop_margin(self.crop_margin, model)
    }

    /// The detector in force: the configured one, else the research default (YuNet), which
    /// is what [`Config::parse`] fills in for `model.use = "research"`.
    pub fn kind(&self) -> DetectorKind {
        self.kind
            .unwrap_or(DetectorKind::default_for(ModelUse::Research))
    }

    /// The threshold in force: the configured one, or the detector's default (e.g. 0.5 for
    /// BlazeFace's probabilities, 2.0 for the SeetaFace cascade's scores).
    pub fn score_threshold(&self) -> f32 {
        self.score_threshold
            .unwrap_or(self.kind().default_score_threshold())
    }

    /// YuNet's input size in force (the longer side, pixels).
    pub fn input_size(&self) -> u32 {
        self.input_size.unwrap_or(DEFAULT_YUNET_INPUT_SIZE)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Folder holding `manifest.json`, its signature and the model files it lists: the set
    /// installed with the package. A set installed later by `agecam models install` (in
    /// `store`) takes its place.
    pub dir: PathBuf,
    /// Folder of the model sets `agecam models install` adds: `sets/`, and the links `current`
    /// and `previous`. When `current` exists the daemon loads it instead of `dir`.
    pub store: PathBuf,
    /// Public keys (minisign `.pub` files) trusted to sign model manifests, besides the
    /// project's key built into the binary: for an operator who signs models of their own.
    pub public_keys: Vec<PathBuf>,
    /// Which age/gender model runs: `research` (the most accurate; trained on data licensed
    /// for non-commercial research only) or `commercial` (trained only on data whose licence
    /// allows commercial use). The manifest says which file is which.
    #[serde(rename = "use")]
    pub model_use: ModelUse,
    /// Which form of the age/gender model runs.
    pub precision: ModelPrecision,
    /// Folder for the prepared networks (`model::nnef_cache`), which shorten start-up. Unset:
    /// systemd's `$CACHE_DIRECTORY` when the unit sets `CacheDirectory=`, else no cache.
    pub cache_dir: Option<PathBuf>,
    /// Smallest face side, in camera pixels, whose age and gender are estimated. A smaller
    /// face is still found, boxed, tracked and counted, with age and gender `unknown`: below
    /// 40 px the estimates fall off quickly (docs/models.md, "Detection range and small faces").
    /// 0 estimates every face found.
    pub min_face_size: u32,
    /// Average each face crop's probabilities with its mirror image's (test-time
    /// augmentation): two network runs per classified face. On by default: on FairFace
    /// validation it lifts gender, 3-group and 9-group accuracy by 0.9, 1.2 and 1.4 points per
    /// photo and the scheduled visit's by 1.0, 0.9 and 0.2 (docs/models.md, "Test-time flip").
    pub flip: bool,
    /// How much of the network's own age prior is divided out of its age distributions
    /// (0-1; 0 = none, 1 = all ages equally likely beforehand): the training sets hold few
    /// people over 50, so the network pulls older faces young. Needs a model whose metadata
    /// carries its prior (`agecam.age_prior`); others are left as they are.
    pub age_prior_correction: f32,
}

/// Default of `model.age_prior_correction` (docs/models.md, "Age-prior correction").
pub const DEFAULT_AGE_PRIOR_CORRECTION: f32 = 0.25;

/// Default of `model.min_face_size`: from 40 px up, age and gender are within 1 y and 2.5
/// points of their full-size accuracy; at 32 px they are 1.8 y and 5 points worse.
pub const DEFAULT_MIN_ESTIMATE_SIZE: u32 = 40;

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            dir: PathBuf::from("/usr/share/agecam/models"),
            store: PathBuf::from("/var/lib/agecam/models"),
            public_keys: Vec::new(),
            model_use: ModelUse::Research,
            precision: ModelPrecision::Auto,
            cache_dir: None,
            min_face_size: DEFAULT_MIN_ESTIMATE_SIZE,
            flip: true,
            age_prior_correction: DEFAULT_AGE_PRIOR_CORRECTION,
        }
    }
}

impl ModelConfig {
    /// The cache folder in force: the configured one, else systemd's for the unit.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.clone().or_else(|| {
            // systemd may pass several colon-separated folders; the first is ours.
            let dirs = std::env::var_os("CACHE_DIRECTORY")?;
            let first = dirs.to_string_lossy().split(':').next()?.to_string();
            (!first.is_empty()).then(|| PathBuf::from(first))
        })
    }
}

/// Which age/gender model runs, by what its training data allows (`model.use`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelUse {
    /// Trained on everything available, including data licensed for non-commercial research
    /// only (UTKFace): the most accurate, not for commercial deployments.
    Research,
    /// Trained only on data whose licence allows commercial use (FairFace, CC BY 4.0).
    Commercial,
}

impl ModelUse {
    pub fn name(self) -> &'static str {
        match self {
            ModelUse::Research => "research",
            ModelUse::Commercial => "commercial",
        }
    }
}

/// Form of the age/gender model the device runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelPrecision {
    /// Time both forms at start-up and keep the faster (which one wins depends on the CPU).
    Auto,
    /// The int8 model (falls back to float if the manifest lists none).
    Int8,
    /// The float model.
    F32,
}

/// Where the overlay is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisplayTarget {
    /// Draw nothing (statistics only).
    None,
    /// Write annotated PNG snapshots into `display.png_dir`.
    Png,
    /// Draw on the Linux framebuffer `display.framebuffer` (HDMI or an fbtft SPI panel).
    Framebuffer,
    /// Drive an ST7789/ILI9341 SPI panel from user space (`[display.spi_lcd]`); needs the
    /// `device` (or `spi-lcd`) build.
    #[serde(rename = "spi_lcd")]
    SpiLcd,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisplayConfig {
    pub target: DisplayTarget,
    /// With `target = "framebuffer"`: the device node.
    pub framebuffer: PathBuf,
    pub png_dir: PathBuf,
    /// With `target = "png"`: write one snapshot every this many frames.
    pub png_every: u32,
    /// With `target = "spi_lcd"`: the panel and its wiring.
    pub spi_lcd: SpiLcdConfig,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            target: DisplayTarget::None,
            framebuffer: PathBuf::from("/dev/fb0"),
            png_dir: PathBuf::from("/var/lib/agecam/snapshots"),
            png_every: 1,
            spi_lcd: SpiLcdConfig::default(),
        }
    }
}

/// The controller chip of an SPI LCD panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LcdController {
    St7789,
    Ili9341,
}

impl LcdController {
    pub fn name(self) -> &'static str {
        match self {
            LcdController::St7789 => "ST7789",
            LcdController::Ili9341 => "ILI9341",
        }
    }

    /// Size of the controller's memory in its own (portrait) orientation; the visible panel is
    /// a window of it.
    pub const MEMORY: (u32, u32) = (240, 320);
}

/// Order of the sub-pixels on the panel glass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LcdColorOrder {
    Rgb,
    Bgr,
}

/// `[display.spi_lcd]`: an SPI panel and the GPIO lines it is wired to. Defaults fit the common
/// 240×240 ST7789 HATs (DC on GPIO 25).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpiLcdConfig {
    pub controller: LcdController,
    /// The spidev node (bus 0, chip select 0 is `/dev/spidev0.0`).
    pub device: PathBuf,
    pub clock_hz: u32,
    /// SPI mode 0 to 3; boards without a chip-select line often need 3.
    pub spi_mode: u8,
    /// The GPIO character device the pins below belong to.
    pub gpio_chip: PathBuf,
    /// Data/command line, as a line offset on `gpio_chip` (the BCM number on a Raspberry Pi).
    pub dc_pin: u32,
    /// Reset line; without one the panel is reset by command.
    pub reset_pin: Option<u32>,
    /// Backlight enable line; without one the backlight is wired on.
    pub backlight_pin: Option<u32>,
    /// Visible size as seen after `rotation`; `None` is 240×240 for the ST7789, 320×240 for
    /// the ILI9341.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Degrees clockwise, 0/90/180/270; `None` is 0 for the ST7789, 90 (landscape) for the
    /// ILI9341.
    pub rotation: Option<u32>,
    /// Inverted colours (INVON); `None` is on for the ST7789 (its IPS panels need it), off for
    /// the ILI9341.
    pub invert_colors: Option<bool>,
    pub color_order: LcdColorOrder,
    /// Offset of the visible window in the controller's memory, in its unrotated orientation
    /// (some 240×240 and 135×240 modules need one).
    pub offset_x: u32,
    pub offset_y: u32,
}

impl Default for SpiLcdConfig {
    fn default() -> Self {
        SpiLcdConfig {
            controller: LcdController::St7789,
            device: PathBuf::from("/dev/spidev0.0"),
            clock_hz: 40_000_000,
            spi_mode: 0,
            gpio_chip: PathBuf::from("/dev/gpiochip0"),
            dc_pin: 25,
            reset_pin: None,
            backlight_pin: None,
            width: None,
            height: None,
            rotation: None,
            invert_colors: None,
            color_order: LcdColorOrder::Rgb,
            offset_x: 0,
            offset_y: 0,
        }
    }
}

impl SpiLcdConfig {
    /// Visible width and height after rotation, defaults filled in.
    pub fn size(&self) -> (u32, u32) {
        let (w, h) = match self.controller {
            LcdController::St7789 => (240, 240),
            LcdController::Ili9341 => (320, 240),
        };
        (self.width.unwrap_or(w), self.height.unwrap_or(h))
    }

    pub fn rotation(&self) -> u32 {
        self.rotation.unwrap_or(match self.controller {
            LcdController::St7789 => 0,
            LcdController::Ili9341 => 90,
        })
    }

    pub fn invert_colors(&self) -> bool {
        self.invert_colors
            .unwrap_or(self.controller == LcdController::St7789)
    }

    /// The visible size in the controller's own orientation (width and height swap at 90° and
    /// 270°).
    pub fn unrotated_size(&self) -> (u32, u32) {
        let (w, h) = self.size();
        if self.rotation() % 180 == 90 {
            (h, w)
        } else {
            (w, h)
        }
    }

    fn validate(&self) -> Result<(), (String, String)> {
        fn bad(key: &str, found: impl fmt::Display, allowed: &str) -> Result<(), (String, String)> {
            Err((
                format!("display.spi_lcd.{key}"),
                format!("found {found}, allowed {allowed}"),
            ))
        }
        if self.device.as_os_str().is_empty() {
            return bad(
                "device",
                "nothing",
                "an spidev node such as \"/dev/spidev0.0\"",
            );
        }
        if self.gpio_chip.as_os_str().is_empty() {
            return bad(
                "gpio_chip",
                "nothing",
                "a GPIO chip such as \"/dev/gpiochip0\"",
            );
        }
        if !(1_000_000..=125_000_000).contains(&self.clock_hz) {
            return bad(
                "clock_hz",
                self.clock_hz,
                "1000000 to 125000000 Hz (40 MHz suits most panels and wiring)",
            );
        }
        if self.spi_mode > 3 {
            return bad("spi_mode", self.spi_mode, "0, 1, 2 or 3");
        }
        let pins = [
            ("dc_pin", Some(self.dc_pin)),
            ("reset_pin", self.reset_pin),
            ("backlight_pin", self.backlight_pin),
        ];
        for (i, (key, pin)) in pins.iter().enumerate() {
            let Some(pin) = pin else { continue };
            if *pin > 1023 {
                return bad(key, pin, "a GPIO line number from 0 to 1023");
            }
            if let Some((other, _)) = pins[..i].iter().find(|(_, p)| *p == Some(*pin)) {
                return bad(
                    key,
                    pin,
                    &format!("a line not already used by display.spi_lcd.{other}"),
                );
            }
        }
        if let Some(rotation) = self.rotation {
            if !matches!(rotation, 0 | 90 | 180 | 270) {
                return bad("rotation", rotation, "0, 90, 180 or 270 degrees");
            }
        }
        // The visible window, unrotated, must lie inside the controller's 240x320 memory.
        let (memory_w, memory_h) = LcdController::MEMORY;
        if self.offset_x >= memory_w {
            return bad("offset_x", self.offset_x, "0 to 239 pixels");
        }
        if self.offset_y >= memory_h {
            return bad("offset_y", self.offset_y, "0 to 319 pixels");
        }
        let rotation = self.rotation();
        let across = memory_w - self.offset_x;
        let down = memory_h - self.offset_y;
        let (max_w, max_h) = if rotation % 180 == 90 {
            (down, across)
        } else {
            (across, down)
        };
        let (w, h) = self.size();
        let fits = |key: &str, found: u32, max: u32| {
            if (1..=max).contains(&found) {
                Ok(())
            } else {
                bad(
                    key,
                    found,
                    &format!(
                        "1 to {max} pixels for the {}'s 240x320 memory at rotation {rotation} with offset_x = {}, offset_y = {}",
                        self.controller.name(),
                        self.offset_x,
                        self.offset_y
                    ),
                )
            }
        };
        fits("width", w, max_w)?;
        fits("height", h, max_h)?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Folder for the statistics database (`agecam-stats.sqlite`).
    pub dir: PathBuf,
    /// Name of this unit in exported statistics; empty means the machine's host name.
    pub unit_id: String,
    pub interval_minutes: u32,
    /// Length of an interval in seconds, instead of `interval_minutes`: for tests and demos
    /// that must see many intervals in a few minutes (the fleet chaos test). `None` in
    /// production.
    pub interval_seconds: Option<u32>,
    /// A visit ends when its face has been gone this long.
    pub visit_gap_seconds: f32,
    /// Tracks seen in fewer detector frames are not counted (passing false detections).
    pub min_track_frames: u32,
    /// Smallest box overlap (IoU) that links a detection to a face followed so far: the one
    /// tracker's rule, for the schedule and the statistics alike.
    pub link_iou: f32,
    /// The age buckets, from lower bounds rising from 0 (checked as the file is read).
    pub age_buckets: AgeBuckets,
    /// Smallest count published by exports and pushes.
    pub k_anonymity: u32,
    /// Laplace noise on published counts; 0 turns it off.
    pub laplace_epsilon: f64,
    /// Intervals older than this are deleted; 0 keeps them all.
    pub retention_days: u32,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            dir: PathBuf::from("/var/lib/agecam"),
            unit_id: String::new(),
            interval_minutes: 15,
            interval_seconds: None,
            visit_gap_seconds: 3.0,
            min_track_frames: 3,
            link_iou: 0.3,
            age_buckets: AgeBuckets::default(),
            k_anonymity: 5,
            laplace_epsilon: 0.0,
            retention_days: 365,
        }
    }
}

impl StatsConfig {
    pub const DATABASE_FILE: &'static str = "agecam-stats.sqlite";

    pub fn database(&self) -> PathBuf {
        self.dir.join(Self::DATABASE_FILE)
    }

    /// The interval length in force: `interval_seconds` when set, else `interval_minutes`.
    pub fn interval_s(&self) -> i64 {
        match self.interval_seconds {
            Some(seconds) => i64::from(seconds),
            None => i64::from(self.interval_minutes) * 60,
        }
    }

    /// `unit_id`, or the host name when it is empty.
    pub fn unit_id(&self) -> String {
        if !self.unit_id.is_empty() {
            return self.unit_id.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "agecam".to_string())
    }
}

/// Who looked at the screen (`[attention]`): a face is *looking* in a detector frame when its
/// head pose ([`crate::vision::pose`]) is within `max_yaw` and `max_pitch` of the camera's
/// axis; a visit's attention is the time it spent looking, and it counts as a *watcher* when
/// that reaches `min_seconds`. The defaults were chosen by measurement (docs/statistics.md,
/// "Attention").
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttentionConfig {
    /// Largest head turn left or right, in degrees, that still counts as looking.
    pub max_yaw: f32,
    /// Largest head tilt up or down, in degrees, that still counts as looking.
    pub max_pitch: f32,
    /// Seconds of looking that make a visit a watcher.
    pub min_seconds: f32,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig {
            max_yaw: 35.0,
            max_pitch: 35.0,
            min_seconds: 1.0,
        }
    }
}

/// Optional push of finished statistics intervals to an MQTT broker (see `crate::push`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    pub enabled: bool,
    /// Broker host name or IP address; required when enabled.
    pub host: String,
    /// Broker port; `None` is 1883, or 8883 with `tls`.
    pub port: Option<u16>,
    /// Messages go to `<topic_prefix>/<unit_id>/intervals`.
    pub topic_prefix: String,
    pub username: Option<String>,
    /// File holding the password (first line); read at start, so the secret never sits in
    /// the main configuration.
    pub password_file: Option<PathBuf>,
    pub tls: bool,
    /// PEM file of the CA certificate(s) the broker's certificate must chain to; required
    /// with `tls`.
    pub ca_file: Option<PathBuf>,
    /// Seconds between attempts while the broker cannot be reached.
    pub retry_seconds: u32,
    /// Each push round also publishes again the intervals acknowledged by the broker that
    /// ended this many seconds ago or less (0: off): a broker that crashes loses the messages
    /// it acknowledged but had not saved yet (mosquitto saves a message in flight to the
    /// collector only at its next change), and the collector counts each id once.
    pub resend_seconds: u32,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            enabled: false,
            host: String::new(),
            port: None,
            topic_prefix: "agecam".into(),
            username: None,
            password_file: None,
            tls: false,
            ca_file: None,
            retry_seconds: 30,
            resend_seconds: 0,
        }
    }
}

impl PushConfig {
    /// The port in force: the configured one, else 1883 (8883 with TLS).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls { 8883 } else { 1883 })
    }

    /// `<topic_prefix>/<unit_id>/intervals`.
    pub fn topic(&self, unit_id: &str) -> String {
        format!("{}/{unit_id}/intervals", self.topic_prefix)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        fn bad(key: &str, found: impl fmt::Display, allowed: &str) -> Result<(), (String, String)> {
            Err((key.to_string(), format!("found {found}, allowed {allowed}")))
        }
        if self.port == Some(0) {
            return bad("push.port", 0, "1 to 65535");
        }
        let host_ok = self.host.len() <= 253
            && self
                .host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:_[]".contains(c));
        if !host_ok {
            return bad(
                "push.host",
                format!("{:?}", self.host),
                "a host name or IP address (letters, digits, '-', '.', ':')",
            );
        }
        if self.enabled && self.host.is_empty() {
            return bad(
                "push.host",
                "nothing",
                "the broker's host name or IP address (required with push.enabled = true)",
            );
        }
        let prefix = &self.topic_prefix;
        if prefix.is_empty()
            || prefix.len() > 200
            || prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.contains("//")
            || prefix
                .chars()
                .any(|c| c.is_control() || c == '+' || c == '#')
        {
            return bad(
                "push.topic_prefix",
                format!("{prefix:?}"),
                "1 to 200 bytes of MQTT topic levels such as \"agecam\" or \"acme/kiosks\" (no '+', '#', control characters, or empty levels)",
            );
        }
        if let Some(user) = &self.username {
            if user.is_empty() || user.len() > 1024 || user.chars().any(char::is_control) {
                return bad(
                    "push.username",
                    format!("{user:?}"),
                    "1 to 1024 bytes without control characters",
                );
            }
        }
        if self.password_file.is_some() && self.username.is_none() {
            return bad(
                "push.username",
                "nothing",
                "a user name whenever push.password_file is set (MQTT sends a password only with a user name)",
            );
        }
        if self.tls && self.ca_file.is_none() {
            return bad(
                "push.ca_file",
                "nothing",
                "a PEM file of the broker's CA certificate (required with push.tls = true)",
            );
        }
        if self.resend_seconds > 7 * 86_400 {
            return bad(
                "push.resend_seconds",
                self.resend_seconds,
                "0 (off) to 604800 seconds (a week)",
            );
        }
        if !(1..=86_400).contains(&self.retry_seconds) {
            return bad(
                "push.retry_seconds",
                self.retry_seconds,
                "1 to 86400 seconds",
            );
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            line: None,
            problem: format!(
                "cannot read it ({e}); check the path, or start from deploy/agecam.toml"
            ),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `file` is only used in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            ConfigError {
                file: file.to_path_buf(),
                key: if key == "." { String::new() } else { key },
                line,
                problem: inner.message().trim().replace('\n', " "),
            }
        })?;
        // Unset, the detector follows model.use; `None` already means the research default.
        if config.detector.kind.is_none() && config.model.model_use != ModelUse::Research {
            config.detector.kind = Some(DetectorKind::default_for(config.model.model_use));
        }
        config.validate().map_err(|(key, problem)| ConfigError {
            file: file.to_path_buf(),
            line: line_of_key(text, &key),
            key,
            problem,
        })?;
        Ok(config)
    }

    /// Range checks serde cannot express. Returns the key and the problem.
    fn validate(&self) -> Result<(), (String, String)> {
        fn bad(key: &str, found: impl fmt::Display, allowed: &str) -> Result<(), (String, String)> {
            Err((key.to_string(), format!("found {found}, allowed {allowed}")))
        }
        let c = &self.camera;
        if !(16..=7680).contains(&c.width) {
            return bad("camera.width", c.width, "16 to 7680 pixels");
        }
        if !(16..=4320).contains(&c.height) {
            return bad("camera.height", c.height, "16 to 4320 pixels");
        }
        if !(1..=240).contains(&c.fps) {
            return bad("camera.fps", c.fps, "1 to 240 frames per second");
        }
        let d = &self.detector;
        if !(20..=2000).contains(&d.min_face_size) {
            // The SeetaFace cascade's smallest window is 20 pixels.
            return bad(
                "detector.min_face_size",
                d.min_face_size,
                "20 to 2000 pixels",
            );
        }
        let threshold = d.score_threshold();
        let kind = d.kind();
        if kind.scores_are_probabilities() && !(0.0..=1.0).contains(&threshold) {
            return bad(
                "detector.score_threshold",
                threshold,
                &format!(
                    "0.0 to 1.0 (a probability) with detector.kind = \"{}\"; SeetaFace's scale needs kind = \"seeta\"",
                    kind.name()
                ),
            );
        }
        if !kind.scores_are_probabilities() && (!threshold.is_finite() || threshold < 0.0) {
            return bad(
                "detector.score_threshold",
                threshold,
                "a number >= 0 with detector.kind = \"seeta\"",
            );
        }
        if kind == DetectorKind::Yunet && self.model.model_use == ModelUse::Commercial {
            return bad(
                "detector.kind",
                "\"yunet\" with model.use = \"commercial\"",
                "a detector whose training data allows commercial use: YuNet was trained on \
                 WIDER FACE, whose annotations are for non-commercial research (models/LICENSE.yunet); \
                 remove detector.kind (model.use = \"commercial\" then runs \"blazeface-cascade\")",
            );
        }
        if let Some(size) = d.input_size {
            if kind != DetectorKind::Yunet {
                return bad(
                    "detector.input_size",
                    format!("{size} with detector.kind = \"{}\"", kind.name()),
                    "only with detector.kind = \"yunet\" (the other detectors' inputs are fixed)",
                );
            }
            if !(128..=1920).contains(&size) || size % 32 != 0 {
                return bad(
                    "detector.input_size",
                    size,
                    "a multiple of 32 from 128 to 1920 pixels",
                );
            }
        }
        if !(1..=64).contains(&d.max_faces) {
            return bad("detector.max_faces", d.max_faces, "1 to 64");
        }
        if let Some([cols, rows]) = d.tiles.filter(|t| !t.iter().all(|n| (1..=4).contains(n))) {
            return bad(
                "detector.tiles",
                format!("[{cols}, {rows}]"),
                "[columns, rows], each 1 to 4",
            );
        }
        if let Some(margin) = d.crop_margin.filter(|m| !(0.0..=1.0).contains(m)) {
            return bad("detector.crop_margin", margin, "0.0 to 1.0");
        }
        if self.model.min_face_size > 2000 {
            return bad(
                "model.min_face_size",
                self.model.min_face_size,
                "0 (estimate every face) to 2000 pixels",
            );
        }
        let tau = self.model.age_prior_correction;
        if !(0.0..=1.0).contains(&tau) {
            return bad(
                "model.age_prior_correction",
                tau,
                "0.0 (off) to 1.0 (the whole prior divided out)",
            );
        }
        if self.display.png_every == 0 {
            return bad("display.png_every", 0, "1 or more frames");
        }
        let w = &self.schedule;
        if !(1..=30).contains(&w.detect_every) {
            return bad(
                "schedule.detect_every",
                w.detect_every,
                "1 (every frame) to 30 frames",
            );
        }
        if w.settle_estimates > 1000 {
            return bad(
                "schedule.settle_estimates",
                w.settle_estimates,
                "0 (classify every frame) to 1000 frames",
            );
        }
        if w.recheck_every > 100_000 {
            return bad(
                "schedule.recheck_every",
                w.recheck_every,
                "0 (never) to 100000 frames",
            );
        }
        if !(1.05..=10.0).contains(&w.recheck_on_resize) {
            return bad(
                "schedule.recheck_on_resize",
                w.recheck_on_resize,
                "a factor from 1.05 to 10",
            );
        }
        self.display.spi_lcd.validate()?;
        let st = &self.stats;
        if !(1..=1440).contains(&st.interval_minutes) {
            return bad(
                "stats.interval_minutes",
                st.interval_minutes,
                "1 to 1440 minutes",
            );
        }
        if let Some(seconds) = st.interval_seconds {
            if !(1..=86_400).contains(&seconds) {
                return bad(
                    "stats.interval_seconds",
                    seconds,
                    "1 to 86400 seconds (or leave it out and set stats.interval_minutes)",
                );
            }
        }
        if !(0.2..=600.0).contains(&st.visit_gap_seconds) {
            return bad(
                "stats.visit_gap_seconds",
                st.visit_gap_seconds,
                "0.2 to 600 seconds",
            );
        }
        if !(1..=1000).contains(&st.min_track_frames) {
            return bad(
                "stats.min_track_frames",
                st.min_track_frames,
                "1 to 1000 frames",
            );
        }
        if !(0.05..=0.95).contains(&st.link_iou) {
            return bad("stats.link_iou", st.link_iou, "0.05 to 0.95");
        }
        if !(1..=1000).contains(&st.k_anonymity) {
            return bad("stats.k_anonymity", st.k_anonymity, "1 to 1000");
        }
        if !st.laplace_epsilon.is_finite() || st.laplace_epsilon < 0.0 {
            return bad(
                "stats.laplace_epsilon",
                st.laplace_epsilon,
                "0 (off) or a positive number",
            );
        }
        if self.push.resend_seconds > 0 && st.laplace_epsilon > 0.0 {
            return bad(
                "push.resend_seconds",
                self.push.resend_seconds,
                "0 with stats.laplace_epsilon > 0 (every publish draws fresh noise, so a re-sent \
                 interval would reach the collector as a conflict)",
            );
        }
        let at = &self.attention;
        if !(1.0..=90.0).contains(&at.max_yaw) {
            return bad("attention.max_yaw", at.max_yaw, "1 to 90 degrees");
        }
        if !(1.0..=90.0).contains(&at.max_pitch) {
            return bad("attention.max_pitch", at.max_pitch, "1 to 90 degrees");
        }
        if !(0.0..=600.0).contains(&at.min_seconds) {
            return bad(
                "attention.min_seconds",
                at.min_seconds,
                "0 (any look) to 600 seconds",
            );
        }
        if st.unit_id.len() > 64
            || st
                .unit_id
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return bad(
                "stats.unit_id",
                format!("{:?}", st.unit_id),
                "up to 64 letters, digits, '-', '_' or '.'",
            );
        }
        self.push.validate()
    }
}

/// Best-effort line of `section.key = …` in the text, for range errors found after parsing.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.')?;
    let mut in_section = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[') {
            in_section = header.trim_end_matches(']').trim() == section;
            continue;
        }
        let name = line.split('=').next().unwrap_or("").trim();
        if in_section && name == key {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/agecam/agecam.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn shipped_default_config_parses_and_matches_the_code_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/agecam.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn model_use_chooses_the_model_and_names_the_key_when_wrong() {
        assert_eq!(Config::default().model.model_use, ModelUse::Research);
        let config = parse("[model]\nuse = \"commercial\"\n").unwrap();
        assert_eq!(config.model.model_use, ModelUse::Commercial);
        let err = parse("[model]\nuse = \"shop\"\n").unwrap_err();
        assert_eq!(err.key, "model.use", "{err}");
    }

    #[test]
    fn estimate_floor_defaults_to_40_px_and_names_the_key_when_wrong() {
        assert_eq!(Config::default().model.min_face_size, 40);
        assert_eq!(Config::default().detector.min_face_size, 20);
        let config = parse("[model]\nmin_face_size = 0\n").unwrap();
        assert_eq!(config.model.min_face_size, 0, "0 estimates every face");
        let err = parse("[model]\nmin_face_size = 5000\n").unwrap_err();
        assert_eq!(err.key, "model.min_face_size", "{err}");
        assert!(err.to_string().contains("found 5000"), "{err}");
    }

    #[test]
    fn crop_margin_has_one_precedence_rule() {
        // Unset: the model's metadata, else the default.
        let unset = Config::default().detector;
        assert_eq!(unset.crop_margin(Some(0.3)), 0.3);
        assert_eq!(unset.crop_margin(None), DEFAULT_CROP_MARGIN);
        // Set: it wins over the model's.
        let set = parse("[detector]\ncrop_margin = 0.1\n").unwrap().detector;
        assert_eq!(set.crop_margin(Some(0.3)), 0.1);
        assert_eq!(set.crop_margin(None), 0.1);
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let err = parse("[camera]\nwidth = 320\nfsp = 15\n").unwrap_err();
        let line = err.to_string();
        assert_eq!(err.line, Some(3), "{line}");
        assert!(
            line.starts_with("config /etc/agecam/agecam.toml line 3"),
            "{line}"
        );
        assert!(line.contains("unknown field `fsp`"), "{line}");
        assert!(line.contains("`fps`"), "lists the allowed keys: {line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn unknown_section_is_rejected() {
        let err = parse("[camra]\nfps = 15\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `camra`"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_found_and_expected() {
        let err = parse("[camera]\nfps = \"fast\"\n").unwrap_err();
        assert_eq!(err.key, "camera.fps");
        assert_eq!(err.line, Some(2));
        let line = err.to_string();
        assert!(line.contains("string \"fast\""), "{line}");
        assert!(line.contains("u32"), "{line}");
    }

    #[test]
    fn bad_enum_value_lists_the_allowed_values() {
        let err = parse("[display]\ntarget = \"hdmi\"\n").unwrap_err();
        assert_eq!(err.key, "display.target");
        let line = err.to_string();
        assert!(
            line.contains("hdmi") && line.contains("`png`") && line.contains("`none`"),
            "{line}"
        );
    }

    #[test]
    fn attention_keys_are_read_and_checked() {
        let c = parse("[attention]\nmax_yaw = 25\nmax_pitch = 15.5\nmin_seconds = 2\n").unwrap();
        assert_eq!(
            c.attention,
            AttentionConfig {
                max_yaw: 25.0,
                max_pitch: 15.5,
                min_seconds: 2.0
            }
        );
        for (text, key, found) in [
            (
                "max_yaw = 0",
                "attention.max_yaw",
                "found 0, allowed 1 to 90 degrees",
            ),
            ("max_yaw = 91", "attention.max_yaw", "found 91"),
            ("max_yaw = nan", "attention.max_yaw", "found NaN"),
            ("max_pitch = 120", "attention.max_pitch", "found 120"),
            ("min_seconds = -1", "attention.min_seconds", "found -1"),
        ] {
            let err = parse(&format!("[attention]\n{text}\n")).unwrap_err();
            assert_eq!((err.key.as_str(), err.line), (key, Some(2)), "{err}");
            assert!(err.to_string().contains(found), "{err}");
        }
        let err = parse("[attention]\nmax_yew = 20\n").unwrap_err();
        assert!(err.to_string().contains("max_yew"), "{err}");
    }

    #[test]
    fn out_of_range_value_names_key_found_and_allowed() {
        let err = parse("[camera]\nwidth = 640\nfps = 0\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config /etc/agecam/agecam.toml line 3, key `camera.fps`: found 0, allowed 1 to 240 frames per second"
        );
        let err = parse("[detector]\ncrop_margin = 1.5\n").unwrap_err();
        assert_eq!(err.key, "detector.crop_margin");
        assert!(
            err.to_string().contains("found 1.5, allowed 0.0 to 1.0"),
            "{err}"
        );
    }

    #[test]
    fn stats_settings_are_checked() {
        let err = parse("[stats]\nage_buckets = [5, 10]\n").unwrap_err();
        assert_eq!(err.key, "stats.age_buckets");
        assert!(err.to_string().contains("[5, 10]"), "{err}");
        let err = parse("[stats]\nunit_id = \"hall 2/b\"\n").unwrap_err();
        assert_eq!(err.key, "stats.unit_id");
        let err = parse("[stats]\ninterval_minutes = 0\n").unwrap_err();
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn resend_seconds_is_off_by_default_bounded_and_refused_with_noise() {
        assert_eq!(parse("").unwrap().push.resend_seconds, 0);
        let push = parse("[push]\nresend_seconds = 3600\n").unwrap().push;
        assert_eq!(push.resend_seconds, 3600);
        let err = parse("[push]\nresend_seconds = 604801\n").unwrap_err();
        assert_eq!(err.key, "push.resend_seconds");
        let err =
            parse("[stats]\nlaplace_epsilon = 1.0\n[push]\nresend_seconds = 60\n").unwrap_err();
        assert_eq!(err.key, "push.resend_seconds");
        assert!(err.to_string().contains("conflict"), "{err}");
    }

    #[test]
    fn interval_seconds_replaces_interval_minutes_and_is_checked() {
        let stats = parse("").unwrap().stats;
        assert_eq!((stats.interval_seconds, stats.interval_s()), (None, 900));
        let stats = parse("[stats]\ninterval_minutes = 2\n").unwrap().stats;
        assert_eq!(stats.interval_s(), 120);
        let stats = parse("[stats]\ninterval_minutes = 2\ninterval_seconds = 5\n")
            .unwrap()
            .stats;
        assert_eq!(stats.interval_s(), 5);
        for bad in ["0", "86401"] {
            let err = parse(&format!("[stats]\ninterval_seconds = {bad}\n")).unwrap_err();
            assert_eq!(err.key, "stats.interval_seconds", "{bad}");
            assert!(err.to_string().contains("1 to 86400"), "{err}");
        }
    }

    #[test]
    fn push_settings_default_and_are_checked() {
        let push = parse("").unwrap().push;
        assert!(!push.enabled);
        assert_eq!(push.port(), 1883);
        assert_eq!(push.topic("hall"), "agecam/hall/intervals");
        assert_eq!(push.retry_seconds, 30);
        let tls = parse("[push]\ntls = true\nca_file = \"/etc/agecam/ca.pem\"\n")
            .unwrap()
            .push;
        assert_eq!(tls.port(), 8883);
        let ok = parse(
            "[push]\nenabled = true\nhost = \"mqtt.example.org\"\nport = 1884\nusername = \"kiosk\"\npassword_file = \"/etc/agecam/mqtt-password\"\ntopic_prefix = \"acme/kiosks\"\n",
        )
        .unwrap()
        .push;
        assert_eq!(ok.port(), 1884);
        assert_eq!(ok.topic("hall"), "acme/kiosks/hall/intervals");

        let cases: &[(&str, &str, &str)] = &[
            (
                "[push]\nenabled = true\n",
                "push.host",
                "required with push.enabled",
            ),
            ("[push]\nhost = \"a b\"\n", "push.host", "\"a b\""),
            (
                "[push]\nport = 0\n",
                "push.port",
                "found 0, allowed 1 to 65535",
            ),
            ("[push]\nport = 70000\n", "push.port", "70000"),
            (
                "[push]\ntopic_prefix = \"a/#\"\n",
                "push.topic_prefix",
                "\"a/#\"",
            ),
            (
                "[push]\ntopic_prefix = \"\"\n",
                "push.topic_prefix",
                "found \"\"",
            ),
            (
                "[push]\ntopic_prefix = \"a/\"\n",
                "push.topic_prefix",
                "empty levels",
            ),
            (
                "[push]\npassword_file = \"/p\"\n",
                "push.username",
                "push.password_file",
            ),
            (
                "[push]\ntls = true\n",
                "push.ca_file",
                "required with push.tls",
            ),
            (
                "[push]\nretry_seconds = 0\n",
                "push.retry_seconds",
                "found 0, allowed 1 to 86400",
            ),
            ("[push]\ntls = \"yes\"\n", "push.tls", "\"yes\""),
            (
                "[push]\npasword_file = \"/p\"\n",
                "push",
                "unknown field `pasword_file`",
            ),
        ];
        for (text, key, expected) in cases {
            let err = parse(text).unwrap_err();
            let line = err.to_string();
            assert!(err.key == *key || line.contains(key), "{text}: {line}");
            assert!(line.contains(expected), "{text}: {line}");
            assert!(line.starts_with("config /etc/agecam/agecam.toml"), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
        let err = parse("[push]\nenabled = true\n\nretry_seconds = 0\nhost = \"h\"\n").unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
    }

    #[test]
    fn the_detector_follows_model_use_unless_named() {
        let research = parse("").unwrap();
        assert_eq!(research.detector.kind(), DetectorKind::Yunet);
        assert_eq!(Config::default().detector.kind(), DetectorKind::Yunet);
        assert_eq!(research.detector.score_threshold(), CONFIRM_SCORE_THRESHOLD);
        assert_eq!(research.detector.input_size(), 640);
        let commercial = parse("[model]\nuse = \"commercial\"\n").unwrap();
        assert_eq!(commercial.detector.kind(), DetectorKind::BlazefaceCascade);
        let named = parse("[model]\nuse = \"commercial\"\n[detector]\nkind = \"blazeface\"\n");
        assert_eq!(named.unwrap().detector.kind(), DetectorKind::Blazeface);
        // YuNet's training data does not allow commercial use: refused, naming what to do.
        let err =
            parse("[model]\nuse = \"commercial\"\n[detector]\nkind = \"yunet\"\n").unwrap_err();
        assert_eq!(err.key, "detector.kind");
        let line = err.to_string();
        assert!(
            line.contains("WIDER FACE") && line.contains("blazeface-cascade"),
            "{line}"
        );
        // YuNet's input size: a multiple of 32, and only for YuNet.
        let ok = parse("[detector]\ninput_size = 320\n").unwrap();
        assert_eq!(ok.detector.input_size(), 320);
        let err = parse("[detector]\ninput_size = 300\n").unwrap_err();
        assert_eq!(err.key, "detector.input_size");
        assert!(err.to_string().contains("multiple of 32"), "{err}");
        let err = parse("[detector]\nkind = \"blazeface\"\ninput_size = 320\n").unwrap_err();
        assert_eq!(err.key, "detector.input_size");
    }

    #[test]
    fn score_threshold_default_and_range_follow_the_detector_kind() {
        let blazeface = parse("[detector]\nkind = \"blazeface\"\n")
            .unwrap()
            .detector;
        assert_eq!(blazeface.kind(), DetectorKind::Blazeface);
        assert_eq!(blazeface.score_threshold(), 0.5);
        let seeta = parse("[detector]\nkind = \"seeta\"\n").unwrap().detector;
        assert_eq!(seeta.score_threshold(), 2.0);
        let seeta = parse("[detector]\nkind = \"seeta\"\nscore_threshold = 3.5\n").unwrap();
        assert_eq!(seeta.detector.score_threshold(), 3.5);

        // A SeetaFace-scale threshold left over with a probability-scored default is caught.
        let err = parse("[detector]\nscore_threshold = 2.0\n").unwrap_err();
        assert_eq!(err.key, "detector.score_threshold");
        assert_eq!(err.line, Some(2));
        let line = err.to_string();
        assert!(line.contains("found 2, allowed 0.0 to 1.0"), "{line}");
        assert!(line.contains("kind = \"seeta\""), "{line}");
        assert!(!line.contains('\n'));
        let err = parse("[detector]\nkind = \"seeta\"\nscore_threshold = -1\n").unwrap_err();
        assert!(
            err.to_string().contains("found -1, allowed a number >= 0"),
            "{err}"
        );

        let full = parse("[detector]\nkind = \"blazeface-full-range\"\ntiles = [3, 2]\n").unwrap();
        assert_eq!(full.detector.kind(), DetectorKind::BlazefaceFullRange);
        assert_eq!(full.detector.tiles, Some([3, 2]));
        assert_eq!(full.detector.score_threshold(), 0.5);
        let err = parse("[detector]\ntiles = [0, 2]\n").unwrap_err();
        assert_eq!(err.key, "detector.tiles");
        assert!(err.to_string().contains("each 1 to 4"), "{err}");

        let err = parse("[detector]\nkind = \"haar\"\n").unwrap_err();
        assert_eq!(err.key, "detector.kind");
        let line = err.to_string();
        assert!(
            line.contains("`blazeface`")
                && line.contains("`yunet`")
                && line.contains("`blazeface-cascade`")
                && line.contains("`blazeface-full-range`")
                && line.contains("`blazeface-back`")
                && line.contains("`seeta`"),
            "{line}"
        );
    }

    #[test]
    fn spi_lcd_defaults_follow_the_controller() {
        let config = parse("[display]\ntarget = \"spi_lcd\"\n").unwrap();
        assert_eq!(config.display.target, DisplayTarget::SpiLcd);
        let st7789 = &config.display.spi_lcd;
        assert_eq!((st7789.size(), st7789.rotation()), ((240, 240), 0));
        assert!(st7789.invert_colors());
        let ili = parse("[display.spi_lcd]\ncontroller = \"ili9341\"\nreset_pin = 27\n")
            .unwrap()
            .display
            .spi_lcd;
        assert_eq!((ili.size(), ili.rotation()), ((320, 240), 90));
        assert_eq!(ili.unrotated_size(), (240, 320));
        assert!(!ili.invert_colors());
        assert_eq!(ili.reset_pin, Some(27));
    }

    #[test]
    fn spi_lcd_settings_are_checked_with_the_key_named() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "rotation = 45",
                "rotation",
                "found 45, allowed 0, 90, 180 or 270",
            ),
            (
                "clock_hz = 500",
                "clock_hz",
                "found 500, allowed 1000000 to 125000000",
            ),
            ("spi_mode = 4", "spi_mode", "found 4, allowed 0, 1, 2 or 3"),
            (
                "reset_pin = 25",
                "reset_pin",
                "not already used by display.spi_lcd.dc_pin",
            ),
            ("dc_pin = 5000", "dc_pin", "found 5000"),
            (
                "width = 320",
                "width",
                "found 320, allowed 1 to 240 pixels for the ST7789's 240x320 memory at rotation 0",
            ),
            (
                "rotation = 90\nheight = 320",
                "height",
                "found 320, allowed 1 to 240",
            ),
            ("rotation = 90\nwidth = 320\nheight = 240", "", ""),
            (
                "height = 300\noffset_y = 40",
                "height",
                "allowed 1 to 280 pixels",
            ),
            ("offset_x = 240", "offset_x", "found 240, allowed 0 to 239"),
            ("width = 0", "width", "found 0"),
            ("device = \"\"", "device", "/dev/spidev0.0"),
        ];
        for (keys, key, expected) in cases {
            let text = format!("[display.spi_lcd]\n{keys}\n");
            let result = parse(&text);
            if key.is_empty() {
                assert!(result.is_ok(), "{text}: {result:?}");
                continue;
            }
            let err = result.unwrap_err();
            let line = err.to_string();
            assert_eq!(err.key, format!("display.spi_lcd.{key}"), "{text}: {line}");
            assert!(line.contains(expected), "{text}: {line}");
            assert!(err.line.is_some(), "{text}: {line}");
        }
        let err = parse("[display.spi_lcd]\ncontroller = \"st7735\"\n").unwrap_err();
        assert_eq!(err.key, "display.spi_lcd.controller");
        assert!(err.to_string().contains("`ili9341`"), "{err}");
        let err = parse("[display.spi_lcd]\ndc = 25\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `dc`"), "{err}");
    }

    #[test]
    fn negative_number_for_unsigned_key_is_a_type_error() {
        let err = parse("[detector]\nmax_faces = -3\n").unwrap_err();
        assert_eq!(err.key, "detector.max_faces");
        assert!(err.to_string().contains("-3"), "{err}");
    }

    #[test]
    fn toml_syntax_error_gives_its_line() {
        let err = parse("[camera]\nfps = = 3\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn missing_file_says_what_to_do() {
        let err = Config::load(Path::new("/nonexistent/agecam.toml")).unwrap_err();
        let line = err.to_string();
        assert!(line.contains("/nonexistent/agecam.toml"), "{line}");
        assert!(line.contains("deploy/agecam.toml"), "{line}");
    }
}
