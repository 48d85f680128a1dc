//! The embedded SQLite store (rusqlite, bundled): the default when no database URL is given,
//! so the collector runs on a laptop with one command. WAL mode, one transaction per batch.

use super::migrate::{self, Migration, MigrationTx};
use super::{
    digest, ConflictRow, Counts, Outcome, Range, SeriesRow, Step, Store, StoreError, UnitRow,
};
use crate::schema::Interval;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

fn err<'a>(path: &'a Path, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |error| StoreError::Sqlite {
        path: path.to_path_buf(),
        what,
        error,
    }
}

impl SqliteStore {
    /// Opens or creates the file and applies missing migrations.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let e = |what| err(path, what);
        let mut conn = Connection::open(path).map_err(e("cannot open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(e("busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(e("WAL mode"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(e("synchronous"))?;
        migrate(&mut conn).map_err(e("migrations"))?;
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn e(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        err(&self.path, what)
    }

    /// Runs a [`series_sql`] query.
    fn series_rows(
        &mut self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
        what: &'static str,
    ) -> Result<Vec<SeriesRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(err(&self.path, what))?;
        stmt.query_map(params, |r| {
            Ok(SeriesRow {
                period: r.get(0)?,
                age_bucket: r.get(1)?,
                gender: r.get(2)?,
                visits: r.get(3)?,
                watchers: r.get(4)?,
                attention_s: r.get(5)?,
                attention_unknown: r.get(6)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(err(&self.path, what))
    }
}

/// Visits and attention per `period` × age bucket × gender, over interval starts in
/// [?1, ?2) and one unit (?5) or all; `period` may use ?3 and ?4. A `sum` over only NULLs is
/// NULL: attention nobody published stays unknown.
fn series_sql(period: &str) -> String {
    format!(
        "SELECT {period} AS period, age_bucket, gender, sum(visits), sum(watchers),
                sum(attention_s), sum(CASE WHEN watchers IS NULL THEN visits ELSE 0 END)
         FROM cells
         WHERE start_s >= ?1 AND start_s < ?2 AND (?5 IS NULL OR unit_id = ?5)
         GROUP BY period, age_bucket, gender
         ORDER BY period, age_bucket, gender"
    )
}

/// Applies the missing migrations in one immediate transaction (it locks the file).
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    migrate::apply(&mut tx)?;
    tx.commit()
}

impl MigrationTx for Transaction<'_> {
    type Error = rusqlite::Error;
    const BOOKKEEPING: &'static str = "CREATE TABLE IF NOT EXISTS schema_migrations (
         version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)";

    fn sql(m: &Migration) -> &'static str {
        m.sqlite
    }

    fn batch(&mut self, sql: &str) -> rusqlite::Result<()> {
        self.execute_batch(sql)
    }

    fn applied(&mut self, version: i64) -> rusqlite::Result<bool> {
        let found: Option<i64> = self
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    fn record(&mut self, m: &Migration, applied_at: i64) -> rusqlite::Result<()> {
        self.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, applied_at],
        )
        .map(drop)
    }
}

fn record_one(tx: &Transaction<'_>, i: &Interval, received: i64) -> rusqlite::Result<Outcome> {
    let canonical = i.canonical();
    let digest = digest(&canonical);
    let inserted = tx.execute(
        "INSERT INTO intervals (id, unit_id, start_s, end_s, uptime_s, frames, camera_faults,
             suppressed_cells, dwell_mean_s, visits, received_at, digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (id) DO NOTHING",
        params![
            i.id,
            i.unit_id,
            i.start,
            i.end,
            i.uptime_s,
            i.frames as i64,
            i.camera_faults as i64,
            i.suppressed_cells as i64,
            i.dwell_mean_s,
            i.visits() as i64,
            received,
            digest
        ],
    )?;
    if inserted == 1 {
        let mut cell = tx.prepare_cached(
            "INSERT INTO cells (interval_id, unit_id, start_s, age_bucket, gender, visits,
                 watchers, attention_s)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for c in &i.cells {
            cell.execute(params![
                i.id,
                i.unit_id,
                i.start,
                c.age_bucket,
                c.gender,
                c.visits as i64,
                c.watchers.map(i64::from),
                c.attention_s
            ])?;
        }
        tx.execute(
            "INSERT INTO units (unit_id, first_seen, last_seen, last_interval_end)
             VALUES (?1, ?2, ?2, ?3)
             ON CONFLICT (unit_id) DO UPDATE SET
                 last_seen = max(last_seen, excluded.last_seen),
                 last_interval_end = max(last_interval_end, excluded.last_interval_end)",
            params![i.unit_id, received, i.end],
        )?;
        return Ok(Outcome::Stored);
    }
    let stored: String =
        tx.query_row("SELECT digest FROM intervals WHERE id = ?1", [&i.id], |r| {
            r.get(0)
        })?;
    if stored == digest {
        return Ok(Outcome::Duplicate);
    }
    tx.execute(
        "INSERT INTO conflicts (interval_id, unit_id, digest, visits, canonical,
             first_received, last_received, times)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)
         ON CONFLICT (interval_id, digest) DO UPDATE SET
             times = times + 1, last_received = max(last_received, excluded.last_received)",
        params![
            i.id,
            i.unit_id,
            digest,
            i.visits() as i64,
            canonical,
            received
        ],
    )?;
    Ok(Outcome::Conflict)
}

