//! Replies from the MQTT broker (network input): a byte stream read packet by packet must give
//! packets or a protocol error, never a panic or an allocation the length field asks for.
#![no_main]

use agecam::push::mqtt::{parse, read_packet};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let mut stream = Cursor::new(data);
    // The client reads until an error; each successful read consumes at least two bytes.
    while read_packet(&mut stream, Duration::from_secs(5), "fuzzing").is_ok() {}
    if let [first, body @ ..] = data {
        let _ = parse(*first, body);
    }
});
