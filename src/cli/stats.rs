//! `stats export`: the stored intervals, k-anonymous, as CSV or JSON lines.

use crate::stats::privacy::{publish, rfc3339, to_json, PrivacySettings, PublishedInterval};
use crate::stats::store::Store;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One row per published cell (age bucket × gender) of each interval.
    Csv,
    /// One JSON object per interval, one per line.
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum StatsCommand {
    /// Print the stored intervals with k-anonymity (and noise, if configured) applied.
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Only intervals starting at or after this time (RFC 3339 such as
        /// 2026-11-23T08:00:00Z, or a date such as 2026-11-23, UTC).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only intervals starting before this time (same forms as --since).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// The database file [default: stats.dir/agecam-stats.sqlite from the config].
        #[arg(long, value_name = "FILE", conflicts_with = "demo")]
        db: Option<PathBuf>,
        /// The statistics `run --demo` stored in DIR [default: agecam-demo], published as the
        /// demo publishes them (k = 1).
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "agecam-demo")]
        demo: Option<PathBuf>,
    },
}

/// Parses `2026-11-23T08:00:00Z` or `2026-11-23` (midnight UTC) into Unix seconds.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_second());
    }
    let date: jiff::civil::Date = text.parse().with_context(|| {
        format!(
            "`{text}` is not a time: use RFC 3339 (2026-11-23T08:00:00Z) or a date (2026-11-23)"
        )
    })?;
    Ok(date
        .to_zoned(jiff::tz::TimeZone::UTC)?
        .timestamp()
        .as_second())
}

/// Writes every interval in [since, until) from `database`.
pub fn export(
    database: &Path,
    since: i64,
    until: i64,
    format: ExportFormat,
    privacy: &PrivacySettings,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    anyhow::ensure!(
        database.is_file(),
        "statistics store {} does not exist yet; it is created when the daemon first runs (see stats.dir)",
        database.display()
    );
    let store = Store::open(database)?;
    let intervals = store.load(since, until)?;
    if format == ExportFormat::Csv {
        writeln!(out, "interval_id,start,end,uptime_s,frames,camera_faults,suppressed_cells,age_bucket,gender,visits,watchers,attention_s")?;
    }
    for interval in &intervals {
        let published = publish(interval, privacy);
        match format {
            ExportFormat::Json => {
                writeln!(out, "{}", to_json(&published))?;
            }
            ExportFormat::Csv => write_csv(out, &published)?,
        }
    }
    Ok(intervals.len())
}

fn write_csv(out: &mut dyn Write, p: &PublishedInterval) -> std::io::Result<()> {
    let head = format!(
        "{},{},{},{},{},{},{}",
        p.id,
        rfc3339(p.start),
        rfc3339(p.end),
        p.uptime_s,
        p.frames,
        p.camera_faults,
        p.suppressed_cells
    );
    if p.cells.is_empty() {
        // The interval still gets a row, so "nobody came" differs from "not running".
        return writeln!(out, "{head},,,0,0,0");
    }
    // An empty field: withheld (k-anonymity) or unknown (no pose).
    let blank = |v: Option<String>| v.unwrap_or_default();
    for cell in &p.cells {
        writeln!(
            out,
            "{head},{},{},{},{},{}",
            cell.age_bucket,
            cell.gender,
            cell.visits,
            blank(cell.watchers.map(|w| w.to_string())),
            blank(cell.attention_s.map(|a| a.to_string()))
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::aggregate::IntervalStats;

    #[test]
    fn times_parse_in_both_forms_and_nonsense_is_explained() {
        assert_eq!(
            parse_time("2026-11-23T08:00:00Z").unwrap(),
            1_795_392_000 + 8 * 3600
        );
        assert_eq!(parse_time("2026-11-23").unwrap(), 1_795_392_000);
        let err = parse_time("yesterday").unwrap_err().to_string();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn csv_and_json_exports_of_a_stored_interval() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.sqlite");
        let mut store = Store::open(&db).unwrap();
        let mut interval = IntervalStats {
            unit_id: "hall".into(),
            start: 1_795_392_000,
            length_s: 900,
            uptime_s: 900.0,
            frames: 27000,
            dwell_total_s: 90.0,
            ..Default::default()
        };
        interval.cells.insert(("25-34".into(), "female".into()), 6);
        interval.cells.insert(("25-34".into(), "male".into()), 5);
        interval.cells.insert(("65+".into(), "male".into()), 1);
        // Everyone in the female cell looked; the male cell's faces had no landmarks.
        interval.attention.insert(
            ("25-34".into(), "female".into()),
            crate::stats::aggregate::CellAttention {
                posed: 6,
                watchers: 6,
                attention_s: 14.5,
            },
        );
        store.save(&interval).unwrap();
        let empty = IntervalStats {
            unit_id: "hall".into(),
            start: 1_795_392_900,
            length_s: 900,
            uptime_s: 900.0,
            ..Default::default()
        };
        store.save(&empty).unwrap();
        drop(store);

        let mut csv = Vec::new();
        let n = export(
            &db,
            i64::MIN,
            i64::MAX,
            ExportFormat::Csv,
            &PrivacySettings::default(),
            &mut csv,
        )
        .unwrap();
        assert_eq!(n, 2);
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(
            csv,
            "interval_id,start,end,uptime_s,frames,camera_faults,suppressed_cells,age_bucket,gender,visits,watchers,attention_s\n\
             hall@1795392000,2026-11-23T00:00:00Z,2026-11-23T00:15:00Z,900,27000,0,1,25-34,female,6,6,14.5\n\
             hall@1795392000,2026-11-23T00:00:00Z,2026-11-23T00:15:00Z,900,27000,0,1,25-34,male,5,,\n\
             hall@1795392900,2026-11-23T00:15:00Z,2026-11-23T00:30:00Z,900,0,0,0,,,0,0,0\n"
        );

        let mut json = Vec::new();
        export(
            &db,
            1_795_392_000,
            1_795_392_200,
            ExportFormat::Json,
            &PrivacySettings::default(),
            &mut json,
        )
        .unwrap();
        let json = String::from_utf8(json).unwrap();
        assert_eq!(json.lines().count(), 1, "--since/--until select by start");
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["id"], "hall@1795392000");
        assert_eq!(v["start_time"], "2026-11-23T00:00:00Z");
        assert_eq!(v["cells"].as_array().unwrap().len(), 2);
        assert_eq!(v["suppressed_cells"], 1);
    }

    #[test]
    fn missing_database_says_where_it_would_be() {
        let mut out = Vec::new();
        let err = export(
            Path::new("/nonexistent/s.sqlite"),
            0,
            1,
            ExportFormat::Csv,
            &PrivacySettings::default(),
            &mut out,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/nonexistent/s.sqlite") && err.contains("stats.dir"),
            "{err}"
        );
    }
}
