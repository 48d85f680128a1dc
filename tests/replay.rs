//! Replay tests of the work schedule (`[schedule]`): recorded-like streams made from the
//! built-in demo frames (`capture::replay`) run through the real daemon loop, shipped detector
//! and age/gender model, statistics and store, once with the every-frame schedule and once
//! with the default one. Visits and their age bucket × gender cells must be the same; the
//! scheduled run must run the detector and the network far less.

use agecam::capture::replay::{Scene, SCENE_FPS};
use agecam::capture::{Frame, FrameSource};
use agecam::config::{Config, ScheduleConfig};
use agecam::daemon::{Daemon, NoObserver, RunLimits, RunSummary};
use agecam::display::NoDisplay;
use agecam::pipeline::Pipeline;
use agecam::stats::aggregate::CellAttention;
use agecam::stats::store::Store;
use agecam::stats::{ManualClock, StatsRecorder, StatsSettings};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// A camera fault injected before frame `at` of a scene.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// One corrupt frame.
    Bad,
    /// The camera stalls or is unplugged for this many seconds, then is back.
    Lost(f64),
}

/// Advances the manual clock by one frame time per frame, and injects `faults`.
struct Ticking<'a, S> {
    inner: S,
    clock: &'a ManualClock,
    faults: Vec<(u64, Fault)>,
    delivered: u64,
}

impl<S: FrameSource> FrameSource for Ticking<'_, S> {
    fn next_frame(&mut self) -> Result<Option<Frame>, agecam::capture::CaptureError> {
        self.clock.advance(1.0 / f64::from(SCENE_FPS));
        if let Some(i) = self.faults.iter().position(|(at, _)| *at == self.delivered) {
            let (_, fault) = self.faults.remove(i);
            let origin = "/dev/video0".to_string();
            return Err(match fault {
                Fault::Bad => agecam::capture::CaptureError::BadFrame {
                    origin,
                    reason: "corrupt MJPEG".into(),
                },
                Fault::Lost(seconds) => {
                    self.clock.advance(seconds);
                    agecam::capture::CaptureError::Disconnected {
                        origin,
                        reason: "unplugged".into(),
                    }
                }
            });
        }
        self.delivered += 1;
        self.inner.next_frame()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// A value per (age bucket, gender).
type Cells<T> = BTreeMap<(String, String), T>;

/// Visits per (age bucket, gender) stored after replaying `scene` under `schedule`, with
/// `faults` injected.
fn replay(
    scene: Scene,
    schedule: ScheduleConfig,
    faults: &[(u64, Fault)],
) -> (BTreeMap<(String, String), u32>, RunSummary) {
    let (cells, _, summary) = replay_with_attention(scene, schedule, faults);
    (cells, summary)
}

/// [`replay`], with the attention stored per (age bucket, gender).
fn replay_with_attention(
    scene: Scene,
    schedule: ScheduleConfig,
    faults: &[(u64, Fault)],
) -> (Cells<u32>, Cells<CellAttention>, RunSummary) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("replay.sqlite");
    let mut config = Config::default();
    // One model form for both schedules: `auto` times both forms at load and keeps the faster,
    // which on a loaded machine can differ from one load to the next (the forms differ by
    // ~0.8 years per face, enough to move a face near a bucket's edge).
    config.model.precision = agecam::config::ModelPrecision::Int8;
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let pipeline = Pipeline::load(&config, &models).unwrap();
    let start = 1_795_392_000.0;
    let clock = ManualClock::new(start);
    let stats = StatsRecorder::new(
        StatsSettings {
            database: db.clone(),
            ..StatsSettings::from_config(&config.stats)
        },
        start,
    );
    let source = Ticking {
        inner: scene.frames(),
        clock: &clock,
        faults: faults.to_vec(),
        delivered: 0,
    };
    let summary = Daemon::from_parts(Box::new(source), pipeline, Box::new(NoDisplay), Some(stats))
        .with_schedule(schedule)
        .run(
            &clock,
            RunLimits::default(),
            &AtomicBool::new(false),
            &mut NoObserver,
        )
        .unwrap();
    let mut cells = BTreeMap::new();
    let mut attention = BTreeMap::<_, CellAttention>::new();
    for interval in Store::open(&db).unwrap().load(i64::MIN, i64::MAX).unwrap() {
        for (cell, n) in interval.cells {
            *cells.entry(cell).or_insert(0) += n;
        }
        for (cell, a) in interval.attention {
            attention.entry(cell).or_default().add(&a);
        }
    }
    (cells, attention, summary)
}

