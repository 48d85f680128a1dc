//! The durable statistics store: SQLite (bundled) in WAL mode, one transaction per interval.
//!
//! Only aggregates are stored: one row per interval and one per (interval, age bucket, gender)
//! cell. A crash or power cut loses at most the interval in progress; a database that turns
//! out to be corrupt at start is moved aside (never overwritten) and a fresh one begun; a full
//! or read-only disk keeps finished intervals in memory and retries.

use super::aggregate::{CellAttention, IntervalStats};
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("statistics store {}: {problem}", path.display())]
pub struct StoreError {
    pub path: PathBuf,
    pub problem: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS intervals (
    unit_id TEXT NOT NULL,
    start INTEGER NOT NULL,
    length_s INTEGER NOT NULL,
    uptime_s REAL NOT NULL,
    frames INTEGER NOT NULL,
    camera_faults INTEGER NOT NULL,
    dwell_total_s REAL NOT NULL,
    dwell_max_s REAL NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (unit_id, start)
);
CREATE TABLE IF NOT EXISTS cells (
    unit_id TEXT NOT NULL,
    start INTEGER NOT NULL,
    age_bucket TEXT NOT NULL,
    gender TEXT NOT NULL,
    visits INTEGER NOT NULL,
    posed INTEGER NOT NULL DEFAULT 0,
    watchers INTEGER NOT NULL DEFAULT 0,
    attention_s REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (unit_id, start, age_bucket, gender)
);
";

/// Columns added to `cells` since the first release, each with the statement that adds it to
/// an older database (whose visits then have unknown attention: `posed` 0).
const CELL_COLUMNS_ADDED: [(&str, &str); 3] = [
    (
        "posed",
        "ALTER TABLE cells ADD COLUMN posed INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "watchers",
        "ALTER TABLE cells ADD COLUMN watchers INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "attention_s",
        "ALTER TABLE cells ADD COLUMN attention_s REAL NOT NULL DEFAULT 0",
    ),
];

/// An open statistics database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

fn store_error(path: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        path: path.to_path_buf(),
        problem: format!("{what} ({e})"),
    }
}

