//! The PostgreSQL store (the `postgres` crate, synchronous; used from the writer thread and
//! from blocking tasks). Migrations ([`super::migrate`], the postgres/ files of
//! fleet/migrations/) are applied at start under an advisory lock, so two collectors starting
//! together do not race.

use super::migrate::{self, Migration, MigrationTx};
use super::pg_tls::{self, MakeRustlsConnect, PgTls};
use super::{
    digest, redact, ConflictRow, Counts, Outcome, Range, SeriesRow, Step, Store, StoreError,
    UnitRow,
};
use crate::schema::Interval;
use postgres::config::{Host, SslMode};
use postgres::{Client, NoTls, Transaction};
use std::time::Duration;

/// Arbitrary key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x6167_6563_616d;

pub struct PgStore {
    client: Client,
    url: String,
}

impl PgStore {
    /// Connects (10 s timeout unless the URL sets `connect_timeout`) and migrates; over TLS
    /// checked against `tls` (sslmode verify-full) when given, else in the clear as before.
    pub fn open(url: &str, tls: Option<&PgTls>) -> Result<PgStore, StoreError> {
        let shown = redact(url);
        let mut config: postgres::Config =
            url.parse().map_err(|error| StoreError::PostgresUrl {
                url: shown.clone(),
                error,
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let mut client = match tls {
            None => config
                .ssl_mode(SslMode::Disable)
                .connect(NoTls)
                .map_err(|error| StoreError::PostgresConnect {
                    url: shown.clone(),
                    error,
                }),
            Some(tls) => config
                .ssl_mode(SslMode::Require)
                .connect(MakeRustlsConnect(tls.config.clone()))
                .map_err(|error| StoreError::PostgresTls {
                    url: shown.clone(),
                    hint: pg_tls::hint(&error, &hosts(&config), &tls.ca_file),
                    error,
                }),
        }?;
        migrate(&mut client).map_err(|error| StoreError::PostgresMigrate { url: shown, error })?;
        Ok(PgStore {
            client,
            url: url.to_string(),
        })
    }

    fn e(&self, what: &'static str) -> impl Fn(postgres::Error) -> StoreError {
        let shown = redact(&self.url);
        move |error| StoreError::Postgres {
            url: shown.clone(),
            what,
            error,
        }
    }

    /// Runs a [`series_sql`] query.
    fn series_rows(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        what: &'static str,
    ) -> Result<Vec<SeriesRow>, StoreError> {
        let rows = self.client.query(sql, params).map_err(self.e(what))?;
        Ok(rows
            .iter()
            .map(|r| SeriesRow {
                period: r.get(0),
                age_bucket: r.get(1),
                gender: r.get(2),
                visits: r.get(3),
                watchers: r.get(4),
                attention_s: r.get(5),
                attention_unknown: r.get(6),
            })
            .collect())
    }
}

/// The URL's hosts, for messages: "db.example.org" or "a, b".
fn hosts(config: &postgres::Config) -> String {
    let mut names: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if names.is_empty() {
        names = config
            .get_hostaddrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
    }
    if names.is_empty() {
        "localhost".into()
    } else {
        names.join(", ")
    }
}

/// Connection-string keys about TLS that the `postgres` crate would read (or reject) in the
/// URL; the collector takes them from fleet.toml instead (`database.sslmode`,
/// `database.sslrootcert`), so one place says whether the connection is verified.
const TLS_KEYS: [&str; 6] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslnegotiation",
    "sslpassword",
];

/// The first TLS key written in the URL (`?sslmode=...` or `sslmode=...` of a key=value
/// string), if any.
pub fn tls_key_in_url(url: &str) -> Option<&'static str> {
    let pairs: Vec<&str> = if url.contains("://") {
        match url.split_once('?') {
            Some((_, query)) => query.split('&').collect(),
            None => Vec::new(),
        }
    } else {
        url.split_whitespace().collect()
    };
    pairs.iter().find_map(|pair| {
        let key = pair.split('=').next().unwrap_or("").trim();
        TLS_KEYS.iter().find(|k| **k == key).copied()
    })
}

/// Whether the URL names a Unix socket (a host starting with '/'), where TLS is not used.
pub fn uses_unix_socket(url: &str) -> bool {
    url.parse::<postgres::Config>()
        .map(|c| c.get_hosts().iter().any(|h| matches!(h, Host::Unix(_))))
        .unwrap_or(false)
}

