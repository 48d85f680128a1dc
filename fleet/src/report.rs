//! What one view of the page shows, independent of HTTP and HTML: the resolved filter
//! ([`View`]), the visits [`Table`] (one row per period, one column per age bucket × gender),
//! and that table as CSV. The page ([`crate::page`]) and the CSV download both come from it.

use crate::store::{ConflictRow, Range, SeriesRow, Step, UnitRow};
use std::collections::{BTreeMap, BTreeSet};

/// A filter resolved against the data: the range of interval starts, the period, the unit.
#[derive(Debug, Clone)]
pub struct View {
    pub range: Range,
    pub step: Step,
    pub unit: Option<String>,
}

impl View {
    /// The first day shown, YYYY-MM-DD.
    pub fn first_day(&self) -> String {
        ymd(self.range.from)
    }

    /// The last day shown (the range's end is exclusive), YYYY-MM-DD.
    pub fn last_day(&self) -> String {
        ymd(self.range.to - 86_400)
    }

    /// The query string that shows this view again, with or without its unit.
    pub fn query(&self, with_unit: bool) -> String {
        let mut q = format!(
            "from={}&to={}&step={}",
            self.first_day(),
            self.last_day(),
            self.step.name()
        );
        if let (true, Some(u)) = (with_unit, &self.unit) {
            q.push_str("&unit=");
            q.push_str(u);
        }
        q
    }
}

/// Everything one page (or its CSV) shows, as read from the store.
pub struct Data {
    pub series: Vec<SeriesRow>,
    pub units: Vec<UnitRow>,
    pub conflicts: Vec<ConflictRow>,
}

