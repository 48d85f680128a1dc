//! Chaos test of the whole fleet chain: five real `agecam run` daemons count replayed scenes
//! in 5-second intervals and push them with their own store-and-forward through mosquitto to
//! the `agecam-fleet` collector and into PostgreSQL, while a seeded schedule SIGKILLs units,
//! the broker, the collector and the database at random and restarts them. At the end every
//! unit's local statistics store and the collector's database must agree interval by interval
//! (same ids, same content, same cells): nothing lost, nothing doubled, nothing stored that no
//! unit counted, and every conflict the collector parked explained.
//!
//! - `chaos_short` (default suite): 35 s of kills, about a minute in all.
//! - `chaos_long` (`#[ignore]`): 600 s of kills (docs/fleet.md, "Under faults", has its
//!   figures): `cargo test --workspace --test chaos chaos_long -- --ignored --nocapture`.
//!
//! `AGECAM_CHAOS_SEED` sets the seed (default 29) and `AGECAM_CHAOS_SECONDS` the length of the
//! kill phase; the test prints both and the whole kill schedule first, so a failure is
//! replayed with the seed it printed. The daemons are the `agecam` binary of the same target
//! folder as `agecam-fleet` (`cargo test --workspace` builds both); a missing one fails the
//! test and says how to build it. Without mosquitto or PostgreSQL it prints `skipped: …` like
//! the other fleet tests (and fails under `CI`).

mod common;

use agecam::capture::replay::Scene;
use agecam::capture::FrameSource;
use agecam::push::{send_pending, PushSettings};
use agecam::stats::aggregate::IntervalStats;
use agecam::stats::privacy::{publish, to_json};
use agecam_fleet::schema::{self, Interval};
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Units in the fleet.
const UNITS: usize = 5;
/// Each unit's `stats.interval_seconds`.
const INTERVAL_S: u32 = 5;
/// Each unit's `push.resend_seconds`: longer than a message can wait in flight to the
/// collector while the database is down (its writer retries 1, 2, 4, 8 s apart; the database
/// is down 5 s at most) plus a broker restart.
const RESEND_S: u32 = 60;
/// Every this many frames of a 30 fps scene is written (3 frames per scene second).
const SCENE_STEP: u64 = 10;
/// Replayed frames per second (`camera.fps`): the scenes play in real time.
const FPS: u32 = 3;
/// The seed when `AGECAM_CHAOS_SEED` is not set.
const DEFAULT_SEED: u64 = 29;

#[test]
fn chaos_short() {
    chaos(35);
}

#[test]
#[ignore = "10 minutes of random kills; run it with --ignored (figures in docs/fleet.md)"]
fn chaos_long() {
    chaos(600);
}

/// splitmix64: a small seeded generator, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What can be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Unit(usize),
    Broker,
    Collector,
    Database,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Unit(i) => write!(f, "{}", unit_id(*i)),
            Part::Broker => f.write_str("broker"),
            Part::Collector => f.write_str("collector"),
            Part::Database => f.write_str("database"),
        }
    }
}

/// One SIGKILL of the schedule: at `at` seconds into the kill phase, `part` is killed and
/// started again `down_for` seconds later.
#[derive(Debug, Clone, Copy)]
struct Kill {
    at: f64,
    part: Part,
    down_for: f64,
}

/// The kill schedule of `seed` over `seconds`: a kill every 0.5 to 2.5 s of a part that is up
/// (40 % a unit, 20 % each of broker, collector and database), down 0.3 to 5 s. Every kind of
/// part is killed at least once (the seed is stepped until it is).
fn schedule(seed: u64, seconds: f64) -> Vec<Kill> {
    let mut rng = Rng(seed);
    loop {
        let mut kills = Vec::new();
        let mut up_again: BTreeMap<Part, f64> = BTreeMap::new();
        let mut t = rng.range(1.0, 3.0);
        while t < seconds {
            let roll = rng.range(0.0, 1.0);
            let part = match roll {
                r if r < 0.4 => Part::Unit(rng.below(UNITS)),
                r if r < 0.6 => Part::Broker,
                r if r < 0.8 => Part::Collector,
                _ => Part::Database,
            };
            let down_for = rng.range(0.3, 5.0);
            if up_again.get(&part).is_none_or(|&u| u <= t) {
                kills.push(Kill {
                    at: t,
                    part,
                    down_for,
                });
                up_again.insert(part, t + down_for);
            }
            t += rng.range(0.5, 2.5);
        }
        let kinds: BTreeSet<u8> = kills
            .iter()
            .map(|k| match k.part {
                Part::Unit(_) => 0,
                Part::Broker => 1,
                Part::Collector => 2,
                Part::Database => 3,
            })
            .collect();
        if kinds.len() == 4 {
            return kills;
        }
    }
}