/// Visits and attention per `period` × age bucket × gender, over interval starts in
/// [$1, $2) and one unit (the parameter `unit`) or all. A `sum` over only NULLs is NULL:
/// attention nobody published stays unknown.
fn series_sql(period: &str, unit: &str) -> String {
    format!(
        "SELECT {period} AS period, age_bucket, gender, sum(visits)::bigint,
                sum(watchers)::bigint, sum(attention_s)::float8,
                sum(CASE WHEN watchers IS NULL THEN visits ELSE 0 END)::bigint
         FROM cells
         WHERE start_s >= $1 AND start_s < $2 AND ({unit}::text IS NULL OR unit_id = {unit}::text)
         GROUP BY period, age_bucket, gender
         ORDER BY period, age_bucket, gender"
    )
}

/// Applies the missing migrations in one transaction, holding the advisory lock.
fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    migrate::apply(&mut tx)?;
    tx.commit()
}

impl MigrationTx for Transaction<'_> {
    type Error = postgres::Error;
    const BOOKKEEPING: &'static str = "CREATE TABLE IF NOT EXISTS schema_migrations (
         version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

    fn sql(m: &Migration) -> &'static str {
        m.postgres
    }

    fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.batch_execute(sql)
    }

    fn applied(&mut self, version: i64) -> Result<bool, postgres::Error> {
        let found = self.query_opt(
            "SELECT version FROM schema_migrations WHERE version = $1",
            &[&version],
        )?;
        Ok(found.is_some())
    }

    fn record(&mut self, m: &Migration, applied_at: i64) -> Result<(), postgres::Error> {
        self.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &applied_at],
        )
        .map(drop)
    }
}

fn record_one(
    tx: &mut Transaction<'_>,
    i: &Interval,
    received: i64,
) -> Result<Outcome, postgres::Error> {
    let canonical = i.canonical();
    let digest = digest(&canonical);
    let visits = i.visits() as i64;
    let inserted = tx.execute(
        "INSERT INTO intervals (id, unit_id, start_s, end_s, uptime_s, frames, camera_faults,
             suppressed_cells, dwell_mean_s, visits, received_at, digest)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO NOTHING",
        &[
            &i.id,
            &i.unit_id,
            &i.start,
            &i.end,
            &i.uptime_s,
            &(i.frames as i64),
            &(i.camera_faults as i64),
            &(i.suppressed_cells as i64),
            &i.dwell_mean_s,
            &visits,
            &received,
            &digest,
        ],
    )?;
    if inserted == 1 {
        if !i.cells.is_empty() {
            let buckets: Vec<&str> = i.cells.iter().map(|c| c.age_bucket.as_str()).collect();
            let genders: Vec<&str> = i.cells.iter().map(|c| c.gender.as_str()).collect();
            let counts: Vec<i64> = i.cells.iter().map(|c| c.visits as i64).collect();
            let watchers: Vec<Option<i64>> =
                i.cells.iter().map(|c| c.watchers.map(i64::from)).collect();
            let seconds: Vec<Option<f64>> = i.cells.iter().map(|c| c.attention_s).collect();
            tx.execute(
                "INSERT INTO cells (interval_id, unit_id, start_s, age_bucket, gender, visits,
                     watchers, attention_s)
                 SELECT $1, $2, $3, b, g, v, w, a
                 FROM unnest($4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::float8[])
                     AS t(b, g, v, w, a)",
                &[
                    &i.id, &i.unit_id, &i.start, &buckets, &genders, &counts, &watchers, &seconds,
                ],
            )?;
        }
        tx.execute(
            "INSERT INTO units (unit_id, first_seen, last_seen, last_interval_end)
             VALUES ($1, $2, $2, $3)
             ON CONFLICT (unit_id) DO UPDATE SET
                 last_seen = GREATEST(units.last_seen, excluded.last_seen),
                 last_interval_end = GREATEST(units.last_interval_end, excluded.last_interval_end)",
            &[&i.unit_id, &received, &i.end],
        )?;
        return Ok(Outcome::Stored);
    }
    let stored: String = tx
        .query_one("SELECT digest FROM intervals WHERE id = $1", &[&i.id])?
        .get(0);
    if stored == digest {
        return Ok(Outcome::Duplicate);
    }
    tx.execute(
        "INSERT INTO conflicts (interval_id, unit_id, digest, visits, canonical,
             first_received, last_received, times)
         VALUES ($1, $2, $3, $4, $5, $6, $6, 1)
         ON CONFLICT (interval_id, digest) DO UPDATE SET
             times = conflicts.times + 1,
             last_received = GREATEST(conflicts.last_received, excluded.last_received)",
        &[&i.id, &i.unit_id, &digest, &visits, &canonical, &received],
    )?;
    Ok(Outcome::Conflict)
}

impl Store for PgStore {
    fn record(&mut self, batch: &[(Interval, i64)]) -> Result<Vec<Outcome>, StoreError> {
        let e = self.e("store intervals");
        let mut tx = self.client.transaction().map_err(&e)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (interval, received) in batch {
            outcomes.push(record_one(&mut tx, interval, *received).map_err(&e)?);
        }
        tx.commit().map_err(&e)?;
        Ok(outcomes)
    }

