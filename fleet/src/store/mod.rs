//! The storage trait the collector writes and the page reads, with its two implementations:
//! PostgreSQL ([`postgres::PgStore`]) and embedded SQLite ([`sqlite::SqliteStore`], the
//! default when no database URL is given).
//!
//! The rule for a re-sent interval (the id `unit@start` is the key):
//! - the same content again (a lost PUBACK, a collector restart) changes nothing;
//! - different content under a stored id is **not merged**: the first stored version stays in
//!   the totals and the different one is parked in the `conflicts` table (once per distinct
//!   content, with how often it came), logged, and listed on the page. A daemon restart can
//!   legitimately re-send an interval with larger totals; the page shows those visits as "in
//!   conflict" beside the totals so an operator sees exactly how many are in question, and no
//!   number on the page ever changes silently.
//!
//! Only what units publish is stored: k-anonymous cells per interval, never anything per
//! person. Units register themselves by their first stored interval.

pub mod migrate;
pub mod pg_tls;
pub mod postgres;
pub mod sqlite;

use crate::schema::Interval;
use std::path::PathBuf;

/// What storing one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new interval, now stored (its unit registered if new).
    Stored,
    /// The same content as the stored interval: nothing changed.
    Duplicate,
    /// Different content under a stored id: parked in `conflicts`, totals unchanged.
    Conflict,
}

/// A database error: which database (never a password), what was being done, the database's
/// own words, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite {}: {what}: {error}; check the file is writable by this user and not corrupt (or set database.url to use PostgreSQL)", .path.display())]
    Sqlite {
        path: PathBuf,
        what: &'static str,
        error: rusqlite::Error,
    },
    /// `url` is redacted.
    #[error("database.url {url}: not a PostgreSQL URL ({}); write postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME", causes(.error))]
    PostgresUrl {
        url: String,
        error: ::postgres::Error,
    },
    #[error("database {url}: cannot connect ({}); is PostgreSQL running there, and do the user, password and database exist?", causes(.error))]
    PostgresConnect {
        url: String,
        error: ::postgres::Error,
    },
    /// `sslmode = "verify-full"` could not connect; `hint` names the host, the CA file and
    /// what to check.
    #[error("database {url}: TLS (database.sslmode = \"verify-full\") refused: {hint} ({})", causes(.error))]
    PostgresTls {
        url: String,
        hint: String,
        error: ::postgres::Error,
    },
    #[error(
        "database {url}: migrations failed ({}); the user needs CREATE rights on the database",
        causes(.error)
    )]
    PostgresMigrate {
        url: String,
        error: ::postgres::Error,
    },
    #[error("database {url}: {what}: {}; check that PostgreSQL is up and reachable", causes(.error))]
    Postgres {
        url: String,
        what: &'static str,
        error: ::postgres::Error,
    },
}

/// Periods of the charts and tables (UTC; weeks start on Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Day,
    Week,
}

impl Step {
    pub fn seconds(self) -> i64 {
        match self {
            Step::Day => 86_400,
            Step::Week => 7 * 86_400,
        }
    }

    /// Offset of the period grid from the epoch (1970-01-05 was a Monday).
    pub fn origin(self) -> i64 {
        match self {
            Step::Day => 0,
            Step::Week => 4 * 86_400,
        }
    }

    /// The start of the period holding `t`.
    pub fn floor(self, t: i64) -> i64 {
        let (s, o) = (self.seconds(), self.origin());
        t - (t - o).rem_euclid(s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Day => "day",
            Step::Week => "week",
        }
    }
}

/// A time range `[from, to)` in Unix seconds, over interval starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
}

/// Published visits of one age bucket × gender in one period, with their attention.
///
/// Attention is summed over the cells that carry it (push schema 2, not withheld); the visits
/// of the other cells are in `attention_unknown`, never counted as "did not look".
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    /// The period's start (Unix seconds); for [`Store::hours`] the UTC hour of day, 0 to 23.
    pub period: i64,
    pub age_bucket: String,
    pub gender: String,
    pub visits: i64,
    /// Watchers in the cells with known attention; `None` when no cell has it.
    pub watchers: Option<i64>,
    /// Seconds watched in the cells with known attention; `None` when no cell has it.
    pub attention_s: Option<f64>,
    /// Visits in the cells whose attention is unknown (schema 1 units, withheld splits).
    pub attention_unknown: i64,
}

impl SeriesRow {
    /// Visits in the cells whose attention is known (the denominator of an attention rate).
    pub fn attention_known(&self) -> i64 {
        self.visits - self.attention_unknown
    }
}

/// One unit with its totals in a range.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitRow {
    pub unit_id: String,
    /// When its first interval was stored (collector clock, Unix seconds).
    pub first_seen: i64,
    /// When its latest new interval was stored (collector clock).
    pub last_seen: i64,
    /// The latest interval end it reported (its own clock).
    pub last_interval_end: i64,
    // Totals over the range:
    pub intervals: i64,
    pub uptime_s: f64,
    pub frames: i64,
    pub camera_faults: i64,
    pub visits: i64,
    pub suppressed_cells: i64,
    /// Mean dwell weighted by visits, over intervals that published one.
    pub dwell_mean_s: Option<f64>,
}

/// One parked re-send.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictRow {
    pub interval_id: String,
    pub unit_id: String,
    pub stored_visits: i64,
    pub parked_visits: i64,
    pub times: i64,
    pub first_received: i64,
    pub last_received: i64,
    /// The parked message, canonical JSON.
    pub parked: String,
}

