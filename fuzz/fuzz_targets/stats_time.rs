//! The time range of `agecam stats export --since/--until`: a date or an RFC 3339 timestamp,
//! anything else an error that says what is expected, never a panic.
#![no_main]

use agecam::cli::stats::parse_time;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_time(text);
});