impl Store for SqliteStore {
    fn record(&mut self, batch: &[(Interval, i64)]) -> Result<Vec<Outcome>, StoreError> {
        let path = self.path.clone();
        let e = |what| err(&path, what);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("begin"))?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (interval, received) in batch {
            outcomes.push(record_one(&tx, interval, *received).map_err(e("store interval"))?);
        }
        tx.commit().map_err(e("commit"))?;
        Ok(outcomes)
    }

    fn series(
        &mut self,
        unit: Option<&str>,
        range: Range,
        step: Step,
    ) -> Result<Vec<SeriesRow>, StoreError> {
        let sql = series_sql("start_s - ((((start_s - ?3) % ?4) + ?4) % ?4)");
        let p = params![range.from, range.to, step.origin(), step.seconds(), unit];
        self.series_rows(&sql, p, "series")
    }

    fn hours(&mut self, unit: Option<&str>, range: Range) -> Result<Vec<SeriesRow>, StoreError> {
        let sql = series_sql("(start_s % 86400) / 3600");
        let p = params![range.from, range.to, 0, 0, unit];
        self.series_rows(&sql, p, "hours")
    }

    fn units(&mut self, range: Range) -> Result<Vec<UnitRow>, StoreError> {
        let sql = "SELECT u.unit_id, u.first_seen, u.last_seen, u.last_interval_end,
                          count(i.id), coalesce(sum(i.uptime_s), 0.0), coalesce(sum(i.frames), 0),
                          coalesce(sum(i.camera_faults), 0), coalesce(sum(i.visits), 0),
                          coalesce(sum(i.suppressed_cells), 0),
                          sum(i.dwell_mean_s * i.visits) /
                              nullif(sum(CASE WHEN i.dwell_mean_s IS NULL THEN 0 ELSE i.visits END), 0)
                   FROM units u
                   LEFT JOIN intervals i
                       ON i.unit_id = u.unit_id AND i.start_s >= ?1 AND i.start_s < ?2
                   GROUP BY u.unit_id, u.first_seen, u.last_seen, u.last_interval_end
                   ORDER BY u.unit_id";
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.e("units"))?;
        let rows = stmt
            .query_map(params![range.from, range.to], |r| {
                Ok(UnitRow {
                    unit_id: r.get(0)?,
                    first_seen: r.get(1)?,
                    last_seen: r.get(2)?,
                    last_interval_end: r.get(3)?,
                    intervals: r.get(4)?,
                    uptime_s: r.get(5)?,
                    frames: r.get(6)?,
                    camera_faults: r.get(7)?,
                    visits: r.get(8)?,
                    suppressed_cells: r.get(9)?,
                    dwell_mean_s: r.get(10)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err(&self.path, "units"))?;
        Ok(rows)
    }

    fn conflicts(&mut self, limit: i64) -> Result<Vec<ConflictRow>, StoreError> {
        let sql = "SELECT c.interval_id, c.unit_id, i.visits, c.visits, c.times,
                          c.first_received, c.last_received, c.canonical
                   FROM conflicts c JOIN intervals i ON i.id = c.interval_id
                   ORDER BY c.last_received DESC, c.interval_id LIMIT ?1";
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.e("conflicts"))?;
        let rows = stmt
            .query_map([limit], |r| {
                Ok(ConflictRow {
                    interval_id: r.get(0)?,
                    unit_id: r.get(1)?,
                    stored_visits: r.get(2)?,
                    parked_visits: r.get(3)?,
                    times: r.get(4)?,
                    first_received: r.get(5)?,
                    last_received: r.get(6)?,
                    parked: r.get(7)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err(&self.path, "conflicts"))?;
        Ok(rows)
    }

    fn counts(&mut self) -> Result<Counts, StoreError> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM units), (SELECT count(*) FROM intervals),
                        (SELECT count(*) FROM cells), (SELECT count(*) FROM conflicts),
                        (SELECT coalesce(sum(times), 0) FROM conflicts)",
                [],
                |r| {
                    Ok(Counts {
                        units: r.get(0)?,
                        intervals: r.get(1)?,
                        cells: r.get(2)?,
                        conflicts: r.get(3)?,
                        conflict_messages: r.get(4)?,
                    })
                },
            )
            .map_err(self.e("counts"))
    }

    fn latest_end(&mut self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT max(end_s) FROM intervals", [], |r| r.get(0))
            .map_err(self.e("latest interval"))
    }

    fn healthy(&mut self) -> bool {
        self.conn
            .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .is_ok()
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }
}
