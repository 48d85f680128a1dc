//! Fleet push: finished statistics intervals go to an MQTT broker, store-and-forward.
//!
//! A [`Pusher`] runs in its own thread with its own connection to the statistics store, so a
//! slow or absent network never stalls frame processing. It is woken when an interval is saved
//! and every `push.retry_seconds`; it then connects, publishes every unsent interval oldest
//! first at QoS 1, marks each one sent only after the broker's PUBACK for it, and disconnects.
//! The payload is the interval's k-anonymous JSON (exactly a line of
//! `agecam stats export --format json`) with its stable id `unit@start`. Delivery is
//! at-least-once: an interval whose PUBACK was lost is sent again, and an interval merged after
//! a restart is sent again with the newer totals, so a receiver keeps the latest message per id.
//!
//! The MQTT 3.1.1 protocol is `rumqttc`'s (its synchronous `Client`/`Connection`): each round
//! opens one connection whose event loop runs in a short-lived thread of its own and reports
//! every event over a channel. The push thread publishes one interval at a time and waits,
//! bounded by the timeout and cut short by [`Pusher::stop`], for the PUBACK with that
//! PUBLISH's packet id. What stays ours: the settings, the topic check, the password file,
//! the CA file (a rustls configuration with the ring provider), and the operator-facing
//! wording of every failure.

use crate::config::Config;
use crate::stats::privacy::{publish, to_json, PrivacySettings};
use crate::stats::store::Store;
use rumqttc::{
    ConnectReturnCode, ConnectionError, Event, Incoming, MqttOptions, NetworkOptions, Outgoing,
    QoS, StateError, TlsConfiguration, Transport,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Everything the push thread needs, resolved at start (secrets read, CA parsed).
#[derive(Clone)]
pub struct PushSettings {
    pub host: String,
    pub port: u16,
    /// `push.topic_prefix`: an interval goes to `<prefix>/<its unit id>/intervals`
    /// ([`PushSettings::topic`]).
    pub topic_prefix: String,
    /// This unit's id now (`stats.unit_id`). Intervals stored under an earlier id are still
    /// published under that id, never this one: the receiver files them where they belong.
    pub unit_id: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// `Some` for TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub retry: Duration,
    /// `push.resend_seconds`: a round that sends anything also publishes again the intervals
    /// already acknowledged that ended this recently (zero: never), so what a crashed broker
    /// lost before handing it on reaches the collector anyway (it counts each id once).
    pub resend: Duration,
    /// Bound on connecting and on each answer from the broker.
    pub timeout: Duration,
    pub privacy: PrivacySettings,
    pub database: PathBuf,
}

impl std::fmt::Debug for PushSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("PushSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("topic", &self.topic(&self.unit_id))
            .field("username", &self.username)
            .field("tls", &self.tls.is_some())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Why the push settings cannot be made from the configuration: each message names the key
/// and the file, and the underlying I/O, PEM or TLS error is its source.
#[derive(Debug, thiserror::Error)]
pub enum PushConfigError {
    #[error(
        "push.password_file {}: cannot read it; it must exist and be readable by the agecam user",
        file.display()
    )]
    PasswordUnreadable {
        file: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(
        "push.password_file {}: the first line is empty; it must hold the broker password",
        file.display()
    )]
    PasswordEmpty { file: PathBuf },
    #[error(
        "push.password_file {}: the first line is not UTF-8 text; write the password as text",
        file.display()
    )]
    PasswordNotUtf8 { file: PathBuf },
    #[error("push.tls = true needs push.ca_file")]
    NoCaFile,
    #[error("push.ca_file {}: cannot read it", file.display())]
    CaUnreadable {
        file: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("push.ca_file {}: not valid PEM", file.display())]
    CaNotPem {
        file: PathBuf,
        #[source]
        error: rustls::pki_types::pem::Error,
    },
    #[error("push.ca_file {}: a certificate that cannot be used as a CA", file.display())]
    CaUnusable {
        file: PathBuf,
        #[source]
        error: rustls::Error,
    },
    #[error(
        "push.ca_file {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        file.display()
    )]
    CaEmpty { file: PathBuf },
    #[error("TLS setup")]
    Tls(#[source] rustls::Error),
    #[error("push topic {topic:?}: {problem}; check push.topic_prefix and stats.unit_id")]
    Topic { topic: String, problem: TopicError },
}