/// Replays `scene` under both schedules and checks they agree; returns the attention stored
/// under each (every frame, scheduled).
fn check(scene: Scene) -> [Cells<CellAttention>; 2] {
    let (every, every_attention, every_run) =
        replay_with_attention(scene, ScheduleConfig::every_frame(), &[]);
    let (scheduled, scheduled_attention, scheduled_run) =
        replay_with_attention(scene, ScheduleConfig::default(), &[]);
    eprintln!(
        "{}: {} frames; every-frame: detector on {}, network on {} faces; scheduled: detector on {}, network on {} faces; cells {every:?}",
        scene.name(),
        every_run.frames,
        every_run.detector_frames,
        every_run.classified_faces,
        scheduled_run.detector_frames,
        scheduled_run.classified_faces
    );
    let visits: u32 = every.values().sum();
    assert_eq!(
        visits as usize,
        scene.people(),
        "{}: every-frame cells {every:?}",
        scene.name()
    );
    assert_eq!(
        scheduled,
        every,
        "{}: scheduled {scheduled_run:?} vs every-frame {every_run:?}",
        scene.name()
    );
    // Same frames; the detector on a fifth of them, the network on a small share of faces.
    assert_eq!(scheduled_run.frames, every_run.frames);
    assert_eq!(every_run.detector_frames, every_run.frames);
    assert_eq!(
        scheduled_run.detector_frames,
        scheduled_run
            .frames
            .div_ceil(u64::from(ScheduleConfig::default().detect_every)),
        "{scheduled_run:?}"
    );
    assert!(
        scheduled_run.classified_faces * 5 < every_run.classified_faces,
        "{}: network on {} faces scheduled, {} every frame",
        scene.name(),
        scheduled_run.classified_faces,
        every_run.classified_faces
    );
    [every_attention, scheduled_attention]
}

#[test]
fn a_person_standing_ten_seconds_is_one_visit_in_the_same_cell() {
    // Facing the screen throughout: one watcher, with about 10 s of attention.
    for attention in check(Scene::Standing) {
        let a: Vec<_> = attention.values().collect();
        assert_eq!(a.len(), 1, "{attention:?}");
        assert_eq!((a[0].posed, a[0].watchers), (1, 1), "{attention:?}");
        assert!((9.0..=10.0).contains(&a[0].attention_s), "{attention:?}");
    }
}

#[test]
fn two_people_arriving_and_leaving_are_two_visits_in_the_same_cells() {
    check(Scene::TwoPeople);
}

#[test]
fn a_person_walking_through_is_one_visit_in_the_same_cell() {
    check(Scene::WalkingThrough);
}

/// A person walking up from six times as far (their face from ~1/6 of its final height, found
/// far off by the default detector, too small to estimate) is one visit, estimated near: the
/// same cell as the same person standing.
#[test]
fn a_person_walking_up_from_far_is_one_visit_estimated_near() {
    check(Scene::Approaching);
    let (approaching, _) = replay(Scene::Approaching, ScheduleConfig::default(), &[]);
    let (standing, _) = replay(Scene::Standing, ScheduleConfig::default(), &[]);
    assert_eq!(approaching, standing);
}

/// A person walking past with the head turned about 70° is one visit (in the same cell under
/// both schedules) and no watcher, through the real daemon; the standing person, facing the
/// screen, is a watcher (`a_person_standing_ten_seconds_is_one_visit_in_the_same_cell`).
#[test]
fn a_person_passing_in_profile_is_one_visit_and_no_watcher() {
    for attention in check(Scene::PassingInProfile) {
        let a: Vec<_> = attention.values().collect();
        assert_eq!(a.len(), 1, "{attention:?}");
        assert_eq!((a[0].posed, a[0].watchers), (1, 0), "{attention:?}");
        assert!(a[0].attention_s < 0.5, "{attention:?}");
    }
}

/// Faults in the middle of a settled visit (the standing person's estimate settles within the
/// first 15 frames): a corrupt frame, a 1 s stall and a 2 s unplug, all shorter than the visit
/// gap. The visit is neither split nor lost nor counted twice, under either schedule.
#[test]
fn camera_faults_mid_visit_neither_split_nor_lose_nor_double_count_it() {
    let faults = [
        (100, Fault::Bad),
        (101, Fault::Bad),
        (160, Fault::Lost(1.0)),
        (220, Fault::Lost(2.0)),
    ];
    let mut seen = Vec::new();
    for schedule in [ScheduleConfig::every_frame(), ScheduleConfig::default()] {
        let (cells, run) = replay(Scene::Standing, schedule, &faults);
        assert_eq!(run.bad_frames, 2, "{run:?}");
        assert_eq!(run.camera_faults, 2, "{run:?}");
        assert_eq!(
            run.frames,
            u64::from(Scene::Standing.frame_count()),
            "{run:?}"
        );
        assert_eq!(cells.values().sum::<u32>(), 1, "one visit: {cells:?}");
        seen.push(cells);
    }
    assert_eq!(seen[0], seen[1], "the same cell under both schedules");
}
