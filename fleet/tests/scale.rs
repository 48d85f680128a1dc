//! Measured ingest (ignored by default; `cargo test -p agecam-fleet --release --test scale --
//! --ignored --nocapture`): 1,000 simulated units each publish one day of 15-minute intervals
//! (96,000 messages) as agecam's export JSON, QoS 1 with rumqttc, through mosquitto
//! on 127.0.0.1 into PostgreSQL (fsync on). Prints messages per second stored and the row
//! counts, and checks that every message was stored exactly once. Bounded: 96,000 messages,
//! at most 20 minutes, loopback only. SCALE_UNITS=N runs a smaller fleet.

mod common;

use agecam::stats::privacy::{publish, to_json};
use common::*;
use std::time::{Duration, Instant};

#[test]
#[ignore = "a load test: about 96,000 messages; run it on purpose"]
fn a_thousand_units_publish_a_day_each_and_every_message_is_stored_once() {
    let (Some(mosquitto), Some(pg_bin)) = (mosquitto(), postgres_bin()) else {
        return;
    };
    let units: i64 = std::env::var("SCALE_UNITS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let per_unit = 96i64;
    let expected = units * per_unit;
    let broker = Broker::start(&mosquitto);
    let pg = Postgres::start(&pg_bin, true);
    let dir = shared_tempdir();
    let url = pg.url();
    let collector = Collector::start(
        dir.path(),
        broker.port,
        "fleet-scale",
        &["--database-url", &url],
    );
    let day = day_start(1);
    let port = broker.port;
    let started = Instant::now();
    // Four publishing threads, each a quarter of the fleet, one connection per unit; a unit's
    // day goes out pipelined and the thread waits for every PUBACK before the next unit.
    let publishers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for u in (t..units).step_by(4) {
                    let unit = format!("unit-{u:04}");
                    let topic = format!("agecam/{unit}/intervals");
                    let messages: Vec<(String, Vec<u8>)> = (0..per_unit)
                        .map(|k| {
                            let i =
                                interval(&unit, day + k * 900, 1 + (k % 7) as u32, (u % 5) as u32);
                            (topic.clone(), to_json(&publish(&i, &PRIVACY)).into_bytes())
                        })
                        .collect();
                    publish_many(port, &format!("agecam-{unit}"), &messages);
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    let published_s = started.elapsed().as_secs_f64();
    let mut c = pg.client();
    let limit = Duration::from_secs(20 * 60);
    let mut last = (Instant::now(), 0);
    while pg_counts(&mut c).1 < expected {
        assert!(started.elapsed() < limit, "not all stored within {limit:?}");
        let n = pg_counts(&mut c).1;
        if n != last.1 {
            last = (Instant::now(), n);
        }
        assert!(
            last.0.elapsed() < Duration::from_secs(60),
            "ingest stalled at {n}: {}\nbroker: {}",
            collector.log_text(),
            broker.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stored_s = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let (u, i, cells, conflicts) = pg_counts(&mut c);
    let distinct: i64 = c
        .query_one("SELECT count(DISTINCT id) FROM intervals", &[])
        .unwrap()
        .get(0);
    let size: i64 = c
        .query_one("SELECT pg_database_size(current_database())", &[])
        .unwrap()
        .get(0);
    // Each unit u publishes visits (1 + k % 7) + (u % 5) per interval k.
    let want_visits: i64 = (0..units)
        .map(|u| (0..per_unit).map(|k| 1 + k % 7 + u % 5).sum::<i64>())
        .sum();
    let visits: i64 = c
        .query_one("SELECT sum(visits)::bigint FROM cells", &[])
        .unwrap()
        .get(0);
    let (_, html) = collector.get("/");
    let footer = html
        .rfind("collector:")
        .map(|a| html[a..].split('<').next().unwrap_or("").to_string())
        .unwrap_or_default();
    println!(
        "scale: {units} units x {per_unit} intervals = {expected} messages; published in {published_s:.1} s \
         ({:.0} msg/s); all stored after {stored_s:.1} s ({:.0} msg/s stored, end to end)",
        expected as f64 / published_s,
        expected as f64 / stored_s
    );
    println!(
        "scale: rows: units {u}, intervals {i} (distinct ids {distinct}), cells {cells}, conflicts {conflicts}; \
         visits {visits} (expected {want_visits}); database {:.1} MiB; {footer}",
        size as f64 / 1048576.0
    );
    assert_eq!(
        (u, i, distinct, conflicts),
        (units, expected, expected, 0),
        "every message stored exactly once"
    );
    assert_eq!(visits, want_visits);
    // interval() publishes a cell only where visits > 0 (the unit's k-anonymity with k = 1
    // drops empty cells): the female cell always, the male one when u % 5 > 0.
    let want_cells: i64 = (0..units)
        .map(|u| per_unit * if u % 5 > 0 { 2 } else { 1 })
        .sum();
    assert_eq!(cells, want_cells);
}
