//! One MQTT message as the fleet collector receives it (topic and payload), through the very
//! check its writer thread runs on every incoming PUBLISH (`agecam_fleet::schema::parse`,
//! called from `fleet/src/ingest.rs`), then through what it does with the result: the log
//! line of a rejection, or the canonical form and digest of an accepted interval.
//!
//! Any input must be accepted or rejected, never panic; and what is accepted must be what the
//! collector may store: the unit of the topic, an id `unit@start`, a sane time span, sorted
//! distinct cells with watchers ≤ visits, and a canonical form that, sent again as a message,
//! reads back as the same interval (so a re-delivery is a duplicate, never a conflict).
//!
//! Input layout: the topic up to the first newline (as UTF-8, lossily, as rumqttc hands it
//! over), the payload after it; without a newline the topic is `agecam/hall/intervals` and
//! the whole input is the payload.
#![no_main]

use agecam_fleet::schema::{parse, rfc3339, unit_of_topic, MAX_INTERVAL_S, MAX_PAYLOAD};
use agecam_fleet::store::digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (
            String::from_utf8_lossy(&data[..at]).into_owned(),
            &data[at + 1..],
        ),
        None => ("agecam/hall/intervals".to_string(), data),
    };
    let interval = match parse(&topic, payload) {
        Ok(interval) => interval,
        Err(r) => {
            // The writer's log line for a dropped message.
            let line = format!(
                "dropped a message on {:.120?} ({} bytes): {r}",
                topic,
                payload.len()
            );
            assert!(!r.kind.is_empty() && !line.is_empty());
            return;
        }
    };
    assert!(payload.len() <= MAX_PAYLOAD);
    let unit = unit_of_topic(&topic).expect("accepted on a topic that names no unit");
    assert_eq!(
        interval.unit_id, unit,
        "stored under another unit than the topic's"
    );
    assert_eq!(
        interval.id,
        format!("{}@{}", interval.unit_id, interval.start)
    );
    assert!(interval.start >= 0 && interval.end > interval.start);
    assert!(interval.end - interval.start <= MAX_INTERVAL_S);
    assert!(interval.uptime_s.is_finite() && interval.uptime_s >= 0.0);
    for pair in interval.cells.windows(2) {
        assert!(
            (&pair[0].age_bucket, &pair[0].gender) < (&pair[1].age_bucket, &pair[1].gender),
            "cells not sorted or not distinct"
        );
    }
    for cell in &interval.cells {
        assert_eq!(cell.watchers.is_some(), cell.attention_s.is_some());
        if let (Some(w), Some(s)) = (cell.watchers, cell.attention_s) {
            assert!(w <= cell.visits && s.is_finite() && s >= 0.0);
        }
    }

    // What the collector stores beside the interval, and compares re-sends by.
    let canonical = interval.canonical();
    assert_eq!(digest(&canonical).len(), 32);

    // The canonical form is the message minus its two derived times (and, in schema 2, minus
    // withheld attention keys): put them back and it must read back as the same interval.
    let mut again: serde_json::Value =
        serde_json::from_str(&canonical).expect("the canonical form is JSON");
    let object = again
        .as_object_mut()
        .expect("the canonical form is an object");
    object.insert("start_time".into(), rfc3339(interval.start).into());
    object.insert("end_time".into(), rfc3339(interval.end).into());
    if interval.schema >= 2 {
        for cell in object["cells"].as_array_mut().expect("cells").iter_mut() {
            let cell = cell.as_object_mut().expect("a cell is an object");
            cell.entry("watchers").or_insert(serde_json::Value::Null);
            cell.entry("attention_s").or_insert(serde_json::Value::Null);
        }
    }
    let resent = serde_json::to_vec(&again).expect("serialises");
    let reread =
        parse(&topic, &resent).expect("the canonical form of an accepted message is refused");
    assert_eq!(reread, interval, "a re-delivery would read differently");
    assert_eq!(
        reread.canonical(),
        canonical,
        "a re-delivery would be a conflict"
    );
});
