//! One test suite for the storage trait, run against both implementations: embedded SQLite
//! and a real, throwaway PostgreSQL cluster (skipped without PostgreSQL, failed under CI).

mod common;

use agecam_fleet::schema::{parse, Interval};
use agecam_fleet::store::{Database, Outcome, Range, Step};

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
        .query("SELECT version FROM schema_migrations", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1], "migration 1 applied once");
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
