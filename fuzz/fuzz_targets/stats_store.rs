//! The statistics database read back from disk after a power cut or a bad card: any file must
//! open (a corrupt one is moved aside and a new one started) or give an error, and what loads
//! must export, never panic.
#![no_main]

use agecam::stats::store::Store;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A private folder per process; emptied after each input so moved-aside files do not pile up.
fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("agecam-fuzz-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create a folder in the temp folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = folder();
    let db = dir.join("stats.db");
    std::fs::write(&db, data).expect("cannot write the database file");
    if let Ok(store) = Store::open(&db) {
        if let Ok(intervals) = store.load(i64::MIN, i64::MAX) {
            for interval in &intervals {
                let published = agecam::stats::privacy::publish(interval, &Default::default());
                let _ = agecam::stats::privacy::to_json(&published);
            }
        }
        let _ = store.unsent(100);
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
});
