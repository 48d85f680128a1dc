//! Ingest: subscribe to the units' topic with a persistent session at QoS 1, validate each
//! message, store it, and only then acknowledge it (manual PUBACKs).
//!
//! Two threads: the MQTT thread runs rumqttc's event loop (it reconnects by itself; the fixed
//! client id and `clean_session = false` make the broker keep the subscription and every
//! message published while the collector is away), and the writer thread owns the database
//! connection. The writer takes whatever messages are waiting (up to [`BATCH`]), stores the
//! valid ones in one transaction, and then acknowledges all of them in arrival order. While
//! the database is unreachable it retries the same batch and acknowledges nothing, so the
//! messages stay in the broker's session and are redelivered if the collector is restarted
//! (what the broker sends meanwhile waits in memory, unacknowledged). A malformed or hostile
//! message is logged (rate-limited), acknowledged and dropped: it would otherwise come back
//! forever.

use crate::config::BrokerSettings;
use crate::schema::{self, Interval};
use crate::store::{Database, Outcome, Store};
use rumqttc::{Client, Event, MqttOptions, Packet, Publish, QoS, Transport};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages stored per transaction at most.
pub const BATCH: usize = 500;
/// Acknowledgements queued for the event loop (the writer waits when it is full).
const ACK_QUEUE: usize = 4 * BATCH;
/// Largest MQTT packet read from the broker. Bigger ones make rumqttc drop the connection and
/// the broker redeliver them, so the broker should cap messages lower
/// (`message_size_limit 65536` in mosquitto.conf); the schema rejects anything over 64 KiB.
pub const MAX_PACKET: usize = 16 * 1024 * 1024;

/// Counters, shared with the page and the tests.
#[derive(Debug, Default)]
pub struct Metrics {
    pub received: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub conflicts: AtomicU64,
    pub rejected: AtomicU64,
    pub acked: AtomicU64,
    pub store_errors: AtomicU64,
    pub connected: AtomicBool,
}

impl Metrics {
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Logs the first event of each kind at once, then at most one line per `every`, saying how
/// many were left out; so a flood of bad messages or a long outage costs a few log lines.
pub struct RateLimitedLog {
    every: Duration,
    kinds: HashMap<String, (Instant, u64)>,
}

impl RateLimitedLog {
    pub fn new(every: Duration) -> RateLimitedLog {
        RateLimitedLog {
            every,
            kinds: HashMap::new(),
        }
    }

    /// Whether to log this event now; `Some(n)` with n events left out since the last line.
    pub fn allow(&mut self, kind: &str) -> Option<u64> {
        let now = Instant::now();
        match self.kinds.get_mut(kind) {
            None => {
                if self.kinds.len() < 1000 {
                    self.kinds.insert(kind.to_string(), (now, 0));
                }
                Some(0)
            }
            Some((last, skipped)) if now.duration_since(*last) >= self.every => {
                let n = *skipped;
                *last = now;
                *skipped = 0;
                Some(n)
            }
            Some((_, skipped)) => {
                *skipped += 1;
                None
            }
        }
    }

    pub fn warn(&mut self, kind: &str, message: std::fmt::Arguments<'_>) {
        if let Some(skipped) = self.allow(kind) {
            if skipped > 0 {
                log::warn!("{message} ({skipped} more like it not logged)");
            } else {
                log::warn!("{message}");
            }
        }
    }
}

/// A running ingest; [`Ingest::stop`] ends both threads.
pub struct Ingest {
    stop: Arc<AtomicBool>,
    client: Client,
    mqtt: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    pub metrics: Arc<Metrics>,
}

fn options(b: &BrokerSettings) -> MqttOptions {
    let mut o = MqttOptions::new(b.client_id.clone(), b.host.clone(), b.port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(MAX_PACKET, 64 * 1024);
    if let (Some(user), Some(password)) = (&b.username, &b.password) {
        o.set_credentials(user.clone(), password.clone());
    } else if let Some(user) = &b.username {
        o.set_credentials(user.clone(), String::new());
    }
    if let Some(tls) = &b.tls {
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls.clone()),
        ));
    }
    o
}

