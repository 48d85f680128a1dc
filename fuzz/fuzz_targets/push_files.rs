//! What the fleet push still parses itself (the MQTT protocol is rumqttc's): the password
//! file, the CA file and the topic built from the configuration. Every input gives a value or
//! an error naming the file, never a panic.
//!
//! Input layout: the first byte picks the part (0: password file, 1: CA PEM file, 2: topic),
//! the rest is that part's contents.
#![no_main]

use agecam::push::{ca_roots, check_topic, password_from_file};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&part, contents)) = data.split_first() else {
        return;
    };
    match part % 3 {
        0 => {
            if let Ok(password) = password_from_file(contents, Path::new("fuzz-password")) {
                // What is accepted is the non-empty first line, and text.
                assert!(!password.is_empty() && !password.contains(&b'\n'));
                assert!(std::str::from_utf8(&password).is_ok());
            }
        }
        1 => {
            let _ = ca_roots(contents, Path::new("fuzz-ca.pem"));
        }
        _ => {
            if let Ok(topic) = std::str::from_utf8(contents) {
                if check_topic(topic).is_ok() {
                    assert!(!topic.is_empty() && !topic.contains(['+', '#', '\0']));
                }
            }
        }
    }
});
