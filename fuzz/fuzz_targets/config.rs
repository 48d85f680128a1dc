//! The daemon's configuration file: any text must parse to a validated config or give an
//! error naming the key, never panic (line numbers come from parser spans into the text).
#![no_main]

use agecam::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // `Config::load` reads the file as UTF-8 first; other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(text, Path::new("/etc/agecam/agecam.toml")) {
        let _ = e.to_string();
    }
});