/// Why a topic cannot be published to (MQTT 3.1.1 section 4.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("a topic cannot be empty")]
    Empty,
    #[error("a topic is at most 65535 bytes")]
    TooLong,
    #[error("a topic to publish to cannot hold {0:?} (wildcards and NUL are for subscriptions)")]
    Forbidden(char),
}

/// Intervals read from the store per round trip.
const BATCH: usize = 100;
/// Keep-alive announced in CONNECT; a batch is sent well within it.
const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Largest packet accepted from the broker: a client that only publishes expects CONNACK,
/// PUBACK and PINGRESP (2 bytes each).
const MAX_INCOMING: usize = 64 * 1024;
/// Largest packet we send: an interval's JSON is about a kilobyte per dozen cells.
const MAX_OUTGOING: usize = 1024 * 1024;
/// How often a wait for the broker checks whether the push is stopping.
const STOP_CHECK: Duration = Duration::from_millis(50);

impl PushSettings {
    /// Settings from `[push]` (and `[stats]` for the unit, database and privacy), or `None`
    /// when the push is off. Reads `push.password_file` and `push.ca_file` now; an unreadable
    /// or empty file is an error naming it.
    pub fn from_config(config: &Config) -> Result<Option<PushSettings>, PushConfigError> {
        let push = &config.push;
        if !push.enabled {
            return Ok(None);
        }
        let unit_id = config.stats.unit_id();
        let password = match &push.password_file {
            Some(file) => Some(read_password(file)?),
            None => None,
        };
        let tls = if push.tls {
            let ca = push.ca_file.as_ref().ok_or(PushConfigError::NoCaFile)?;
            Some(tls_config(ca)?)
        } else {
            None
        };
        let topic = push.topic(&unit_id);
        if let Err(problem) = check_topic(&topic) {
            return Err(PushConfigError::Topic { topic, problem });
        }
        Ok(Some(PushSettings {
            host: push.host.clone(),
            port: push.port(),
            topic_prefix: push.topic_prefix.clone(),
            unit_id: unit_id.clone(),
            client_id: format!("agecam-{unit_id}"),
            username: push.username.clone(),
            password,
            tls,
            retry: Duration::from_secs(push.retry_seconds as u64),
            resend: Duration::from_secs(u64::from(push.resend_seconds)),
            timeout: Duration::from_secs(10),
            privacy: PrivacySettings::from_config(&config.stats),
            database: config.stats.database(),
        }))
    }

    /// The topic of intervals stored under `unit_id`: `<prefix>/<unit_id>/intervals`.
    pub fn topic(&self, unit_id: &str) -> String {
        format!("{}/{unit_id}/intervals", self.topic_prefix)
    }

    fn describe(&self) -> String {
        format!(
            "mqtt{}://{}:{}/{}",
            if self.tls.is_some() { "s" } else { "" },
            self.host,
            self.port,
            self.topic(&self.unit_id)
        )
    }
}

/// Checks a topic name we publish to: non-empty UTF-8 of at most 65535 bytes, without
/// wildcards or NUL (MQTT 3.1.1 section 4.7).
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > 65535 {
        return Err(TopicError::TooLong);
    }
    if let Some(c) = topic.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        return Err(TopicError::Forbidden(c));
    }
    Ok(())
}

/// The first line of `file`, without its line end.
fn read_password(file: &Path) -> Result<Vec<u8>, PushConfigError> {
    let bytes = std::fs::read(file).map_err(|error| PushConfigError::PasswordUnreadable {
        file: file.to_path_buf(),
        error,
    })?;
    password_from_file(&bytes, file)
}

/// The password in a password file's contents: its first line without the line end (`\n` or
/// `\r\n`). It must be non-empty UTF-8 text (MQTT carries it as bytes, rumqttc as a string).
/// `file` only names the file in errors.
pub fn password_from_file(bytes: &[u8], file: &Path) -> Result<Vec<u8>, PushConfigError> {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(PushConfigError::PasswordEmpty {
            file: file.to_path_buf(),
        });
    }
    if std::str::from_utf8(line).is_err() {
        return Err(PushConfigError::PasswordNotUtf8 {
            file: file.to_path_buf(),
        });
    }
    Ok(line.to_vec())
}

