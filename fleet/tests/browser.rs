//! The page in a real browser: three agecam units push a week of intervals through mosquitto
//! into PostgreSQL; headless Chromium loads the collector's page from 127.0.0.1, takes a
//! screenshot, and the numbers in its DOM must equal the database's. One unit stopped
//! reporting 5 hours ago (or earlier) and must stand out in red. With AGECAM_FLEET_SCREENSHOT=FILE the
//! screenshot is also copied there (that is how fleet/screenshot.png was made).

mod common;

use agecam::stats::aggregate::IntervalStats;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A busy-looking interval: visits in every age bucket, varying by a simple hash, with their
/// watchers and attention.
fn rich(unit: &str, start: i64, scale: u32) -> IntervalStats {
    let mut i = IntervalStats {
        unit_id: unit.into(),
        start,
        length_s: 900,
        uptime_s: 900.0,
        frames: 27_000,
        camera_faults: (start / 900 % 17 == 0) as u64,
        dwell_max_s: 30.0,
        ..Default::default()
    };
    let buckets = ["13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"];
    let mut h = (start as u64 / 900).wrapping_mul(2_654_435_761) ^ unit.len() as u64;
    let mut total = 0;
    for (n, b) in buckets.iter().enumerate() {
        for g in ["female", "male"] {
            h = h
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let base = [2, 5, 9, 8, 6, 4, 3][n];
            let v = (base + (h >> 33) as u32 % 5) * scale / 2;
            i.cells.insert((b.to_string(), g.to_string()), v);
            // A quarter to two thirds of them looked at the screen, 2–6 s each.
            let watchers = v * (25 + (h >> 40) as u32 % 42) / 100;
            i.attention.insert(
                (b.to_string(), g.to_string()),
                agecam::stats::aggregate::CellAttention {
                    posed: v,
                    watchers,
                    attention_s: watchers as f64 * (2.0 + (h >> 50) as f64 % 5.0)
                        + 0.3 * (v - watchers) as f64,
                },
            );
            total += v;
        }
    }
    i.dwell_total_s = 8.5 * total as f64;
    i
}

/// Every half hour from 08:00 to 19:30 UTC on the day starting at `day`, not after `until`.
fn day_of(unit: &str, day: i64, until: i64, scale: u32) -> Vec<IntervalStats> {
    (16..40)
        .map(|h| day + h * 1800)
        .filter(|&s| s + 900 <= until)
        .map(|s| rich(unit, s, scale))
        .collect()
}

