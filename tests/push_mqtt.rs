//! Fleet push against a real `mosquitto` broker on 127.0.0.1 (Debian: `apt-get install
//! mosquitto mosquitto-clients`). Without mosquitto these tests print "skipped" and pass,
//! unless the environment variable CI is set, where they fail and say what to install.
//!
//! Each test starts its own broker on a free port with a temporary configuration and
//! persistence folder, and a `mosquitto_sub -q 1 -v` subscriber with a persistent session
//! (`-c`), so messages the broker accepts while the subscriber is away are kept for it. Every
//! process is killed when its guard drops; every wait is bounded.

#[path = "common/certs.rs"]
mod certs;

use agecam::push::{send_pending, tls_config, PushSettings, Pusher};
use agecam::stats::aggregate::IntervalStats;
use agecam::stats::privacy::{publish, to_json, PrivacySettings};
use agecam::stats::store::Store;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const UNIT: &str = "hall";

/// The mosquitto binary (it lives in /usr/sbin, often not on a user's PATH), or `None` after
/// printing the skip line; panics under CI.
fn mosquitto() -> Option<PathBuf> {
    let on_path = |name: &str| {
        Command::new(name)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    let broker = ["mosquitto", "/usr/sbin/mosquitto"]
        .into_iter()
        .find(|b| on_path(b))
        .map(PathBuf::from);
    if broker.is_some() && on_path("mosquitto_sub") && on_path("mosquitto_passwd") {
        return broker;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "mosquitto is not installed; the fleet push tests need it: apt-get install mosquitto mosquitto-clients"
        );
    }
    eprintln!(
        "skipped: mosquitto not installed (apt-get install mosquitto mosquitto-clients to run the fleet push tests)"
    );
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temporary folder the broker can write even after it drops root to the `mosquitto` user.
fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// A mosquitto process; killed on drop.
struct Broker {
    child: Child,
    dir: PathBuf,
}

impl Broker {
    /// Starts mosquitto with `listeners` (the config lines after the common ones) and waits
    /// until `port` accepts connections.
    fn start(binary: &Path, dir: &Path, port: u16, listeners: &str) -> Broker {
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "{listeners}\n\
                 persistence true\n\
                 persistence_location {}/\n\
                 autosave_on_changes true\n\
                 autosave_interval 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("broker.log"))
            .unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut broker = Broker {
            child,
            dir: dir.to_path_buf(),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(10)
                || broker.child.try_wait().unwrap().is_some()
            {
                panic!("mosquitto did not start: {}", broker.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    /// SIGKILL: no goodbye to anyone.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_sub -q 1 -v` with a persistent session; every received message is appended to
/// the shared list. Killed on drop.
struct Subscriber {
    child: Child,
}

type Messages = Arc<Mutex<Vec<(String, String)>>>;

impl Subscriber {
    fn start(port: u16, messages: &Messages) -> Subscriber {
        // mosquitto_sub block-buffers a pipe; stdbuf (coreutils) makes it line-buffered.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-t",
                "agecam/#",
                "-q",
                "1",
                "-v",
                "-c",
                "-i",
                "agecam-test-sub",
                "-d",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let messages = Arc::clone(messages);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("received SUBACK") {
                    let _ = ready_tx.send(());
                } else if let Some((topic, payload)) = line.split_once(' ') {
                    if topic.starts_with("agecam/") {
                        messages
                            .lock()
                            .unwrap()
                            .push((topic.to_string(), payload.to_string()));
                    }
                }
            }
        });
        let mut subscriber = Subscriber { child };
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = subscriber.child.kill();
            panic!("mosquitto_sub did not subscribe within 10 s");
        }
        subscriber
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn interval(start: i64, female: u32, male: u32) -> IntervalStats {
    let mut i = IntervalStats {
        unit_id: UNIT.into(),
        start,
        length_s: 900,
        uptime_s: 900.0,
        frames: 9000 + start as u64 % 1000,
        dwell_total_s: 10.0 * (female + male) as f64,
        dwell_max_s: 20.0,
        ..Default::default()
    };
    i.cells.insert(("25-34".into(), "female".into()), female);
    i.cells.insert(("65+".into(), "male".into()), male);
    i
}

const T0: i64 = 1_795_392_000;

/// k = 1 so the pushed counts are the stored counts.
const PRIVACY: PrivacySettings = PrivacySettings { k: 1, epsilon: 0.0 };

fn settings(port: u16, database: &Path) -> PushSettings {
    PushSettings {
        host: "127.0.0.1".into(),
        port,
        topic_prefix: "agecam".into(),
        unit_id: UNIT.into(),
        client_id: format!("agecam-{UNIT}"),
        username: None,
        password: None,
        tls: None,
        retry: Duration::from_secs(1),
        resend: Duration::ZERO,
        timeout: Duration::from_secs(5),
        privacy: PRIVACY,
        database: database.to_path_buf(),
    }
}

fn ids(messages: &Messages) -> Vec<String> {
    messages
        .lock()
        .unwrap()
        .iter()
        .map(|(_, payload)| {
            let v: serde_json::Value = serde_json::from_str(payload).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

fn unsent(db: &Path) -> usize {
    Store::open(db).unwrap().unsent(1000).unwrap().len()
}

/// Every stored interval arrived, and the latest message per id is exactly its export JSON,
/// so counting each id once gives the stored counts: nothing lost, nothing counted twice.
fn assert_receiver_matches_store(messages: &Messages, db: &Path) {
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for (topic, payload) in messages.lock().unwrap().iter() {
        assert_eq!(topic, &format!("agecam/{UNIT}/intervals"));
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        latest.insert(v["id"].as_str().unwrap().to_string(), payload.clone());
    }
    let stored = Store::open(db).unwrap().load(i64::MIN, i64::MAX).unwrap();
    assert_eq!(
        latest.keys().cloned().collect::<Vec<_>>(),
        stored.iter().map(|i| i.id()).collect::<Vec<_>>(),
        "every interval id arrived"
    );
    for interval in &stored {
        assert_eq!(
            latest[&interval.id()],
            to_json(&publish(interval, &PRIVACY)),
            "the payload is the export JSON of {}",
            interval.id()
        );
    }
    let received: u64 = latest
        .values()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_str(p).unwrap();
            v["cells"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["visits"].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    let counted: u64 = stored.iter().map(|i| i.visits() as u64).sum();
    assert_eq!(received, counted);
}

#[test]
fn a_backlog_waits_for_the_broker_then_arrives_in_order_and_is_marked_sent() {
    let Some(mosquitto) = mosquitto() else { return };
    let dir = shared_tempdir();
    let db = dir.path().join("stats.sqlite");
    let port = free_port();
    let listener = format!("listener {port} 127.0.0.1\nallow_anonymous true");
    let messages = Messages::default();
    // Register the receiver's persistent session, then take the broker away.
    let broker = Broker::start(&mosquitto, dir.path(), port, &listener);
    drop(Subscriber::start(port, &messages));
    broker.kill();

    let mut store = Store::open(&db).unwrap();
    for n in 0..5 {
        store.save(&interval(T0 + n * 900, n as u32, 1)).unwrap();
    }
    let pusher = Pusher::start(settings(port, &db)).unwrap();
    std::thread::sleep(Duration::from_millis(2500)); // two retries or more
    assert_eq!(unsent(&db), 5, "broker down: nothing is marked sent");

    let _broker = Broker::start(&mosquitto, dir.path(), port, &listener);
    let _subscriber = Subscriber::start(port, &messages);
    wait_until("the backlog is sent", Duration::from_secs(20), || {
        unsent(&db) == 0 && messages.lock().unwrap().len() >= 5
    });
    pusher.stop();
    let expected: Vec<String> = (0..5).map(|n| format!("{UNIT}@{}", T0 + n * 900)).collect();
    assert_eq!(ids(&messages), expected, "in order, each once");
    assert_receiver_matches_store(&messages, &db);
}

/// A unit whose `stats.unit_id` was changed while intervals were still unsent: those go out
/// under the id they were stored with (topic and payload agree, so a collector files them
/// under that unit), the new ones under the new id; none is dropped or relabelled.
#[test]
fn a_renamed_unit_sends_its_earlier_intervals_under_the_id_they_were_stored_with() {
    let Some(mosquitto) = mosquitto() else { return };
    let dir = shared_tempdir();
    let db = dir.path().join("stats.sqlite");
    let port = free_port();
    let listener = format!("listener {port} 127.0.0.1\nallow_anonymous true");
    let messages = Messages::default();
    let _broker = Broker::start(&mosquitto, dir.path(), port, &listener);
    let _subscriber = Subscriber::start(port, &messages);
    let mut store = Store::open(&db).unwrap();
    let old = IntervalStats {
        unit_id: "hall-old".into(),
        ..interval(T0, 2, 1)
    };
    store.save(&old).unwrap();
    store.save(&interval(T0 + 900, 1, 1)).unwrap();
    let pusher = Pusher::start(settings(port, &db)).unwrap();
    wait_until("both are sent", Duration::from_secs(20), || {
        unsent(&db) == 0 && messages.lock().unwrap().len() >= 2
    });
    pusher.stop();
    let got: Vec<(String, String)> = messages
        .lock()
        .unwrap()
        .iter()
        .map(|(topic, payload)| {
            let v: serde_json::Value = serde_json::from_str(payload).unwrap();
            (topic.clone(), v["unit_id"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "agecam/hall-old/intervals".to_string(),
                "hall-old".to_string()
            ),
            (format!("agecam/{UNIT}/intervals"), UNIT.to_string())
        ]
    );
}

#[test]
fn a_broker_killed_and_restarted_mid_run_loses_nothing_and_counts_nothing_twice() {
    let Some(mosquitto) = mosquitto() else { return };
    let dir = shared_tempdir();
    let db = dir.path().join("stats.sqlite");
    let port = free_port();
    let listener = format!("listener {port} 127.0.0.1\nallow_anonymous true");
    let messages = Messages::default();
    let broker = Broker::start(&mosquitto, dir.path(), port, &listener);
    let subscriber = Subscriber::start(port, &messages);

    let mut store = Store::open(&db).unwrap();
    let pusher = Pusher::start(settings(port, &db)).unwrap();
    let waker = pusher.waker();
    for n in 0..3 {
        store.save(&interval(T0 + n * 900, 5, n as u32)).unwrap();
        waker.wake();
    }
    wait_until("the first three are sent", Duration::from_secs(20), || {
        unsent(&db) == 0 && messages.lock().unwrap().len() >= 3
    });

    broker.kill();
    drop(subscriber);
    for n in 3..6 {
        store.save(&interval(T0 + n * 900, 2, n as u32)).unwrap();
        waker.wake();
    }
    // A restart of the daemon within interval 1 adds a second part to it: it is sent again,
    // with the merged totals.
    store.save(&interval(T0 + 900, 3, 4)).unwrap();
    waker.wake();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        unsent(&db),
        4,
        "broker down: the new and the merged interval wait"
    );

    let _broker = Broker::start(&mosquitto, dir.path(), port, &listener);
    let _subscriber = Subscriber::start(port, &messages);
    wait_until(
        "the backlog is sent after the broker returns",
        Duration::from_secs(20),
        || unsent(&db) == 0 && messages.lock().unwrap().len() >= 7,
    );
    pusher.stop();
    // The broker may deliver a message to the subscriber twice across its restart (QoS 1 is
    // at-least-once at every hop); a receiver drops identical repeats. The new payloads after
    // the restart are the backlog, oldest first.
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<String> = messages
        .lock()
        .unwrap()
        .iter()
        .filter(|m| seen.insert((*m).clone()))
        .map(|(_, p)| {
            serde_json::from_str::<serde_json::Value>(p).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        distinct[3..],
        [1, 3, 4, 5].map(|n| format!("{UNIT}@{}", T0 + n * 900)),
        "the backlog arrives oldest first (all: {:?})",
        ids(&messages)
    );
    assert_receiver_matches_store(&messages, &db);
}

#[test]
fn a_password_broker_refuses_a_wrong_password_clearly_and_accepts_the_right_one() {
    let Some(mosquitto) = mosquitto() else { return };
    let dir = shared_tempdir();
    let passwords = dir.path().join("passwords");
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["kiosk", "right-password"])
        .status()
        .unwrap();
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&passwords, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port();
    let _broker = Broker::start(
        &mosquitto,
        dir.path(),
        port,
        &format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}",
            passwords.display()
        ),
    );
    let db = dir.path().join("stats.sqlite");
    Store::open(&db).unwrap().save(&interval(T0, 1, 1)).unwrap();

    let mut s = settings(port, &db);
    s.username = Some("kiosk".into());
    s.password = Some(b"wrong-password".to_vec());
    let err = send_pending(&s).unwrap_err().to_string();
    assert!(
        err.contains("refused the connection") && err.contains("push.password_file"),
        "{err}"
    );
    s.username = None;
    s.password = None;
    let err = send_pending(&s).unwrap_err().to_string();
    assert!(err.contains("refused the connection"), "anonymous: {err}");
    assert_eq!(unsent(&db), 1);

    s.username = Some("kiosk".into());
    s.password = Some(b"right-password".to_vec());
    assert_eq!(send_pending(&s).unwrap(), 1);
    assert_eq!(unsent(&db), 0);
}

#[test]
fn tls_with_our_ca_works_and_a_foreign_ca_is_refused() {
    let Some(mosquitto) = mosquitto() else { return };
    let dir = shared_tempdir();
    let d = dir.path();
    let made = certs::make(d, "agecam test CA");
    if !made {
        eprintln!("skipped: the openssl command is needed to make test certificates");
        return;
    }
    let (a, b) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let (tls_port, plain_port) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    drop((a, b));
    let messages = Messages::default();
    let _broker = Broker::start(
        &mosquitto,
        d,
        tls_port,
        &format!(
            "per_listener_settings false\nallow_anonymous true\n\
             listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n\
             listener {plain_port} 127.0.0.1",
            d.display()
        ),
    );
    let _subscriber = Subscriber::start(plain_port, &messages);
    let db = d.join("stats.sqlite");
    Store::open(&db).unwrap().save(&interval(T0, 6, 7)).unwrap();

    let mut s = settings(tls_port, &db);
    s.tls = Some(tls_config(&d.join("other.pem")).unwrap());
    let err = send_pending(&s).unwrap_err().to_string();
    assert!(
        err.contains("TLS handshake failed") && err.contains("push.ca_file"),
        "{err}"
    );
    assert_eq!(unsent(&db), 1);

    s.tls = Some(tls_config(&d.join("ca.pem")).unwrap());
    assert_eq!(send_pending(&s).unwrap(), 1);
    wait_until(
        "the TLS message reaches the subscriber",
        Duration::from_secs(10),
        || !messages.lock().unwrap().is_empty(),
    );
    assert_receiver_matches_store(&messages, &db);
}