/// A rustls client configuration (ring provider) trusting only the CAs in `ca_file`.
pub fn tls_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, PushConfigError> {
    let pem = std::fs::read(ca_file).map_err(|error| PushConfigError::CaUnreadable {
        file: ca_file.to_path_buf(),
        error,
    })?;
    let roots = ca_roots(&pem, ca_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(PushConfigError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The CA certificates in the contents of a PEM file; at least one, each usable as a trust
/// anchor. `ca_file` only names the file in errors.
pub fn ca_roots(pem: &[u8], ca_file: &Path) -> Result<rustls::RootCertStore, PushConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let file = || ca_file.to_path_buf();
    let mut roots = rustls::RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|error| PushConfigError::CaNotPem {
            file: file(),
            error,
        })?;
        roots
            .add(cert)
            .map_err(|error| PushConfigError::CaUnusable {
                file: file(),
                error,
            })?;
        found += 1;
    }
    if found == 0 {
        return Err(PushConfigError::CaEmpty { file: file() });
    }
    Ok(roots)
}

/// One round in the calling thread: connects if anything is unsent, sends it all, marks each
/// interval sent on its PUBACK. Returns how many were acknowledged, or the problem as one line
/// (e.g. the broker's refusal). For checks and tests; the daemon uses [`Pusher`].
pub fn send_pending(settings: &PushSettings) -> Result<usize, RoundError> {
    let (_tx, rx) = mpsc::channel();
    let mut worker = Worker {
        settings: settings.clone(),
        rx,
        stopping: Arc::new(AtomicBool::new(false)),
        store: None,
        down: false,
    };
    worker.round()
}

/// Why a round failed, as one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("{0}")]
    Mqtt(String),
    #[error("{0}")]
    Store(#[from] crate::stats::store::StoreError),
    #[error("stopping")]
    Stopping,
}

/// What each CONNACK return code of MQTT 3.1.1 (section 3.2.2.3) means for the operator.
fn refusal(code: ConnectReturnCode) -> String {
    let what = match code {
        ConnectReturnCode::Success => "accepted",
        ConnectReturnCode::RefusedProtocolVersion => {
            "unacceptable protocol version: the broker does not speak MQTT 3.1.1"
        }
        ConnectReturnCode::BadClientId => {
            "identifier rejected: the broker does not accept the client id agecam-<unit_id>"
        }
        ConnectReturnCode::ServiceUnavailable => {
            "server unavailable: the broker is up but not accepting connections"
        }
        ConnectReturnCode::BadUserNamePassword => {
            "bad user name or password: check push.username and the password in push.password_file"
        }
        ConnectReturnCode::NotAuthorized => {
            "not authorized: check push.username and the password in push.password_file, and the broker's access rules"
        }
    };
    format!(
        "the broker refused the connection (CONNACK code {}, {what})",
        code as u8
    )
}

/// One line for a failure of the MQTT connection; `step` says what we were doing.
fn explain(error: &ConnectionError, step: &str, timeout: Duration) -> String {
    let seconds = timeout.as_secs_f32();
    match error {
        ConnectionError::ConnectionRefused(code) => refusal(*code),
        ConnectionError::Tls(e) => format!(
            "TLS handshake failed ({e}); check push.ca_file and that push.host matches the broker's certificate"
        ),
        ConnectionError::NetworkTimeout => {
            format!("no answer from the broker while {step} within {seconds} s")
        }
        ConnectionError::FlushTimeout => {
            format!("the broker took no data for {seconds} s while we were {step}")
        }
        ConnectionError::Io(e) => format!("{step} failed ({e})"),
        ConnectionError::MqttState(StateError::ConnectionAborted) => {
            format!("the broker closed the connection while we were {step}")
        }
        ConnectionError::MqttState(StateError::Deserialization(e)) => {
            format!("the broker broke the MQTT 3.1.1 protocol while we were {step}: {e}")
        }
        ConnectionError::NotConnAck(packet) => format!(
            "the broker broke the MQTT 3.1.1 protocol: expected CONNACK first, got {packet:?}"
        ),
        other => format!("the MQTT connection failed while we were {step} ({other})"),
    }
}

/// Wakes the push thread (an interval was saved).
#[derive(Clone)]
pub struct Waker(Sender<Message>);

impl Waker {
    pub fn wake(&self) {
        let _ = self.0.send(Message::Wake);
    }
}

