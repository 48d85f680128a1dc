//! Real servers for the collector's tests: mosquitto, a throwaway PostgreSQL cluster, the
//! `agecam-fleet` binary itself, and agecam units publishing through agecam's own push code.
//! Every process is killed when its guard drops; every wait is bounded. A missing server
//! binary prints "skipped: ..." and the test passes, except under the environment variable
//! CI, where it fails and says what to install.
#![allow(dead_code)]

use agecam::push::{send_pending, PushSettings};
use agecam::stats::aggregate::IntervalStats;
use agecam::stats::privacy::PrivacySettings;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `Some(path)` of the first candidate that runs; otherwise skips (or fails under CI).
pub fn require(what: &str, candidates: &[&str], install: &str) -> Option<PathBuf> {
    let found = candidates.iter().find(|c| {
        Command::new(c)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if let Some(f) = found {
        return Some(PathBuf::from(f));
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed; the fleet tests need it: {install}");
    }
    eprintln!("skipped: {what} not installed ({install} to run this test)");
    None
}

pub fn mosquitto() -> Option<PathBuf> {
    require(
        "mosquitto",
        &["mosquitto", "/usr/sbin/mosquitto"],
        "apt-get install mosquitto",
    )
}

/// The directory holding initdb and pg_ctl, the newest version installed.
pub fn postgres_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    let bin = dirs.pop().map(|d| d.join("initdb"));
    let bin = bin.as_ref().map(|b| b.to_string_lossy().to_string());
    let candidates: Vec<&str> = bin.iter().map(|s| s.as_str()).collect();
    require("PostgreSQL", &candidates, "apt-get install postgresql")
        .map(|initdb| initdb.parent().unwrap().to_path_buf())
}

pub fn chromium() -> Option<PathBuf> {
    require(
        "Chromium",
        &["chromium", "/usr/bin/chromium", "chromium-browser"],
        "apt-get install chromium",
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temporary folder other users (postgres, mosquitto) can write.
pub fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(20) || child.try_wait().unwrap().is_some() {
            panic!(
                "{what} did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A mosquitto broker on 127.0.0.1 with sessions kept in memory; killed on drop.
pub struct Broker {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Broker {
    /// An anonymous plain listener.
    pub fn start(binary: &Path) -> Broker {
        Broker::start_with(binary, |port, _| {
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n")
        })
    }

    /// `listener(port, dir)` gives the listener lines (dir holds the broker's files).
    pub fn start_with(binary: &Path, listener: impl Fn(u16, &Path) -> String) -> Broker {
        let dir = shared_tempdir();
        let port = free_port();
        let config = dir.path().join("mosquitto.conf");
        // Queue enough for a collector that is away during a test (default 1000).
        std::fs::write(
            &config,
            format!(
                "{}\nmax_queued_messages 200000\npersistence false\nlog_type error\nlog_type warning\n",
                listener(port, dir.path())
            ),
        )
        .unwrap();
        let log = dir.path().join("broker.log");
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, "mosquitto", &mut child, &log);
        Broker { child, port, dir }
    }
}

impl Broker {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A throwaway PostgreSQL cluster in a temporary folder on a free port (trust auth on
/// 127.0.0.1 only). initdb refuses to run as root, so as root every server command runs as
/// the `postgres` user (Debian's package creates it), or `nobody`.
pub struct Postgres {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    fsync: bool,
}

impl Postgres {
    pub fn start(bin: &Path, fsync: bool) -> Postgres {
        let dir = shared_tempdir();
        let pg = Postgres {
            bin: bin.to_path_buf(),
            dir,
            port: free_port(),
            fsync,
        };
        let data = pg.data();
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "fleet",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg.up();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        self.as_server_user(&self.bin.join(program))
    }

    /// `program` run as the user the server runs as.
    fn as_server_user(&self, program: &Path) -> Command {
        if is_root() {
            let user = if Command::new("id")
                .arg("postgres")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                "postgres"
            } else {
                "nobody"
            };
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Starts the server (again) on the same port and data.
    pub fn up(&self) {
        if let Err(e) = self.try_up() {
            panic!("{e}");
        }
    }

    /// [`Postgres::up`], saying why it failed instead of panicking (after a SIGKILL the old
    /// server's backends may hold its shared memory for a moment: try again).
    pub fn try_up(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=50",
            self.port,
            self.dir.path().display(),
            if self.fsync { "on" } else { "off" }
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-o", &options, "-l"])
            .arg(self.dir.path().join("postgres.log"))
            .args(["-w", "-t", "30", "start"])
            .output()
            .unwrap();
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
        ))
    }

    /// SIGKILL to the server and every process it started (backends, WAL writer, ...): a
    /// crash, not a shutdown. Returns how many processes were killed (0: it was not running).
    pub fn kill9(&self) -> usize {
        let Some(postmaster) = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        else {
            return 0;
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            // /proc/PID/stat: "pid (name) state ppid ..."; the name may hold spaces.
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        let killed = pids
            .iter()
            .filter(|pid| {
                Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .count();
        // Bounded wait until the server is gone (its children are reaped by init).
        let start = Instant::now();
        while Path::new(&format!("/proc/{postmaster}")).exists()
            && start.elapsed() < Duration::from_secs(10)
        {
            let state =
                std::fs::read_to_string(format!("/proc/{postmaster}/stat")).unwrap_or_default();
            if state
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            {
                // Dead but not reaped (a container's init may never reap it): the next server
                // would take the zombie for a running postmaster and refuse to start, which a
                // crashed machine's next boot would not.
                let _ = std::fs::remove_file(self.data().join("postmaster.pid"));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        killed
    }

    /// Restarts the server with TLS on: `cert` and `key` (PEM, readable by the server's
    /// user) are copied into the data folder (the key private to the server's user, as
    /// PostgreSQL requires) and set as `ssl_cert_file`/`ssl_key_file`. With `only_tls`, a
    /// connection without TLS is rejected (pg_hba `hostnossl ... reject`).
    pub fn enable_tls(&self, cert: &Path, key: &Path, only_tls: bool) {
        let data = self.data();
        for (from, to, mode) in [(cert, "server.crt", "644"), (key, "server.key", "600")] {
            let out = self
                .as_server_user(Path::new("install"))
                .args(["-m", mode])
                .arg(from)
                .arg(data.join(to))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "install {}: {}",
                from.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
        )
        .unwrap();
        if only_tls {
            let hba = data.join("pg_hba.conf");
            let rest = std::fs::read_to_string(&hba).unwrap();
            std::fs::write(
                &hba,
                format!(
                    "hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n{rest}"
                ),
            )
            .unwrap();
        }
        self.down();
        self.up();
    }

    /// Stops the server (fast: connections are cut).
    pub fn down(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
    }

    pub fn url(&self) -> String {
        format!("postgres://fleet@127.0.0.1:{}/postgres", self.port)
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The `agecam-fleet` binary under test, with its log in a file; SIGKILLed on drop.
pub struct Collector {
    child: Child,
    pub web_port: u16,
    pub log: PathBuf,
}

impl Collector {
    /// Starts the collector on `broker_port` with the extra flags (the database), a fresh
    /// web port, and waits for its page.
    pub fn start(dir: &Path, broker_port: u16, client_id: &str, database: &[&str]) -> Collector {
        let c = Collector::spawn(dir, broker_port, client_id, database);
        // Until the broker confirms the subscription, a new session would miss messages.
        wait_until("the collector subscribes", Duration::from_secs(20), || {
            c.log_text().contains("subscribed to")
        });
        c
    }

    /// Starts the collector and waits for its page only.
    pub fn spawn(dir: &Path, broker_port: u16, client_id: &str, database: &[&str]) -> Collector {
        let web_port = free_port();
        let log = dir.join(format!("collector-{web_port}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_agecam-fleet"))
            .args([
                "--broker-host",
                "127.0.0.1",
                "--broker-port",
                &broker_port.to_string(),
            ])
            .args(["--client-id", client_id])
            .args(["--listen", &format!("127.0.0.1:{web_port}")])
            .args(database)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(web_port, "agecam-fleet", &mut child, &log);
        Collector {
            child,
            web_port,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `done`; on a timeout the failure shows this collector's log.
    pub fn wait(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?}: {what}; collector log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no clean shutdown, nothing flushed.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.web_port, path)
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_with(port, path, &[])
}

/// [`http_get`] with extra header lines (`Name: value`).
pub fn http_get_with(port: u16, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// k = 1 so what a unit stores is what it publishes.
pub const PRIVACY: PrivacySettings = PrivacySettings { k: 1, epsilon: 0.0 };

/// An agecam unit: its own statistics database, pushed with agecam's store-and-forward code.
pub struct Unit {
    pub id: String,
    pub db: PathBuf,
    pub settings: PushSettings,
}

impl Unit {
    pub fn new(dir: &Path, id: &str, broker_port: u16) -> Unit {
        let db = dir.join(format!("{id}.sqlite"));
        Unit {
            id: id.to_string(),
            db: db.clone(),
            settings: PushSettings {
                host: "127.0.0.1".into(),
                port: broker_port,
                topic_prefix: "agecam".into(),
                unit_id: id.to_string(),
                client_id: format!("agecam-{id}"),
                username: None,
                password: None,
                tls: None,
                retry: Duration::from_secs(1),
                resend: Duration::ZERO,
                timeout: Duration::from_secs(10),
                privacy: PRIVACY,
                database: db,
            },
        }
    }

    /// Saves intervals into the unit's store (a re-save of an id merges, as after a restart).
    pub fn save(&self, intervals: &[IntervalStats]) {
        let mut store = agecam::stats::store::Store::open(&self.db).unwrap();
        for i in intervals {
            store.save(i).unwrap();
        }
    }

    /// Sends every unsent interval; how many the broker acknowledged.
    pub fn push(&self) -> usize {
        send_pending(&self.settings).unwrap()
    }
}

/// An interval of `unit` with `female` 25-34 and `male` 65+ visits.
pub fn interval(unit: &str, start: i64, female: u32, male: u32) -> IntervalStats {
    let mut i = IntervalStats {
        unit_id: unit.into(),
        start,
        length_s: 900,
        uptime_s: 900.0,
        frames: 9000,
        camera_faults: (start / 900 % 3 == 0) as u64,
        dwell_total_s: 10.0 * (female + male) as f64,
        dwell_max_s: 20.0,
        ..Default::default()
    };
    i.cells.insert(("25-34".into(), "female".into()), female);
    i.cells.insert(("65+".into(), "male".into()), male);
    i
}

/// Midnight UTC of today minus `days`.
pub fn day_start(days_ago: i64) -> i64 {
    let now = agecam_fleet::now();
    now - now.rem_euclid(86_400) - days_ago * 86_400
}

/// Publishes one raw payload at QoS 1 (waits for the PUBACK).
pub fn publish_raw(port: u16, client_id: &str, topic: &str, payload: &[u8]) {
    publish_many(port, client_id, &[(topic.to_string(), payload.to_vec())]);
}

/// Publishes `messages` at QoS 1 over one connection with rumqttc (the MQTT client the
/// units use), pipelined, and returns once the broker has acknowledged every one.
pub fn publish_many(port: u16, client_id: &str, messages: &[(String, Vec<u8>)]) {
    use rumqttc::{Event, Outgoing, Packet, QoS};
    let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut connection) = rumqttc::Client::new(options, messages.len() + 10);
    for (topic, payload) in messages {
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            .unwrap();
    }
    let start = Instant::now();
    let mut acked = 0;
    for event in connection.iter() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "publishing timed out"
        );
        match event {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked += 1;
                if acked == messages.len() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("publishing to 127.0.0.1:{port}: {e}"),
        }
    }
    client.disconnect().unwrap();
    for event in connection.iter() {
        if matches!(event, Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)) {
            break;
        }
    }
}

/// Row counts straight from PostgreSQL.
pub fn pg_counts(client: &mut postgres::Client) -> (i64, i64, i64, i64) {
    let r = client
        .query_one(
            "SELECT (SELECT count(*) FROM units), (SELECT count(*) FROM intervals),
                    (SELECT count(*) FROM cells), (SELECT count(*) FROM conflicts)",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}
