//! agecam-fleet: the fleet collector. Receives the intervals agecam units push over MQTT,
//! validates and stores them idempotently (PostgreSQL, or embedded SQLite), and serves a page
//! of the fleet's published statistics. Runs on an office server or a VM, never on a kiosk.
//!
//! This file is the top of the crate: it only declares the modules and re-exports the two
//! things a caller starts with. The modules, from the bottom up (each uses only lower ones):
//! [`clock`], [`schema`], [`chart`] → [`store`] → [`config`], [`report`] → [`ingest`] →
//! [`page`] → [`web`] → [`collector`] (→ the `agecam-fleet` binary).
//!
//! # Example
//!
//! One message as a unit publishes it, checked by the schema, stored in an SQLite file, and
//! read back as the page would:
//!
//! ```
//! use agecam_fleet::schema;
//! use agecam_fleet::store::{Database, Outcome, Range, Step};
//!
//! let message = r#"{"id":"hall@1795392000","unit_id":"hall","start":1795392000,"end":1795392900,
//!     "uptime_s":900.0,"frames":27000,"camera_faults":0,
//!     "cells":[{"age_bucket":"25-34","gender":"male","visits":5},
//!              {"age_bucket":"25-34","gender":"female","visits":6}],
//!     "suppressed_cells":1,"dwell_mean_s":7.5,
//!     "start_time":"2026-11-23T00:00:00Z","end_time":"2026-11-23T00:15:00Z"}"#;
//! let interval = schema::parse("agecam/hall/intervals", message.as_bytes())?;
//! assert_eq!(interval.visits(), 11);
//!
//! let dir = tempfile::tempdir()?;
//! let mut store = Database::Sqlite(dir.path().join("fleet.sqlite")).open()?;
//! let received = agecam_fleet::now();
//! assert_eq!(store.record(&[(interval.clone(), received)])?, [Outcome::Stored]);
//! // The same message again (a lost acknowledgement) changes nothing.
//! assert_eq!(store.record(&[(interval, received)])?, [Outcome::Duplicate]);
//!
//! let day = Range { from: 1_795_392_000, to: 1_795_392_000 + 86_400 };
//! let rows = store.series(Some("hall"), day, Step::Day)?;
//! let visits: Vec<(&str, &str, i64)> = rows
//!     .iter()
//!     .map(|r| (r.age_bucket.as_str(), r.gender.as_str(), r.visits))
//!     .collect();
//! assert_eq!(visits, [("25-34", "female", 6), ("25-34", "male", 5)]);
//! assert_eq!(store.counts()?.units, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod chart;
pub mod clock;
pub mod collector;
pub mod config;
pub mod ingest;
pub mod page;
pub mod report;
pub mod schema;
pub mod store;
pub mod web;

pub use clock::now;
pub use collector::run;