impl Ingest {
    /// Starts the MQTT and writer threads. The database is opened by the writer (and reopened
    /// after an outage); a database that is down at start is retried, not fatal.
    pub fn start(broker: BrokerSettings, database: Database) -> std::io::Result<Ingest> {
        let stop = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::default());
        let (client, mut connection) = Client::new(options(&broker), ACK_QUEUE);
        // Unbounded on purpose: the MQTT thread must never block, because it is also the one
        // that sends the writer's acknowledgements (a bounded queue here deadlocked under
        // load: writer waiting to queue an ack, MQTT thread waiting to queue a message).
        // What it holds is bounded by what the broker sends unacknowledged: at most the
        // session's backlog (`max_queued_messages`), each message at most MAX_PACKET.
        let (tx, rx) = mpsc::channel::<Publish>();
        let mqtt = {
            let (stop, metrics, client) = (stop.clone(), metrics.clone(), client.clone());
            std::thread::Builder::new()
                .name("fleet-mqtt".into())
                .spawn(move || {
                    let mut log = RateLimitedLog::new(Duration::from_secs(60));
                    let mut backoff = Duration::from_millis(200);
                    for event in connection.iter() {
                        match event {
                            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                                backoff = Duration::from_millis(200);
                                metrics.connected.store(true, Ordering::Relaxed);
                                log::info!(
                                    "broker {}: connected (session {})",
                                    broker.describe(),
                                    if ack.session_present { "resumed" } else { "new" }
                                );
                                if let Err(e) = client.try_subscribe(broker.topic.clone(), QoS::AtLeastOnce) {
                                    log::error!("broker: cannot subscribe to {}: {e}", broker.topic);
                                }
                            }
                            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                                if ack.return_codes.iter().any(|c| {
                                    matches!(c, rumqttc::SubscribeReasonCode::Failure)
                                }) {
                                    log::error!(
                                        "broker {}: subscription to {} refused; the broker's ACL must let user {:?} read it",
                                        broker.host, broker.topic, broker.username
                                    );
                                } else {
                                    log::info!("broker: subscribed to {} at QoS 1", broker.topic);
                                }
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                metrics.received.fetch_add(1, Ordering::Relaxed);
                                if tx.send(p).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                metrics.connected.store(false, Ordering::Relaxed);
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                                log.warn(
                                    "broker",
                                    format_args!(
                                        "broker {}: {e}; retrying (check the host, port, TLS CA and credentials)",
                                        broker.describe()
                                    ),
                                );
                                std::thread::sleep(backoff);
                                backoff = (backoff * 2).min(Duration::from_secs(5));
                            }
                        }
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                })?
        };
        let writer = {
            let (stop, metrics, client) = (stop.clone(), metrics.clone(), client.clone());
            std::thread::Builder::new()
                .name("fleet-writer".into())
                .spawn(move || writer(rx, database, client, metrics, stop))?
        };
        Ok(Ingest {
            stop,
            client,
            mqtt: Some(mqtt),
            writer: Some(writer),
            metrics,
        })
    }

    /// Stops storing, disconnects, joins both threads. Messages not yet acknowledged stay in
    /// the broker's session.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let _ = self.client.disconnect();
        if let Some(m) = self.mqtt.take() {
            let _ = m.join();
        }
    }
}

fn writer(
    rx: Receiver<Publish>,
    database: Database,
    client: Client,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) {
    let mut log = RateLimitedLog::new(Duration::from_secs(60));
    let mut store: Option<Box<dyn Store>> = None;
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(p) => p,
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
            Err(_) => return,
        };
        let mut publishes = vec![first];
        while publishes.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => publishes.push(p),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let received = crate::clock::now();
        let mut batch: Vec<(Interval, i64)> = Vec::with_capacity(publishes.len());
        for p in &publishes {
            match schema::parse(&p.topic, &p.payload) {
                Ok(i) => batch.push((i, received)),
                Err(r) => {
                    metrics.rejected.fetch_add(1, Ordering::Relaxed);
                    log.warn(
                        r.kind,
                        format_args!(
                            "dropped a message on {:.120?} ({} bytes): {r}",
                            p.topic,
                            p.payload.len()
                        ),
                    );
                }
            }
        }
        if !batch.is_empty() {
            let Some(outcomes) =
                store_with_retry(&mut store, &database, &batch, &metrics, &stop, &mut log)
            else {
                return; // stopping: nothing acknowledged, the broker keeps the messages
            };
            for ((interval, _), outcome) in batch.iter().zip(outcomes) {
                match outcome {
                    Outcome::Stored => metrics.stored.fetch_add(1, Ordering::Relaxed),
                    Outcome::Duplicate => metrics.duplicates.fetch_add(1, Ordering::Relaxed),
                    Outcome::Conflict => {
                        log.warn(
                            "conflict",
                            format_args!(
                                "interval {} came again with different content ({} visits); kept the first, parked this one in the conflicts table",
                                interval.id,
                                interval.visits()
                            ),
                        );
                        metrics.conflicts.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
        for p in &publishes {
            // Blocks only while the event loop's request queue is full; it is drained
            // continuously. After a reconnect the broker redelivers anything whose PUBACK
            // was lost, and the store sees a duplicate.
            if client.ack(p).is_ok() {
                metrics.acked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Stores `batch`, reconnecting and retrying (1 s to 30 s apart) until it works; `None` when
/// asked to stop first.
fn store_with_retry(
    store: &mut Option<Box<dyn Store>>,
    database: &Database,
    batch: &[(Interval, i64)],
    metrics: &Metrics,
    stop: &AtomicBool,
    log: &mut RateLimitedLog,
) -> Option<Vec<Outcome>> {
    let mut backoff = Duration::from_secs(1);
    let mut failed_since: Option<Instant> = None;
    loop {
        if store.is_none() {
            match database.open() {
                Ok(s) => *store = Some(s),
                Err(e) => log.warn("database", format_args!("{e}; messages wait in the broker")),
            }
        }
        if let Some(s) = store.as_mut() {
            match s.record(batch) {
                Ok(outcomes) => {
                    if let Some(since) = failed_since {
                        log::info!(
                            "database {}: back after {:.0} s; storing again",
                            s.describe(),
                            since.elapsed().as_secs_f64()
                        );
                    }
                    return Some(outcomes);
                }
                Err(e) => {
                    log.warn("database", format_args!("{e}; messages wait in the broker"));
                    if !s.healthy() {
                        *store = None;
                    }
                }
            }
        }
        metrics.store_errors.fetch_add(1, Ordering::Relaxed);
        failed_since.get_or_insert_with(Instant::now);
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_logs_the_first_and_counts_the_rest() {
        let mut l = RateLimitedLog::new(Duration::from_millis(200));
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("b"), Some(0), "kinds are separate");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(l.allow("a"), Some(2));
        assert_eq!(l.allow("a"), None);
    }
}
