//! The collector's web page (axum): fleet and per-unit views of published visits per age
//! bucket × gender per day or week, dwell, uptime and camera faults per unit, stale units in
//! red, parked conflicts, a date-range filter, and a CSV of exactly the table shown.
//! Charts are server-side SVG ([`crate::chart`]); the page has no JavaScript.
//!
//! Everything shown is a sum of cells the units published (k-anonymous); a bucket a unit
//! suppressed is in no number here, and the page says so.

use crate::config::WebSettings;
use crate::ingest::Metrics;
use crate::store::{ConflictRow, Database, Range, SeriesRow, Step, Store, StoreError, UnitRow};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// Shared by the handlers: a reading connection (reopened after an error).
#[derive(Clone)]
pub struct AppState {
    reader: Arc<Mutex<Option<Box<dyn Store>>>>,
    database: Database,
    web: Arc<WebSettings>,
    metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(database: Database, web: WebSettings, metrics: Arc<Metrics>) -> AppState {
        AppState {
            reader: Arc::new(Mutex::new(None)),
            database,
            web: Arc::new(web),
            metrics,
        }
    }

    /// Runs `f` on the reading connection in a blocking task.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Problem> {
        let reader = self.reader.clone();
        let database = self.database.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut guard = reader.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(database.open()?);
            }
            let store = guard.as_mut().expect("opened above");
            let result = f(store.as_mut());
            if result.is_err() && !store.healthy() {
                *guard = None;
            }
            result
        })
        .await;
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                log::warn!("page: {e}");
                Err(Problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the database cannot be read right now: {e}\n"),
                ))
            }
            Err(e) => Err(Problem(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))),
        }
    }
}

/// An error answer: a status and one line saying what to do.
pub struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// The routes, with the login check when one is configured.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(fleet_page))
        .route("/unit/{unit}", get(unit_page))
        .route("/visits.csv", get(csv))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(state)
}

/// Bearer token or basic-auth password, compared in constant time; none needed when neither
/// is configured (then the page only listens on loopback, see config).
async fn auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let web = &state.web;
    if web.token.is_none() && web.basic.is_none() {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = if let (Some(token), Some(b)) = (&web.token, given.strip_prefix("Bearer ")) {
        same(b.trim().as_bytes(), token.as_bytes())
    } else if let (Some((user, password)), Some(b)) = (&web.basic, given.strip_prefix("Basic ")) {
        use base64::Engine;
        let expected = format!("{user}:{password}");
        base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map(|d| same(&d, expected.as_bytes()))
            .unwrap_or(false)
    } else {
        false
    };
    if ok {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "login needed: send the token as `Authorization: Bearer <token>`, or the basic-auth user and password\n",
    )
        .into_response();
    if web.basic.is_some() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"agecam-fleet\""),
        );
    }
    response
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The page's query: `from` and `to` (inclusive) as YYYY-MM-DD (UTC), `step` day or week.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Filter {
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
    unit: Option<String>,
}

/// A filter resolved against the data.
#[derive(Debug, Clone)]
struct View {
    range: Range,
    step: Step,
    unit: Option<String>,
}

fn day(text: &str, key: &str) -> Result<i64, Problem> {
    let bad = || {
        Problem(
            StatusCode::BAD_REQUEST,
            format!("{key}={text:.40?}: give a date as YYYY-MM-DD\n"),
        )
    };
    let date: jiff::civil::Date = text.parse().map_err(|_| bad())?;
    let ts = date
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map_err(|_| bad())?
        .timestamp();
    Ok(ts.as_second())
}

