//! Dataset labels: a UTKFace file name and a Kaggle `train.csv`. Every name or row must give
//! labels in range or a reason, never a panic.
#![no_main]

use agecam_host::dataset::{parse_kaggle_csv, parse_utkface_name, GroupLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((age, ..)) = parse_utkface_name(text, &GroupLimits::default()) {
        assert!((1..=116).contains(&age));
    }
    if let Ok(rows) = parse_kaggle_csv(text) {
        for row in rows {
            assert!(row.line >= 2, "data rows start after the header");
            assert!(row.group.is_err() || row.id.is_some());
        }
    }
});
