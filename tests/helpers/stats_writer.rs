//! Writes synthetic statistics intervals to a store as fast as it can, forever: the victim of
//! the kill -9 test in `tests/stats_durability.rs`. Interval n starts at n×60 s and holds
//! `frames = n` and one cell with `(n % 7) + 1` visits, so a reader can check every stored
//! interval is whole. It resumes after the last interval already stored.

use agecam::stats::aggregate::IntervalStats;
use agecam::stats::store::Store;
use std::io::Write;

fn main() {
    let path = std::env::args().nth(1).expect("usage: stats_writer DB");
    let mut store = Store::open(std::path::Path::new(&path)).expect("open store");
    let stored = store.load(i64::MIN, i64::MAX).expect("load");
    let mut n = stored.last().map(|i| i.start / 60 + 1).unwrap_or(0);
    loop {
        let mut interval = IntervalStats {
            unit_id: "durability".into(),
            start: n * 60,
            length_s: 60,
            uptime_s: 60.0,
            frames: n as u64,
            dwell_total_s: n as f64,
            dwell_max_s: 1.0,
            ..Default::default()
        };
        interval
            .cells
            .insert(("25-34".into(), "female".into()), (n % 7) as u32 + 1);
        interval.cells.insert(("65+".into(), "male".into()), 1);
        store.save(&interval).expect("save");
        println!("{n}");
        std::io::stdout().flush().ok();
        n += 1;
    }
}