enum Message {
    Wake,
    Stop,
}

/// The running push thread.
pub struct Pusher {
    tx: Sender<Message>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pusher {
    /// Starts the push thread; it tries at once, then when woken and every `settings.retry`.
    pub fn start(settings: PushSettings) -> std::io::Result<Pusher> {
        let (tx, rx) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            settings,
            rx,
            stopping: Arc::clone(&stopping),
            store: None,
            down: false,
        };
        let thread = std::thread::Builder::new()
            .name("agecam-push".into())
            .spawn(move || worker.run())?;
        Ok(Pusher {
            tx,
            stopping,
            thread: Some(thread),
        })
    }

    pub fn waker(&self) -> Waker {
        Waker(self.tx.clone())
    }

    /// Stops the thread promptly: an answer being waited for is given up within 50 ms (that
    /// interval stays unsent and goes at the next start). The MQTT connection's own thread is
    /// not waited for: it ends by itself, within the timeout.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.shut();
    }
}

struct Worker {
    settings: PushSettings,
    rx: Receiver<Message>,
    stopping: Arc<AtomicBool>,
    store: Option<Store>,
    /// Whether the current outage has been logged.
    down: bool,
}

impl Worker {
    fn run(&mut self) {
        log::info!(
            "fleet push to {} (retry every {} s)",
            self.settings.describe(),
            self.settings.retry.as_secs()
        );
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            match self.round() {
                Ok(sent) => {
                    if self.down {
                        log::info!(
                            "fleet push to {} works again; {sent} waiting interval(s) sent",
                            self.settings.describe()
                        );
                        self.down = false;
                    } else if sent > 0 {
                        log::debug!("fleet push: {sent} interval(s) sent");
                    }
                }
                Err(_) if self.stopping.load(Ordering::SeqCst) => return,
                Err(e) => {
                    if !self.down {
                        let waiting = self
                            .store
                            .as_ref()
                            .and_then(|s| s.unsent(usize::MAX).ok())
                            .map(|v| v.len().to_string())
                            .unwrap_or_else(|| "some".into());
                        log::warn!(
                            "fleet push to {} failed: {e}; {waiting} interval(s) stay stored and are retried every {} s",
                            self.settings.describe(),
                            self.settings.retry.as_secs()
                        );
                        self.down = true;
                    }
                    if let RoundError::Store(_) = e {
                        self.store = None;
                    }
                }
            }
            match self.rx.recv_timeout(self.settings.retry) {
                Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => {
                    // Many wakes may have piled up; one round serves them all.
                    loop {
                        match self.rx.try_recv() {
                            Ok(Message::Wake) => continue,
                            Ok(Message::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                            Err(mpsc::TryRecvError::Empty) => break,
                        }
                    }
                }
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Sends every unsent interval, oldest first; returns how many were acknowledged.
    fn round(&mut self) -> Result<usize, RoundError> {
        if self.store.is_none() {
            self.store = Some(Store::open(&self.settings.database)?);
        }
        let Some(store) = self.store.as_mut() else {
            return Ok(0);
        };
        let mut batch = store.unsent(BATCH)?;
        if batch.is_empty() {
            return Ok(0);
        }
        let mut session = Session::open(&self.settings, &self.stopping)?;
        let mut sent = 0;
        let mut renamed = std::collections::BTreeSet::new();
        let mut just_sent = std::collections::BTreeSet::new();
        while !batch.is_empty() {
            for interval in &batch {
                if self.stopping.load(Ordering::SeqCst) {
                    return Err(RoundError::Stopping);
                }
                // Under the id it was stored with: a unit renamed (stats.unit_id changed) still
                // sends its earlier intervals as the unit that counted them.
                let topic = self.settings.topic(&interval.unit_id);
                if interval.unit_id != self.settings.unit_id
                    && renamed.insert(interval.unit_id.clone())
                {
                    log::warn!(
                        "fleet push: unsent intervals stored under the earlier unit id {:?} go to {topic} (stats.unit_id is now {:?}); the collector shows them under the earlier id",
                        interval.unit_id,
                        self.settings.unit_id
                    );
                }
                let payload = to_json(&publish(interval, &self.settings.privacy));
                session.publish_qos1(&topic, payload.into_bytes())?;
                // Acknowledged: only now is it sent. If a restarted part was merged meanwhile,
                // the row stays unsent and the newer totals go out in the next batch.
                if store.mark_sent(&interval.unit_id, interval.start, interval)? {
                    sent += 1;
                }
                just_sent.insert((interval.unit_id.clone(), interval.start));
            }
            batch = store.unsent(BATCH)?;
        }
        resend_recent(
            &self.settings,
            store,
            &mut session,
            &just_sent,
            &self.stopping,
        )?;
        session.close();
        Ok(sent)
    }
}

/// Publishes again, oldest first, the intervals acknowledged before this round that ended
/// within `push.resend_seconds` (none when it is 0). The broker's PUBACK says it has the
/// message, not that the collector stored it: mosquitto keeps a message in flight to a
/// connected collector in memory only until its next save, so a broker killed then loses it,
/// and only the unit still has it. The same content again is a duplicate to the collector.
/// Returns how many were published.
fn resend_recent(
    settings: &PushSettings,
    store: &Store,
    session: &mut Session<'_>,
    just_sent: &std::collections::BTreeSet<(String, i64)>,
    stopping: &AtomicBool,
) -> Result<usize, RoundError> {
    if settings.resend.is_zero() {
        return Ok(0);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let since = now - settings.resend.as_secs() as i64;
    let mut resent = 0;
    for interval in store.sent_since(since)? {
        if just_sent.contains(&(interval.unit_id.clone(), interval.start)) {
            continue;
        }
        if stopping.load(Ordering::SeqCst) {
            return Err(RoundError::Stopping);
        }
        let payload = to_json(&publish(&interval, &settings.privacy));
        session.publish_qos1(&settings.topic(&interval.unit_id), payload.into_bytes())?;
        resent += 1;
    }
    if resent > 0 {
        log::debug!("fleet push: {resent} recent interval(s) published again");
    }
    Ok(resent)
}

/// What the connection thread reports: each event of rumqttc's event loop, or its error.
type Report = Result<Event, ConnectionError>;

/// One MQTT connection, for one round. rumqttc's event loop (`Connection`) runs in a thread of
/// its own that forwards every event; this side publishes and waits for the events it needs,
/// never longer than the timeout and never past a stop. Dropping the session asks the event
/// loop to disconnect; its thread then ends by itself (at the latest when rumqttc's connection
/// or flush timeout, the same timeout, runs out), so nothing here waits on the network.
struct Session<'a> {
    client: rumqttc::Client,
    events: Receiver<Report>,
    timeout: Duration,
    stopping: &'a AtomicBool,
}

impl<'a> Session<'a> {
    /// Connects (TCP, TLS, CONNECT with a clean session) and waits for the CONNACK.
    fn open(settings: &PushSettings, stopping: &'a AtomicBool) -> Result<Session<'a>, RoundError> {
        let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
        match (&settings.username, &settings.password) {
            (Some(user), Some(password)) => {
                let password = String::from_utf8(password.clone()).map_err(|_| {
                    RoundError::Mqtt(
                        "the MQTT password is not UTF-8 text; write it as text in push.password_file"
                            .into(),
                    )
                })?;
                options.set_credentials(user, password);
            }
            (Some(user), None) => {
                options.set_credentials(user, "");
            }
            (None, Some(_)) => {
                // MQTT 3.1.1 section 3.1.2.9: a password needs a user name.
                return Err(RoundError::Mqtt(
                    "an MQTT password needs a user name (push.username)".into(),
                ));
            }
            (None, None) => {}
        }
        if let Some(config) = &settings.tls {
            // Checked here so that a host name rustls cannot use is reported as such.
            rustls::pki_types::ServerName::try_from(settings.host.as_str()).map_err(|e| {
                RoundError::Mqtt(format!(
                    "push.host {}: {e}; use a DNS name or an IP address",
                    settings.host
                ))
            })?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::clone(config),
            )));
        }
        let (client, mut connection) = rumqttc::Client::new(options, 10);
        // rumqttc's bound on connecting (TCP, TLS and CONNACK together) and on each flush, in
        // whole seconds.
        let seconds = settings.timeout.as_secs_f64().ceil().max(1.0) as u64;
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(seconds);
        // Small packets, each waited for: no Nagle delay (as our own client had it).
        network.set_tcp_nodelay(true);
        connection.eventloop.set_network_options(network);
        let (tx, events) = mpsc::channel();
        std::thread::Builder::new()
            .name("agecam-mqtt".into())
            .spawn(move || {
                // One connection per round: the first error ends it (rumqttc would reconnect
                // on the next poll; the push thread retries instead, every retry_seconds).
                for report in connection.iter() {
                    let last = matches!(report, Err(_) | Ok(Event::Outgoing(Outgoing::Disconnect)));
                    if tx.send(report).is_err() || last {
                        break;
                    }
                }
            })
            .map_err(|e| RoundError::Mqtt(format!("cannot start the MQTT thread ({e})")))?;
        let session = Session {
            client,
            events,
            timeout: settings.timeout,
            stopping,
        };
        let connecting = Duration::from_secs(seconds) + Duration::from_secs(1);
        let deadline = Instant::now() + connecting;
        loop {
            match session.next(deadline, "connecting", connecting)? {
                Event::Incoming(Incoming::ConnAck(_)) => return Ok(session),
                // Nothing else comes before the CONNACK.
                _ => continue,
            }
        }
    }

    /// Publishes `payload` at QoS 1 and waits for the broker's PUBACK of it: when this returns
    /// Ok, the broker has taken responsibility for the message.
    fn publish_qos1(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), RoundError> {
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .map_err(|e| RoundError::Mqtt(format!("cannot hand the message to rumqttc ({e})")))?;
        let deadline = Instant::now() + self.timeout;
        // The packet id rumqttc gave this PUBLISH, learnt when it is written.
        let mut packet_id = None;
        loop {
            match (
                self.next(deadline, "waiting for PUBACK", self.timeout)?,
                packet_id,
            ) {
                (Event::Outgoing(Outgoing::Publish(id)), None) => packet_id = Some(id),
                (Event::Incoming(Incoming::PubAck(ack)), Some(id)) if ack.pkid == id => {
                    return Ok(())
                }
                // Pings and their answers, or anything not ours: keep waiting.
                _ => continue,
            }
        }
    }

    /// Disconnects politely: waits (bounded) until DISCONNECT is written; errors do not matter
    /// any more, everything was acknowledged.
    fn close(self) {
        if self.client.try_disconnect().is_ok() {
            let deadline = Instant::now() + self.timeout;
            while let Ok(event) = self.next(deadline, "disconnecting", self.timeout) {
                if event == Event::Outgoing(Outgoing::Disconnect) {
                    break;
                }
            }
        }
    }

    /// The next event of the connection, or why there is none: its error, the timeout (`what`
    /// names the step, `after` the bound), or a stop.
    fn next(&self, deadline: Instant, what: &str, after: Duration) -> Result<Event, RoundError> {
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return Err(RoundError::Stopping);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RoundError::Mqtt(format!(
                    "no answer from the broker while {what} within {} s",
                    after.as_secs_f32()
                )));
            }
            match self.events.recv_timeout((deadline - now).min(STOP_CHECK)) {
                Ok(Ok(event)) => return Ok(event),
                Ok(Err(e)) => return Err(RoundError::Mqtt(explain(&e, what, self.timeout))),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(RoundError::Mqtt(format!(
                        "the MQTT connection ended while we were {what}"
                    )))
                }
            }
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // The event loop sends DISCONNECT and its thread ends; if it is still connecting, it
        // gives up at rumqttc's connection timeout. Never blocks.
        let _ = self.client.try_disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    fn settings(port: u16, database: PathBuf) -> PushSettings {
        PushSettings {
            host: "127.0.0.1".into(),
            port,
            topic_prefix: "agecam".into(),
            unit_id: "test".into(),
            client_id: "agecam-test".into(),
            username: None,
            password: None,
            tls: None,
            retry: Duration::from_secs(3600),
            resend: Duration::ZERO,
            timeout: Duration::from_secs(30),
            privacy: PrivacySettings::default(),
            database,
        }
    }

    #[test]
    fn stop_is_prompt_even_while_a_silent_broker_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.sqlite");
        let mut store = Store::open(&db).unwrap();
        store
            .save(&crate::stats::aggregate::IntervalStats {
                unit_id: "test".into(),
                start: 900,
                length_s: 900,
                ..Default::default()
            })
            .unwrap();
        // Accepts the connection, never answers CONNACK.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pusher = Pusher::start(settings(port, db)).unwrap();
        let (_held, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        pusher.stop();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(
            store.unsent(10).unwrap().len(),
            1,
            "not acknowledged, not sent"
        );
    }

    /// A broker that accepts one connection, reads packets and answers each CONNECT with
    /// CONNACK 0 and each PUBLISH with a PUBACK for `packet_id(publish's id)`. Returns the ids
    /// of the PUBLISH packets it saw when the client goes away.
    fn fake_broker(
        listener: TcpListener,
        packet_id: fn(u16) -> u16,
    ) -> std::thread::JoinHandle<Vec<u16>> {
        use std::io::{Read, Write};
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut seen = Vec::new();
            loop {
                let mut first = [0u8; 1];
                if s.read_exact(&mut first).is_err() {
                    return seen;
                }
                let (mut len, mut shift) = (0usize, 0);
                loop {
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).unwrap();
                    len |= ((b[0] & 0x7f) as usize) << shift;
                    shift += 7;
                    if b[0] & 0x80 == 0 {
                        break;
                    }
                }
                let mut body = vec![0u8; len];
                s.read_exact(&mut body).unwrap();
                match first[0] >> 4 {
                    1 => s.write_all(&[0x20, 2, 0, 0]).unwrap(),
                    3 => {
                        let topic = u16::from_be_bytes([body[0], body[1]]) as usize;
                        let id = u16::from_be_bytes([body[2 + topic], body[3 + topic]]);
                        seen.push(id);
                        let [hi, lo] = packet_id(id).to_be_bytes();
                        s.write_all(&[0x40, 2, hi, lo]).unwrap();
                    }
                    12 => s.write_all(&[0xd0, 0]).unwrap(),
                    _ => {}
                }
            }
        })
    }

    fn one_interval(db: &Path, start: i64) {
        Store::open(db)
            .unwrap()
            .save(&crate::stats::aggregate::IntervalStats {
                unit_id: "test".into(),
                start,
                length_s: 900,
                ..Default::default()
            })
            .unwrap();
    }

    #[test]
    fn only_the_puback_with_the_publish_packet_id_marks_an_interval_sent() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.sqlite");
        one_interval(&db, 900);
        one_interval(&db, 1800);
        // Acknowledges another packet id: nothing may be marked sent.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = settings(listener.local_addr().unwrap().port(), db.clone());
        s.timeout = Duration::from_secs(1);
        let broker = fake_broker(listener, |id| id.wrapping_add(1));
        let err = send_pending(&s).unwrap_err().to_string();
        assert!(err.contains("waiting for PUBACK"), "{err}");
        assert_eq!(broker.join().unwrap().len(), 1, "one PUBLISH at a time");
        assert_eq!(Store::open(&db).unwrap().unsent(10).unwrap().len(), 2);
        // Acknowledges each PUBLISH's own id: both are sent, each one after its PUBACK.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        s.port = listener.local_addr().unwrap().port();
        let broker = fake_broker(listener, |id| id);
        assert_eq!(send_pending(&s).unwrap(), 2);
        let ids = broker.join().unwrap();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert!(Store::open(&db).unwrap().unsent(10).unwrap().is_empty());
    }

    #[test]
    fn a_round_publishes_recently_acknowledged_intervals_again_within_resend_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.sqlite");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        // Ended two hours ago, and ten seconds ago.
        one_interval(&db, now - 7200 - 900);
        one_interval(&db, now - 10 - 900);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = settings(listener.local_addr().unwrap().port(), db.clone());
        let broker = fake_broker(listener, |id| id);
        assert_eq!(send_pending(&s).unwrap(), 2);
        assert_eq!(broker.join().unwrap().len(), 2, "off: each once");

        // With a 10-minute window the next round that sends a new interval also publishes the
        // one that ended ten seconds ago again, not the old one, and counts only the new one.
        s.resend = Duration::from_secs(600);
        one_interval(&db, now);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        s.port = listener.local_addr().unwrap().port();
        let broker = fake_broker(listener, |id| id);
        assert_eq!(send_pending(&s).unwrap(), 1);
        assert_eq!(
            broker.join().unwrap().len(),
            2,
            "the new one and the recent one"
        );
        assert!(Store::open(&db).unwrap().unsent(10).unwrap().is_empty());
        let recent: Vec<i64> = Store::open(&db)
            .unwrap()
            .sent_since(now - 600)
            .unwrap()
            .iter()
            .map(|i| i.start)
            .collect();
        assert_eq!(recent, [now - 910, now]);

        // Nothing new: no round, nothing published again (no connection at all).
        s.port = 1;
        assert_eq!(send_pending(&s).unwrap(), 0);
    }

    #[test]
    fn a_silent_broker_is_a_timeout_naming_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.sqlite");
        one_interval(&db, 900);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = settings(listener.local_addr().unwrap().port(), db.clone());
        s.timeout = Duration::from_secs(1);
        let t = Instant::now();
        let err = send_pending(&s).unwrap_err().to_string();
        assert!(
            err.contains("no answer from the broker while connecting"),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        drop(listener);
        // Nobody listening at all: the connection is refused, and said so.
        let err = send_pending(&s).unwrap_err().to_string();
        assert!(err.contains("connecting failed"), "{err}");
        assert_eq!(Store::open(&db).unwrap().unsent(10).unwrap().len(), 1);
    }

    #[test]
    fn every_connack_refusal_reads_clearly() {
        use ConnectReturnCode::*;
        for (code, number) in [
            (RefusedProtocolVersion, 1),
            (BadClientId, 2),
            (ServiceUnavailable, 3),
            (BadUserNamePassword, 4),
            (NotAuthorized, 5),
        ] {
            let text = explain(
                &ConnectionError::ConnectionRefused(code),
                "connecting",
                Duration::from_secs(1),
            );
            assert!(text.contains("refused the connection"), "{text}");
            assert!(text.contains(&format!("code {number}")), "{text}");
            assert!(!text.contains('\n'));
            if number >= 4 {
                assert!(text.contains("push.password_file"), "{text}");
            }
        }
    }

    #[test]
    fn topics_with_wildcards_are_refused() {
        assert!(check_topic("agecam/hall/intervals").is_ok());
        assert!(check_topic("agecam/+/intervals").is_err());
        assert!(check_topic("agecam/#").is_err());
        assert!(check_topic("agecam/\0").is_err());
        assert!(check_topic("").is_err());
        assert!(check_topic(&"a".repeat(65536)).is_err());
    }

    #[test]
    fn a_password_file_gives_its_first_line_as_text() {
        let f = Path::new("/etc/agecam/mqtt-password");
        assert_eq!(password_from_file(b"s3cret\r\nx\n", f).unwrap(), b"s3cret");
        assert_eq!(password_from_file(b"s3cret", f).unwrap(), b"s3cret");
        let err = password_from_file(b"\xff\xfe\n", f)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mqtt-password") && err.contains("UTF-8"),
            "{err}"
        );
        let err = password_from_file(b"", f).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn password_and_ca_files_are_read_at_start_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("pw");
        std::fs::write(&password, "s3cret\nignored\n").unwrap();
        let mut config = Config::default();
        config.stats.unit_id = "hall".into();
        config.push.enabled = true;
        config.push.host = "127.0.0.1".into();
        config.push.username = Some("kiosk".into());
        config.push.password_file = Some(password.clone());
        let s = PushSettings::from_config(&config).unwrap().unwrap();
        assert_eq!(s.password.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(s.topic(&s.unit_id), "agecam/hall/intervals");
        assert!(!format!("{s:?}").contains("s3cret"));

        config.push.password_file = Some(dir.path().join("missing"));
        let err = PushSettings::from_config(&config).unwrap_err().to_string();
        assert!(
            err.contains("push.password_file") && err.contains("missing"),
            "{err}"
        );
        std::fs::write(&password, "\n").unwrap();
        config.push.password_file = Some(password);
        let err = PushSettings::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");

        config.push.password_file = None;
        config.push.tls = true;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        config.push.ca_file = Some(ca.clone());
        let err = format!("{:#}", PushSettings::from_config(&config).unwrap_err());
        assert!(
            err.contains("ca.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        config.push.ca_file = Some(dir.path().join("nope.pem"));
        let err = format!("{:#}", PushSettings::from_config(&config).unwrap_err());
        assert!(
            err.contains("nope.pem") && err.contains("cannot read"),
            "{err}"
        );

        config.push.enabled = false;
        assert!(PushSettings::from_config(&config).unwrap().is_none());
    }
}