impl Store {
    /// Opens (or creates) the database at `path`. A file that is not a healthy SQLite database
    /// is renamed to `<name>.corrupt-<unix time>` and a new one is started.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                store_error(
                    path,
                    "cannot create its folder; check stats.dir and the folder's owner",
                    e,
                )
            })?;
        }
        match Self::open_checked(path) {
            Ok(store) => Ok(store),
            Err(Problem::Corrupt(why)) => {
                let aside = path.with_extension(format!("corrupt-{}", unix_now()));
                std::fs::rename(path, &aside)
                    .map_err(|e| store_error(path, "is corrupt and cannot be moved aside", e))?;
                for suffix in ["-wal", "-shm"] {
                    let side = PathBuf::from(format!("{}{suffix}", path.display()));
                    if side.exists() {
                        let _ = std::fs::rename(
                            &side,
                            PathBuf::from(format!("{}{suffix}", aside.display())),
                        );
                    }
                }
                log::error!(
                    "statistics store {} was corrupt ({why}); kept it as {} and started a new one",
                    path.display(),
                    aside.display()
                );
                Self::open_checked(path).map_err(|p| p.into_error(path))
            }
            Err(other) => Err(other.into_error(path)),
        }
    }

    fn open_checked(path: &Path) -> Result<Store, Problem> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(Problem::classify)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(Problem::classify)?;
        // FULL: a committed interval survives a power cut, not just a crash.
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(Problem::classify)?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(Problem::classify)?;
        if check != "ok" {
            return Err(Problem::Corrupt(check));
        }
        conn.execute_batch(SCHEMA).map_err(Problem::classify)?;
        let columns: Vec<String> = conn
            .prepare("PRAGMA table_info(cells)")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(1))?
                    .collect::<Result<_, _>>()
            })
            .map_err(Problem::classify)?;
        for (column, add) in CELL_COLUMNS_ADDED {
            if !columns.iter().any(|c| c == column) {
                conn.execute_batch(add).map_err(Problem::classify)?;
            }
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds an interval in one transaction; a second part of the same interval (after a
    /// restart) is added to the first.
    pub fn save(&mut self, interval: &IntervalStats) -> Result<(), StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| store_error(&path, &explain_write(&e), e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute(
            "INSERT INTO intervals (unit_id, start, length_s, uptime_s, frames, camera_faults, dwell_total_s, dwell_max_s)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (unit_id, start) DO UPDATE SET
                uptime_s = uptime_s + excluded.uptime_s,
                frames = frames + excluded.frames,
                camera_faults = camera_faults + excluded.camera_faults,
                dwell_total_s = dwell_total_s + excluded.dwell_total_s,
                dwell_max_s = max(dwell_max_s, excluded.dwell_max_s),
                sent = 0",
            params![
                interval.unit_id,
                interval.start,
                interval.length_s,
                interval.uptime_s,
                interval.frames as i64,
                interval.camera_faults as i64,
                interval.dwell_total_s,
                interval.dwell_max_s
            ],
        )
        .map_err(fail)?;
        for (cell, visits) in &interval.cells {
            let a = interval.attention.get(cell).copied().unwrap_or_default();
            tx.execute(
                "INSERT INTO cells (unit_id, start, age_bucket, gender, visits, posed, watchers, attention_s)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (unit_id, start, age_bucket, gender) DO UPDATE SET
                    visits = visits + excluded.visits,
                    posed = posed + excluded.posed,
                    watchers = watchers + excluded.watchers,
                    attention_s = attention_s + excluded.attention_s",
                params![
                    interval.unit_id,
                    interval.start,
                    cell.0,
                    cell.1,
                    *visits as i64,
                    a.posed as i64,
                    a.watchers as i64,
                    a.attention_s
                ],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)
    }

    /// Intervals whose start lies in [since, until), oldest first.
    pub fn load(&self, since: i64, until: i64) -> Result<Vec<IntervalStats>, StoreError> {
        self.select(
            "WHERE start >= ?1 AND start < ?2 ORDER BY start, unit_id",
            params![since, until],
        )
    }

    /// Up to `limit` intervals not yet acknowledged by the fleet broker, oldest first.
    pub fn unsent(&self, limit: usize) -> Result<Vec<IntervalStats>, StoreError> {
        self.select(
            "WHERE sent = 0 ORDER BY start, unit_id LIMIT ?1",
            params![limit.min(i64::MAX as usize) as i64],
        )
    }

    /// Intervals already acknowledged by the fleet broker that ended at or after `ended_since`
    /// (Unix seconds), oldest first: what `push.resend_seconds` publishes again.
    pub fn sent_since(&self, ended_since: i64) -> Result<Vec<IntervalStats>, StoreError> {
        self.select(
            "WHERE sent = 1 AND start + length_s >= ?1 ORDER BY start, unit_id",
            params![ended_since],
        )
    }

    /// Marks an interval as acknowledged by the fleet broker, but only if its row still holds
    /// the totals in `as_sent` (what was published). If a restarted part of the interval was
    /// merged in meanwhile ([`Store::save`] resets `sent`), the row stays unsent so the newer
    /// totals go out too; returns whether the row was marked.
    pub fn mark_sent(
        &mut self,
        unit_id: &str,
        start: i64,
        as_sent: &IntervalStats,
    ) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| store_error(&path, &explain_write(&e), e);
        let n = self
            .conn
            .execute(
                "UPDATE intervals SET sent = 1
                 WHERE unit_id = ?1 AND start = ?2 AND sent = 0
                   AND frames = ?3 AND uptime_s = ?4 AND camera_faults = ?5 AND dwell_total_s = ?6
                   AND (SELECT coalesce(sum(visits), 0) FROM cells
                        WHERE cells.unit_id = ?1 AND cells.start = ?2) = ?7",
                params![
                    unit_id,
                    start,
                    as_sent.frames as i64,
                    as_sent.uptime_s,
                    as_sent.camera_faults as i64,
                    as_sent.dwell_total_s,
                    as_sent.visits() as i64
                ],
            )
            .map_err(fail)?;
        Ok(n == 1)
    }

    fn select(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<IntervalStats>, StoreError> {
        let fail = |e: rusqlite::Error| store_error(&self.path, "cannot read it", e);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT unit_id, start, length_s, uptime_s, frames, camera_faults, dwell_total_s, dwell_max_s
                 FROM intervals {filter}"
            ))
            .map_err(fail)?;
        let rows = stmt
            .query_map(args, |r| {
                Ok(IntervalStats {
                    unit_id: r.get(0)?,
                    start: r.get(1)?,
                    length_s: r.get(2)?,
                    uptime_s: r.get(3)?,
                    frames: r.get::<_, i64>(4)? as u64,
                    camera_faults: r.get::<_, i64>(5)? as u64,
                    dwell_total_s: r.get(6)?,
                    dwell_max_s: r.get(7)?,
                    cells: Default::default(),
                    attention: Default::default(),
                })
            })
            .map_err(fail)?;
        let mut intervals = rows.collect::<Result<Vec<_>, _>>().map_err(fail)?;
        let mut cells = self
            .conn
            .prepare(
                "SELECT age_bucket, gender, visits, posed, watchers, attention_s
                 FROM cells WHERE unit_id = ?1 AND start = ?2",
            )
            .map_err(fail)?;
        for interval in &mut intervals {
            let rows = cells
                .query_map(params![interval.unit_id, interval.start], |r| {
                    Ok((
                        (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                        r.get::<_, i64>(2)? as u32,
                        CellAttention {
                            posed: r.get::<_, i64>(3)? as u32,
                            watchers: r.get::<_, i64>(4)? as u32,
                            attention_s: r.get(5)?,
                        },
                    ))
                })
                .map_err(fail)?;
            for row in rows {
                let (cell, visits, attention) = row.map_err(fail)?;
                if attention.posed > 0 {
                    interval.attention.insert(cell.clone(), attention);
                }
                interval.cells.insert(cell, visits);
            }
        }
        Ok(intervals)
    }

    /// Deletes intervals that started before `cutoff`; returns how many.
    pub fn prune_before(&mut self, cutoff: i64) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| store_error(&path, &explain_write(&e), e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute("DELETE FROM cells WHERE start < ?1", params![cutoff])
            .map_err(fail)?;
        let n = tx
            .execute("DELETE FROM intervals WHERE start < ?1", params![cutoff])
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(n)
    }

    /// `PRAGMA integrity_check`'s answer ("ok" when healthy).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| store_error(&self.path, "cannot check it", e))
    }

    /// Every table and its columns, for the privacy test and `selftest`.
    pub fn schema(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let fail = |e: rusqlite::Error| store_error(&self.path, "cannot read its schema", e);
        let mut tables = self
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .map_err(fail)?;
        let names: Vec<String> = tables
            .query_map([], |r| r.get(0))
            .map_err(fail)?
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        let mut schema = Vec::new();
        for name in names {
            let mut columns = self
                .conn
                .prepare(&format!("PRAGMA table_info({name})"))
                .map_err(fail)?;
            let cols: Vec<String> = columns
                .query_map([], |r| r.get(1))
                .map_err(fail)?
                .collect::<Result<_, _>>()
                .map_err(fail)?;
            schema.push((name, cols));
        }
        Ok(schema)
    }
}

