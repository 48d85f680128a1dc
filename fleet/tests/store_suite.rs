//! One test suite for the storage trait, run against both implementations: embedded SQLite
//! and a real, throwaway PostgreSQL cluster (skipped without PostgreSQL, failed under CI).

mod common;

use agecam_fleet::schema::{parse, Interval};
use agecam_fleet::store::migrate::MIGRATIONS;
use agecam_fleet::store::{Database, Outcome, Range, SeriesRow, Step};

const DAY: i64 = 86_400;
/// 2026-11-23, a Monday.
const MONDAY: i64 = 1_795_392_000;

fn msg(unit: &str, start: i64, cells: &[(&str, &str, u32)], suppressed: u32) -> Interval {
    let cells: Vec<String> = cells
        .iter()
        .map(|(b, g, v)| format!(r#"{{"age_bucket":"{b}","gender":"{g}","visits":{v}}}"#))
        .collect();
    let visits: u32 = cells.len() as u32;
    let payload = format!(
        r#"{{"id":"{unit}@{start}","unit_id":"{unit}","start":{start},"end":{},"uptime_s":850.5,"frames":100,"camera_faults":{},"cells":[{}],"suppressed_cells":{suppressed},"dwell_mean_s":{},"start_time":"{}","end_time":"{}"}}"#,
        start + 900,
        start % 2,
        cells.join(","),
        if visits > 0 { "4.0" } else { "null" },
        agecam_fleet::schema::rfc3339(start),
        agecam_fleet::schema::rfc3339(start + 900),
    );
    parse(&format!("agecam/{unit}/intervals"), payload.as_bytes()).unwrap()
}

/// A schema 2 interval of 15 minutes; each cell's attention is `Some((watchers, seconds))`, or
/// `None` when the unit withheld it.
/// (age bucket, gender, visits, attention: `Some((watchers, seconds))` or withheld)
type CellV2<'a> = (&'a str, &'a str, u32, Option<(u32, f64)>);

fn msg_v2(start: i64, cells: &[CellV2]) -> Interval {
    let cells: Vec<String> = cells
        .iter()
        .map(|(b, g, v, a)| {
            let (w, s) = match a {
                Some((w, s)) => (w.to_string(), format!("{s:?}")),
                None => ("null".into(), "null".into()),
            };
            format!(
                r#"{{"age_bucket":"{b}","gender":"{g}","visits":{v},"watchers":{w},"attention_s":{s}}}"#
            )
        })
        .collect();
    let payload = format!(
        r#"{{"schema":2,"id":"kiosk@{start}","unit_id":"kiosk","start":{start},"end":{},"uptime_s":900.0,"frames":100,"camera_faults":0,"cells":[{}],"suppressed_cells":0,"dwell_mean_s":5.0,"start_time":"{}","end_time":"{}"}}"#,
        start + 900,
        cells.join(","),
        agecam_fleet::schema::rfc3339(start),
        agecam_fleet::schema::rfc3339(start + 900),
    );
    parse("agecam/kiosk/intervals", payload.as_bytes()).unwrap()
}

/// (period, bucket, gender, visits, watchers, attention_s, visits with attention unknown)
type AttentionRow = (i64, String, String, i64, Option<i64>, Option<f64>, i64);

fn attention_rows(rows: &[SeriesRow]) -> Vec<AttentionRow> {
    rows.iter()
        .map(|r| {
            (
                r.period,
                r.age_bucket.clone(),
                r.gender.clone(),
                r.visits,
                r.watchers,
                r.attention_s,
                r.attention_unknown,
            )
        })
        .collect()
}

fn row(
    period: i64,
    b: &str,
    g: &str,
    visits: i64,
    watchers: Option<i64>,
    seconds: Option<f64>,
    unknown: i64,
) -> AttentionRow {
    (
        period,
        b.into(),
        g.into(),
        visits,
        watchers,
        seconds,
        unknown,
    )
}

/// Attention (push schema 2) beside schema 1 data: stored, summed over the cells that carry it
/// only, per period and per hour of day, and part of the re-send rule.
fn attention_suite(db: &Database) {
    let mut s = db.open().unwrap();
    let day = Range {
        from: MONDAY,
        to: MONDAY + DAY,
    };
    // Nothing published yet, and then schema 1 data only: attention unknown, never zero.
    assert!(s.series(None, day, Step::Day).unwrap().is_empty());
    let old = msg("lobby", MONDAY + 9 * 3600, &[("25-34", "female", 4)], 0);
    assert_eq!(s.record(&[(old.clone(), 10)]).unwrap(), [Outcome::Stored]);
    assert_eq!(
        attention_rows(&s.series(None, day, Step::Day).unwrap()),
        [row(MONDAY, "25-34", "female", 4, None, None, 4)]
    );

    // Schema 2: a known cell and a withheld one at 09:15, a known one at 14:00.
    let a = msg_v2(
        MONDAY + 9 * 3600 + 900,
        &[
            ("25-34", "female", 7, Some((5, 42.5))),
            ("35-44", "any", 8, None),
        ],
    );
    let b = msg_v2(
        MONDAY + 14 * 3600,
        &[
            ("25-34", "female", 3, Some((0, 0.0))),
            ("35-44", "any", 6, Some((2, 9.25))),
        ],
    );
    assert_eq!(
        s.record(&[(a.clone(), 20), (b.clone(), 21)]).unwrap(),
        [Outcome::Stored, Outcome::Stored]
    );
    assert_eq!(
        attention_rows(&s.series(None, day, Step::Day).unwrap()),
        [
            row(MONDAY, "25-34", "female", 14, Some(5), Some(42.5), 4),
            row(MONDAY, "35-44", "any", 14, Some(2), Some(9.25), 8),
        ]
    );
    assert_eq!(
        attention_rows(&s.series(Some("kiosk"), day, Step::Week).unwrap()),
        [
            row(MONDAY, "25-34", "female", 10, Some(5), Some(42.5), 0),
            row(MONDAY, "35-44", "any", 14, Some(2), Some(9.25), 8),
        ]
    );
    // Per UTC hour of day: 09:00 has both units' cells, 14:00 the second interval.
    assert_eq!(
        attention_rows(&s.hours(None, day).unwrap()),
        [
            row(9, "25-34", "female", 11, Some(5), Some(42.5), 4),
            row(9, "35-44", "any", 8, None, None, 8),
            row(14, "25-34", "female", 3, Some(0), Some(0.0), 0),
            row(14, "35-44", "any", 6, Some(2), Some(9.25), 0),
        ]
    );
    assert_eq!(
        attention_rows(&s.hours(Some("lobby"), day).unwrap()),
        [row(9, "25-34", "female", 4, None, None, 4)]
    );
    let next_day = Range {
        from: MONDAY + DAY,
        to: MONDAY + 2 * DAY,
    };
    assert_eq!(s.hours(None, next_day).unwrap(), []);

    // The re-send rule covers attention: the same again is a duplicate; the same visits with
    // other watchers, other seconds, or the attention withheld are each a conflict.
    assert_eq!(s.record(&[(a.clone(), 30)]).unwrap(), [Outcome::Duplicate]);
    let other_watchers = msg_v2(
        MONDAY + 9 * 3600 + 900,
        &[
            ("25-34", "female", 7, Some((4, 42.5))),
            ("35-44", "any", 8, None),
        ],
    );
    let other_seconds = msg_v2(
        MONDAY + 9 * 3600 + 900,
        &[
            ("25-34", "female", 7, Some((5, 40.0))),
            ("35-44", "any", 8, None),
        ],
    );
    let withheld = msg_v2(
        MONDAY + 9 * 3600 + 900,
        &[("25-34", "female", 7, None), ("35-44", "any", 8, None)],
    );
    assert_eq!(
        s.record(&[(other_watchers, 31), (other_seconds, 32), (withheld, 33)])
            .unwrap(),
        [Outcome::Conflict, Outcome::Conflict, Outcome::Conflict]
    );
    let conflicts = s.conflicts(10).unwrap();
    assert_eq!(conflicts.len(), 3);
    assert!(conflicts
        .iter()
        .all(|c| (c.stored_visits, c.parked_visits) == (15, 15)));
    // The totals keep the first version.
    assert_eq!(
        attention_rows(&s.series(Some("kiosk"), day, Step::Day).unwrap())[0],
        row(MONDAY, "25-34", "female", 10, Some(5), Some(42.5), 0)
    );
    let c = s.counts().unwrap();
    assert_eq!((c.intervals, c.cells, c.conflicts), (3, 5, 3));
}

/// The suite: every backend must pass all of it.
fn suite(db: &Database) {
    let mut s = db.open().unwrap();
    let a1 = msg(
        "hall",
        MONDAY,
        &[("25-34", "female", 6), ("25-34", "male", 5)],
        1,
    );
    let a2 = msg("hall", MONDAY + DAY, &[("65+", "any", 7)], 0);
    let b1 = msg("lobby", MONDAY + 8 * DAY, &[("25-34", "female", 9)], 2);

    // New intervals are stored; units register with their first one.
    assert_eq!(
        s.record(&[(a1.clone(), 100), (a2.clone(), 101)]).unwrap(),
        [Outcome::Stored, Outcome::Stored]
    );
    assert_eq!(s.record(&[(b1.clone(), 102)]).unwrap(), [Outcome::Stored]);
    let c = s.counts().unwrap();
    assert_eq!((c.units, c.intervals, c.cells, c.conflicts), (2, 3, 4, 0));

    // The same content again changes nothing, even within one batch.
    assert_eq!(
        s.record(&[(a1.clone(), 200), (a1.clone(), 201)]).unwrap(),
        [Outcome::Duplicate, Outcome::Duplicate]
    );
    assert_eq!(s.counts().unwrap(), c);

    // Different content under a stored id is parked, not merged; again, counted once more.
    let a1_bigger = msg(
        "hall",
        MONDAY,
        &[("25-34", "female", 8), ("25-34", "male", 5)],
        1,
    );
    assert_eq!(
        s.record(&[(a1_bigger.clone(), 300)]).unwrap(),
        [Outcome::Conflict]
    );
    assert_eq!(
        s.record(&[(a1_bigger.clone(), 301)]).unwrap(),
        [Outcome::Conflict]
    );
    let c2 = s.counts().unwrap();
    assert_eq!(
        (c2.intervals, c2.cells, c2.conflicts, c2.conflict_messages),
        (3, 4, 1, 2)
    );
    let conflicts = s.conflicts(10).unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].interval_id, "hall@1795392000");
    assert_eq!(
        (conflicts[0].stored_visits, conflicts[0].parked_visits),
        (11, 13)
    );
    assert_eq!(
        (
            conflicts[0].times,
            conflicts[0].first_received,
            conflicts[0].last_received
        ),
        (2, 300, 301)
    );

    // Day series: sums of published cells per day × bucket × gender; one unit or the fleet.
    let week = Range {
        from: MONDAY,
        to: MONDAY + 14 * DAY,
    };
    let fleet = s.series(None, week, Step::Day).unwrap();
    let rows: Vec<(i64, &str, &str, i64)> = fleet
        .iter()
        .map(|r| (r.period, r.age_bucket.as_str(), r.gender.as_str(), r.visits))
        .collect();
    assert_eq!(
        rows,
        [
            (MONDAY, "25-34", "female", 6),
            (MONDAY, "25-34", "male", 5),
            (MONDAY + DAY, "65+", "any", 7),
            (MONDAY + 8 * DAY, "25-34", "female", 9),
        ]
    );
    let hall = s.series(Some("hall"), week, Step::Day).unwrap();
    assert_eq!(hall.len(), 3);
    // Weeks start on Monday: the first two intervals are one week, the third the next.
    let weeks = s.series(None, week, Step::Week).unwrap();
    let per_week: Vec<(i64, i64)> = weeks.iter().map(|r| (r.period, r.visits)).collect();
    assert_eq!(
        per_week,
        [(MONDAY, 6), (MONDAY, 5), (MONDAY, 7), (MONDAY + 7 * DAY, 9)]
    );
    // The range is over interval starts, [from, to).
    assert!(s
        .series(
            None,
            Range {
                from: MONDAY + DAY + 1,
                to: MONDAY + 8 * DAY
            },
            Step::Day
        )
        .unwrap()
        .is_empty());

    // Units with their totals in the range.
    let units = s
        .units(Range {
            from: MONDAY,
            to: MONDAY + 7 * DAY,
        })
        .unwrap();
    assert_eq!(units.len(), 2, "every registered unit is listed");
    let h = &units[0];
    assert_eq!(h.unit_id, "hall");
    assert_eq!(
        (h.first_seen, h.last_seen, h.last_interval_end),
        (100, 101, MONDAY + DAY + 900)
    );
    assert_eq!(
        (h.intervals, h.frames, h.visits, h.suppressed_cells),
        (2, 200, 18, 1)
    );
    assert!((h.uptime_s - 1701.0).abs() < 1e-9);
    assert_eq!(h.camera_faults, 0);
    assert_eq!(h.dwell_mean_s, Some(4.0));
    let l = &units[1];
    assert_eq!(
        (l.unit_id.as_str(), l.intervals, l.visits, l.dwell_mean_s),
        ("lobby", 0, 0, None)
    );
    assert_eq!(s.latest_end().unwrap(), Some(MONDAY + 8 * DAY + 900));

    // An interval with no published cell (nobody came, or all withheld) still counts uptime.
    let empty = msg("hall", MONDAY + 2 * DAY, &[], 3);
    assert_eq!(s.record(&[(empty, 400)]).unwrap(), [Outcome::Stored]);
    let units = s.units(week).unwrap();
    assert_eq!(
        (
            units[0].intervals,
            units[0].suppressed_cells,
            units[0].last_seen
        ),
        (3, 4, 400)
    );
    assert!(s.healthy());

    // Reopening applies no migration twice and keeps everything.
    drop(s);
    let mut again = db.open().unwrap();
    assert_eq!(again.counts().unwrap().intervals, 4);
}

