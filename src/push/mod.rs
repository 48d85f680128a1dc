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

pub mod mqtt;

use crate::config::Config;
use crate::stats::privacy::{publish, to_json, PrivacySettings};
use crate::stats::store::Store;
use anyhow::Context;
use mqtt::{Client, ConnectOptions, MqttError};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Everything the push thread needs, resolved at start (secrets read, CA parsed).
#[derive(Clone)]
pub struct PushSettings {
    pub host: String,
    pub port: u16,
    /// The full topic, `<prefix>/<unit_id>/intervals`.
    pub topic: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    /// `Some` for TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub retry: Duration,
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
            .field("topic", &self.topic)
            .field("username", &self.username)
            .field("tls", &self.tls.is_some())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Intervals read from the store per round trip.
const BATCH: usize = 100;
/// Keep-alive announced in CONNECT; a batch is sent well within it.
const KEEP_ALIVE_S: u16 = 60;

impl PushSettings {
    /// Settings from `[push]` (and `[stats]` for the unit, database and privacy), or `None`
    /// when the push is off. Reads `push.password_file` and `push.ca_file` now; an unreadable
    /// or empty file is an error naming it.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<PushSettings>> {
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
            let ca = push
                .ca_file
                .as_ref()
                .context("push.tls = true needs push.ca_file")?;
            Some(tls_config(ca)?)
        } else {
            None
        };
        let topic = push.topic(&unit_id);
        mqtt::check_topic(&topic).map_err(|e| {
            anyhow::anyhow!("push topic {topic:?}: {e}; check push.topic_prefix and stats.unit_id")
        })?;
        Ok(Some(PushSettings {
            host: push.host.clone(),
            port: push.port(),
            topic,
            client_id: format!("agecam-{unit_id}"),
            username: push.username.clone(),
            password,
            tls,
            retry: Duration::from_secs(push.retry_seconds as u64),
            timeout: Duration::from_secs(10),
            privacy: PrivacySettings {
                k: config.stats.k_anonymity,
                epsilon: config.stats.laplace_epsilon,
            },
            database: config.stats.database(),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "mqtt{}://{}:{}/{}",
            if self.tls.is_some() { "s" } else { "" },
            self.host,
            self.port,
            self.topic
        )
    }
}

/// The first line of `file`, without its line end.
fn read_password(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(file).with_context(|| {
        format!(
            "push.password_file {}: cannot read it; it must exist and be readable by the agecam user",
            file.display()
        )
    })?;
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    anyhow::ensure!(
        !line.is_empty(),
        "push.password_file {}: the first line is empty; it must hold the broker password",
        file.display()
    );
    Ok(line.to_vec())
}

/// A rustls client configuration (ring provider) trusting only the CAs in `ca_file`.
pub fn tls_config(ca_file: &std::path::Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let context = || format!("push.ca_file {}", ca_file.display());
    let pem = std::fs::read(ca_file).with_context(|| format!("{}: cannot read it", context()))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("{}: not valid PEM", context()))?;
        roots
            .add(cert)
            .with_context(|| format!("{}: a certificate that cannot be used as a CA", context()))?;
        found += 1;
    }
    anyhow::ensure!(
        found > 0,
        "{}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        context()
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One round in the calling thread: connects if anything is unsent, sends it all, marks each
/// interval sent on its PUBACK. Returns how many were acknowledged, or the problem as one line
/// (e.g. the broker's refusal). For checks and tests; the daemon uses [`Pusher`].
pub fn send_pending(settings: &PushSettings) -> Result<usize, String> {
    let (_tx, rx) = mpsc::channel();
    let mut worker = Worker {
        settings: settings.clone(),
        rx,
        stopping: Arc::new(AtomicBool::new(false)),
        socket: Arc::new(Mutex::new(None)),
        store: None,
        down: false,
    };
    worker.round().map_err(|e| e.to_string())
}

/// Plain TCP or TLS over TCP.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("{0}")]
    Mqtt(#[from] MqttError),
    #[error("{0}")]
    Store(#[from] crate::stats::store::StoreError),
    #[error("{0}")]
    Other(String),
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
    /// The socket of the connection in use, so [`Pusher::stop`] can cut a blocked read short.
    socket: Arc<Mutex<Option<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Pusher {
    /// Starts the push thread; it tries at once, then when woken and every `settings.retry`.
    pub fn start(settings: PushSettings) -> std::io::Result<Pusher> {
        let (tx, rx) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let socket = Arc::new(Mutex::new(None));
        let mut worker = Worker {
            settings,
            rx,
            stopping: Arc::clone(&stopping),
            socket: Arc::clone(&socket),
            store: None,
            down: false,
        };
        let thread = std::thread::Builder::new()
            .name("agecam-push".into())
            .spawn(move || worker.run())?;
        Ok(Pusher {
            tx,
            stopping,
            socket,
            thread: Some(thread),
        })
    }

    pub fn waker(&self) -> Waker {
        Waker(self.tx.clone())
    }

    /// Stops the thread promptly: an answer being waited for is cut short (that interval stays
    /// unsent and goes at the next start). Waits at most for a connection attempt in progress
    /// (bounded by the timeout).
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Message::Stop);
        if let Ok(socket) = self.socket.lock() {
            if let Some(socket) = socket.as_ref() {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
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
    socket: Arc<Mutex<Option<TcpStream>>>,
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
        let mut client = connect(&self.settings, &self.socket, &self.stopping)?;
        let mut sent = 0;
        while !batch.is_empty() {
            for interval in &batch {
                if self.stopping.load(Ordering::SeqCst) {
                    return Err(RoundError::Other("stopping".into()));
                }
                let payload = to_json(&publish(interval, &self.settings.privacy));
                client.publish_qos1(&self.settings.topic, payload.as_bytes())?;
                // Acknowledged: only now is it sent. If a restarted part was merged meanwhile,
                // the row stays unsent and the newer totals go out in the next batch.
                if store.mark_sent(&interval.unit_id, interval.start, interval)? {
                    sent += 1;
                }
            }
            batch = store.unsent(BATCH)?;
        }
        let _ = client.disconnect();
        if let Ok(mut socket) = self.socket.lock() {
            *socket = None;
        }
        Ok(sent)
    }
}

/// Opens TCP (and TLS), then MQTT CONNECT/CONNACK.
fn connect(
    settings: &PushSettings,
    socket_slot: &Mutex<Option<TcpStream>>,
    stopping: &AtomicBool,
) -> Result<Client<Transport>, RoundError> {
    let io = |what: &'static str| {
        move |source: std::io::Error| RoundError::Mqtt(MqttError::Io { what, source })
    };
    let addrs: Vec<_> = (settings.host.as_str(), settings.port)
        .to_socket_addrs()
        .map_err(io("looking up the broker's address"))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, settings.timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = match (tcp, last) {
        (Some(tcp), _) => tcp,
        (None, Some(e)) => return Err(io("connecting")(e)),
        (None, None) => {
            return Err(RoundError::Other(format!(
                "{} has no address",
                settings.host
            )))
        }
    };
    tcp.set_read_timeout(Some(settings.timeout))
        .and_then(|()| tcp.set_write_timeout(Some(settings.timeout)))
        .and_then(|()| tcp.set_nodelay(true))
        .map_err(io("setting up the connection"))?;
    if let (Ok(mut slot), Ok(clone)) = (socket_slot.lock(), tcp.try_clone()) {
        *slot = Some(clone);
    }
    if stopping.load(Ordering::SeqCst) {
        return Err(RoundError::Other("stopping".into()));
    }
    let transport = match &settings.tls {
        None => Transport::Plain(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(settings.host.clone())
                .map_err(|e| RoundError::Other(format!("push.host {}: {e}", settings.host)))?;
            let conn = rustls::ClientConnection::new(Arc::clone(config), name)
                .map_err(|e| RoundError::Other(format!("TLS setup failed ({e})")))?;
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            // Handshake now, so a certificate problem is reported as one.
            while stream.conn.is_handshaking() {
                stream
                    .conn
                    .complete_io(&mut stream.sock)
                    .map_err(|e| RoundError::Other(format!("TLS handshake failed ({e}); check push.ca_file and that push.host matches the broker's certificate")))?;
            }
            Transport::Tls(Box::new(stream))
        }
    };
    let options = ConnectOptions {
        client_id: settings.client_id.clone(),
        keep_alive_s: KEEP_ALIVE_S,
        username: settings.username.clone(),
        password: settings.password.clone(),
        timeout: settings.timeout,
    };
    Ok(Client::connect(transport, &options)?)
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
            topic: "agecam/test/intervals".into(),
            client_id: "agecam-test".into(),
            username: None,
            password: None,
            tls: None,
            retry: Duration::from_secs(3600),
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
        assert_eq!(s.topic, "agecam/hall/intervals");
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