enum Problem {
    Corrupt(String),
    Other(rusqlite::Error),
}

impl Problem {
    fn classify(e: rusqlite::Error) -> Problem {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase)
            | Some(rusqlite::ErrorCode::DatabaseCorrupt) => Problem::Corrupt(e.to_string()),
            _ => Problem::Other(e),
        }
    }

    fn into_error(self, path: &Path) -> StoreError {
        match self {
            Problem::Corrupt(why) => {
                store_error(path, "is corrupt even after starting afresh", why)
            }
            Problem::Other(e) => store_error(path, &explain_open(&e), e),
        }
    }
}

fn explain_open(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::CannotOpen)
        | Some(rusqlite::ErrorCode::PermissionDenied)
        | Some(rusqlite::ErrorCode::ReadOnly) => {
            "cannot open it for writing; check stats.dir exists and is writable by the agecam user"
                .into()
        }
        _ => "cannot open it".into(),
    }
}

fn explain_write(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => {
            "disk full: finished intervals are kept in memory until space is freed".into()
        }
        Some(rusqlite::ErrorCode::ReadOnly) | Some(rusqlite::ErrorCode::PermissionDenied) => {
            "read-only: finished intervals are kept in memory until it is writable".into()
        }
        _ => "cannot write to it".into(),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(start: i64, visits: u32) -> IntervalStats {
        let mut i = IntervalStats {
            unit_id: "kiosk-1".into(),
            start,
            length_s: 900,
            uptime_s: 900.0,
            frames: 100,
            camera_faults: 1,
            dwell_total_s: 30.0,
            dwell_max_s: 12.0,
            ..Default::default()
        };
        i.cells.insert(("25-34".into(), "female".into()), visits);
        i
    }

    #[test]
    fn saves_loads_and_merges_a_restarted_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats/agecam.sqlite");
        let mut store = Store::open(&path).unwrap();
        store.save(&interval(900, 3)).unwrap();
        store.save(&interval(1800, 1)).unwrap();
        store.save(&interval(1800, 2)).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let loaded = store.load(0, i64::MAX).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0], interval(900, 3));
        assert_eq!(loaded[1].visits(), 3);
        assert_eq!(loaded[1].frames, 200);
        assert_eq!(store.load(1000, 2000).unwrap().len(), 1);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn unsent_and_mark_sent_follow_the_broker_acks_and_restarted_merges() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        for start in [1800, 0, 900] {
            store.save(&interval(start, 1)).unwrap();
        }
        let unsent = store.unsent(10).unwrap();
        assert_eq!(
            unsent.iter().map(|i| i.start).collect::<Vec<_>>(),
            [0, 900, 1800],
            "oldest first"
        );
        assert_eq!(store.unsent(2).unwrap().len(), 2);
        assert!(store.mark_sent("kiosk-1", 0, &unsent[0]).unwrap());
        assert!(
            !store.mark_sent("kiosk-1", 0, &unsent[0]).unwrap(),
            "already sent"
        );
        assert_eq!(
            store
                .unsent(10)
                .unwrap()
                .iter()
                .map(|i| i.start)
                .collect::<Vec<_>>(),
            [900, 1800]
        );
        // A restarted part of 900 is merged while its first part is on its way: the ack for
        // the first part must not mark the merged row.
        let on_the_way = store.unsent(1).unwrap().remove(0);
        store.save(&interval(900, 4)).unwrap();
        assert!(!store.mark_sent("kiosk-1", 900, &on_the_way).unwrap());
        let merged = store.unsent(1).unwrap().remove(0);
        assert_eq!(merged.visits(), 5);
        assert!(store.mark_sent("kiosk-1", 900, &merged).unwrap());
        // A merge into an interval already sent makes it unsent again, with the new totals.
        store.save(&interval(0, 2)).unwrap();
        let again = store.unsent(10).unwrap();
        assert_eq!(again.iter().map(|i| i.start).collect::<Vec<_>>(), [0, 1800]);
        assert_eq!(again[0].visits(), 3);
    }

    #[test]
    fn attention_is_saved_merged_and_loaded_per_cell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut store = Store::open(&path).unwrap();
        let cell = ("25-34".to_string(), "female".to_string());
        let mut first = interval(900, 3);
        first.attention.insert(
            cell.clone(),
            CellAttention {
                posed: 3,
                watchers: 2,
                attention_s: 7.5,
            },
        );
        let mut second = interval(900, 2);
        second.attention.insert(
            cell.clone(),
            CellAttention {
                posed: 1,
                watchers: 1,
                attention_s: 4.0,
            },
        );
        store.save(&first).unwrap();
        assert_eq!(store.load(0, i64::MAX).unwrap(), vec![first]);
        store.save(&second).unwrap();
        let loaded = store.load(0, i64::MAX).unwrap().remove(0);
        assert_eq!(loaded.cells[&cell], 5);
        assert_eq!(
            loaded.attention[&cell],
            CellAttention {
                posed: 4,
                watchers: 3,
                attention_s: 11.5
            }
        );
    }

    /// A database written before attention existed opens, gains the columns, keeps its rows
    /// (their attention unknown) and takes new intervals with attention.
    #[test]
    fn a_database_from_before_attention_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE intervals (unit_id TEXT NOT NULL, start INTEGER NOT NULL,
                    length_s INTEGER NOT NULL, uptime_s REAL NOT NULL, frames INTEGER NOT NULL,
                    camera_faults INTEGER NOT NULL, dwell_total_s REAL NOT NULL,
                    dwell_max_s REAL NOT NULL, sent INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (unit_id, start));
                 CREATE TABLE cells (unit_id TEXT NOT NULL, start INTEGER NOT NULL,
                    age_bucket TEXT NOT NULL, gender TEXT NOT NULL, visits INTEGER NOT NULL,
                    PRIMARY KEY (unit_id, start, age_bucket, gender));
                 INSERT INTO intervals VALUES ('kiosk-1', 900, 900, 900.0, 100, 1, 30.0, 12.0, 0);
                 INSERT INTO cells VALUES ('kiosk-1', 900, '25-34', 'female', 3);",
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.load(0, i64::MAX).unwrap(), vec![interval(900, 3)]);
        let mut newer = interval(1800, 1);
        newer.attention.insert(
            ("25-34".into(), "female".into()),
            CellAttention {
                posed: 1,
                watchers: 0,
                attention_s: 0.5,
            },
        );
        store.save(&newer).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.load(0, i64::MAX).unwrap(),
            vec![interval(900, 3), newer]
        );
    }

    #[test]
    fn schema_holds_only_aggregates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let schema = store.schema().unwrap();
        let allowed = [
            "unit_id",
            "start",
            "length_s",
            "uptime_s",
            "frames",
            "camera_faults",
            "dwell_total_s",
            "dwell_max_s",
            "sent",
            "age_bucket",
            "gender",
            "visits",
            "posed",
            "watchers",
            "attention_s",
        ];
        assert_eq!(
            schema.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            ["cells", "intervals"]
        );
        for (table, columns) in &schema {
            for column in columns {
                assert!(
                    allowed.contains(&column.as_str()),
                    "{table}.{column} is not an aggregate column"
                );
            }
            // Every row is keyed by interval (and cell), never by a person or a time finer than
            // the interval.
            assert!(
                columns.contains(&"start".to_string()) && columns.contains(&"unit_id".to_string())
            );
        }
    }

    #[test]
    fn corrupt_database_is_moved_aside_and_a_fresh_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agecam.sqlite");
        std::fs::write(
            &path,
            b"this is not a database, it is a text file that got in the way",
        )
        .unwrap();
        let mut store = Store::open(&path).unwrap();
        store.save(&interval(900, 1)).unwrap();
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        let kept = std::fs::read(dir.path().join(&aside[0])).unwrap();
        assert!(
            kept.starts_with(b"this is not a database"),
            "the old file is kept as it was"
        );
    }

    #[test]
    fn prune_deletes_old_intervals_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        for start in [0, 900, 1800] {
            store.save(&interval(start, 1)).unwrap();
        }
        assert_eq!(store.prune_before(1800).unwrap(), 2);
        let left = store.load(0, i64::MAX).unwrap();
        assert_eq!(left.iter().map(|i| i.start).collect::<Vec<_>>(), [1800]);
    }

    /// A full disk, simulated by capping the database's size: the failing interval is
    /// refused with a clear message and everything committed before stays intact.
    #[test]
    fn full_disk_is_a_clear_error_and_loses_nothing_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        store.save(&interval(0, 1)).unwrap();
        let pages: i64 = store
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let _: i64 = store
            .conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })
            .unwrap();
        let mut big = interval(900, 1);
        for i in 0..2000 {
            big.cells
                .insert((format!("bucket-{i:04}"), "female".into()), 1);
        }
        let err = store.save(&big).unwrap_err().to_string();
        assert!(
            err.contains("disk full") && err.contains("kept in memory"),
            "{err}"
        );
        assert_eq!(store.integrity_check().unwrap(), "ok");
        let left = store.load(i64::MIN, i64::MAX).unwrap();
        assert_eq!(
            left,
            vec![interval(0, 1)],
            "the failed interval left no partial rows"
        );
    }

    #[test]
    fn unwritable_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = Store::open(&blocker.join("agecam.sqlite"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("stats.dir"), "{err}");
    }
}
