//! End to end through real servers: agecam units push with agecam's own store-and-forward
//! code through mosquitto to the `agecam-fleet` binary, into a throwaway PostgreSQL cluster
//! (and SQLite), and onto its page. Then the faults: the collector killed mid-stream and
//! restarted, the database away for a while, malformed and hostile messages, a unit nobody
//! configured, and a re-sent interval with different counts.

mod common;

use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn pg_interval_count(pg: &Postgres) -> i64 {
    match postgres::Client::connect(&pg.url(), postgres::NoTls) {
        Ok(mut c) => pg_counts(&mut c).1,
        Err(_) => -1,
    }
}

/// Published visits per unit in PostgreSQL.
fn pg_visits(c: &mut postgres::Client) -> Vec<(String, i64)> {
    c.query(
        "SELECT unit_id, sum(visits)::bigint FROM cells GROUP BY unit_id ORDER BY unit_id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// The number inside the element with this id (`id="total-visits">123<`).
fn number_by_id(html: &str, id: &str) -> i64 {
    let at = html
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[at + id.len() + 6..];
    rest[..rest.find('<').unwrap()].trim().parse().unwrap()
}

#[test]
fn units_push_through_mosquitto_into_postgres_and_onto_the_page() {
    let (Some(mosquitto), Some(pg_bin)) = (mosquitto(), postgres_bin()) else {
        return;
    };
    let broker = Broker::start(&mosquitto);
    let pg = Postgres::start(&pg_bin, false);
    let dir = shared_tempdir();
    let url = pg.url();
    let collector = Collector::start(
        dir.path(),
        broker.port,
        "fleet-e2e",
        &["--database-url", &url],
    );
    let t0 = day_start(2);
    let hall = Unit::new(dir.path(), "hall", broker.port);
    let lobby = Unit::new(dir.path(), "lobby", broker.port);
    hall.save(
        &(0..8)
            .map(|n| interval("hall", t0 + n * 900, 3 + n as u32, 2))
            .collect::<Vec<_>>(),
    );
    lobby.save(
        &(0..4)
            .map(|n| interval("lobby", t0 + 86_400 + n * 900, 1, 6))
            .collect::<Vec<_>>(),
    );
    assert_eq!(hall.push(), 8);
    assert_eq!(lobby.push(), 4);
    collector.wait("12 intervals in PostgreSQL", WAIT, || {
        pg_interval_count(&pg) == 12
    });

    let mut c = pg.client();
    assert_eq!(pg_counts(&mut c), (2, 12, 24, 0));
    // hall: sum over n of (3+n) + 2 = 8*3 + 28 + 16; lobby: 4 * 7.
    assert_eq!(
        pg_visits(&mut c),
        [("hall".into(), 68), ("lobby".into(), 28)]
    );
    let first_seen: i64 = c
        .query_one("SELECT first_seen FROM units WHERE unit_id = 'hall'", &[])
        .unwrap()
        .get(0);
    assert!((agecam_fleet::now() - first_seen).abs() < 120);

    // The page and its CSV show the same numbers as the database.
    let range = format!(
        "from={}&to={}",
        &agecam_fleet::schema::rfc3339(t0)[..10],
        &agecam_fleet::schema::rfc3339(t0 + 86_400)[..10]
    );
    let (status, html) = collector.get(&format!("/?{range}"));
    assert_eq!(status, 200, "{html}");
    assert_eq!(number_by_id(&html, "total-visits"), 96);
    assert!(html.contains("<svg"), "charts are inline SVG");
    assert!(html.contains("published"), "the page says what it sums");
    assert!(!html.contains("<script"), "no JavaScript");
    let (status, csv) = collector.get(&format!("/visits.csv?{range}"));
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    // watchers and attention_s empty: these units publish no attention.
    assert_eq!(
        lines[0],
        "day,25-34 female,65+ male,total,watchers,attention_s"
    );
    assert_eq!(
        lines[1],
        format!("{},52,16,68,,", &agecam_fleet::schema::rfc3339(t0)[..10])
    );
    assert_eq!(
        lines[2],
        format!(
            "{},4,24,28,,",
            &agecam_fleet::schema::rfc3339(t0 + 86_400)[..10]
        )
    );
    assert_eq!(lines.len(), 3);
    let (status, weekly) = collector.get(&format!("/?{range}&step=week"));
    assert_eq!((status, number_by_id(&weekly, "total-visits")), (200, 96));
    let (status, unit_html) = collector.get(&format!("/unit/lobby?{range}"));
    assert_eq!(status, 200);
    assert_eq!(number_by_id(&unit_html, "total-visits"), 28);
    let (status, csv) = collector.get(&format!("/visits.csv?{range}&unit=lobby"));
    assert_eq!(
        (status, csv.lines().nth(2).unwrap().ends_with(",28,,")),
        (200, true)
    );
    assert_eq!(collector.get("/unit/nobody").0, 404);
    assert_eq!(collector.get("/?from=yesterday").0, 400);
}

#[test]
fn the_collector_killed_mid_stream_and_restarted_loses_and_doubles_nothing() {
    let (Some(mosquitto), Some(pg_bin)) = (mosquitto(), postgres_bin()) else {
        return;
    };
    let broker = Broker::start(&mosquitto);
    let pg = Postgres::start(&pg_bin, false);
    let dir = shared_tempdir();
    let url = pg.url();
    let db = ["--database-url", url.as_str()];
    let collector = Collector::start(dir.path(), broker.port, "fleet-kill", &db);
    let t0 = day_start(1);
    let units: Vec<Unit> = (0..3)
        .map(|u| Unit::new(dir.path(), &format!("k{u}"), broker.port))
        .collect();
    // The units publish 3 × 60 intervals in small rounds, in a thread of their own.
    let publisher = std::thread::spawn(move || {
        for round in 0..20i64 {
            for (u, unit) in units.iter().enumerate() {
                let batch: Vec<_> = (0..3)
                    .map(|k| interval(&unit.id, t0 + (round * 3 + k) * 900, u as u32 + 1, 1))
                    .collect();
                unit.save(&batch);
                assert_eq!(unit.push(), 3);
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    });
    wait_until("some intervals stored", WAIT, || {
        pg_interval_count(&pg) >= 30
    });
    collector.kill();
    let at_kill = pg_interval_count(&pg);
    publisher.join().unwrap();
    assert!(at_kill < 180, "killed mid-stream ({at_kill} of 180 stored)");
    // Everything published while it was away waits in its broker session.
    let collector = Collector::start(dir.path(), broker.port, "fleet-kill", &db);
    collector.wait("all 180 intervals stored", WAIT, || {
        pg_interval_count(&pg) == 180
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut c = pg.client();
    assert_eq!(
        pg_counts(&mut c),
        (3, 180, 360, 0),
        "nothing lost, nothing doubled"
    );
    assert_eq!(
        pg_visits(&mut c),
        [("k0".into(), 120), ("k1".into(), 180), ("k2".into(), 240)]
    );
    assert!(
        collector.log_text().contains("session resumed"),
        "{}",
        collector.log_text()
    );
}

#[test]
fn while_the_database_is_away_messages_wait_in_the_broker_then_land() {
    let (Some(mosquitto), Some(pg_bin)) = (mosquitto(), postgres_bin()) else {
        return;
    };
    let broker = Broker::start(&mosquitto);
    let pg = Postgres::start(&pg_bin, false);
    let dir = shared_tempdir();
    let url = pg.url();
    let db = ["--database-url", url.as_str()];
    let mut collector = Collector::start(dir.path(), broker.port, "fleet-dbdown", &db);
    let t0 = day_start(1);
    let unit = Unit::new(dir.path(), "hall", broker.port);
    let batch = |from: i64, n: i64| -> Vec<_> {
        (from..from + n)
            .map(|k| interval("hall", t0 + k * 900, 5, 5))
            .collect()
    };
    unit.save(&batch(0, 10));
    assert_eq!(unit.push(), 10);
    wait_until("10 stored", WAIT, || pg_interval_count(&pg) == 10);

    // 1. The database goes away while the collector runs, and comes back.
    pg.down();
    unit.save(&batch(10, 10));
    assert_eq!(unit.push(), 10, "the broker takes them");
    std::thread::sleep(Duration::from_secs(3));
    assert!(collector.alive(), "the collector keeps running");
    assert!(
        collector.log_text().contains("messages wait in the broker"),
        "{}",
        collector.log_text()
    );
    pg.up();
    wait_until("20 stored after the database came back", WAIT, || {
        pg_interval_count(&pg) == 20
    });

    // 2. The database goes away, and the collector is killed before it comes back: the
    //    messages were never acknowledged, so the broker still has them for the next one.
    pg.down();
    unit.save(&batch(20, 10));
    assert_eq!(unit.push(), 10);
    std::thread::sleep(Duration::from_secs(2));
    collector.kill();
    pg.up();
    let collector = Collector::start(dir.path(), broker.port, "fleet-dbdown", &db);
    wait_until("30 stored after the restart", WAIT, || {
        pg_interval_count(&pg) == 30
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut c = pg.client();
    assert_eq!(pg_counts(&mut c), (1, 30, 60, 0));
    assert_eq!(pg_visits(&mut c), [("hall".into(), 300)]);
    drop(collector);
}

#[test]
fn malformed_and_hostile_messages_are_dropped_and_logged_once_and_the_collector_goes_on() {
    let Some(mosquitto) = mosquitto() else { return };
    let broker = Broker::start(&mosquitto);
    let dir = shared_tempdir();
    let sqlite = dir.path().join("fleet.sqlite");
    let sqlite_arg = sqlite.display().to_string();
    let mut collector = Collector::start(
        dir.path(),
        broker.port,
        "fleet-bad",
        &["--sqlite", &sqlite_arg],
    );
    let start = day_start(1);
    let good = agecam::stats::privacy::to_json(&agecam::stats::privacy::publish(
        &interval("hall", start, 5, 5),
        &PRIVACY,
    ));
    let topic = "agecam/hall/intervals";
    let mut deep = "[".repeat(200_000);
    deep.push_str(&"]".repeat(200_000));
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("huge", vec![b'{'; 1 << 20]),
        ("binary", (0..=255u8).cycle().take(5000).collect()),
        ("deeply nested", deep.into_bytes()),
        ("NaN", good.replace("900.0", "NaN").into_bytes()),
        (
            "negative",
            good.replace("\"visits\":5", "\"visits\":-5").into_bytes(),
        ),
        ("wrong type", good.replace("9000", "\"9000\"").into_bytes()),
        (
            "unknown field",
            good.replace("\"frames\"", "\"face_crop\":\"x\",\"frames\"")
                .into_bytes(),
        ),
        (
            "end<=start",
            good.replace(
                &format!("\"end\":{}", start + 900),
                &format!("\"end\":{start}"),
            )
            .into_bytes(),
        ),
        (
            "another unit's id",
            good.replace("hall@", "lobby@").into_bytes(),
        ),
    ];
    for (_, payload) in &bad {
        publish_raw(broker.port, "hostile", topic, payload);
    }
    // The same bad message many times is logged once (rate-limited).
    for _ in 0..30 {
        publish_raw(broker.port, "hostile", topic, b"not json");
    }
    // A payload whose unit differs from the topic's.
    publish_raw(
        broker.port,
        "hostile",
        "agecam/lobby/intervals",
        good.as_bytes(),
    );
    publish_raw(broker.port, "hall", topic, good.as_bytes());
    let count = || {
        rusqlite::Connection::open(&sqlite)
            .and_then(|c| c.query_row("SELECT count(*) FROM intervals", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(-1)
    };
    wait_until("the good message is stored", WAIT, || count() == 1);
    assert!(collector.alive());
    let (status, html) = collector.get("/");
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("{} rejected", bad.len() + 31)),
        "{html}"
    );
    let log = collector.log_text();
    let dropped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dropped a message"))
        .collect();
    let not_json = dropped.iter().filter(|l| l.contains(": not JSON:")).count();
    assert_eq!(
        not_json, 1,
        "32 messages that are not JSON, one log line:\n{log}"
    );
    assert!(
        dropped.len() <= 8,
        "40 bad messages, a line per kind:\n{log}"
    );
    for kind in [
        "too large",
        "not UTF-8",
        "not the interval schema",
        "bad interval times",
        "bad id",
        "unit_id does not match topic",
    ] {
        assert!(log.contains(kind), "{kind} logged:\n{log}");
    }
    assert!(!log.contains("panicked"), "{log}");
}

/// The text of the cell `class="{class}"` in the first row that has `marker`.
fn cell_text<'a>(html: &'a str, marker: &str, class: &str) -> &'a str {
    let row = &html[html
        .find(marker)
        .unwrap_or_else(|| panic!("no row {marker}"))..];
    let row = &row[..row.find("</tr>").unwrap()];
    let at = row
        .find(&format!("class=\"{class}\">"))
        .unwrap_or_else(|| panic!("no {class} in {row}"))
        + class.len()
        + 9;
    &row[at..at + row[at..].find('<').unwrap()]
}

/// Push schema 2 messages from two units and schema 1 from an older one
/// (fleet/tests/fixtures/attention.jsonl) through mosquitto into SQLite: the attention rate
/// per age bucket × gender counts only the visits whose attention is known and states the rest
/// beside it; watchers by hour of day; the CSV has the day's watchers and seconds; a unit with
/// schema 1 data only shows "no attention data yet".
#[test]
fn attention_of_schema_2_units_is_on_the_page_beside_the_unknown_of_older_ones() {
    let Some(mosquitto) = mosquitto() else { return };
    let broker = Broker::start(&mosquitto);
    let dir = shared_tempdir();
    let sqlite = dir.path().join("fleet.sqlite");
    let sqlite_arg = sqlite.display().to_string();
    let collector = Collector::start(
        dir.path(),
        broker.port,
        "fleet-attention",
        &["--sqlite", &sqlite_arg],
    );
    let fixture = include_str!("fixtures/attention.jsonl");
    let messages: Vec<(String, Vec<u8>)> = fixture
        .lines()
        .map(|line| {
            let unit = line.split("\"unit_id\":\"").nth(1).unwrap();
            let unit = &unit[..unit.find('"').unwrap()];
            (format!("agecam/{unit}/intervals"), line.as_bytes().to_vec())
        })
        .collect();
    assert_eq!(messages.len(), 4);
    publish_many(broker.port, "fixture", &messages);
    let stored = || {
        rusqlite::Connection::open(&sqlite)
            .and_then(|c| c.query_row("SELECT count(*) FROM intervals", [], |r| r.get(0)))
            .unwrap_or(0i64)
    };
    collector.wait("the fixture stored", WAIT, || stored() == 4);

    let (status, html) = collector.get("/?from=2026-11-23&to=2026-11-23");
    assert_eq!(status, 200, "{html}");
    assert_eq!(number_by_id(&html, "total-visits"), 52);
    assert!(!html.contains("id=\"attention-none\""));
    assert_eq!(number_by_id(&html, "attention-unknown"), 21);
    // (age gender, visits, known, watchers, rate, mean s per watcher, unknown)
    let expected = [
        (
            "data-cell=\"25-34 female\"",
            "29",
            "20",
            "9",
            "45.0%",
            "8.1",
            "9",
        ),
        (
            "data-cell=\"35-44 any\"",
            "13",
            "5",
            "2",
            "40.0%",
            "5.5",
            "8",
        ),
        (
            "data-cell=\"65+ male\"",
            "10",
            "6",
            "6",
            "100.0%",
            "15.0",
            "4",
        ),
        (
            "id=\"attention-total\"",
            "52",
            "31",
            "17",
            "54.8%",
            "10.2",
            "21",
        ),
    ];
    let table = &html[html.find("id=\"attention\"").expect("the attention table")..];
    for (row, visits, known, watchers, rate, mean, unknown) in expected {
        let shown: Vec<&str> = ["visits", "known", "watchers", "rate", "mean", "unknown"]
            .iter()
            .map(|class| cell_text(table, row, class))
            .collect();
        assert_eq!(
            shown,
            [visits, known, watchers, rate, mean, unknown],
            "{row}"
        );
    }
    assert!(html.contains("watchers by hour of day (UTC), by age"));
    assert_eq!(number_by_id(&html, "attention-hours-unknown"), 21);

    let (status, csv) = collector.get("/visits.csv?from=2026-11-23&to=2026-11-23");
    assert_eq!(status, 200);
    assert_eq!(
        csv,
        "day,25-34 female,35-44 any,65+ male,total,watchers,attention_s\n\
         2026-11-23,29,13,10,52,17,173.5\n"
    );

    // The older unit alone: nothing known, said so, and its visits counted as unknown.
    let (status, old) = collector.get("/unit/hall-old?from=2026-11-23&to=2026-11-23");
    assert_eq!(status, 200);
    assert!(old.contains("id=\"attention-none\""), "{old}");
    assert!(old.contains("No attention data yet"));
    assert_eq!(number_by_id(&old, "attention-unknown"), 13);
    assert!(!old.contains("id=\"attention\""));
    let (_, csv) = collector.get("/visits.csv?from=2026-11-23&to=2026-11-23&unit=hall-old");
    assert!(csv.ends_with(",13,,\n"), "{csv}");
}

#[test]
fn a_unit_nobody_configured_registers_with_its_first_message() {
    let Some(mosquitto) = mosquitto() else { return };
    let broker = Broker::start(&mosquitto);
    let dir = shared_tempdir();
    let sqlite = dir.path().join("fleet.sqlite");
    let sqlite_arg = sqlite.display().to_string();
    let collector = Collector::start(
        dir.path(),
        broker.port,
        "fleet-new",
        &["--sqlite", &sqlite_arg],
    );
    let newcomer = Unit::new(dir.path(), "newcomer-7", broker.port);
    newcomer.save(&[interval("newcomer-7", day_start(0), 2, 3)]);
    assert_eq!(newcomer.push(), 1);
    let units = || {
        rusqlite::Connection::open(&sqlite)
            .and_then(|c| {
                c.query_row("SELECT unit_id, first_seen FROM units", [], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
            })
            .ok()
    };
    wait_until("the unit is registered", WAIT, || units().is_some());
    let (id, first_seen) = units().unwrap();
    assert_eq!(id, "newcomer-7");
    assert!((agecam_fleet::now() - first_seen).abs() < 120);
    let (status, html) = collector.get("/unit/newcomer-7");
    assert_eq!(status, 200);
    assert_eq!(number_by_id(&html, "total-visits"), 5);
}

#[test]
fn a_resent_interval_with_different_counts_is_parked_logged_and_shown() {
    let (Some(mosquitto), Some(pg_bin)) = (mosquitto(), postgres_bin()) else {
        return;
    };
    let broker = Broker::start(&mosquitto);
    let pg = Postgres::start(&pg_bin, false);
    let dir = shared_tempdir();
    let url = pg.url();
    let collector = Collector::start(
        dir.path(),
        broker.port,
        "fleet-conflict",
        &["--database-url", &url],
    );
    let t = day_start(1);
    let unit = Unit::new(dir.path(), "hall", broker.port);
    unit.save(&[interval("hall", t, 5, 5)]);
    assert_eq!(unit.push(), 1);
    wait_until("stored", WAIT, || pg_interval_count(&pg) == 1);
    // An identical re-send (a lost PUBACK) changes nothing.
    let same = agecam::stats::privacy::to_json(&agecam::stats::privacy::publish(
        &interval("hall", t, 5, 5),
        &PRIVACY,
    ));
    publish_raw(
        broker.port,
        "agecam-hall",
        "agecam/hall/intervals",
        same.as_bytes(),
    );
    // A daemon restart completes the interval later: the unit merges it and sends it again,
    // with larger totals, under the same id.
    let mut rest = interval("hall", t, 2, 1);
    rest.uptime_s = 0.0;
    unit.save(&[rest]);
    assert_eq!(unit.push(), 1);
    let mut c = pg.client();
    wait_until("the conflict is parked", WAIT, || pg_counts(&mut c).3 == 1);
    assert_eq!(pg_counts(&mut c), (1, 1, 2, 1));
    assert_eq!(
        pg_visits(&mut c),
        [("hall".into(), 10)],
        "the first version counts"
    );
    let parked: i64 = c
        .query_one("SELECT visits FROM conflicts", &[])
        .unwrap()
        .get(0);
    assert_eq!(parked, 13);
    assert!(collector
        .log_text()
        .contains("came again with different content"));
    let (_, html) = collector.get("/");
    assert!(
        html.contains(&format!("hall@{t}</td><td>10</td><td>13</td><td>1</td>")),
        "{html}"
    );
    assert!(html.contains("1 duplicates"), "{html}");
}

#[test]
fn the_page_asks_for_the_token_or_password_and_refuses_to_listen_openly_without_one() {
    // No broker is needed: the collector serves its page while it retries the broker.
    let dir = shared_tempdir();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "pa55\n").unwrap();
    let sqlite = dir.path().join("fleet.sqlite").display().to_string();
    let nobody = free_port();
    let token_arg = token.display().to_string();
    let password_arg = password.display().to_string();
    let c = Collector::spawn(
        dir.path(),
        nobody,
        "fleet-auth",
        &[
            "--sqlite",
            &sqlite,
            "--auth-token-file",
            &token_arg,
            "--basic-auth-password-file",
            &password_arg,
        ],
    );
    let port = c.web_port;
    assert_eq!(http_get(port, "/").0, 401);
    assert_eq!(http_get(port, "/visits.csv").0, 401);
    assert_eq!(
        http_get_with(port, "/", &["Authorization: Bearer wrong"]).0,
        401
    );
    assert_eq!(
        http_get_with(port, "/", &["Authorization: Bearer t0ken"]).0,
        200
    );
    // fleet:pa55 and fleet:wrong, base64.
    assert_eq!(
        http_get_with(port, "/", &["Authorization: Basic ZmxlZXQ6cGE1NQ=="]).0,
        200
    );
    assert_eq!(
        http_get_with(port, "/", &["Authorization: Basic ZmxlZXQ6d3Jvbmc="]).0,
        401
    );
    assert_eq!(http_get(port, "/health").0, 200);
    drop(c);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agecam-fleet"))
        .args(["--listen", "0.0.0.0:0", "--sqlite", &sqlite])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("web.listen") && err.contains("auth_token_file"),
        "{err}"
    );
}