    fn series(
        &mut self,
        unit: Option<&str>,
        range: Range,
        step: Step,
    ) -> Result<Vec<SeriesRow>, StoreError> {
        let sql = series_sql(
            "start_s - ((((start_s - $3::bigint) % $4::bigint) + $4::bigint) % $4::bigint)",
            "$5",
        );
        let params: [&(dyn postgres::types::ToSql + Sync); 5] = [
            &range.from,
            &range.to,
            &step.origin(),
            &step.seconds(),
            &unit,
        ];
        self.series_rows(&sql, &params, "series")
    }

    fn hours(&mut self, unit: Option<&str>, range: Range) -> Result<Vec<SeriesRow>, StoreError> {
        let sql = series_sql("(start_s % 86400) / 3600", "$3");
        let params: [&(dyn postgres::types::ToSql + Sync); 3] = [&range.from, &range.to, &unit];
        self.series_rows(&sql, &params, "hours")
    }

    fn units(&mut self, range: Range) -> Result<Vec<UnitRow>, StoreError> {
        let e = self.e("units");
        let rows = self
            .client
            .query(
                "SELECT u.unit_id, u.first_seen, u.last_seen, u.last_interval_end,
                        count(i.id), coalesce(sum(i.uptime_s), 0.0)::float8,
                        coalesce(sum(i.frames), 0)::bigint, coalesce(sum(i.camera_faults), 0)::bigint,
                        coalesce(sum(i.visits), 0)::bigint, coalesce(sum(i.suppressed_cells), 0)::bigint,
                        (sum(i.dwell_mean_s * i.visits) /
                            nullif(sum(CASE WHEN i.dwell_mean_s IS NULL THEN 0 ELSE i.visits END), 0))::float8
                 FROM units u
                 LEFT JOIN intervals i
                     ON i.unit_id = u.unit_id AND i.start_s >= $1 AND i.start_s < $2
                 GROUP BY u.unit_id, u.first_seen, u.last_seen, u.last_interval_end
                 ORDER BY u.unit_id",
                &[&range.from, &range.to],
            )
            .map_err(e)?;
        Ok(rows
            .iter()
            .map(|r| UnitRow {
                unit_id: r.get(0),
                first_seen: r.get(1),
                last_seen: r.get(2),
                last_interval_end: r.get(3),
                intervals: r.get(4),
                uptime_s: r.get(5),
                frames: r.get(6),
                camera_faults: r.get(7),
                visits: r.get(8),
                suppressed_cells: r.get(9),
                dwell_mean_s: r.get(10),
            })
            .collect())
    }

    fn conflicts(&mut self, limit: i64) -> Result<Vec<ConflictRow>, StoreError> {
        let e = self.e("conflicts");
        let rows = self
            .client
            .query(
                "SELECT c.interval_id, c.unit_id, i.visits, c.visits, c.times,
                        c.first_received, c.last_received, c.canonical
                 FROM conflicts c JOIN intervals i ON i.id = c.interval_id
                 ORDER BY c.last_received DESC, c.interval_id LIMIT $1",
                &[&limit],
            )
            .map_err(e)?;
        Ok(rows
            .iter()
            .map(|r| ConflictRow {
                interval_id: r.get(0),
                unit_id: r.get(1),
                stored_visits: r.get(2),
                parked_visits: r.get(3),
                times: r.get(4),
                first_received: r.get(5),
                last_received: r.get(6),
                parked: r.get(7),
            })
            .collect())
    }

    fn counts(&mut self) -> Result<Counts, StoreError> {
        let e = self.e("counts");
        let r = self
            .client
            .query_one(
                "SELECT (SELECT count(*) FROM units), (SELECT count(*) FROM intervals),
                        (SELECT count(*) FROM cells), (SELECT count(*) FROM conflicts),
                        (SELECT coalesce(sum(times), 0)::bigint FROM conflicts)",
                &[],
            )
            .map_err(e)?;
        Ok(Counts {
            units: r.get(0),
            intervals: r.get(1),
            cells: r.get(2),
            conflicts: r.get(3),
            conflict_messages: r.get(4),
        })
    }

    fn latest_end(&mut self) -> Result<Option<i64>, StoreError> {
        let e = self.e("latest interval");
        Ok(self
            .client
            .query_one("SELECT max(end_s) FROM intervals", &[])
            .map_err(e)?
            .get(0))
    }

    fn healthy(&mut self) -> bool {
        !self.client.is_closed() && self.client.is_valid(Duration::from_secs(5)).is_ok()
    }

    fn describe(&self) -> String {
        redact(&self.url)
    }
}