fn chromium_run(chromium: &std::path::Path, profile: &std::path::Path, args: &[&str]) -> String {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The number in the first element with `class="{class}"` inside the row `data-unit="{unit}"`.
fn unit_cell(dom: &str, unit: &str, class: &str) -> i64 {
    let row = &dom[dom
        .find(&format!("data-unit=\"{unit}\""))
        .unwrap_or_else(|| panic!("row {unit}"))..];
    let row = &row[..row.find("</tr>").unwrap()];
    let at = row.find(&format!("class=\"{class}\">")).unwrap() + class.len() + 9;
    row[at..at + row[at..].find('<').unwrap()].parse().unwrap()
}

#[test]
fn the_page_in_chromium_shows_exactly_the_database_numbers() {
    let (Some(mosquitto), Some(pg_bin), Some(chromium)) = (mosquitto(), postgres_bin(), chromium())
    else {
        return;
    };
    let broker = Broker::start(&mosquitto);
    let pg = Postgres::start(&pg_bin, false);
    let dir = shared_tempdir();
    let url = pg.url();
    let collector = Collector::start(
        dir.path(),
        broker.port,
        "fleet-browser",
        &["--database-url", &url],
    );
    let now = agecam_fleet::now();
    let today = day_start(0);
    let slot = now - now.rem_euclid(900);
    let hall = Unit::new(dir.path(), "hall", broker.port);
    let mut lobby = Unit::new(dir.path(), "lobby", broker.port);
    lobby.settings.privacy.k = 5; // small buckets withheld, as on a real unit
    let foyer = Unit::new(dir.path(), "foyer", broker.port);
    let mut sent = 0;
    for days_ago in (0..7).rev() {
        let day = today - days_ago * 86_400;
        // Up to the quarter hour before the last one, which is added below (once).
        hall.save(&day_of("hall", day, slot - 900, 2));
        lobby.save(&day_of("lobby", day, slot - 5 * 3600, 1));
        if days_ago < 4 {
            foyer.save(&day_of("foyer", day, slot - 900, 3));
        }
    }
    // The units that are still running also report the quarter hour that just ended.
    hall.save(&[rich("hall", slot - 900, 2)]);
    foyer.save(&[rich("foyer", slot - 900, 3)]);
    for u in [&hall, &lobby, &foyer] {
        sent += u.push() as i64;
    }
    let mut c = pg.client();
    collector.wait("every interval stored", Duration::from_secs(60), || {
        pg_counts(&mut c).1 == sent
    });

    let from = &agecam_fleet::schema::rfc3339(today - 6 * 86_400)[..10];
    let to = &agecam_fleet::schema::rfc3339(today)[..10];
    let page = format!(
        "http://127.0.0.1:{}/?from={from}&to={to}&step=day",
        collector.web_port
    );
    let shot = dir.path().join("screenshot.png");
    let profile = tempfile::tempdir().unwrap();
    chromium_run(
        &chromium,
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1800",
            &page,
        ],
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    if let Some(keep) = std::env::var_os("AGECAM_FLEET_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium_run(&chromium, profile.path(), &["--dump-dom", &page]);
    assert!(dom.contains("<svg"), "charts rendered");

    // The numbers in the browser's DOM are the database's.
    let (from_s, to_s) = (today - 6 * 86_400, today + 86_400);
    let total: i64 = c
        .query_one(
            "SELECT coalesce(sum(visits), 0)::bigint FROM cells WHERE start_s >= $1 AND start_s < $2",
            &[&from_s, &to_s],
        )
        .unwrap()
        .get(0);
    let at = dom.find("id=\"total-visits\">").unwrap() + 18;
    let shown: i64 = dom[at..at + dom[at..].find('<').unwrap()].parse().unwrap();
    assert!(total > 1000, "a real week of data: {total}");
    assert_eq!(shown, total, "total visits");
    for unit in ["foyer", "hall", "lobby"] {
        let r = c
            .query_one(
                "SELECT coalesce(sum(visits), 0)::bigint, coalesce(sum(camera_faults), 0)::bigint
                 FROM intervals WHERE unit_id = $1 AND start_s >= $2 AND start_s < $3",
                &[&unit, &from_s, &to_s],
            )
            .unwrap();
        let (visits, faults): (i64, i64) = (r.get(0), r.get(1));
        assert_eq!(unit_cell(&dom, unit, "visits"), visits, "{unit} visits");
        assert_eq!(
            unit_cell(&dom, unit, "faults"),
            faults,
            "{unit} camera faults"
        );
    }
    // Per day: each row's total is the database's sum for that day.
    for d in 0..7 {
        let day = today - d * 86_400;
        let sum: i64 = c
            .query_one(
                "SELECT coalesce(sum(visits), 0)::bigint FROM cells WHERE start_s >= $1 AND start_s < $2",
                &[&day, &(day + 86_400)],
            )
            .unwrap()
            .get(0);
        let row = &dom[dom
            .find(&format!(
                "data-period=\"{}\"",
                &agecam_fleet::schema::rfc3339(day)[..10]
            ))
            .unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        let at = row.find("class=\"total\">").unwrap() + 14;
        assert_eq!(
            row[at..at + row[at..].find('<').unwrap()]
                .parse::<i64>()
                .unwrap(),
            sum
        );
    }
    // The unit that stopped reporting stands out; the others do not.
    let lobby_row = &dom[dom.find("data-unit=\"lobby\"").unwrap()..];
    assert!(lobby_row[..lobby_row.find("</tr>").unwrap()].contains("stale"));
    assert!(lobby_row.contains("last seen "), "{}", &lobby_row[..600]);
    let hall_row = &dom[dom.find("data-unit=\"hall\"").unwrap()..];
    assert!(!hall_row[..hall_row.find("</tr>").unwrap()].contains("stale"));
    // The withheld buckets are counted and said to be in no total.
    let withheld: i64 = c
        .query_one("SELECT coalesce(sum(suppressed_cells), 0)::bigint FROM intervals WHERE start_s >= $1 AND start_s < $2", &[&from_s, &to_s])
        .unwrap()
        .get(0);
    assert!(dom.contains(&format!("<span id=\"suppressed\">{withheld}</span>")));
    // The attention section is there, and its count of visits with unknown attention (units
    // without attention, withheld splits) is the database's.
    let unknown: i64 = c
        .query_one(
            "SELECT coalesce(sum(visits), 0)::bigint FROM cells
             WHERE watchers IS NULL AND start_s >= $1 AND start_s < $2",
            &[&from_s, &to_s],
        )
        .unwrap()
        .get(0);
    assert!(dom.contains("<h2>Attention</h2>"));
    let at = dom.find("id=\"attention-unknown\">").unwrap() + 23;
    let shown: i64 = dom[at..at + dom[at..].find('<').unwrap()].parse().unwrap();
    assert_eq!(shown, unknown, "visits with unknown attention");
}