/// Row counts of every table (tests and the scale run check them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub units: i64,
    pub intervals: i64,
    pub cells: i64,
    pub conflicts: i64,
    /// Sum of `times` over conflicts: every different re-send received.
    pub conflict_messages: i64,
}

/// A database the collector can use. One writer and one reader are opened per process.
pub trait Store: Send {
    /// Stores a batch in one transaction, in order; returns each message's outcome. On an
    /// error nothing of the batch is stored (and nothing must be acknowledged).
    fn record(&mut self, batch: &[(Interval, i64)]) -> Result<Vec<Outcome>, StoreError>;
    /// Published visits per period × age bucket × gender, for one unit or the fleet.
    fn series(
        &mut self,
        unit: Option<&str>,
        range: Range,
        step: Step,
    ) -> Result<Vec<SeriesRow>, StoreError>;
    /// The same sums per UTC hour of day of the interval start (`period` 0 to 23) over the
    /// whole range: when people watch.
    fn hours(&mut self, unit: Option<&str>, range: Range) -> Result<Vec<SeriesRow>, StoreError>;
    /// Every unit (registered ever), with its totals in `range`; sorted by id.
    fn units(&mut self, range: Range) -> Result<Vec<UnitRow>, StoreError>;
    /// The latest parked re-sends, newest first.
    fn conflicts(&mut self, limit: i64) -> Result<Vec<ConflictRow>, StoreError>;
    /// Row counts.
    fn counts(&mut self) -> Result<Counts, StoreError>;
    /// The latest interval end stored, if any (the page's default range ends there).
    fn latest_end(&mut self) -> Result<Option<i64>, StoreError>;
    /// Whether the connection still works (a writer reconnects when not).
    fn healthy(&mut self) -> bool;
    /// Where the data lives, for log lines (never a password).
    fn describe(&self) -> String;
}

/// Where to store: a PostgreSQL URL (in the clear, or over verified TLS), or an SQLite file.
#[derive(Debug, Clone, PartialEq)]
pub enum Database {
    /// `database.sslmode = "disable"`, the default.
    Postgres(String),
    /// `database.sslmode = "verify-full"`: TLS, the server's certificate checked against
    /// `database.sslrootcert` and the URL's host name.
    PostgresTls {
        url: String,
        tls: pg_tls::PgTls,
    },
    Sqlite(std::path::PathBuf),
}

impl Database {
    /// Opens (and migrates) the database.
    pub fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            Database::Postgres(url) => Box::new(postgres::PgStore::open(url, None)?),
            Database::PostgresTls { url, tls } => {
                Box::new(postgres::PgStore::open(url, Some(tls))?)
            }
            Database::Sqlite(path) => Box::new(sqlite::SqliteStore::open(path)?),
        })
    }

    /// For log lines: the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Database::Postgres(url) => redact(url),
            Database::PostgresTls { url, tls } => format!(
                "{} (TLS, verify-full against {})",
                redact(url),
                tls.ca_file.display()
            ),
            Database::Sqlite(path) => format!("sqlite {}", path.display()),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; key=value strings lose
/// their `password=` value.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        // A password may also come as a query parameter: `…/db?password=…`.
        let (rest, query) = match rest.split_once('?') {
            Some((path, query)) => {
                let query: Vec<&str> = query
                    .split('&')
                    .map(|kv| {
                        if kv.starts_with("password=") {
                            "password=***"
                        } else {
                            kv
                        }
                    })
                    .collect();
                (path, format!("?{}", query.join("&")))
            }
            None => (rest, String::new()),
        };
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') { ":***" } else { "" };
            return format!("{scheme}://{user}{masked}@{host}{query}");
        }
        return format!("{scheme}://{rest}{query}");
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An error with its causes, "a: b: c": the `postgres` crate's errors show only their kind
/// ("db error") and keep the server's words in their source; an io::Error's wrapped error
/// (a rustls handshake error) is shown too.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    if let Some(inner) = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        next = Some(inner);
    }
    while let Some(e) = next {
        let shown = e.to_string();
        if !text.ends_with(&shown) {
            text = format!("{text}: {shown}");
        }
        next = e.source();
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            next = Some(inner);
        }
    }
    text
}

/// A short digest of a canonical interval (the conflicts table's key with the id).
pub fn digest(canonical: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(canonical.as_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_floor_to_utc_days_and_monday_weeks() {
        // 2026-11-25 is a Wednesday.
        let wed = 1_795_564_800 + 3_600;
        assert_eq!(Step::Day.floor(wed), 1_795_564_800);
        let monday = Step::Week.floor(wed);
        assert_eq!(
            jiff::Timestamp::from_second(monday).unwrap().to_string(),
            "2026-11-23T00:00:00Z"
        );
        assert_eq!(Step::Week.floor(monday), monday);
    }

    #[test]
    fn passwords_never_reach_log_lines() {
        assert_eq!(
            redact("postgres://fleet:s3cret@db:5432/fleet"),
            "postgres://fleet:***@db:5432/fleet"
        );
        assert_eq!(redact("postgres://db/fleet"), "postgres://db/fleet");
        assert_eq!(
            redact("postgres://fleet@db/fleet?password=s3cret&connect_timeout=5"),
            "postgres://fleet@db/fleet?password=***&connect_timeout=5"
        );
        assert_eq!(
            redact("postgres://db/fleet?user=u&password=s3cret"),
            "postgres://db/fleet?user=u&password=***"
        );
        assert_eq!(
            redact("host=db user=fleet password=s3cret"),
            "host=db user=fleet password=***"
        );
    }
}