#[test]
fn sqlite_passes_the_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite(&Database::Sqlite(dir.path().join("fleet.sqlite")));
    attention_suite(&Database::Sqlite(dir.path().join("attention.sqlite")));
}

#[test]
fn postgres_passes_the_store_suite() {
    let Some(bin) = common::postgres_bin() else {
        return;
    };
    let pg = common::Postgres::start(&bin, false);
    suite(&Database::Postgres(pg.url()));
    let mut c = pg.client();
    let versions: Vec<i64> = c
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2], "migrations 1 and 2 applied once each");
    c.batch_execute("DROP TABLE conflicts, cells, intervals, units, schema_migrations")
        .unwrap();
    attention_suite(&Database::Postgres(pg.url()));
}

/// A database as the collector left it before migration 2 (attention): migration 1 only,
/// holding the interval of the schema 1 message `HALL_V1` with the digest the collector
/// computed for it then.
const OLD_SCHEMA_ROWS: &str = "
    CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL,
        applied_at BIGINT NOT NULL);
    INSERT INTO schema_migrations VALUES (1, '0001_init', 1);
    INSERT INTO units VALUES ('hall', 100, 100, 1795392900);
    INSERT INTO intervals VALUES ('hall@1795392000', 'hall', 1795392000, 1795392900, 900.0,
        27000, 0, 1, 7.5, 11, 100, '1b5d73004ff18ba0a7d897c0c55e838e');
    INSERT INTO cells VALUES ('hall@1795392000', 'hall', 1795392000, '25-34', 'female', 6);
    INSERT INTO cells VALUES ('hall@1795392000', 'hall', 1795392000, '25-34', 'male', 5);";

