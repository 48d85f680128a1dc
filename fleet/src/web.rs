//! The collector's web server (axum): the routes (`/`, `/unit/<id>`, `/visits.csv`,
//! `/health`), the login check, the query (`from`, `to`, `step`) resolved into a
//! [`View`] against the data, and the answers: the page ([`crate::page`]), the CSV of exactly
//! the table shown ([`crate::report`]), or one line saying what to do.
//!
//! Everything shown is a sum of cells the units published (k-anonymous); a bucket a unit
//! suppressed is in no number here, and the page says so.

use crate::config::WebSettings;
use crate::ingest::Metrics;
use crate::page::Page;
use crate::report::{Attention, Data, Table, View};
use crate::store::{ConflictRow, Database, Range, Step, Store, StoreError, UnitRow};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
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
            Step::Day.floor(latest.map(|e| e - 1).unwrap_or_else(crate::clock::now)) + 86_400
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

async fn load(state: &AppState, v: &View) -> Result<Data, Problem> {
    let v = v.clone();
    state
        .with_store(move |s| {
            Ok(Data {
                series: s.series(v.unit.as_deref(), v.range, v.step)?,
                hours: s.hours(v.unit.as_deref(), v.range)?,
                units: s.units(v.range)?,
                conflicts: s.conflicts(200)?,
            })
        })
        .await
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

async fn page(state: AppState, filter: Filter, unit: Option<String>) -> Response {
    let v = match view(&state, filter, unit).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let data = match load(&state, &v).await {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let mine = |unit_id: &String| v.unit.as_ref().is_none_or(|u| u == unit_id);
    let units: Vec<&UnitRow> = data.units.iter().filter(|u| mine(&u.unit_id)).collect();
    if let (Some(u), true) = (&v.unit, units.is_empty()) {
        return (
            StatusCode::NOT_FOUND,
            format!("unit {u:?} has sent nothing yet; units appear with their first interval\n"),
        )
            .into_response();
    }
    let conflicts: Vec<&ConflictRow> = data.conflicts.iter().filter(|c| mine(&c.unit_id)).collect();
    let page = Page {
        view: &v,
        units: &units,
        table: &Table::new(&v, &data.series),
        attention: &Attention::new(&data.series, &data.hours),
        conflicts: &conflicts,
        stale_after_s: state.web.stale_after_s,
        metrics: &state.metrics,
        now: crate::clock::now(),
    };
    Html(page.render().into_string()).into_response()
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
    let out = match Table::new(&v, &data.series).csv(v.step) {
        Ok(bytes) => bytes,
        Err(e) => {
            // Writing into memory: only a bug gets here.
            log::error!("visits.csv: {e}");
            return Problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("writing the CSV: {e}\n"),
            )
            .into_response();
        }
    };
    let name = format!(
        "agecam-visits-{}{}-{}.csv",
        v.unit.as_ref().map(|u| format!("{u}-")).unwrap_or_default(),
        v.first_day(),
        v.last_day()
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