fn ymd(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn hm(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Longest range one page shows.
const MAX_DAYS: i64 = 731;

async fn view(state: &AppState, filter: Filter, unit: Option<String>) -> Result<View, Problem> {
    let step = match filter.step.as_deref() {
        None | Some("") | Some("day") => Step::Day,
        Some("week") => Step::Week,
        Some(other) => {
            return Err(Problem(
                StatusCode::BAD_REQUEST,
                format!("step={other:.20?}: give day or week\n"),
            ))
        }
    };
    let unit = unit.or(filter.unit.filter(|u| !u.is_empty()));
    if let Some(u) = &unit {
        if !crate::schema::valid_unit_id(u) {
            return Err(Problem(StatusCode::NOT_FOUND, "no such unit\n".into()));
        }
    }
    let to = match filter.to.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => day(t, "to")? + 86_400,
        None => {
            let latest = state.with_store(|s| s.latest_end()).await?;
            Step::Day.floor(latest.map(|e| e - 1).unwrap_or_else(crate::now)) + 86_400
        }
    };
    let from = match filter.from.as_deref().filter(|t| !t.is_empty()) {
        Some(f) => day(f, "from")?,
        None => match step {
            Step::Day => to - 7 * 86_400,
            Step::Week => Step::Week.floor(to - 8 * 7 * 86_400),
        },
    };
    if from >= to || to - from > MAX_DAYS * 86_400 {
        return Err(Problem(
            StatusCode::BAD_REQUEST,
            format!("from must be on or before to, and the range at most {MAX_DAYS} days\n"),
        ));
    }
    Ok(View {
        range: Range { from, to },
        step,
        unit,
    })
}

/// Everything one page (or its CSV) shows.
struct Data {
    series: Vec<SeriesRow>,
    units: Vec<UnitRow>,
    conflicts: Vec<ConflictRow>,
}

async fn load(state: &AppState, v: &View) -> Result<Data, Problem> {
    let v = v.clone();
    state
        .with_store(move |s| {
            Ok(Data {
                series: s.series(v.unit.as_deref(), v.range, v.step)?,
                units: s.units(v.range)?,
                conflicts: s.conflicts(200)?,
            })
        })
        .await
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
struct Table {
    periods: Vec<i64>,
    columns: Vec<(String, String)>,
    /// rows[period][column]
    rows: Vec<Vec<i64>>,
}

impl Table {
    fn new(v: &View, series: &[SeriesRow]) -> Table {
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

    fn total(&self) -> i64 {
        self.rows.iter().flatten().sum()
    }

    fn x_labels(&self) -> Vec<String> {
        self.periods.iter().map(|&p| ymd(p)).collect()
    }

    /// Lines summed over the key of each column (age bucket or gender).
    fn by(&self, key: impl Fn(&(String, String)) -> String) -> Vec<(String, Vec<i64>)> {
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
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// "3 h ago" and the like.
pub fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s} s ago"),
        120..7_200 => format!("{} min ago", s / 60),
        7_200..172_800 => format!("{} h ago", s / 3_600),
        _ => format!("{} days ago", s / 86_400),
    }
}

async fn fleet_page(State(state): State<AppState>, Query(filter): Query<Filter>) -> Response {
    page(state, filter, None).await
}

async fn unit_page(
    State(state): State<AppState>,
    Path(unit): Path<String>,
    Query(filter): Query<Filter>,
) -> Response {
    page(state, filter, Some(unit)).await
}

fn query_string(v: &View, with_unit: bool) -> String {
    let mut q = format!(
        "from={}&to={}&step={}",
        ymd(v.range.from),
        ymd(v.range.to - 86_400),
        v.step.name()
    );
    if let (true, Some(u)) = (with_unit, &v.unit) {
        let _ = write!(q, "&unit={u}");
    }
    q
}

async fn page(state: AppState, filter: Filter, unit: Option<String>) -> Response {
    let v = match view(&state, filter, unit).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let data = match load(&state, &v).await {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let units: Vec<&UnitRow> = data
        .units
        .iter()
        .filter(|u| v.unit.as_ref().is_none_or(|x| *x == u.unit_id))
        .collect();
    if let (Some(u), true) = (&v.unit, units.is_empty()) {
        return (
            StatusCode::NOT_FOUND,
            format!("unit {u:?} has sent nothing yet; units appear with their first interval\n"),
        )
            .into_response();
    }
    let table = Table::new(&v, &data.series);
    let now = crate::now();
    let title = match &v.unit {
        Some(u) => format!("agecam fleet — unit {}", esc(u)),
        None => "agecam fleet".to_string(),
    };
    let mut h = String::with_capacity(32 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>body{{font-family:sans-serif;margin:1.2em;color:#222}}table{{border-collapse:collapse;margin:.6em 0}}\
td,th{{border:1px solid #ccc;padding:2px 7px;text-align:right;font-size:13px}}th{{background:#f3f3f3}}\
td.l,th.l{{text-align:left;white-space:nowrap}}.stale{{color:#c00;font-weight:bold}}.ok{{color:#080}}.note{{background:#fff8d8;padding:.4em .8em;border:1px solid #e8d890;max-width:70em}}\
.charts{{display:flex;flex-wrap:wrap;gap:4px}}form{{margin:.6em 0}}</style></head><body>\
<h1>{title}</h1>"
    );
    // Filter form.
    let _ = write!(
        h,
        "<form method=\"get\" action=\"{}\">from <input type=\"date\" name=\"from\" value=\"{}\"> \
to <input type=\"date\" name=\"to\" value=\"{}\"> per <select name=\"step\">\
<option value=\"day\"{}>day</option><option value=\"week\"{}>week</option></select> \
<button type=\"submit\">show</button> <a id=\"csv\" href=\"/visits.csv?{}\">CSV of the table below</a>{}</form>",
        v.unit
            .as_ref()
            .map(|u| format!("/unit/{}", esc(u)))
            .unwrap_or_else(|| "/".into()),
        ymd(v.range.from),
        ymd(v.range.to - 86_400),
        if v.step == Step::Day { " selected" } else { "" },
        if v.step == Step::Week { " selected" } else { "" },
        esc(&query_string(&v, true)),
        if v.unit.is_some() {
            format!(" · <a href=\"/?{}\">whole fleet</a>", esc(&query_string(&v, false)))
        } else {
            String::new()
        }
    );
    let suppressed: i64 = units.iter().map(|u| u.suppressed_cells).sum();
    let _ = write!(
        h,
        "<p class=\"note\">Every number here is a sum of the cells the units <b>published</b>: \
k-anonymous counts per interval (a unit merges or withholds any age bucket with fewer than k visits). \
Withheld buckets are in no total and cannot be recovered from this page: \
<span id=\"suppressed\">{suppressed}</span> were withheld in this range. Times are UTC; the \
first version of each interval counts (re-sends with different numbers are listed under Conflicts).</p>"
    );
    let _ = write!(
        h,
        "<p>Published visits {} to {}: <b id=\"total-visits\">{}</b></p>",
        ymd(v.range.from),
        ymd(v.range.to - 86_400),
        table.total()
    );
    let x = table.x_labels();
    let per = v.step.name();
    let _ = write!(
        h,
        "<div class=\"charts\"><div>{}</div><div>{}</div></div>",
        crate::chart::lines(
            &format!("visits per {per} by age"),
            &x,
            &table.by(|c| c.0.clone())
        ),
        crate::chart::lines(
            &format!("visits per {per} by gender"),
            &x,
            &table.by(|c| c.1.clone())
        ),
    );
    // Units.
    let _ = write!(
        h,
        "<h2>Units</h2><table id=\"units\"><tr><th class=\"l\">unit</th><th class=\"l\">last interval ended</th>\
<th class=\"l\">registered</th><th>intervals</th><th>uptime h</th><th>uptime %</th><th>camera faults</th>\
<th>visits</th><th>mean dwell s</th><th>withheld buckets</th></tr>"
    );
    for u in &units {
        let age = now - u.last_interval_end;
        let class = if age > state.web.stale_after_s {
            "stale"
        } else {
            "ok"
        };
        let span = (v.range.to.min(now) - v.range.from).max(1) as f64;
        let _ = write!(
            h,
            "<tr data-unit=\"{id}\"><td class=\"l\"><a href=\"/unit/{id}?{q}\">{id}</a></td>\
<td class=\"l {class}\" title=\"{end}\">last seen {ago}</td><td class=\"l\">{reg}</td><td>{}</td><td>{:.1}</td>\
<td>{:.0}</td><td class=\"faults\">{}</td><td class=\"visits\">{}</td><td>{}</td><td>{}</td></tr>",
            u.intervals,
            u.uptime_s / 3600.0,
            100.0 * u.uptime_s / span,
            u.camera_faults,
            u.visits,
            u.dwell_mean_s.map(|d| format!("{d:.1}")).unwrap_or_else(|| "–".into()),
            u.suppressed_cells,
            id = esc(&u.unit_id),
            q = esc(&query_string(&v, false)),
            end = hm(u.last_interval_end),
            ago = ago(age),
            reg = hm(u.first_seen),
        );
    }
    h.push_str("</table>");
    // Visits table.
    let _ = write!(
        h,
        "<h2>Visits per {per} by age bucket × gender</h2><table id=\"visits\"><tr><th class=\"l\">{per}</th>"
    );
    for (b, g) in &table.columns {
        let _ = write!(h, "<th>{} {}</th>", esc(b), esc(g));
    }
    h.push_str("<th>total</th></tr>");
    for (i, p) in table.periods.iter().enumerate() {
        let _ = write!(
            h,
            "<tr data-period=\"{}\"><td class=\"l\">{}</td>",
            ymd(*p),
            ymd(*p)
        );
        for (j, (b, g)) in table.columns.iter().enumerate() {
            let _ = write!(
                h,
                "<td class=\"cell\" data-cell=\"{} {}\">{}</td>",
                esc(b),
                esc(g),
                table.rows[i][j]
            );
        }
        let _ = write!(
            h,
            "<td class=\"total\">{}</td></tr>",
            table.rows[i].iter().sum::<i64>()
        );
    }
    h.push_str("</table>");
    // Conflicts.
    let conflicts: Vec<&ConflictRow> = data
        .conflicts
        .iter()
        .filter(|c| v.unit.as_ref().is_none_or(|u| *u == c.unit_id))
        .collect();
    let _ = write!(
        h,
        "<h2>Conflicts</h2><p>Intervals that came again with different numbers (e.g. a unit restarted \
and re-sent a completed interval). The first version stays in every total; these are kept aside, not merged.</p>\
<table id=\"conflicts\"><tr><th class=\"l\">interval</th><th>visits counted</th><th>visits in the re-send</th>\
<th>times received</th><th class=\"l\">last received</th></tr>"
    );
    if conflicts.is_empty() {
        h.push_str("<tr><td class=\"l\" colspan=\"5\">none</td></tr>");
    }
    for c in &conflicts {
        let _ = write!(
            h,
            "<tr class=\"conflict\"><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(&c.interval_id),
            c.stored_visits,
            c.parked_visits,
            c.times,
            hm(c.last_received)
        );
    }
    h.push_str("</table>");
    let m = &state.metrics;
    let _ = write!(
        h,
        "<p style=\"color:#666;font-size:12px\">collector: {} messages received, {} stored, {} duplicates, {} conflicts, {} rejected since start; page drawn {}</p></body></html>",
        m.get(&m.received),
        m.get(&m.stored),
        m.get(&m.duplicates),
        m.get(&m.conflicts),
        m.get(&m.rejected),
        hm(now)
    );
    Html(h).into_response()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

async fn csv(State(state): State<AppState>, Query(filter): Query<Filter>) -> Response {
    let v = match view(&state, filter, None).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let data = match load(&state, &v).await {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let table = Table::new(&v, &data.series);
    let mut out = String::from(v.step.name());
    for (b, g) in &table.columns {
        out.push(',');
        out.push_str(&csv_field(&format!("{b} {g}")));
    }
    out.push_str(",total\n");
    for (i, p) in table.periods.iter().enumerate() {
        out.push_str(&ymd(*p));
        for n in &table.rows[i] {
            let _ = write!(out, ",{n}");
        }
        let _ = writeln!(out, ",{}", table.rows[i].iter().sum::<i64>());
    }
    let name = format!(
        "agecam-visits-{}{}-{}.csv",
        v.unit.as_ref().map(|u| format!("{u}-")).unwrap_or_default(),
        ymd(v.range.from),
        ymd(v.range.to - 86_400)
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        "text/csv; charset=utf-8".parse().expect("static"),
    );
    if let Ok(value) = format!("attachment; filename=\"{name}\"").parse() {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    (headers, out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        assert_eq!(ago(5), "5 s ago");
        assert_eq!(ago(600), "10 min ago");
        assert_eq!(ago(3 * 3600 + 5), "3 h ago");
        assert_eq!(ago(5 * 86_400), "5 days ago");
    }

    #[test]
    fn the_table_has_every_period_and_sorted_columns() {
        let v = View {
            range: Range {
                from: 86_400 * 10,
                to: 86_400 * 13,
            },
            step: Step::Day,
            unit: None,
        };
        let row = |d: i64, b: &str, g: &str, n| SeriesRow {
            period: 86_400 * d,
            age_bucket: b.into(),
            gender: g.into(),
            visits: n,
        };
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
    fn html_and_csv_are_escaped() {
        assert_eq!(esc("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