/// The docs' schema 1 example (unit hall), as units in the field still send it.
const HALL_V1: &str = r#"{"id":"hall@1795392000","unit_id":"hall","start":1795392000,"end":1795392900,"uptime_s":900.0,"frames":27000,"camera_faults":0,"cells":[{"age_bucket":"25-34","gender":"male","visits":5},{"age_bucket":"25-34","gender":"female","visits":6}],"suppressed_cells":1,"dwell_mean_s":7.5,"start_time":"2026-11-23T00:00:00Z","end_time":"2026-11-23T00:15:00Z"}"#;

/// Opening the old database applies migration 2 only; its cells keep attention unknown (NULL,
/// not zero), the old interval re-delivered is still a duplicate (its stored digest matches),
/// and schema 2 intervals are stored beside it.
fn upgrade_from_the_old_schema(db: &Database) {
    let mut s = db.open().unwrap();
    let day = Range {
        from: MONDAY,
        to: MONDAY + DAY,
    };
    assert_eq!(
        attention_rows(&s.series(None, day, Step::Day).unwrap()),
        [
            row(MONDAY, "25-34", "female", 6, None, None, 6),
            row(MONDAY, "25-34", "male", 5, None, None, 5),
        ]
    );
    let old = parse("agecam/hall/intervals", HALL_V1.as_bytes()).unwrap();
    assert_eq!(s.record(&[(old, 200)]).unwrap(), [Outcome::Duplicate]);
    let new = msg_v2(MONDAY + 900, &[("25-34", "female", 7, Some((5, 42.5)))]);
    assert_eq!(s.record(&[(new, 201)]).unwrap(), [Outcome::Stored]);
    assert_eq!(
        attention_rows(&s.series(None, day, Step::Day).unwrap()),
        [
            row(MONDAY, "25-34", "female", 13, Some(5), Some(42.5), 6),
            row(MONDAY, "25-34", "male", 5, None, None, 5),
        ]
    );
    let c = s.counts().unwrap();
    assert_eq!((c.units, c.intervals, c.cells, c.conflicts), (2, 2, 3, 0));
}