/// Unix seconds as a UTC date, YYYY-MM-DD.
pub fn ymd(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Unix seconds as a UTC date and minute, YYYY-MM-DD HH:MM UTC.
pub fn hm(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Sort key of an age bucket: by its lower bound, `unknown` last.
fn bucket_key(b: &str) -> (u32, String) {
    let low = b
        .split(['-', '+'])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    (low, b.to_string())
}

fn gender_key(g: &str) -> usize {
    ["female", "male", "any", "unknown"]
        .iter()
        .position(|x| *x == g)
        .unwrap_or(9)
}

/// The visits table: one row per period in the range, one column per age bucket × gender
/// that has published visits, and a total. The page and the CSV both come from this.
pub struct Table {
    pub periods: Vec<i64>,
    /// (age bucket, gender)
    pub columns: Vec<(String, String)>,
    /// rows[period][column]
    pub rows: Vec<Vec<i64>>,
}

impl Table {
    pub fn new(v: &View, series: &[SeriesRow]) -> Table {
        let mut periods = Vec::new();
        let mut p = v.step.floor(v.range.from);
        while p < v.range.to {
            periods.push(p);
            p += v.step.seconds();
        }
        let mut columns: Vec<(String, String)> = series
            .iter()
            .map(|r| (r.age_bucket.clone(), r.gender.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        columns.sort_by_key(|(b, g)| (bucket_key(b), gender_key(g)));
        let col: BTreeMap<(&str, &str), usize> = columns
            .iter()
            .enumerate()
            .map(|(i, (b, g))| ((b.as_str(), g.as_str()), i))
            .collect();
        let row: BTreeMap<i64, usize> = periods.iter().enumerate().map(|(i, &p)| (p, i)).collect();
        let mut rows = vec![vec![0i64; columns.len()]; periods.len()];
        for r in series {
            if let (Some(&i), Some(&j)) = (
                row.get(&r.period),
                col.get(&(r.age_bucket.as_str(), r.gender.as_str())),
            ) {
                rows[i][j] += r.visits;
            }
        }
        Table {
            periods,
            columns,
            rows,
        }
    }

    pub fn total(&self) -> i64 {
        self.rows.iter().flatten().sum()
    }

    pub fn x_labels(&self) -> Vec<String> {
        self.periods.iter().map(|&p| ymd(p)).collect()
    }

    /// Lines summed over the key of each column (age bucket or gender).
    pub fn by(&self, key: impl Fn(&(String, String)) -> String) -> Vec<(String, Vec<i64>)> {
        let mut out: Vec<(String, Vec<i64>)> = Vec::new();
        for (j, c) in self.columns.iter().enumerate() {
            let k = key(c);
            let idx = match out.iter().position(|(l, _)| *l == k) {
                Some(i) => i,
                None => {
                    out.push((k, vec![0; self.periods.len()]));
                    out.len() - 1
                }
            };
            for (i, row) in self.rows.iter().enumerate() {
                out[idx].1[i] += row[j];
            }
        }
        out
    }

    /// The table as CSV (the csv crate; a field is quoted only where CSV needs it): a header
    /// of the period name, each `age_bucket gender` column and `total`, then one line per
    /// period, its date first. Lines end in `\n`.
    pub fn csv(&self, step: Step) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec![step.name().to_string()];
        header.extend(self.columns.iter().map(|(b, g)| format!("{b} {g}")));
        header.push("total".into());
        w.write_record(&header)?;
        for (p, row) in self.periods.iter().zip(&self.rows) {
            let mut line = Vec::with_capacity(row.len() + 2);
            line.push(ymd(*p));
            line.extend(row.iter().map(i64::to_string));
            line.push(row.iter().sum::<i64>().to_string());
            w.write_record(&line)?;
        }
        w.into_inner().map_err(|e| e.into_error().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View {
            range: Range {
                from: 86_400 * 10,
                to: 86_400 * 13,
            },
            step: Step::Day,
            unit: None,
        }
    }

    fn row(d: i64, b: &str, g: &str, n: i64) -> SeriesRow {
        SeriesRow {
            period: 86_400 * d,
            age_bucket: b.into(),
            gender: g.into(),
            visits: n,
            watchers: None,
            attention_s: None,
            attention_unknown: n,
        }
    }

    #[test]
    fn the_table_has_every_period_and_sorted_columns() {
        let v = view();
        let t = Table::new(
            &v,
            &[
                row(10, "65+", "male", 5),
                row(12, "13-17", "any", 7),
                row(12, "unknown", "unknown", 6),
                row(12, "65+", "female", 8),
            ],
        );
        assert_eq!(t.periods.len(), 3);
        let cols: Vec<String> = t.columns.iter().map(|(b, g)| format!("{b} {g}")).collect();
        assert_eq!(
            cols,
            ["13-17 any", "65+ female", "65+ male", "unknown unknown"]
        );
        assert_eq!(t.rows[1], vec![0, 0, 0, 0]);
        assert_eq!(t.total(), 26);
        assert_eq!(t.by(|c| c.0.clone())[1], ("65+".to_string(), vec![5, 0, 8]));
    }

    #[test]
    fn the_csv_is_the_table() {
        let t = Table::new(
            &view(),
            &[row(10, "65+", "male", 5), row(12, "13-17", "any", 7)],
        );
        assert_eq!(
            String::from_utf8(t.csv(Step::Day).unwrap()).unwrap(),
            "day,13-17 any,65+ male,total\n\
             1970-01-11,0,5,5\n\
             1970-01-12,0,0,0\n\
             1970-01-13,7,0,7\n"
        );
    }

    #[test]
    fn csv_fields_are_quoted_where_needed() {
        // Not a bucket the schema lets through; the CSV stays valid all the same.
        let t = Table {
            periods: vec![],
            columns: vec![("a,\"b\"".into(), "x".into())],
            rows: vec![],
        };
        let csv = String::from_utf8(t.csv(Step::Week).unwrap()).unwrap();
        assert_eq!(csv, "week,\"a,\"\"b\"\" x\",total\n");
    }

    #[test]
    fn a_view_links_to_itself() {
        let mut v = view();
        assert_eq!(v.query(true), "from=1970-01-11&to=1970-01-13&step=day");
        v.unit = Some("hall".into());
        assert_eq!(v.query(false), "from=1970-01-11&to=1970-01-13&step=day");
        assert_eq!(
            v.query(true),
            "from=1970-01-11&to=1970-01-13&step=day&unit=hall"
        );
    }
}