fn unit_id(i: usize) -> String {
    format!("chaos-{}", i + 1)
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: give a whole number")),
    )
}

/// The `agecam` daemon binary: beside `agecam-fleet` in the same target folder.
fn agecam_binary() -> PathBuf {
    let fleet = Path::new(env!("CARGO_BIN_EXE_agecam-fleet"));
    let agecam = fleet.with_file_name(format!("agecam{}", std::env::consts::EXE_SUFFIX));
    assert!(
        agecam.is_file(),
        "{} is missing: the chaos test runs the real daemon; build it with \
         `cargo build --workspace` (or run `cargo test --workspace`, which builds it)",
        agecam.display()
    );
    agecam
}

/// The replayed scenes (agecam's own, the short ones: a person walking through, two people
/// arriving and leaving, one passing in profile: four visits in 28 s) as JPEG files, every [`SCENE_STEP`]th frame, in the
/// order a folder source plays them; returns how many were written.
fn write_scenes(dir: &Path) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let step = SCENE_STEP;
    let mut written = 0;
    for scene in [
        Scene::WalkingThrough,
        Scene::TwoPeople,
        Scene::PassingInProfile,
    ] {
        let mut frames = scene.frames();
        while let Some(frame) = frames.next_frame().unwrap() {
            if frame.seq % step == 0 {
                frame
                    .image
                    .save(dir.join(format!("frame-{written:04}.jpg")))
                    .unwrap();
                written += 1;
            }
        }
    }
    written
}

/// A child process SIGKILLed on drop.
struct Proc(Option<Child>);