#[test]
fn an_sqlite_database_of_the_old_schema_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(MIGRATIONS[0].sqlite).unwrap();
    conn.execute_batch(OLD_SCHEMA_ROWS).unwrap();
    drop(conn);
    upgrade_from_the_old_schema(&Database::Sqlite(path.clone()));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, [1, 2]);
    // The columns refuse what the schema check refuses.
    for bad in [
        "7, 1.0",    // more watchers than visits
        "-1, 1.0",   // negative
        "1, -1.0",   // negative seconds
        "1, NULL",   // half withheld
        "NULL, 1.0", // half withheld
    ] {
        let sql = format!(
            "INSERT INTO cells VALUES ('hall@1795392000', 'hall', 1795392000, '0-12', 'any', 6, {bad})"
        );
        assert!(conn.execute(&sql, []).is_err(), "{bad}");
    }
}

#[test]
fn a_postgres_database_of_the_old_schema_is_upgraded_in_place() {
    let Some(bin) = common::postgres_bin() else {
        return;
    };
    let pg = common::Postgres::start(&bin, false);
    let mut c = pg.client();
    c.batch_execute(MIGRATIONS[0].postgres).unwrap();
    c.batch_execute(OLD_SCHEMA_ROWS).unwrap();
    upgrade_from_the_old_schema(&Database::Postgres(pg.url()));
    let versions: Vec<i64> = c
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2]);
    for bad in ["7, 1.0", "-1, 1.0", "1, -1.0", "1, NULL", "NULL, 1.0"] {
        let sql = format!(
            "INSERT INTO cells VALUES ('hall@1795392000', 'hall', 1795392000, '0-12', 'any', 6, {bad})"
        );
        assert!(c.batch_execute(&sql).is_err(), "{bad}");
    }
}

#[test]
fn a_batch_is_all_or_nothing() {
    // A batch that fails half-way (the database goes read-only) stores nothing.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.sqlite");
    let db = Database::Sqlite(path.clone());
    let mut s = db.open().unwrap();
    let a = msg("hall", MONDAY, &[("25-34", "female", 6)], 0);
    s.record(&[(a, 1)]).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER no_lobby BEFORE INSERT ON cells WHEN NEW.unit_id = 'lobby'
         BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .unwrap();
    let b = msg("hall", MONDAY + 900, &[("25-34", "female", 6)], 0);
    let c = msg("lobby", MONDAY, &[("25-34", "female", 6)], 0);
    assert!(s.record(&[(b, 2), (c, 2)]).is_err());
    assert_eq!(
        s.counts().unwrap().intervals,
        1,
        "the failed batch left nothing"
    );
}
