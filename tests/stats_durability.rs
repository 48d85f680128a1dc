//! The statistics store survives `kill -9` at any moment: committed intervals are always whole
//! and never lost, and the database always passes SQLite's integrity check.

use agecam::stats::store::Store;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An example program built beside this test, checked to exist.
fn example_exe(name: &str) -> std::path::PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/examples/<name>
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let exe = deps.parent().unwrap().join("examples").join(name);
    assert!(
        exe.is_file(),
        "{} missing: `cargo test` builds the test helpers (tests/helpers/, declared as examples)",
        exe.display()
    );
    exe
}

#[test]
fn kill_minus_nine_in_a_loop_never_loses_or_tears_a_committed_interval() {
    let exe = example_exe("stats_writer");
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

/// Sends one command to the recorder process and reads its `pending P saved S` answer.
fn ask(
    child: &mut std::process::Child,
    lines: &mut std::io::Lines<BufReader<std::process::ChildStdout>>,
    command: &str,
) -> (u64, u64) {
    use std::io::Write;
    writeln!(child.stdin.as_mut().unwrap(), "{command}").unwrap();
    let answer = lines.next().expect("recorder answers").unwrap();
    let words: Vec<&str> = answer.split_whitespace().collect();
    (words[1].parse().unwrap(), words[3].parse().unwrap())
}

/// Caps (or with `None` lifts) the size any file of process `pid` may grow to.
fn cap_file_size(pid: u32, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain system call on a child we own, with valid pointers.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// The disk fills up while the daemon runs (simulated by capping the recorder process's file
/// size, which works for root and non-root alike, unlike a read-only folder): finished
/// intervals wait in memory, nothing committed is lost or torn, and when space comes back the
/// waiting intervals are written, so the stored counts are exact.
#[test]
fn a_full_disk_mid_run_keeps_intervals_in_memory_and_writes_them_when_space_returns() {
    let exe = example_exe("stats_disk_full");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agecam-stats.sqlite");
    let mut child = Command::new(&exe)
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let pid = child.id();

    let (pending, saved) = ask(&mut child, &mut lines, "minutes 3");
    assert_eq!((pending, saved), (0, 2), "two minutes finished and stored");

    // The disk is full: no file may grow. The cap is the main file's size, the smallest: a
    // cap at the WAL's size alone is not a full disk, since closing the failed connection
    // checkpoints the WAL into the (small) main file and starts a new, empty WAL.
    let main = std::fs::metadata(&db).unwrap().len();
    assert!(main > 0);
    cap_file_size(pid, Some(main));
    let (pending, saved) = ask(&mut child, &mut lines, "minutes 5");
    assert_eq!(saved, 2, "nothing could be written");
    assert_eq!(pending, 5, "five finished minutes wait in memory");
    {
        let store = Store::open(&db).unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        assert_eq!(
            store.load(i64::MIN, i64::MAX).unwrap().len(),
            2,
            "committed ones intact"
        );
    }

    // Space is freed: the next finished interval brings every waiting one with it.
    cap_file_size(pid, None);
    let (pending, saved) = ask(&mut child, &mut lines, "minutes 1");
    assert_eq!((pending, saved), (0, 8));
    let (pending, _) = ask(&mut child, &mut lines, "finish");
    assert_eq!(pending, 0);
    assert!(child.wait().unwrap().success());

    let store = Store::open(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let intervals = store.load(i64::MIN, i64::MAX).unwrap();
    let full: Vec<_> = intervals.iter().filter(|i| i.frames > 0).collect();
    assert_eq!(full.len(), 9, "nine simulated minutes");
    for (n, interval) in full.iter().enumerate() {
        assert_eq!(interval.frames, 600, "minute {n}: every frame counted once");
        assert_eq!(
            interval
                .cells
                .get(&("25-34".to_string(), "female".to_string())),
            Some(&1),
            "minute {n}: one visit"
        );
    }
}