impl Proc {
    fn kill(&mut self) -> bool {
        match self.0.take() {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                true
            }
            None => false,
        }
    }

    fn running(&self) -> bool {
        self.0.is_some()
    }

    /// Whether it was running and has ended by itself (then it is no longer running).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.0.as_mut()?.try_wait().unwrap()?;
        self.0 = None;
        Some(status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn append(log: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap()
}

fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// mosquitto on a fixed port with its sessions and queued messages saved on every change
/// (`persistence true`, `autosave_on_changes`, `autosave_interval 1`), so a SIGKILLed broker
/// comes back with the collector's session: what docs/fleet.md asks of a fleet's broker.
struct Mosquitto {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    proc: Proc,
}

impl Mosquitto {
    fn new(binary: &Path, dir: &Path) -> Mosquitto {
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 200000\n\
                 persistence true\npersistence_location {}/\nautosave_on_changes true\n\
                 autosave_interval 1\nlog_type error\nlog_type warning\n",
                dir.display()
            ),
        )
        .unwrap();
        Mosquitto {
            binary: binary.to_path_buf(),
            config,
            log: dir.join("broker.log"),
            port,
            proc: Proc(None),
        }
    }

    fn start(&mut self) {
        let start = Instant::now();
        loop {
            let child = Command::new(&self.binary)
                .arg("-c")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(append(&self.log))
                .spawn()
                .unwrap();
            self.proc = Proc(Some(child));
            while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                if self.proc.exited().is_some() {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "mosquitto did not start again within 30 s: {}",
                    tail(&self.log, 20)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.proc.running() {
                return;
            }
            // The port may still be held for a moment after a kill: try again.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The collector binary, restarted on the same broker and database (and, like systemd's
/// `Restart=on-failure`, again after it stops by itself: it refuses to start while the
/// database is down).
struct Fleet {
    broker_port: u16,
    url: String,
    log: PathBuf,
    proc: Proc,
}

impl Fleet {
    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_agecam-fleet"))
            .args(["--broker-host", "127.0.0.1"])
            .args(["--broker-port", &self.broker_port.to_string()])
            .args(["--client-id", "fleet-chaos"])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--database-url", &self.url])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(append(&self.log))
            .spawn()
            .unwrap();
        self.proc = Proc(Some(child));
    }
}

/// One `agecam run` daemon with its configuration, statistics store and log.
struct Unit {
    id: String,
    config: PathBuf,
    db: PathBuf,
    log: PathBuf,
    proc: Proc,
}

impl Unit {
    fn new(dir: &Path, i: usize, scenes: &Path, broker_port: u16) -> Unit {
        let id = unit_id(i);
        let home = dir.join(&id);
        std::fs::create_dir_all(&home).unwrap();
        let config = home.join("agecam.toml");
        std::fs::write(
            &config,
            format!(
                "[camera]\nsource = \"folder\"\nfolder = \"{scenes}\"\nrepeat = true\nfps = {FPS}\n\n\
                 [model]\nuse = \"commercial\"\nprecision = \"int8\"\ncache_dir = \"{home}/cache\"\n\n\
                 [schedule]\ndetect_every = 1\n\n\
                 [display]\ntarget = \"none\"\n\n\
                 [stats]\ndir = \"{home}\"\nunit_id = \"{id}\"\ninterval_seconds = {INTERVAL_S}\n\
                 visit_gap_seconds = 1.0\nk_anonymity = 1\nretention_days = 0\n\n\
                 [push]\nenabled = true\nhost = \"127.0.0.1\"\nport = {broker_port}\nretry_seconds = 1\n\
                 resend_seconds = {RESEND_S}\n",
                scenes = scenes.display(),
                home = home.display(),
            ),
        )
        .unwrap();
        Unit {
            db: home.join("agecam-stats.sqlite"),
            log: home.join("agecam.log"),
            id,
            config,
            proc: Proc(None),
        }
    }

    fn start(&mut self, agecam: &Path) {
        let child = Command::new(agecam)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--models")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(append(&self.log))
            .spawn()
            .unwrap();
        self.proc = Proc(Some(child));
    }

    /// The push settings the daemon builds from its configuration.
    fn push_settings(&self) -> PushSettings {
        let config = agecam::config::Config::load(&self.config).unwrap();
        PushSettings::from_config(&config).unwrap().unwrap()
    }
}

/// The whole chain and who is down until when.
struct Chain {
    agecam: PathBuf,
    units: Vec<Unit>,
    broker: Mosquitto,
    fleet: Fleet,
    pg: Postgres,
    /// When each killed part is started again.
    down_until: BTreeMap<Part, Instant>,
    /// Times the collector stopped by itself (the database was down as it started).
    collector_exits: u64,
    database_restart_tries: u64,
}

impl Chain {
    fn kill(&mut self, part: Part) {
        match part {
            Part::Unit(i) => assert!(self.units[i].proc.kill(), "{part} was not running"),
            Part::Broker => assert!(self.broker.proc.kill(), "the broker was not running"),
            // It may have stopped by itself a moment ago (database down at its start).
            Part::Collector => {
                self.fleet.proc.kill();
            }
            Part::Database => {
                self.pg.kill9();
            }
        }
    }

    fn start(&mut self, part: Part) {
        match part {
            Part::Unit(i) => self.units[i].start(&self.agecam),
            Part::Broker => self.broker.start(),
            Part::Collector => self.fleet.start(),
            Part::Database => {
                let start = Instant::now();
                while let Err(e) = self.pg.try_up() {
                    self.database_restart_tries += 1;
                    assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "PostgreSQL did not start again within 60 s: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        }
    }

    /// Starts what is due, restarts a collector that stopped by itself, and fails on a unit
    /// that stopped by itself (a daemon must never do that).
    fn supervise(&mut self) {
        let now = Instant::now();
        let due: Vec<Part> = self
            .down_until
            .iter()
            .filter(|(_, &t)| t <= now)
            .map(|(&p, _)| p)
            .collect();
        for part in due {
            self.down_until.remove(&part);
            self.start(part);
        }
        for unit in &mut self.units {
            if let Some(status) = unit.proc.exited() {
                panic!(
                    "{} stopped by itself ({status}); its log ends:\n{}",
                    unit.id,
                    tail(&unit.log, 30)
                );
            }
        }
        if !self.down_until.contains_key(&Part::Collector) && self.fleet.proc.exited().is_some() {
            self.collector_exits += 1;
            // systemd's RestartSec=1.
            self.down_until
                .insert(Part::Collector, now + Duration::from_secs(1));
        }
    }
}

/// (age bucket, gender) → (visits, watchers, attention_s).
type Cells = BTreeMap<(String, String), (i64, Option<i64>, Option<f64>)>;

/// A parked conflict: interval id, canonical JSON, times received.
type Conflict = (String, String, i64);

/// What the collector holds of one interval.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    unit_id: String,
    start: i64,
    end: i64,
    uptime_s: f64,
    frames: i64,
    camera_faults: i64,
    suppressed_cells: i64,
    dwell_mean_s: Option<f64>,
    visits: i64,
    digest: String,
    cells: Cells,
}

impl Stored {
    /// What the collector should hold for `i` (the interval as the unit publishes it).
    fn expected(i: &Interval) -> Stored {
        Stored {
            unit_id: i.unit_id.clone(),
            start: i.start,
            end: i.end,
            uptime_s: i.uptime_s,
            frames: i.frames as i64,
            camera_faults: i.camera_faults as i64,
            suppressed_cells: i.suppressed_cells as i64,
            dwell_mean_s: i.dwell_mean_s,
            visits: i.visits() as i64,
            digest: agecam_fleet::store::digest(&i.canonical()),
            cells: i
                .cells
                .iter()
                .map(|c| {
                    (
                        (c.age_bucket.clone(), c.gender.clone()),
                        (c.visits as i64, c.watchers.map(i64::from), c.attention_s),
                    )
                })
                .collect(),
        }
    }
}

/// Every interval in PostgreSQL by id, the number of cell rows, and the parked conflicts
/// (interval id, canonical JSON, times received).
fn read_database(pg: &Postgres) -> (BTreeMap<String, Stored>, usize, Vec<Conflict>) {
    let mut c = pg.client();
    let mut stored = BTreeMap::new();
    for r in c
        .query(
            "SELECT id, unit_id, start_s, end_s, uptime_s, frames, camera_faults,
                    suppressed_cells, dwell_mean_s, visits, digest FROM intervals",
            &[],
        )
        .unwrap()
    {
        stored.insert(
            r.get::<_, String>(0),
            Stored {
                unit_id: r.get(1),
                start: r.get(2),
                end: r.get(3),
                uptime_s: r.get(4),
                frames: r.get(5),
                camera_faults: r.get(6),
                suppressed_cells: r.get(7),
                dwell_mean_s: r.get(8),
                visits: r.get(9),
                digest: r.get(10),
                cells: BTreeMap::new(),
            },
        );
    }
    let cells = c
        .query(
            "SELECT interval_id, age_bucket, gender, visits, watchers, attention_s FROM cells",
            &[],
        )
        .unwrap();
    for r in &cells {
        let id: String = r.get(0);
        let cell = stored
            .get_mut(&id)
            .unwrap_or_else(|| panic!("a cell row of {id}, which has no interval row"));
        let previous = cell
            .cells
            .insert((r.get(1), r.get(2)), (r.get(3), r.get(4), r.get(5)));
        assert!(previous.is_none(), "a cell of {id} stored twice");
    }
    let conflicts = c
        .query("SELECT interval_id, canonical, times FROM conflicts", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    (stored, cells.len(), conflicts)
}

/// Every interval in a unit's store, as it publishes them (its own reader and publisher, then
/// the collector's parser: exactly what the collector would store).
fn read_unit(
    unit: &Unit,
    settings: &PushSettings,
) -> (Vec<IntervalStats>, BTreeMap<String, Interval>) {
    let store = agecam::stats::store::Store::open(&unit.db).unwrap();
    let local = store.load(i64::MIN, i64::MAX).unwrap();
    let published = local
        .iter()
        .map(|i| {
            let json = to_json(&publish(i, &settings.privacy));
            let parsed = schema::parse(&settings.topic(&i.unit_id), json.as_bytes())
                .unwrap_or_else(|r| {
                    panic!("the collector refuses {}'s interval: {r}: {json}", unit.id)
                });
            (parsed.id.clone(), parsed)
        })
        .collect();
    (local, published)
}

fn chaos(default_seconds: u64) {
    let (Some(mosquitto), Some(pg_bin)) = (mosquitto(), postgres_bin()) else {
        return;
    };
    let seed = env_number("AGECAM_CHAOS_SEED").unwrap_or(DEFAULT_SEED);
    let seconds = env_number("AGECAM_CHAOS_SECONDS").unwrap_or(default_seconds) as f64;
    let kills = schedule(seed, seconds);
    let agecam = agecam_binary();
    let began = Instant::now();
    let mut plan = format!(
        "chaos: seed {seed}, {seconds} s of kills, {UNITS} units, {INTERVAL_S} s intervals \
         (replay with AGECAM_CHAOS_SEED={seed} AGECAM_CHAOS_SECONDS={seconds}); schedule:\n"
    );
    for k in &kills {
        writeln!(
            plan,
            "  {:7.2} s  SIGKILL {:<9}  down {:.2} s",
            k.at, k.part, k.down_for
        )
        .unwrap();
    }
    eprint!("{plan}");

    let dir = shared_tempdir();
    let scenes = dir.path().join("scenes");
    let drawing = {
        let scenes = scenes.clone();
        std::thread::spawn(move || write_scenes(&scenes))
    };
    let pg = Postgres::start(&pg_bin, false);
    let mut broker = Mosquitto::new(&mosquitto, dir.path());
    broker.start();
    let frames = drawing.join().unwrap();
    assert!(frames > 50, "only {frames} scene frames written");
    let mut chain = Chain {
        units: (0..UNITS)
            .map(|i| Unit::new(dir.path(), i, &scenes, broker.port))
            .collect(),
        fleet: Fleet {
            broker_port: broker.port,
            url: pg.url(),
            log: dir.path().join("collector.log"),
            proc: Proc(None),
        },
        broker,
        pg,
        agecam,
        down_until: BTreeMap::new(),
        collector_exits: 0,
        database_restart_tries: 0,
    };
    chain.fleet.start();
    wait_until("the collector subscribes", Duration::from_secs(30), || {
        std::fs::read_to_string(&chain.fleet.log)
            .unwrap_or_default()
            .contains("subscribed to")
    });
    for i in 0..UNITS {
        chain.start(Part::Unit(i));
    }
    eprintln!(
        "chaos: chain up after {:.1} s",
        began.elapsed().as_secs_f64()
    );

    // The kill phase.
    let t0 = Instant::now();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for kill in &kills {
        while t0.elapsed().as_secs_f64() < kill.at {
            chain.supervise();
            std::thread::sleep(Duration::from_millis(20));
        }
        // A part whose restart is overdue (a slow restart of another) is started first.
        chain.supervise();
        chain.kill(kill.part);
        chain.down_until.insert(
            kill.part,
            Instant::now() + Duration::from_secs_f64(kill.down_for),
        );
        let kind = match kill.part {
            Part::Unit(_) => "unit".to_string(),
            p => p.to_string(),
        };
        *counts.entry(kind).or_default() += 1;
    }
    while t0.elapsed().as_secs_f64() < seconds || !chain.down_until.is_empty() {
        chain.supervise();
        std::thread::sleep(Duration::from_millis(20));
    }
    let chaos_s = t0.elapsed().as_secs_f64();
    // Everything up for three intervals: the units' next rounds publish again what the last
    // broker kill may have lost (push.resend_seconds), as running units do.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3 * u64::from(INTERVAL_S)) {
        chain.supervise();
        std::thread::sleep(Duration::from_millis(20));
    }

    // The end: the units stop (SIGKILL, like every other stop here); what they have not sent
    // yet goes out with their own store-and-forward round (the one their push thread runs at
    // the next start) once the collector is back for sure.
    for unit in &mut chain.units {
        unit.proc.kill();
    }
    if !chain.fleet.proc.running() {
        chain.fleet.start();
    }
    let settings: Vec<PushSettings> = chain.units.iter().map(Unit::push_settings).collect();
    let flush_deadline = Instant::now() + Duration::from_secs(60);
    for (unit, settings) in chain.units.iter().zip(&settings) {
        while let Err(e) = send_pending(settings) {
            assert!(
                Instant::now() < flush_deadline,
                "{}: the last unsent intervals could not be sent within 60 s: {e}",
                unit.id
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // Each unit's store, as published.
    let mut expected: BTreeMap<String, Interval> = BTreeMap::new();
    let mut per_unit: Vec<(String, usize, u64)> = Vec::new();
    for (unit, settings) in chain.units.iter().zip(&settings) {
        let (local, published) = read_unit(unit, settings);
        let unsent = agecam::stats::store::Store::open(&unit.db)
            .unwrap()
            .unsent(usize::MAX)
            .unwrap();
        assert!(
            unsent.is_empty(),
            "{}: {} intervals still unsent",
            unit.id,
            unsent.len()
        );
        let starts: BTreeSet<i64> = local.iter().map(|i| i.start).collect();
        assert_eq!(
            starts.len(),
            local.len(),
            "{}: an interval stored twice",
            unit.id
        );
        for pair in local.windows(2) {
            assert!(
                pair[0].start + pair[0].length_s <= pair[1].start,
                "{}: intervals {} and {} overlap",
                unit.id,
                pair[0].id(),
                pair[1].id()
            );
        }
        let visits: u64 = local.iter().map(|i| u64::from(i.visits())).sum();
        per_unit.push((unit.id.clone(), local.len(), visits));
        expected.extend(published);
    }

    // Wait (bounded) until the collector has stored everything the units had acknowledged.
    let converge = Instant::now();
    let mut last_count = 0;
    while converge.elapsed() < Duration::from_secs(60) {
        chain.supervise();
        if let Ok(mut c) = postgres::Client::connect(&chain.pg.url(), postgres::NoTls) {
            if let Ok(row) = c.query_one("SELECT count(*) FROM intervals", &[]) {
                last_count = row.get::<_, i64>(0);
                if last_count as usize >= expected.len() {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (stored, cell_rows, conflicts) = read_database(&chain.pg);

    // Interval by interval.
    let mut report = String::new();
    let mut lost = Vec::new();
    let mut differing = Vec::new();
    for (id, interval) in &expected {
        let want = Stored::expected(interval);
        match stored.get(id) {
            None => lost.push(id.clone()),
            Some(got) if *got != want => {
                differing.push(id.clone());
                writeln!(
                    report,
                    "differs: {id}\n  unit:      {want:?}\n  collector: {got:?}"
                )
                .unwrap();
            }
            Some(_) => {}
        }
    }
    // Stored but counted by no unit: a doubled or invented interval.
    let doubled: Vec<&String> = stored
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .collect();
    let expected_cells: usize = expected.values().map(|i| i.cells.len()).sum();
    // A conflict is explained when the content it parked is what the unit holds now (the unit
    // changed the interval after sending it); anything else is not.
    let mut unexplained = Vec::new();
    for (id, canonical, times) in &conflicts {
        match expected.get(id) {
            Some(i) if i.canonical() == *canonical => {
                writeln!(
                    report,
                    "conflict explained: {id} (the unit's current version, received {times}×)"
                )
                .unwrap();
            }
            _ => unexplained.push(format!("{id} ({times}×): {canonical}")),
        }
    }

    let unit_kills: u64 = counts.get("unit").copied().unwrap_or(0);
    let mut summary = format!(
        "chaos: seed {seed}: {chaos_s:.0} s of kills ({} in all: {unit_kills} of units, {} of the broker, \
         {} of the collector, {} of the database; the collector also stopped {} times by itself \
         with the database down, restarted after 1 s), {:.0} s in all\n",
        kills.len(),
        counts.get("broker").copied().unwrap_or(0),
        counts.get("collector").copied().unwrap_or(0),
        counts.get("database").copied().unwrap_or(0),
        chain.collector_exits,
        began.elapsed().as_secs_f64(),
    );
    for (id, n, visits) in &per_unit {
        writeln!(
            summary,
            "  {id}: {n} intervals, {visits} visits in its store"
        )
        .unwrap();
    }
    writeln!(
        summary,
        "  units: {} intervals, {expected_cells} cells; collector: {} intervals, {cell_rows} cells; \
         lost {}, doubled {}, differing {}, conflicts {} ({} unexplained)",
        expected.len(),
        stored.len(),
        lost.len(),
        doubled.len(),
        differing.len(),
        conflicts.len(),
        unexplained.len()
    )
    .unwrap();
    eprint!("{summary}{report}");

    let logs = || {
        let mut text = format!("collector log:\n{}\n", tail(&chain.fleet.log, 40));
        for unit in &chain.units {
            writeln!(text, "{} log:\n{}", unit.id, tail(&unit.log, 10)).unwrap();
        }
        text
    };
    assert!(
        lost.is_empty() && doubled.is_empty() && differing.is_empty() && unexplained.is_empty(),
        "seed {seed}: the unit stores and the collector disagree (replay with \
         AGECAM_CHAOS_SEED={seed} AGECAM_CHAOS_SECONDS={seconds}):\n{summary}\
         lost (in a unit's store, not in the collector; {last_count} stored when the wait ended): {lost:?}\n\
         doubled (in the collector, in no unit's store): {doubled:?}\n\
         unexplained conflicts: {unexplained:#?}\n{report}{}",
        logs()
    );
    assert_eq!(cell_rows, expected_cells, "cell rows:\n{summary}");
    // The test must have tested something: every unit counted intervals and people, and each
    // kind of part was killed.
    let min_intervals = (seconds as usize / INTERVAL_S as usize) / 3;
    for (id, n, _) in &per_unit {
        assert!(
            *n >= min_intervals,
            "{id} stored only {n} intervals in {chaos_s:.0} s\n{}",
            logs()
        );
    }
    assert!(
        per_unit.iter().map(|(_, _, v)| v).sum::<u64>() > 0,
        "no unit counted a visit in the replayed scenes\n{}",
        logs()
    );
}
