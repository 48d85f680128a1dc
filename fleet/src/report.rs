//! What one view of the page shows, independent of HTTP and HTML: the resolved filter
//! ([`View`]), the visits [`Table`] (one row per period, one column per age bucket × gender,
//! the period's watchers and attention seconds), that table as CSV, and the [`Attention`]
//! summary (rate per age bucket × gender, watchers by hour of day). The page
//! ([`crate::page`]) and the CSV download both come from it.
//!
//! Attention is only ever summed over the cells that carry it (push schema 2, not withheld);
//! the visits of the other cells are unknown, reported apart, never taken as "did not look".

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
    /// The same per UTC hour of day (period 0 to 23).
    pub hours: Vec<SeriesRow>,
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
    /// Watchers per period, over the cells with known attention; `None` when none has it.
    pub watchers: Vec<Option<i64>>,
    /// Seconds watched per period, likewise.
    pub attention_s: Vec<Option<f64>>,
}

/// Adds `b` to `a`, where `None` is "unknown": unknown plus known is the known part.
fn add_known<T: std::ops::Add<Output = T>>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
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
        let mut watchers = vec![None; periods.len()];
        let mut attention_s = vec![None; periods.len()];
        for r in series {
            if let (Some(&i), Some(&j)) = (
                row.get(&r.period),
                col.get(&(r.age_bucket.as_str(), r.gender.as_str())),
            ) {
                rows[i][j] += r.visits;
                watchers[i] = add_known(watchers[i], r.watchers);
                attention_s[i] = add_known(attention_s[i], r.attention_s);
            }
        }
        Table {
            periods,
            columns,
            rows,
            watchers,
            attention_s,
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
    /// of the period name, each `age_bucket gender` column, `total`, `watchers` and
    /// `attention_s`, then one line per period, its date first. `watchers` and `attention_s`
    /// are sums over the cells that carry attention, empty when none does. Lines end in `\n`.
    pub fn csv(&self, step: Step) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec![step.name().to_string()];
        header.extend(self.columns.iter().map(|(b, g)| format!("{b} {g}")));
        header.extend(["total", "watchers", "attention_s"].map(String::from));
        w.write_record(&header)?;
        for (i, (p, row)) in self.periods.iter().zip(&self.rows).enumerate() {
            let mut line = Vec::with_capacity(row.len() + 4);
            line.push(ymd(*p));
            line.extend(row.iter().map(i64::to_string));
            line.push(row.iter().sum::<i64>().to_string());
            let watchers = self.watchers.get(i).copied().flatten();
            line.push(watchers.map(|n| n.to_string()).unwrap_or_default());
            let seconds = self.attention_s.get(i).copied().flatten();
            line.push(seconds.map(|s| format!("{s:.1}")).unwrap_or_default());
            w.write_record(&line)?;
        }
        w.into_inner().map_err(|e| e.into_error().into())
    }
}

/// Attention of one age bucket × gender (or of all) over the view's range.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionRow {
    pub age_bucket: String,
    pub gender: String,
    /// Every published visit.
    pub visits: i64,
    /// Visits whose attention is unknown (schema 1 units, withheld splits).
    pub unknown: i64,
    /// Watchers in the cells with known attention; `None` when no cell has it.
    pub watchers: Option<i64>,
    /// Seconds those watchers looked, likewise.
    pub attention_s: Option<f64>,
}

impl AttentionRow {
    fn add(&mut self, r: &SeriesRow) {
        self.visits += r.visits;
        self.unknown += r.attention_unknown;
        self.watchers = add_known(self.watchers, r.watchers);
        self.attention_s = add_known(self.attention_s, r.attention_s);
    }

    /// Visits whose attention is known.
    pub fn known(&self) -> i64 {
        self.visits - self.unknown
    }

    /// Watchers ÷ the visits whose attention is known.
    pub fn rate(&self) -> Option<f64> {
        let known = self.known();
        self.watchers
            .filter(|_| known > 0)
            .map(|w| w as f64 / known as f64)
    }

    /// Mean seconds a watcher looked.
    pub fn mean_s(&self) -> Option<f64> {
        match (self.watchers, self.attention_s) {
            (Some(w), Some(s)) if w > 0 => Some(s / w as f64),
            _ => None,
        }
    }
}

/// The page's attention section: a row per age bucket × gender and the total, and watchers
/// per UTC hour of day by age bucket.
pub struct Attention {
    pub rows: Vec<AttentionRow>,
    pub total: AttentionRow,
    /// (age bucket, watchers at hour 0..23)
    pub by_hour: Vec<(String, Vec<i64>)>,
    /// Visits in `hours` whose attention is unknown (not in `by_hour`).
    pub by_hour_unknown: i64,
}

