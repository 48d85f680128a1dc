//! The statistics store survives `kill -9` at any moment: committed intervals are always whole
//! and never lost, and the database always passes SQLite's integrity check.

use agecam::stats::store::Store;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn writer_exe() -> std::path::PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/examples/stats_writer
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    deps.parent().unwrap().join("examples").join("stats_writer")
}

#[test]
fn kill_minus_nine_in_a_loop_never_loses_or_tears_a_committed_interval() {
    let exe = writer_exe();
    assert!(
        exe.is_file(),
        "{} missing: `cargo test` builds the examples",
        exe.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agecam-stats.sqlite");
    let mut committed_before = 0usize;
    // A small deterministic generator for the kill moments (no RNG crate needed).
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..25 {
        let mut child = Command::new(&exe)
            .arg(&db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for the first commit so every round writes something, then kill at a random
        // moment 0-30 ms later: mid-transaction, mid-checkpoint, wherever it is.
        let first = lines.next().expect("writer output").unwrap();
        let last_reported: i64 = first.parse().unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 30_000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = Store::open(&db).unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok", "round {round}");
        let intervals = store.load(i64::MIN, i64::MAX).unwrap();
        assert!(
            intervals.len() >= committed_before,
            "round {round}: committed intervals were lost"
        );
        assert!(
            intervals.len() as i64 > last_reported,
            "round {round}: an interval reported as committed is missing"
        );
        for (i, interval) in intervals.iter().enumerate() {
            let n = i as i64;
            assert_eq!(
                interval.start,
                n * 60,
                "round {round}: intervals are contiguous"
            );
            assert_eq!(
                interval.frames, n as u64,
                "round {round}: interval {n} is whole"
            );
            assert_eq!(
                interval.cells[&("25-34".to_string(), "female".to_string())],
                (n % 7) as u32 + 1
            );
            assert_eq!(
                interval.cells[&("65+".to_string(), "male".to_string())],
                1,
                "no double counting"
            );
        }
        committed_before = intervals.len();
    }
    assert!(
        committed_before > 25,
        "the writers made progress: {committed_before}"
    );
    let started = Instant::now();
    drop(Store::open(&db).unwrap());
    assert!(started.elapsed() < Duration::from_secs(5));
}