impl Attention {
    pub fn new(series: &[SeriesRow], hours: &[SeriesRow]) -> Attention {
        let empty = |b: &str, g: &str| AttentionRow {
            age_bucket: b.into(),
            gender: g.into(),
            visits: 0,
            unknown: 0,
            watchers: None,
            attention_s: None,
        };
        let mut cells: BTreeMap<(&str, &str), AttentionRow> = BTreeMap::new();
        let mut total = empty("all", "all");
        for r in series {
            cells
                .entry((&r.age_bucket, &r.gender))
                .or_insert_with(|| empty(&r.age_bucket, &r.gender))
                .add(r);
            total.add(r);
        }
        let mut rows: Vec<AttentionRow> = cells.into_values().collect();
        rows.sort_by_key(|r| (bucket_key(&r.age_bucket), gender_key(&r.gender)));
        let mut buckets: Vec<&str> = hours
            .iter()
            .map(|r| r.age_bucket.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        buckets.sort_by_key(|b| bucket_key(b));
        let mut by_hour: Vec<(String, Vec<i64>)> = buckets
            .iter()
            .map(|b| (b.to_string(), vec![0; 24]))
            .collect();
        let mut by_hour_unknown = 0;
        for r in hours {
            by_hour_unknown += r.attention_unknown;
            let (Some(line), Ok(hour)) = (
                by_hour.iter_mut().find(|(b, _)| *b == r.age_bucket),
                usize::try_from(r.period),
            ) else {
                continue;
            };
            if let Some(n) = line.1.get_mut(hour) {
                *n += r.watchers.unwrap_or(0);
            }
        }
        Attention {
            rows,
            total,
            by_hour,
            by_hour_unknown,
        }
    }

    /// Whether any cell in the view carries attention.
    pub fn any_known(&self) -> bool {
        self.total.watchers.is_some()
    }

    /// The hour chart's x labels, "00" to "23".
    pub fn hour_labels() -> Vec<String> {
        (0..24).map(|h| format!("{h:02}")).collect()
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
            "day,13-17 any,65+ male,total,watchers,attention_s\n\
             1970-01-11,0,5,5,,\n\
             1970-01-12,0,0,0,,\n\
             1970-01-13,7,0,7,,\n"
        );
    }

    #[test]
    fn csv_fields_are_quoted_where_needed() {
        // Not a bucket the schema lets through; the CSV stays valid all the same.
        let t = Table {
            periods: vec![],
            columns: vec![("a,\"b\"".into(), "x".into())],
            rows: vec![],
            watchers: vec![],
            attention_s: vec![],
        };
        let csv = String::from_utf8(t.csv(Step::Week).unwrap()).unwrap();
        assert_eq!(csv, "week,\"a,\"\"b\"\" x\",total,watchers,attention_s\n");
    }

    /// A row with attention: `known` = Some((watchers, seconds)) over `visits - unknown`.
    fn seen(
        d: i64,
        b: &str,
        g: &str,
        n: i64,
        known: Option<(i64, f64)>,
        unknown: i64,
    ) -> SeriesRow {
        SeriesRow {
            watchers: known.map(|k| k.0),
            attention_s: known.map(|k| k.1),
            attention_unknown: unknown,
            ..row(d, b, g, n)
        }
    }

    #[test]
    fn the_csv_has_the_known_attention_of_each_period_and_leaves_unknown_empty() {
        let t = Table::new(
            &view(),
            &[
                seen(10, "65+", "male", 5, Some((2, 10.3)), 0),
                seen(10, "13-17", "any", 4, None, 4),
                seen(11, "65+", "male", 3, Some((1, 0.1)), 1),
                seen(11, "13-17", "any", 6, Some((0, 0.2)), 0),
                row(12, "13-17", "any", 7),
            ],
        );
        assert_eq!(
            String::from_utf8(t.csv(Step::Day).unwrap()).unwrap(),
            "day,13-17 any,65+ male,total,watchers,attention_s\n\
             1970-01-11,4,5,9,2,10.3\n\
             1970-01-12,6,3,9,1,0.3\n\
             1970-01-13,7,0,7,,\n"
        );
    }

    #[test]
    fn attention_is_a_rate_over_known_visits_with_the_unknown_apart() {
        let series = [
            seen(10, "65+", "male", 5, Some((2, 10.0)), 0),
            seen(11, "65+", "male", 7, Some((1, 5.0)), 3),
            seen(10, "13-17", "any", 4, None, 4),
            seen(10, "25-34", "female", 6, Some((0, 0.0)), 0),
        ];
        let hours = [
            SeriesRow {
                period: 9,
                ..seen(0, "65+", "male", 12, Some((3, 15.0)), 3)
            },
            SeriesRow {
                period: 23,
                ..seen(0, "13-17", "any", 4, None, 4)
            },
        ];
        let a = Attention::new(&series, &hours);
        assert!(a.any_known());
        let shown: Vec<_> = a
            .rows
            .iter()
            .map(|r| {
                (
                    r.age_bucket.as_str(),
                    r.visits,
                    r.unknown,
                    r.watchers,
                    r.rate(),
                    r.mean_s(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("13-17", 4, 4, None, None, None),
                ("25-34", 6, 0, Some(0), Some(0.0), None),
                ("65+", 12, 3, Some(3), Some(3.0 / 9.0), Some(5.0)),
            ]
        );
        assert_eq!(
            (
                a.total.visits,
                a.total.known(),
                a.total.watchers,
                a.total.attention_s
            ),
            (22, 15, Some(3), Some(15.0))
        );
        let mut sixty_five = vec![0; 24];
        sixty_five[9] = 3;
        assert_eq!(
            a.by_hour,
            [
                ("13-17".to_string(), vec![0; 24]),
                ("65+".to_string(), sixty_five)
            ]
        );
        assert_eq!(a.by_hour_unknown, 7);
        assert_eq!(Attention::hour_labels()[9], "09");

        let nothing = Attention::new(&[row(10, "65+", "male", 5)], &[]);
        assert!(!nothing.any_known());
        assert_eq!((nothing.total.unknown, nothing.total.rate()), (5, None));
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
